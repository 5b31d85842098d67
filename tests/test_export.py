"""NIR export, checked by other frameworks: the *unpatched* importers of snnTorch, Norse and
nirtorch load ``model.nir`` and run a whole batch, and their outputs are compared with neuronas'
own network on the same input.

The comparison uses a digital (exact-sum) crossbar on an ideal device, where the chip computes
exactly ``x @ W_q`` with the quantized weights that the NIR graph holds, so the graph is the
network (the converters of analog arrays are checked against chip mode in ``test_export_chip.py``).
Tolerance: 1e-5 absolute on the readout currents: both sides run float32 and may sum in
different orders (~1e-7 per operation); a single spike that differs would move an output by a
whole weight (>= 1e-2 here), so the tolerance cannot hide a wrong spike.

Documented differences (asserted, not patched):

* snnTorch 1.0 imports ``nir.IF`` as ``Leaky(beta=0.9, init_hidden=False)``: a leaky neuron whose
  (spike, membrane) tuple the next layer cannot take.  IF (and LD-LIF) neurons are therefore
  exported as an integrating ``CubaLIF`` (decay 1.0 in float, unit gain), which snnTorch maps to
  ``Synaptic(alpha=0, beta=1.0)`` and runs, as do Norse and nirtorch; the plain ``nir.IF``
  failure is asserted in ``test_snntorch_cannot_run_nir_if``.
* neuronas' own reader (:func:`neuronas.snn.nir.run_graph`, which measures a graph's accuracy
  at export) runs every graph.
* nirtorch 2.6 ships no neuron mapping (the user supplies one: here NIR's own definitions of LIF
  and IF), and its default ``Affine`` mapping does not load the bias (it assigns
  ``weight.bias``), so an MLP's biases must be mapped by the user too; convolutions are loaded
  with their bias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
import torch

from neuronas.snn import build, crossbar_layers
from neuronas.snn.nir import NIR_DT_S, chip_weights, run_graph, to_nir
from neuronas.spec import ArchSpec

snntorch = pytest.importorskip("snntorch")
nirtorch = pytest.importorskip("nirtorch")
norse = pytest.importorskip("norse")

T, B = 6, 4

CNN = {
    "input": {"shape": [2, 8, 8], "timesteps": T},
    "layers": [
        {"kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "conv", "out": 4, "kernel": 3},
        {"kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "fc", "out": 16},
        {"kind": "fc", "out": 3},
    ],
    "precision": {"weight_bits": 4},
    "mapping": {"adc_kind": "digital", "adc_bits": 0, "rows": 32, "cols": 32},
}
CNN_AVG = {
    **CNN,
    "layers": [
        {"kind": "conv", "out": 4, "kernel": 3},
        {"kind": "pool", "kernel": 2, "pool": "avg"},
        {"kind": "fc", "out": 3},
    ],
}
MLP = {
    "input": {"shape": [40], "timesteps": T},
    "layers": [{"kind": "fc", "out": 24}, {"kind": "fc", "out": 12}, {"kind": "fc", "out": 5}],
    "precision": {"weight_bits": 3},
    "mapping": {"adc_kind": "digital", "adc_bits": 0, "rows": 16, "cols": 16},
}
LIF = {"model": "lif", "tau": 2.0, "threshold": 0.5}
IF = {"model": "if", "threshold": 1.0}
# LD-LIF clamps the membrane at rest (max(v - d, 0) + x); the IF + bias export is exact while the
# membrane stays >= d.  With d = 0 and non-negative weights and biases it never goes below rest.
LD_LIF = {"model": "ld_lif", "decay_step": 0.0, "threshold": 2.0}

NETS = {
    "mlp-lif": (MLP, LIF, 3, 12.0),
    "mlp-if": (MLP, IF, 2, 8.0),
    "mlp-ld_lif": (MLP, LD_LIF, 4, 0.6),
    "cnn-lif": (CNN, LIF, 0, 4.0),
    "cnn-if": (CNN, IF, 1, 6.0),
    "cnn-ld_lif": (CNN, LD_LIF, 4, 0.8),
    "cnn-avg-lif": (CNN_AVG, LIF, 5, 4.0),
}


def _model(spec: dict, neuron: dict, seed: int = 0, gain: float = 4.0):
    torch.manual_seed(seed)
    arch = ArchSpec.from_dict({**spec, "neuron": neuron})
    model = build(arch, None)
    with torch.no_grad():
        for layer in crossbar_layers(model):
            layer.weight.mul_(gain)  # enough drive that every layer spikes
            if neuron["model"] == "ld_lif":
                layer.weight.abs_()
                layer.bias.abs_()
    model.set_hardware_awareness(1.0)
    model.eval()
    return arch, model


def _inputs(arch: ArchSpec, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, *arch.input.shape), generator=g) < 0.3).float()


# -- the importers, as their users call them ------------------------------------------------


def run_snntorch(graph: Any, x: torch.Tensor) -> torch.Tensor:
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)
    snntorch.utils.reset(net)
    return torch.stack([net(x[t])[0].reshape(x.shape[1], -1) for t in range(x.shape[0])])


def run_norse(graph: Any, x: torch.Tensor) -> torch.Tensor:
    net = norse.torch.from_nir(graph, dt=NIR_DT_S)
    state, outs = None, []
    for t in range(x.shape[0]):
        out, state = net(x[t], state)
        outs.append(out.reshape(x.shape[1], -1))
    return torch.stack(outs)


class _NirLIF(torch.nn.Module):
    """NIR's LIF, ``tau dv/dt = (v_leak - v) + r I``, forward Euler with step dt, reset to 0."""

    def __init__(self, node: Any) -> None:
        super().__init__()
        self.k = torch.as_tensor(NIR_DT_S / node.tau, dtype=torch.float32)
        self.r = torch.as_tensor(node.r, dtype=torch.float32)
        self.thr = torch.as_tensor(node.v_threshold, dtype=torch.float32)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> Any:
        v = torch.zeros_like(x) if state is None else state
        v = v + self.k * (self.r * x - v)
        z = (v > self.thr).float()
        return z, v * (1 - z)


