"""NIR export, checked by another framework: snnTorch loads ``model.nir`` (through nirtorch) and
its outputs are compared with neuronas' own network on the same input.

The comparison uses a digital (exact-sum) crossbar on an ideal device, where the chip computes
exactly ``x @ W_q`` with the quantized weights that the NIR graph holds, and LIF / IF neurons,
whose semantics coincide with NIR's (LIF by forward Euler with dt = 1e-4 s per step, snnTorch's
convention).  Tolerance: 1e-5 absolute on the readout currents: both sides run float32 and may
sum in different orders (~1e-7 per operation); a single spike that differs would move an output
by a whole weight (>= 1e-2 here), so the tolerance cannot hide a wrong spike.

snnTorch 1.0's importer maps ``nir.IF`` to ``Leaky(beta=0.9, init_hidden=False)`` (a leaky neuron
that returns a tuple the next layer cannot take): for the IF cases that one mapping is replaced by
NIR's definition of IF (no leak, reset to zero); every other node goes through snnTorch's importer.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from neuronas.snn import build, crossbar_layers
from neuronas.snn.nir import NIR_DT_S, chip_weights, to_nir
from neuronas.spec import ArchSpec

snntorch = pytest.importorskip("snntorch")
pytest.importorskip("nirtorch")

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
MLP = {
    "input": {"shape": [40], "timesteps": T},
    "layers": [{"kind": "fc", "out": 24}, {"kind": "fc", "out": 12}, {"kind": "fc", "out": 5}],
    "precision": {"weight_bits": 3},
    "mapping": {"adc_kind": "digital", "adc_bits": 0, "rows": 16, "cols": 16},
}


def _model(spec: dict, neuron: dict, seed: int = 0, gain: float = 4.0):
    torch.manual_seed(seed)
    arch = ArchSpec.from_dict({**spec, "neuron": neuron})
    model = build(arch, None)
    with torch.no_grad():
        for layer in crossbar_layers(model):
            layer.weight.mul_(gain)  # enough drive that every layer spikes
    model.set_hardware_awareness(1.0)
    model.eval()
    return arch, model


def _inputs(arch: ArchSpec, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, *arch.input.shape), generator=g) < 0.3).float()


def _faithful_if(monkeypatch: pytest.MonkeyPatch) -> None:
    """snnTorch 1.0 imports ``nir.IF`` as ``Leaky(beta=0.9, init_hidden=False)``: a leaky neuron
    whose (spike, membrane) tuple the next layer cannot take.  Map it as NIR defines IF instead
    (no leak, reset to zero), leaving every other node to snnTorch's own importer."""
    import snntorch as snn
    import snntorch.import_nir as imp

    original = imp._nir_to_snntorch_module

    def patched(node, hack_w_scale=True, init_hidden=False):
        if isinstance(node, nir.IF):
            assert np.allclose(node.r, 1.0) and np.allclose(node.v_reset, 0.0)
            return snn.Leaky(
                beta=1.0,
                threshold=float(np.unique(node.v_threshold)[0]),
                reset_mechanism="zero",
                init_hidden=True,
                reset_delay=False,
            )
        return original(node, hack_w_scale=hack_w_scale, init_hidden=init_hidden)

    monkeypatch.setattr(imp, "_nir_to_snntorch_module", patched)


def _via_snntorch(path: Path, x: torch.Tensor) -> torch.Tensor:
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(str(path)))
    outs = []
    # snnTorch's importer turns NIR's Flatten(start_dim=0) into torch.nn.Flatten(0, -1), which
    # would flatten the batch too: run one sample at a time
    for b in range(x.shape[1]):
        snntorch.utils.reset(net)
        outs.append(torch.stack([net(x[t, b : b + 1])[0].reshape(-1) for t in range(x.shape[0])]))
    return torch.stack(outs, 1).detach()


