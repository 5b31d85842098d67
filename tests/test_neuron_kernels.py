"""The fused neuron scans (numba) against SpikingJelly's path: bit-identical spikes, membranes
and gradients, the same training result; and the cases that keep SpikingJelly's path."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import surrogate
from test_crossbar import all_calls_on_parallel_twins

from neuronas.snn import _neuron_kernels as nk
from neuronas.snn.neurons import (
    FusedIFNode,
    FusedLIFNode,
    LDLIFNode,
    default_surrogate,
    make_neuron,
)
from neuronas.spec import ArchSpec, NeuronSpec

pytestmark = pytest.mark.skipif(not nk.available(), reason="numba is not usable here")

SHAPES = {"fc": (8, 5, 37), "conv": (6, 3, 4, 5, 7)}  # [T, B, N] and [T, B, C, H, W]


def _inputs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Currents around the threshold (1.0): half drawn continuously, half on a grid of 1/8
    (which lands charged membranes exactly on the threshold, the spike's tie), plus 0s."""
    g = torch.Generator().manual_seed(seed)
    cont = torch.randn(shape, generator=g) * 0.6 + 0.5
    grid = torch.randint(-4, 17, shape, generator=g).float() / 8
    pick = torch.rand(shape, generator=g)
    return torch.where(pick < 0.45, cont, torch.where(pick < 0.9, grid, torch.zeros(shape)))


def _fused(s: torch.Tensor) -> bool:
    """Whether the spikes ``s`` came out of the fused scan (its autograd node, under a view)."""
    fn = s.grad_fn
    while fn is not None and type(fn).__name__ == "ViewBackward0":
        fn = fn.next_functions[0][0]
    return type(fn).__name__ == "_ScanBackward"