class _NirIF(torch.nn.Module):
    """NIR's IF, ``dv/dt = r I``, reset to 0."""

    def __init__(self, node: Any) -> None:
        super().__init__()
        self.r = torch.as_tensor(node.r, dtype=torch.float32)
        self.thr = torch.as_tensor(node.v_threshold, dtype=torch.float32)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> Any:
        v = (torch.zeros_like(x) if state is None else state) + self.r * x
        z = (v > self.thr).float()
        return z, v * (1 - z)


class _NirCubaLIF(torch.nn.Module):
    """NIR's CubaLIF, ``tau_syn di/dt = -i + w_in S``, ``tau_mem dv/dt = (v_leak - v) + r i``,
    forward Euler with step dt, reset to 0."""

    def __init__(self, node: Any) -> None:
        super().__init__()
        self.k_syn = torch.as_tensor(NIR_DT_S / node.tau_syn, dtype=torch.float32)
        self.k_mem = torch.as_tensor(NIR_DT_S / node.tau_mem, dtype=torch.float32)
        self.r = torch.as_tensor(node.r, dtype=torch.float32)
        self.w_in = torch.as_tensor(node.w_in, dtype=torch.float32)
        self.thr = torch.as_tensor(node.v_threshold, dtype=torch.float32)

    def forward(self, x: torch.Tensor, state: Any = None) -> Any:
        i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i = i + self.k_syn * (self.w_in * x - i)
        v = v + self.k_mem * (self.r * i - v)
        z = (v > self.thr).float()
        return z, (i, v * (1 - z))


def _affine_with_bias(node: Any) -> torch.nn.Linear:
    m = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
    m.weight.data = torch.from_numpy(node.weight)
    m.bias.data = torch.from_numpy(node.bias)
    return m