def _compare(arch: ArchSpec, model, tmp_path: Path) -> None:
    x = _inputs(arch)
    model.reset_probes()
    model.probing = True
    with torch.no_grad():
        ours = model(x)
    model.probing = False
    _, out_rates = model.activity_rates()
    assert all(r > 0.01 for r in out_rates[:-1]), (
        f"hidden layers must spike for a meaningful test: {out_rates}"
    )
    assert ours.std(0).max() > 1e-2, "the readout must vary over time"
    path = tmp_path / "model.nir"
    nir.write(str(path), to_nir(model, arch))
    theirs = _via_snntorch(path, x)
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=0), (theirs - ours).abs().max()


def test_lif_cnn_with_max_pooling_matches_snntorch(tmp_path: Path) -> None:
    arch, model = _model(CNN, {"model": "lif", "tau": 2.0, "threshold": 0.5})
    _compare(arch, model, tmp_path)


def test_lif_mlp_other_tau_matches_snntorch(tmp_path: Path) -> None:
    arch, model = _model(MLP, {"model": "lif", "tau": 4.0, "threshold": 1.0}, seed=3, gain=12.0)
    _compare(arch, model, tmp_path)


def test_if_mlp_matches_snntorch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _faithful_if(monkeypatch)
    arch, model = _model(MLP, {"model": "if", "threshold": 1.0}, seed=2, gain=8.0)
    _compare(arch, model, tmp_path)


def test_ld_lif_without_decay_is_exactly_if(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _faithful_if(monkeypatch)
    # LD-LIF clamps the membrane at rest (max(v - d, 0) + x); the IF + bias export is exact while
    # the membrane stays >= d.  With d = 0 and non-negative weights it never goes below rest.
    arch, model = _model(
        MLP, {"model": "ld_lif", "decay_step": 0.0, "threshold": 2.0}, seed=4, gain=0.6
    )
    with torch.no_grad():
        for layer in crossbar_layers(model):
            layer.weight.abs_()
    _compare(arch, model, tmp_path)
    g = to_nir(model, arch)
    assert "ld_lif exported as IF" in g.metadata["notes"]


def test_ld_lif_decay_is_folded_into_the_bias() -> None:
    arch, model = _model(MLP, {"model": "ld_lif", "decay_step": 0.25, "threshold": 1.0}, seed=4)
    g = to_nir(model, arch)
    layers = crossbar_layers(model)
    _, b0 = chip_weights(layers[0])
    np.testing.assert_allclose(g.nodes["fc0"].bias, b0 - 0.25, atol=1e-7)
    _, b_out = chip_weights(layers[-1])
    np.testing.assert_allclose(g.nodes["fc2"].bias, b_out, atol=1e-7)  # the readout has no neuron
    assert isinstance(g.nodes["if0"], nir.IF)


def test_nir_holds_the_quantized_weights() -> None:
    arch, model = _model(MLP, {"model": "lif"}, seed=5)
    g = to_nir(model, arch)
    for name, layer in zip(("fc0", "fc1", "fc2"), crossbar_layers(model), strict=False):
        w = g.nodes[name].weight
        step = float(layer.stored_weights()[1])
        levels = w / step
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
        qn, qp = layer.config.weight_range
        assert levels.min() >= qn - 1e-4 and levels.max() <= qp + 1e-4
        assert len(np.unique(np.round(levels))) <= 2 ** (arch.precision.weight_bits + 1) - 1
    lif = g.nodes["lif0"]
    np.testing.assert_allclose(lif.tau, arch.neuron.tau * NIR_DT_S)
    assert g.metadata["dt_s"] == NIR_DT_S and g.metadata["timesteps"] == T


def test_rate_encoding_is_refused() -> None:
    from neuronas.errors import SearchError

    arch, model = _model(
        {**MLP, "input": {"shape": [40], "timesteps": T, "encoding": "rate"}}, {"model": "lif"}
    )
    with pytest.raises(SearchError, match="rate-encoded"):
        to_nir(model, arch)
