"""The chip programming package (``chip/``) is the chip's network: rebuilt from the package
alone (:func:`neuronas.export.chip.simulate_layer`, numpy), every crossbar layer reproduces
neuronas' chip-mode output on the same inputs (ideal device, no noise).

Inputs are spikes (0/1), so every partial sum is an integer and every converter code is exact
on both sides; only the final shift-and-add and step products are float32, and may round
differently (a fused multiply-add): the tolerance 1e-5 relative to the largest output is far
below one converter code's contribution (step x weight step >= 1e-3 of it here), so a single
code that differed would fail the test.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from neuronas.export.chip import (
    load_layer,
    simulate_layer,
    unfold,
    unfold_transposed,
    write_chip_package,
)
from neuronas.hardware import estimate, load_chip
from neuronas.snn import build, crossbar_layers
from neuronas.spec import ArchSpec

T, B = 3, 4

MLP = {
    "input": {"shape": [70], "timesteps": T},
    "layers": [{"kind": "fc", "out": 24}, {"kind": "fc", "out": 6}],
    "neuron": {"model": "if", "threshold": 1.0},
}
CNN = {
    "input": {"shape": [2, 8, 8], "timesteps": T},
    "layers": [
        {"kind": "conv", "out": 5, "kernel": 3},
        {"kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "fc", "out": 4},
    ],
    "neuron": {"model": "lif", "tau": 2.0, "threshold": 0.5},
}
# an encoder-decoder (flow): transposed convs read their zero-inserted input on the arrays
ENCDEC = {
    "task": "dense",
    "input": {"shape": [2, 8, 8], "timesteps": T},
    "layers": [
        {"kind": "conv", "out": 6, "kernel": 3, "stride": 2},  # 6 x 4 x 4
        {"kind": "deconv", "out": 5, "kernel": 4, "stride": 2, "padding": 1},  # 5 x 8 x 8
        {"kind": "deconv", "out": 2, "kernel": 3, "stride": 1, "padding": 1},  # 2 x 8 x 8
    ],
    "neuron": {"model": "lif", "tau": 2.0, "threshold": 0.5},
}

CASES = [
    pytest.param(MLP, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4, id="mlp-sa-diff"),
    pytest.param(MLP, {"adc_kind": "sa", "adc_bits": 1}, "offset", 1, 3, id="mlp-sa-offset"),
    pytest.param(
        MLP, {"adc_kind": "sar", "adc_bits": 3}, "differential", 2, 4, id="mlp-sar3-diff-2bpc"
    ),
    pytest.param(MLP, {"adc_kind": "flash", "adc_bits": 4}, "offset", 1, 4, id="mlp-flash4-offset"),
    pytest.param(
        MLP, {"adc_kind": "digital", "adc_bits": 0}, "differential", 1, 4, id="mlp-digital"
    ),
    pytest.param(CNN, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4, id="cnn-sa-diff"),
    pytest.param(
        CNN, {"adc_kind": "sar", "adc_bits": 4}, "offset", 2, 4, id="cnn-sar4-offset-2bpc"
    ),
]
# the chip package holds transposed convs too (NIR has no primitive for them: its tests use CASES)
CHIP_CASES = [
    *CASES,
    pytest.param(
        ENCDEC, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4, id="encdec-sa-diff"
    ),
    pytest.param(
        ENCDEC, {"adc_kind": "sar", "adc_bits": 3}, "offset", 2, 4, id="encdec-sar3-offset-2bpc"
    ),
]


def _trained_like(spec: dict, mapping: dict, scheme: str, bpc: int, wbits: int):
    torch.manual_seed(0)
    arch = ArchSpec.from_dict(
        {
            **spec,
            "precision": {"weight_bits": wbits},
            "mapping": {
                **mapping,
                "rows": 16,
                "cols": 16,
                "bits_per_cell": bpc,
                "signed_scheme": scheme,
            },
        }
    )
    model = build(arch, None)  # ideal device
    with torch.no_grad():
        for layer in crossbar_layers(model):
            layer.weight.mul_(4.0)  # enough drive that the hidden layers spike
    model.set_hardware_awareness(1.0)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand((T, B, *arch.input.shape), generator=g) < 0.3).float()
    with torch.no_grad():
        model(x)  # the converters calibrate on the first chip-mode forward, as in training
        for layer in crossbar_layers(model):
            # trained steps and references drift away from their initial values (and a learned
            # step may go negative: the layer uses its magnitude)
            layer.adc_step.mul_(torch.empty_like(layer.adc_step).uniform_(-1.3, 1.3, generator=g))
            if layer.sa_ref is not None:
                layer.sa_ref.add_(torch.randn(layer.sa_ref.shape, generator=g))
    model.eval()
    return arch, model, x


@pytest.mark.parametrize(("spec", "mapping", "scheme", "bpc", "wbits"), CHIP_CASES)
def test_rebuilding_each_layer_from_the_package_reproduces_chip_mode(
    tmp_path: Path, spec: dict, mapping: dict, scheme: str, bpc: int, wbits: int
) -> None:
    arch, model, x = _trained_like(spec, mapping, scheme, bpc, wbits)
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: seen.append((i[0].detach(), o.detach())))
        for layer in crossbar_layers(model)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    chip = load_chip("rram-adcless-65nm")
    meta = write_chip_package(model, arch, chip, tmp_path / "chip")
    assert (tmp_path / "chip" / "README.md").read_text().startswith("Files")
    report = estimate(arch, chip, 0.2)
    assert meta["tiles"] == report.tiles
    costs = {c.index: c for c in report.layers}
    for r, (inp, out) in zip(arch.resolved(), seen, strict=True):
        cost = costs[r.index]
        entry, t = load_layer(tmp_path / "chip", r.index)
        assert entry["arrays"] == cost.arrays == entry["cost_model"]["arrays"]
        assert entry["row_groups"] == entry["cost_model"]["row_groups"]
        assert entry["col_groups"] == entry["cost_model"]["col_groups"]
        assert t["cells"].shape == (entry["row_groups"], entry["col_groups"], 16, 16)
        assert t["cells"].max() <= 2**bpc - 1
        assert (t["converter_step"] > 0).all() and float(t["weight_step"]) > 0
        if r.kind in ("conv", "deconv"):
            cols = unfold if r.kind == "conv" else unfold_transposed
            x2d = cols(inp.numpy(), r.kernel, r.stride, r.padding)
            want = out.permute(0, 2, 3, 1).reshape(-1, r.fan_out).numpy()
        else:
            x2d = inp.reshape(-1, r.fan_in).numpy()
            want = out.reshape(-1, r.fan_out).numpy()
        assert set(np.unique(x2d)) <= {0.0, 1.0}
        got = simulate_layer(entry, t, x2d)
        scale = float(np.abs(want).max())
        assert scale > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
        # the outputs vary enough that a wrong converter code would show
        assert len(np.unique(np.round(want / (1e-3 * scale)))) > 3


def test_stored_levels_are_the_quantized_weights(tmp_path: Path) -> None:
    arch, model, _ = _trained_like(MLP, {"adc_kind": "sar", "adc_bits": 3}, "differential", 2, 4)
    write_chip_package(model, arch, load_chip("rram-adcless-65nm"), tmp_path)
    for r, layer in zip(arch.resolved(), crossbar_layers(model), strict=True):
        entry, t = load_layer(tmp_path, r.index)
        q, _ = layer.stored_weights()
        w = np.zeros((r.fan_out, entry["row_groups"] * 16))
        cells = t["cells"].transpose(0, 2, 1, 3).reshape(entry["row_groups"] * 16, -1)
        out, sl, pol = (
            t[k].reshape(-1) for k in ("column_output", "column_slice", "column_polarity")
        )
        for c in np.flatnonzero(out >= 0):
            w[out[c]] += pol[c] * 2.0 ** (2 * sl[c]) * cells[:, c]
        np.testing.assert_array_equal(w[:, : r.fan_in], q.numpy())


# -- model.nir: the same converters as NIR nodes ---------------------------------------------

# fc layers on a feature map (after a max pooling): exported as Conv2d, no Flatten
POOL_MLP = {
    "input": {"shape": [2, 8, 8], "timesteps": T},
    "layers": [
        {"kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "fc", "out": 24},
        {"kind": "fc", "out": 6},
    ],
    "neuron": {"model": "lif", "tau": 2.0, "threshold": 0.5},
}
NIR_CASES = [
    # the CNN cases: conv + max pool + fc, a sense amplifier and a 4-bit ADC; the conv's 18
    # fan-in rows are two row groups of 16 rows, the second cutting channel 1's kernel
    *[c for c in CASES if "digital" not in c.id],
    pytest.param(
        POOL_MLP, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4, id="pool-mlp-sa-diff"
    ),
    pytest.param(
        POOL_MLP, {"adc_kind": "sar", "adc_bits": 3}, "offset", 2, 4, id="pool-mlp-sar3-offset"
    ),
]


@pytest.mark.parametrize(("spec", "mapping", "scheme", "bpc", "wbits"), NIR_CASES)
def test_the_nir_graph_runs_the_converters_as_chip_mode_does(
    tmp_path: Path, spec: dict, mapping: dict, scheme: str, bpc: int, wbits: int
) -> None:
    """fc and conv layers on crossbars: a comparator bank (Affine / Conv2d), memoryless LIF
    comparators and a periphery Affine / 1 x 1 Conv2d per layer (no ``Threshold`` node, which
    snnTorch and Norse do not map).  The *unpatched* importers of
    snnTorch 1.0 and Norse 1.1 (IF neurons as an integrating ``CubaLIF``, see ``test_export.py``),
    nirtorch (with NIR's LIF, IF and CubaLIF supplied, as nirtorch ships no neuron map) and
    neuronas' reader all
    reproduce chip mode on an ideal device.  Tolerance as the package's check: spikes in,
    every partial sum an integer, every code exact; only the periphery's float32 products may
    round differently."""
    from test_export import NIRTORCH_WITH_BIAS, run_nirtorch, run_norse, run_snntorch

    from neuronas.snn.nir import run_graph, to_nir

    arch, model, x = _trained_like(spec, mapping, scheme, bpc, wbits)
    with torch.no_grad():
        ours = model(x)
    path = tmp_path / "model.nir"
    nir.write(str(path), to_nir(model, arch))
    graph = nir.read(str(path))
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert kinds <= {"Input", "Output", "Affine", "Conv2d", "LIF", "CubaLIF"}, kinds
    assert "per-row-group conversion represented" in graph.metadata["notes"]
    scale = float(ours.abs().max())
    runners = {
        "neuronas": run_graph,
        "nirtorch": lambda g, xs: run_nirtorch(g, xs, NIRTORCH_WITH_BIAS),
        "norse": run_norse,
        "snntorch": run_snntorch,
    }
    for name, run in runners.items():
        theirs = run(graph, x).detach().reshape(ours.shape)  # fc after a map: [6, 1, 1]
        assert float((theirs - ours).abs().max()) <= 1e-5 * scale, name
    # the outputs vary enough that one wrong comparator would show
    assert len(np.unique(np.round(ours.numpy() / (1e-3 * scale)))) > 3
    if spec is CNN:
        # three nodes per converted layer, a chain (Norse's importer misorders fan-in)
        assert isinstance(graph.nodes["conv0_bank"], nir.Conv2d)
        assert isinstance(graph.nodes["conv0_cmp"], nir.LIF)
        assert "layers [0, 2]: per-row-group conversion represented" in graph.metadata["notes"]
        # the exact-sum graph is a different network here: the comparison above can fail
        exact = run_graph(to_nir(model, arch, converters=False), x).reshape(ours.shape)
        assert float((exact - ours).abs().max()) > 1e-3 * scale


def test_a_comparator_keeps_no_state_that_changes_its_output() -> None:
    """The memoryless comparators are exact at every timestep, in the importers' own forward
    Euler (``v + (x - v)``): a membrane far below zero from the last timestep does not swallow a
    small positive input.  Half-integer thresholds make every input a half-integer; a real
    comparator input (a real-valued partial sum less a real threshold) would not be exact."""
    from test_export import run_norse

    big, small = -1.0e6 + 0.5, 0.5  # one step far below threshold, then just above it
    ones = np.ones(1, np.float32)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1])}),
            "cmp": nir.LIF(
                tau=np.float32(1e-4) * ones, r=ones, v_leak=0 * ones, v_threshold=0 * ones
            ),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "cmp"), ("cmp", "output")],
    )
    x = torch.tensor([[[big]], [[small]], [[big]], [[small]]])
    assert run_norse(graph, x).flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    # with a real-valued input the same node is not memoryless in float32 (why the thresholds
    # are half-integers and the inputs must be integers)
    x = torch.tensor([[[big]], [[1e-3]]])
    assert run_norse(graph, x).flatten().tolist() == [0.0, 0.0]


def test_a_layer_over_the_size_limit_keeps_exact_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """fc and conv layers share one limit, ``MAX_CONVERTED_VALUES``: a layer whose converted
    form would write more values keeps exact sums, the graph's metadata says so, and the other
    layers stay converted.  ``converted_size`` bounds what the graph holds."""
    from neuronas.snn import nir as nir_mod

    arch, model, _ = _trained_like(CNN, {"adc_kind": "sar", "adc_bits": 4}, "offset", 2, 4)
    converted = nir_mod.to_nir(model, arch)
    sizes = {r.index: nir_mod.converted_size(r) for r in arch.resolved()}
    for i, kind in ((0, "conv"), (2, "fc")):
        held = sum(
            np.asarray(v).size
            for name, node in converted.nodes.items()
            if name == f"{kind}{i}" or name.startswith(f"{kind}{i}_")
            for v in (
                getattr(node, a, None)
                for a in ("weight", "bias", "tau", "r", "v_leak", "v_threshold")
            )
            if v is not None
        )
        assert 0.5 * sizes[i] < held <= sizes[i], (kind, held, sizes[i])
    # the conv over the limit, the fc within it
    monkeypatch.setattr(nir_mod, "MAX_CONVERTED_VALUES", sizes[0] - 1)
    assert sizes[2] < sizes[0]
    graph = nir_mod.to_nir(model, arch)
    assert "conv0_bank" not in graph.nodes and "fc2_bank" in graph.nodes
    assert f"layers 0 ({sizes[0]} values)" in graph.metadata["notes"]
    assert "layers [2]: per-row-group" in graph.metadata["notes"]
    assert "layers [0]: partial-sum conversion not in NIR" in nir_mod.nir_notes(arch)
    ideal = nir_mod.to_nir(model, arch, converters=False)
    np.testing.assert_array_equal(graph.nodes["conv0"].weight, ideal.nodes["conv0"].weight)
    # an fc layer over the limit: exact sums, the next fc converted
    arch_mlp, mlp, _ = _trained_like(MLP, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4)
    fc_sizes = [nir_mod.converted_size(r) for r in arch_mlp.resolved()]
    monkeypatch.setattr(nir_mod, "MAX_CONVERTED_VALUES", fc_sizes[0] - 1)
    assert fc_sizes[1] < fc_sizes[0]
    graph = nir_mod.to_nir(mlp, arch_mlp)
    assert "fc0_bank" not in graph.nodes and "fc1_bank" in graph.nodes
    assert isinstance(graph.nodes["fc0"], nir.Affine)
    assert f"layers 0 ({fc_sizes[0]} values)" in graph.metadata["notes"]


def test_the_fc_size_grows_with_the_square_of_the_fan_in() -> None:
    """An fc layer's converted form grows ~ K^2 / rows (every row group's bank spans the whole
    fan-in); a wide layer is over the limit and keeps exact sums, without building it."""
    from neuronas.snn.nir import MAX_CONVERTED_VALUES, converted_size, has_converters

    def fc(k: int) -> ArchSpec:
        return ArchSpec.from_dict(
            {
                "input": {"shape": [k], "timesteps": 2},
                "layers": [{"kind": "fc", "out": 64}, {"kind": "fc", "out": 10}],
                "neuron": {"model": "if"},
                "precision": {"weight_bits": 4},
                "mapping": {"adc_kind": "sar", "adc_bits": 4, "rows": 64, "cols": 64},
            }
        )

    small, big = (converted_size(fc(k).resolved()[0]) for k in (256, 1024))
    assert 12 < big / small < 20  # 4x the fan-in: ~16x the values
    assert small <= MAX_CONVERTED_VALUES < big
    wide = fc(1024)
    assert has_converters(wide)  # the readout (fan-in 64) is still converted
    from neuronas.snn.nir import nir_notes

    assert "layers [0]: partial-sum conversion not in NIR" in nir_notes(wide)


def test_a_layer_reading_non_integers_keeps_exact_sums() -> None:
    """The comparators are exact for integer inputs; a layer after an average pooling (or a
    direct-encoded input) keeps exact sums, said in the metadata; layers reading spikes stay
    converted."""
    from neuronas.snn.nir import nir_notes, to_nir

    spec = {
        "input": {"shape": [2, 8, 8], "timesteps": T},
        "layers": [
            {"kind": "conv", "out": 4, "kernel": 3},
            {"kind": "pool", "kernel": 2, "pool": "avg"},
            {"kind": "fc", "out": 5},
        ],
        "neuron": {"model": "if", "threshold": 1.0},
    }
    arch, model, _ = _trained_like(spec, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4)
    graph = to_nir(model, arch)
    assert "conv0_bank" in graph.nodes and "fc2_bank" not in graph.nodes
    assert "layers [2] read non-integers" in graph.metadata["notes"]
    assert "layers [2]: partial-sum conversion not in NIR" in nir_notes(arch)
    direct = {**spec, "input": {**spec["input"], "encoding": "direct"}}
    arch, model, _ = _trained_like(direct, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4)
    graph = to_nir(model, arch)
    assert "conv0_bank" not in graph.nodes
    assert "layers [0, 2] read non-integers" in graph.metadata["notes"]


def test_a_layer_reading_a_concatenation_keeps_exact_sums() -> None:
    """A layer reading a ``concat`` skip reads two nodes' outputs, which its row groups cannot
    (NIR has no concatenation node): exact sums, split by input channel as without converters;
    the conv before it is converted."""
    from neuronas.snn.nir import nir_notes, to_nir

    spec = {
        "input": {"shape": [2, 8, 8], "timesteps": T},
        "layers": [
            {"kind": "pool", "kernel": 2, "pool": "max", "name": "p0"},
            {"kind": "conv", "out": 4, "kernel": 3, "padding": 1},
            {"kind": "fc", "out": 5, "skip": {"from": "p0", "op": "concat"}},
        ],
        "neuron": {"model": "if", "threshold": 1.0},
    }
    arch, model, _ = _trained_like(spec, {"adc_kind": "sa", "adc_bits": 1}, "differential", 1, 4)
    graph = to_nir(model, arch)
    assert "conv1_bank" in graph.nodes and "fc2_skip" in graph.nodes
    assert not any(name.startswith("fc2_bank") for name in graph.nodes)
    assert "layers [1]: per-row-group" in graph.metadata["notes"]
    assert "layers [2]: partial-sum conversion not represented" in graph.metadata["notes"]
    assert "layers [2]: partial-sum conversion not in NIR" in nir_notes(arch)