#: what a nirtorch user supplies: the neurons (nirtorch maps none), and for graphs with Affine
#: nodes a mapping that loads the bias (nirtorch 2.6's default does not)
NIRTORCH_NEURONS: dict[Any, Any] = {nir.LIF: _NirLIF, nir.IF: _NirIF, nir.CubaLIF: _NirCubaLIF}
NIRTORCH_WITH_BIAS: dict[Any, Any] = {**NIRTORCH_NEURONS, nir.Affine: _affine_with_bias}


def run_nirtorch(graph: Any, x: torch.Tensor, node_map: dict | None = None) -> torch.Tensor:
    net = nirtorch.nir_to_torch(graph, node_map or NIRTORCH_NEURONS)
    state, outs = None, []
    for t in range(x.shape[0]):
        out, state = net(x[t], state) if state is not None else net(x[t])
        outs.append(out.reshape(x.shape[1], -1))
    return torch.stack(outs)


def run_neuronas(graph: Any, x: torch.Tensor) -> torch.Tensor:
    """neuronas' own reader (NIR's definitions), which measures the graph's accuracy."""
    return run_graph(graph, x).reshape(x.shape[0], x.shape[1], -1)


def _ours(arch: ArchSpec, model, x: torch.Tensor) -> torch.Tensor:
    model.reset_probes()
    model.probing = True
    with torch.no_grad():
        out = model(x)
    model.probing = False
    _, out_rates = model.activity_rates()
    assert all(r > 0.01 for r in out_rates[:-1]), f"hidden layers must spike: {out_rates}"
    assert out.std(0).max() > 1e-2, "the readout must vary over time"
    return out


def _graph(arch: ArchSpec, model, tmp_path: Path) -> Any:
    path = tmp_path / "model.nir"
    nir.write(str(path), to_nir(model, arch))
    return nir.read(str(path))


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("importer", ["snntorch", "norse", "nirtorch", "neuronas"])
def test_stock_importers_run_the_exported_graph(tmp_path: Path, net: str, importer: str) -> None:
    spec, neuron, seed, gain = NETS[net]
    arch, model = _model(spec, neuron, seed=seed, gain=gain)
    x = _inputs(arch)
    ours = _ours(arch, model, x)
    graph = _graph(arch, model, tmp_path)
    has_affine = any(isinstance(n, nir.Affine) for n in graph.nodes.values())
    if importer == "nirtorch" and has_affine:
        # documented difference: nirtorch's default Affine map leaves the bias unloaded
        loaded = nirtorch.nir_to_torch(graph, NIRTORCH_NEURONS)
        biases = [m.bias for m in loaded.modules() if isinstance(m, torch.nn.Linear)]
        graph_biases = [n.bias for n in graph.nodes.values() if isinstance(n, nir.Affine)]
        assert not all(
            np.allclose(b.detach().numpy(), gb) for b, gb in zip(biases, graph_biases, strict=True)
        )
        theirs = run_nirtorch(graph, x, NIRTORCH_WITH_BIAS)
    else:
        run = {
            "snntorch": run_snntorch,
            "norse": run_norse,
            "nirtorch": run_nirtorch,
            "neuronas": run_neuronas,
        }[importer]
        theirs = run(graph, x)
    theirs = theirs.detach()
    assert theirs.shape == ours.shape, (theirs.shape, ours.shape)
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=0), (theirs - ours).abs().max()