def _run(
    node: torch.nn.Module, x: torch.Tensor, reference: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Spikes, last membrane, input gradient (of a random weighting of the spikes) and whether
    the fused scan made them."""
    monkeypatch.setenv("NEURONAS_REFERENCE_NEURONS", "1" if reference else "0")
    node.reset()
    xx = x.clone().requires_grad_(True)
    s = node(xx)
    w = torch.randn(s.shape, generator=torch.Generator().manual_seed(7))
    (s * w).sum().backward()
    assert xx.grad is not None
    v = node.v
    assert isinstance(v, torch.Tensor)
    return s.detach(), v.detach(), xx.grad, _fused(s)


def _nodes(reset: str, detach: bool) -> dict[str, torch.nn.Module]:
    v_reset = 0.0 if reset == "hard" else None
    sg = default_surrogate()
    return {
        "lif": FusedLIFNode(2.0, True, 1.0, v_reset, sg, detach, "m"),
        "lif-tau3-no-decay-input": FusedLIFNode(3.0, False, 0.8, v_reset, sg, detach, "m"),
        "if": FusedIFNode(1.0, v_reset, sg, detach, "m"),
        "ld_lif": LDLIFNode(0.125, 1.0, reset, sg, detach),
        "ld_lif-step0.3": LDLIFNode(0.3, 0.75, reset, sg, detach),
    }


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_fused_scan_equals_spikingjelly(
    reset: str, detach: bool, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = _inputs(SHAPES[shape], seed=len(shape) + 10 * detach + 100 * (reset == "hard"))
    for name, node in _nodes(reset, detach).items():
        s_ref, v_ref, g_ref, fn_ref = _run(node, x, True, monkeypatch)
        s, v, g, fn = _run(node, x, False, monkeypatch)
        assert fn and not fn_ref, name  # each path really ran
        assert 0.05 < float(s.mean()) < 0.95, name  # the inputs exercise firing and silence
        assert torch.equal(s, s_ref), name
        assert torch.equal(v, v_ref), name
        assert torch.equal(g, g_ref), name  # summed in autograd's order: bit-identical


def test_ties_at_the_threshold_fire() -> None:
    # IF, threshold 1: 0.5 + 0.5 reaches it exactly; LD-LIF: max(0.5 - 0.25, 0) + 0.75 = 1
    node = FusedIFNode(1.0, 0.0, default_surrogate(), False, "m")
    assert node(torch.tensor([0.5, 0.5, 0.25]).view(3, 1, 1)).flatten().tolist() == [0, 1, 0]
    node = LDLIFNode(0.25, 1.0, "hard", default_surrogate(), False)
    assert node(torch.tensor([0.5, 0.75, 0.0]).view(3, 1, 1)).flatten().tolist() == [0, 1, 0]


@pytest.mark.parametrize("model", ["lif", "if", "ld_lif"])
def test_gradient_reaches_a_carried_membrane(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a reset between two calls the second starts from the first's membrane, and the
    gradient flows back into the first call's input through it, as on SpikingJelly's path."""
    spec = NeuronSpec(model=model, tau=2.0, threshold=1.0, reset="hard", decay_step=0.125)
    x = _inputs((2, 4, 3, 9), seed=5)
    grads = []
    for reference in (True, False):
        monkeypatch.setenv("NEURONAS_REFERENCE_NEURONS", "1" if reference else "0")
        node = make_neuron(spec)
        xx = x.clone().requires_grad_(True)
        s = torch.cat([node(xx[0]), node(xx[1])])
        (s * torch.linspace(-1, 1, s.numel()).view(s.shape)).sum().backward()
        assert xx.grad is not None and xx.grad[0].abs().sum() > 0
        grads.append((s.detach(), xx.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[1][1], grads[0][1])


def test_no_grad_and_eval_use_the_scan() -> None:
    node = make_neuron(NeuronSpec(model="lif"))
    x = _inputs((4, 2, 16), seed=1)
    with torch.no_grad():
        s = node(x)
    assert s.grad_fn is None and s.shape == x.shape
    node.reset()
    assert torch.equal(node(x.requires_grad_(True)).detach(), s)


def test_cases_without_a_fused_form_keep_spikingjelly(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _inputs((4, 2, 16), seed=2)
    # another surrogate
    node = FusedLIFNode(2.0, True, 1.0, 0.0, surrogate.Sigmoid(), False, "m")
    assert not _fused(node(x.clone().requires_grad_(True)))
    # float64
    node = make_neuron(NeuronSpec(model="ld_lif"))
    s = node(x.double().requires_grad_(True))
    assert not _fused(s) and s.dtype == torch.float64
    # and float32 does use it
    node.reset()
    assert _fused(node(x.clone().requires_grad_(True)))
    # the membrane sequence asked for
    node = make_neuron(NeuronSpec(model="if"))
    node.store_v_seq = True
    s = node(x.clone().requires_grad_(True))
    assert not _fused(s) and node.v_seq.shape == x.shape
    # numba switched off
    monkeypatch.setenv("NEURONAS_NO_NUMBA", "1")
    assert not nk.available()
    node = make_neuron(NeuronSpec(model="lif"))
    assert not _fused(node(x.clone().requires_grad_(True)))


TINY = {
    "name": "tiny-conv",
    "input": {"shape": [2, 32, 32], "timesteps": 4},
    "layers": [
        {"kind": "pool", "kernel": 4, "pool": "avg"},
        {"kind": "conv", "out": 4, "kernel": 3, "padding": 1},
        {"kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "fc", "out": 24},
        {"kind": "fc", "out": 10},
    ],
    "mapping": {"adc_bits": 1, "adc_kind": "sa", "rows": 64},
}


@pytest.mark.parametrize("model", ["lif", "ld_lif"])
def test_short_training_gives_the_same_result(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronas.train import train_candidate

    arch = ArchSpec.from_dict(dict(TINY, neuron={"model": model}))
    results = []
    for reference in (True, False):
        monkeypatch.setenv("NEURONAS_REFERENCE_NEURONS", "1" if reference else "0")
        results.append(
            train_candidate(
                arch,
                None,
                "digits-events",
                seed=1,
                epochs=2,
                max_train_samples=96,
                max_eval_samples=64,
                eval_instances=1,
                num_threads=1,
            )
        )
    ref, fused = results
    assert fused.accuracies == ref.accuracies and fused.float_accuracy == ref.float_accuracy
    assert fused.activity == ref.activity
    assert [h["train_loss"] for h in fused.history] == [h["train_loss"] for h in ref.history]


def test_parallel_kernels_equal_the_serial_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """With more than one torch thread a large scan's blocks are spread over numba's threads
    (here every scan's: the size thresholds set to 0): same results (every neuron is computed
    by the same loop either way).  A scan under the threshold runs the serial kernel."""
    from neuronas.snn import _kernels

    x = _inputs((5, 3, 2500), seed=9)  # several blocks of neurons
    node = make_neuron(NeuronSpec(model="ld_lif", reset="soft"))
    serial = _run(node, x, False, monkeypatch)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        if nk.available():
            limit = _kernels.PARALLEL_MIN_WORK["forward"]
            assert nk._kernel("forward", limit - 1) is nk._load().forward
            assert nk._kernel("forward", limit) is nk._load().forward_parallel
        all_calls_on_parallel_twins(monkeypatch)
        parallel = _run(node, x, False, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    assert (
        parallel[3] and torch.equal(parallel[0], serial[0]) and torch.equal(parallel[1], serial[1])
    )
    assert torch.equal(parallel[2], serial[2])