def test_ld_lif_with_decay_is_exact_in_neuronas_reader_and_approximate_elsewhere(
    tmp_path: Path,
) -> None:
    # signed weights and a real decay: membranes fall below the decay step, where the IF + bias
    # export (what stock importers run) loses LD-LIF's clamp at rest
    arch, model = _model(MLP, {"model": "ld_lif", "decay_step": 0.3, "threshold": 1.0}, 7, 6.0)
    with torch.no_grad():
        for layer in crossbar_layers(model):
            layer.weight.sub_(layer.weight.abs().mean())  # mostly negative: the clamp matters
            layer.weight.add_(torch.randn_like(layer.weight) * 2.0)
    x = _inputs(arch)
    ours = _ours(arch, model, x)
    graph = _graph(arch, model, tmp_path)
    assert graph.nodes["if0"].metadata["neuronas_model"] == "ld_lif"
    exact = run_neuronas(graph, x)
    assert torch.allclose(exact, ours, atol=1e-5, rtol=0), (exact - ours).abs().max()
    approx = run_norse(graph, x).detach()
    assert (approx - ours).abs().max() > 1e-2  # the documented difference: the clamp is lost


def test_no_flatten_and_no_pool_node_the_importers_would_drop() -> None:
    arch, model = _model(CNN, LIF)
    g = to_nir(model, arch)
    kinds = {type(n).__name__ for n in g.nodes.values()}
    assert "Flatten" not in kinds and "AvgPool2d" not in kinds and "SumPool2d" not in kinds
    assert "max pooling" in g.metadata["notes"] and "[3, 1, 1]" in g.metadata["notes"]
    assert tuple(g.nodes["output"].output_type["output"]) == (3, 1, 1)


def test_ld_lif_decay_is_folded_into_the_bias() -> None:
    arch, model = _model(MLP, {"model": "ld_lif", "decay_step": 0.25, "threshold": 1.0}, seed=4)
    g = to_nir(model, arch)
    layers = crossbar_layers(model)
    _, b0 = chip_weights(layers[0])
    np.testing.assert_allclose(g.nodes["fc0"].bias, b0 - 0.25, atol=1e-7)
    _, b_out = chip_weights(layers[-1])
    np.testing.assert_allclose(g.nodes["fc2"].bias, b_out, atol=1e-7)  # the readout has no neuron
    assert isinstance(g.nodes["if0"], nir.CubaLIF)
    assert g.nodes["if0"].metadata["neuronas_model"] == "ld_lif"
    assert "ld_lif exported as IF" in g.metadata["notes"]


@pytest.mark.parametrize("model", ["if", "ld_lif"])
def test_if_is_an_integrating_cubalif_that_snntorch_runs_exactly(model: str) -> None:
    """IF as ``CubaLIF(tau_syn = dt, tau_mem = 2^60 dt, r = 2^60, w_in = 1)``: snnTorch 1.0 maps
    it to ``Synaptic`` with alpha exactly 0 and beta exactly 1.0 (``mem <- mem + x``), every
    importer's decay ``1 - dt / tau_mem`` is 1.0 in float32 and float64, the gain exactly 1."""
    from snntorch.import_nir import import_from_nir

    arch, model_ = _model(MLP, {"model": model, "threshold": 1.0}, seed=4)
    g = to_nir(model_, arch)
    cuba = [n for n in g.nodes.values() if isinstance(n, nir.CubaLIF)]
    assert len(cuba) == 2 and not any(isinstance(n, nir.IF) for n in g.nodes.values())
    for n in cuba:
        assert n.metadata["neuronas_model"] == model
        # float32 (what every importer runs): decay exactly 1, gain exactly 1
        k_mem = np.float32(NIR_DT_S) / n.tau_mem
        assert np.all(np.float32(1) - k_mem == 1) and np.all(n.r * k_mem == 1)
        # float64 (snnTorch's dt is a Python float): decay exactly 1; the gain is off by
        # 1e-4 / float32(1e-4), one float32 rounding
        k_mem64 = NIR_DT_S / n.tau_mem.astype(np.float64)
        assert np.all(1.0 - k_mem64 == 1.0)
        assert np.all(np.abs(n.r.astype(np.float64) * k_mem64 - 1) < 2.0**-24)
        assert np.all(np.float32(NIR_DT_S) / n.tau_syn == 1) and np.all(n.w_in == 1)
    syn = [m for m in import_from_nir(g).modules() if isinstance(m, snntorch.Synaptic)]
    assert len(syn) == 2
    for m in syn:
        assert torch.all(torch.as_tensor(m.beta) == 1.0) and torch.all(
            torch.as_tensor(m.alpha) == 0
        )
    assert "not nir.IF" in g.metadata["notes"]


def test_snntorch_cannot_run_nir_if() -> None:
    """Why IF is not exported as ``nir.IF``: snnTorch 1.0 maps it to ``Leaky(beta=0.9,
    init_hidden=False)`` (leaky, and its ``(spk, mem)`` tuple reaches the next layer)."""
    from snntorch.import_nir import import_from_nir

    w = np.eye(3, dtype=np.float32)
    ones = np.ones(3, np.float32)
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input({"input": np.array([3])}),
            "fc0": nir.Affine(weight=w, bias=0 * ones),
            "if0": nir.IF(r=ones, v_threshold=ones),
            "fc1": nir.Affine(weight=w, bias=0 * ones),
            "output": nir.Output({"output": np.array([3])}),
        },
        edges=[("input", "fc0"), ("fc0", "if0"), ("if0", "fc1"), ("fc1", "output")],
    )
    leaky = [m for m in import_from_nir(g).modules() if isinstance(m, snntorch.Leaky)]
    assert len(leaky) == 1 and abs(float(leaky[0].beta) - 0.9) < 1e-6
    with pytest.raises(TypeError, match="tuple"):
        run_snntorch(g, torch.ones(2, 1, 3))


def test_nir_holds_the_quantized_weights() -> None:
    arch, model = _model(MLP, {"model": "lif"}, seed=5)
    g = to_nir(model, arch)
    for name, layer in zip(("fc0", "fc1", "fc2"), crossbar_layers(model), strict=False):
        w = g.nodes[name].weight
        q, step = layer.stored_weights()
        levels = w / float(step)
        np.testing.assert_allclose(levels, q.numpy(), atol=1e-4)
        qn, qp = layer.config.weight_range
        assert levels.min() >= qn - 1e-4 and levels.max() <= qp + 1e-4
        assert len(np.unique(np.round(levels))) <= 2 ** (arch.precision.weight_bits + 1) - 1
    lif = g.nodes["lif0"]
    np.testing.assert_allclose(lif.tau, arch.neuron.tau * NIR_DT_S)
    assert g.metadata["dt_s"] == NIR_DT_S and g.metadata["timesteps"] == T


def test_a_negative_learned_step_exports_positive() -> None:
    arch, model = _model(MLP, LIF, seed=6)
    layer = crossbar_layers(model)[0]
    with torch.no_grad():
        layer(torch.zeros(1, 40))  # the step is set on the first chip-mode use
        layer.w_step.neg_()  # LSQ may learn a negative step: the layer uses its magnitude
    q, step = layer.stored_weights()
    assert float(step) > 0
    assert (layer.converter_params()["step"] > 0).all()
    w, _ = chip_weights(layer)
    with torch.no_grad():
        want = layer(torch.eye(40)) - layer.bias  # one row per input: the weights it uses
    np.testing.assert_allclose(w.T, want.numpy(), atol=1e-6)


def test_rate_encoding_is_refused() -> None:
    from neuronas.errors import SearchError

    arch, model = _model(
        {**MLP, "input": {"shape": [40], "timesteps": T, "encoding": "rate"}}, {"model": "lif"}
    )
    with pytest.raises(SearchError, match="rate-encoded"):
        to_nir(model, arch)


TRAINED_CNN = {
    "input": {"shape": [2, 32, 32], "timesteps": 4},
    "layers": [
        {"kind": "pool", "kernel": 4, "pool": "max"},
        {"kind": "conv", "out": 4, "kernel": 3},
        {"kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "fc", "out": 10},
    ],
    "precision": {"weight_bits": 4},
    "mapping": {"adc_kind": "digital", "adc_bits": 0, "rows": 32, "cols": 32},
}


@pytest.mark.parametrize("neuron", ["lif", "if", "ld_lif"])
def test_trained_cnn_member_runs_in_every_importer(tmp_path: Path, neuron: str) -> None:
    """A CNN with max pooling trained on digits-events (1 epoch, 64 samples, ideal device):
    every importer that can represent its neuron reproduces neuronas' outputs."""
    from neuronas.train import load_model, train_candidate

    arch = ArchSpec.from_dict({**TRAINED_CNN, "neuron": {"model": neuron}})
    res = train_candidate(
        arch,
        None,
        "digits-events",
        epochs=1,
        max_train_samples=64,
        max_eval_samples=16,
        eval_instances=1,
        out_dir=tmp_path,
        lr=3e-2,
    )
    assert res.status == "ok", res
    model = load_model(arch, None, tmp_path / "model.pt")
    from neuronas.data import load_dataset

    x, _ = load_dataset("digits-events", "test", 4, input_shape=(2, 32, 32)).tensors()
    x = torch.as_tensor(x[:B]).float().transpose(0, 1)
    with torch.no_grad():
        ours = model(x)
    assert ours.std(0).max() > 1e-3, "the readout must vary over time: spikes reach it"
    graph = _graph(arch, model, tmp_path)
    runners = [run_neuronas, run_norse, run_nirtorch] + ([run_snntorch] if neuron == "lif" else [])
    exact = neuron != "ld_lif" or arch.neuron.decay_step == 0
    for run in runners:
        theirs = run(graph, x).detach()
        assert theirs.shape == ours.shape
        if run is run_neuronas or exact:
            assert torch.allclose(theirs, ours, atol=1e-5, rtol=0), (
                run.__name__,
                (theirs - ours).abs().max(),
            )


def test_neuronas_reader_runs_nir_if_and_a_general_cubalif_by_nir_definitions() -> None:
    """Graphs neuronas did not write: ``nir.IF`` (older exports) runs as IF, and a ``CubaLIF``
    without ``neuronas_model`` metadata by NIR's forward Euler, as Norse and nirtorch run it."""
    ones = np.ones(3, np.float32)
    w = np.array([[1.0, 0.5, 0.0], [0.0, 1.0, -0.5], [0.25, 0.0, 1.0]], np.float32)

    def graph(neuron: Any) -> Any:
        return nir.NIRGraph(
            nodes={
                "input": nir.Input({"input": np.array([3])}),
                "fc0": nir.Affine(weight=w, bias=0.1 * ones),
                "n0": neuron,
                "fc1": nir.Affine(weight=np.eye(3, dtype=np.float32), bias=0 * ones),
                "output": nir.Output({"output": np.array([3])}),
            },
            edges=[("input", "fc0"), ("fc0", "n0"), ("n0", "fc1"), ("fc1", "output")],
        )

    x = (torch.rand(8, 4, 3, generator=torch.Generator().manual_seed(0)) < 0.6).float()
    g_if = graph(nir.IF(r=ones, v_threshold=ones))
    v, want = torch.zeros(4, 3), []
    for t in range(8):
        v = v + x[t] @ torch.from_numpy(w).T + 0.1
        want.append((v > 1).float())
        v = v * (1 - want[-1])
    assert torch.equal(run_neuronas(g_if, x), torch.stack(want))
    dt = np.float32(NIR_DT_S)
    cuba = nir.CubaLIF(
        tau_syn=2 * dt * ones,
        tau_mem=4 * dt * ones,
        r=2 * ones,
        v_leak=0 * ones,
        v_threshold=0.3 * ones,
        w_in=1.5 * ones,
    )
    g = graph(cuba)
    ours = run_neuronas(g, x)
    assert 0 < float(ours.mean()) < 1
    for theirs in (run_norse(g, x), run_nirtorch(g, x, NIRTORCH_WITH_BIAS)):
        assert torch.allclose(theirs.detach(), ours, atol=1e-5), (theirs - ours).abs().max()
