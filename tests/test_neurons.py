"""Neurons: hand-checked membrane sequences (within 1e-4) for LIF, IF and LD-LIF."""

from __future__ import annotations

import pytest
import torch

from neuronas.snn.neurons import LDLIFNode, ld_lif_step, make_neuron
from neuronas.spec import NeuronSpec


def _run(spec: NeuronSpec, xs: list[float]) -> tuple[list[float], list[float]]:
    """Spikes and post-reset membrane per step of a one-neuron layer."""
    node = make_neuron(spec)
    node.store_v_seq = True
    x = torch.tensor(xs).view(len(xs), 1, 1)
    spikes = node(x)
    return spikes.flatten().tolist(), node.v_seq.flatten().tolist()


# LIF, tau = 2: h = v + (x - v) / 2
#   x = 1.5 -> 0.75; x = 0.5 -> 0.625; x = 2.5 -> 1.5625 (spike); x = 0 -> ...
LIF_X = [1.5, 0.5, 2.5, 0.0, 0.0]


def test_lif_hard_reset_golden() -> None:
    s, v = _run(NeuronSpec(model="lif", tau=2.0, threshold=1.0, reset="hard"), LIF_X)
    assert s == [0, 0, 1, 0, 0]
    assert v == pytest.approx([0.75, 0.625, 0.0, 0.0, 0.0], abs=1e-4)


def test_lif_soft_reset_golden() -> None:
    s, v = _run(NeuronSpec(model="lif", tau=2.0, threshold=1.0, reset="soft"), LIF_X)
    assert s == [0, 0, 1, 0, 0]
    # 1.5625 - 1 = 0.5625, then halves: 0.28125, 0.140625
    assert v == pytest.approx([0.75, 0.625, 0.5625, 0.28125, 0.140625], abs=1e-4)


IF_X = [0.6, 0.6, 0.6, 0.0, 1.5, 0.0]


def test_if_golden() -> None:
    s, v = _run(NeuronSpec(model="if", threshold=1.0, reset="hard"), IF_X)
    assert s == [0, 1, 0, 0, 1, 0]
    assert v == pytest.approx([0.6, 0.0, 0.6, 0.6, 0.0, 0.0], abs=1e-4)
    s, v = _run(NeuronSpec(model="if", threshold=1.0, reset="soft"), IF_X)
    assert s == [0, 1, 0, 0, 1, 1]
    assert v == pytest.approx([0.6, 0.2, 0.8, 0.8, 1.3, 0.3], abs=1e-4)


# LD-LIF, decay_step = 0.25: h = max(v - 0.25, 0) + x
#   0.6; 0.35 + 0.6 = 0.95; 0.7 + 0.6 = 1.3 (spike); ...
LD_X = [0.6, 0.6, 0.6, 0.0, 1.5, 0.0, -0.5, 0.0]


def test_ld_lif_hard_golden() -> None:
    s, v = _run(NeuronSpec(model="ld_lif", decay_step=0.25, threshold=1.0, reset="hard"), LD_X)
    assert s == [0, 0, 1, 0, 1, 0, 0, 0]
    # after the spike at step 2: 0; x=1.5 -> spike -> 0; 0; -0.5 (negative input below rest);
    # then max(-0.5 - 0.25, 0) + 0 = 0: clamped at rest
    assert v == pytest.approx([0.6, 0.95, 0.0, 0.0, 0.0, 0.0, -0.5, 0.0], abs=1e-4)


def test_ld_lif_soft_golden() -> None:
    s, v = _run(NeuronSpec(model="ld_lif", decay_step=0.25, threshold=1.0, reset="soft"), LD_X)
    assert s == [0, 0, 1, 0, 1, 0, 0, 0]
    # 1.3 - 1 = 0.3; max(0.05, 0) + 0 = 0.05; 0 + 1.5 = 1.5 -> 0.5; 0.25; 0 - 0.5 = -0.5; 0
    assert v == pytest.approx([0.6, 0.95, 0.3, 0.05, 0.5, 0.25, -0.5, 0.0], abs=1e-4)


def test_ld_lif_step_is_the_module() -> None:
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5)
    node = LDLIFNode(decay_step=0.1, v_threshold=0.8, reset="soft")
    out = node(x)
    v = torch.zeros(3, 5)
    for t in range(6):
        s, v = ld_lif_step(x[t], v, decay_step=0.1, threshold=0.8, reset="soft")
        assert torch.equal(s, out[t])
    assert torch.allclose(v, node.v)


@pytest.mark.parametrize("model", ["lif", "if", "ld_lif"])
def test_surrogate_gradient_flows_and_state_resets(model: str) -> None:
    from spikingjelly.activation_based import functional

    node = make_neuron(NeuronSpec(model=model, decay_step=0.1))
    x = (0.8 * torch.rand(4, 2, 7)).requires_grad_()
    out = node(x)
    assert out.shape == x.shape
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    out.sum().backward()
    assert (
        x.grad is not None and x.grad.abs().sum() > 0
    )  # surrogate, although the step has no gradient
    functional.reset_net(node)
    again = node(x.detach())
    functional.reset_net(node)
    assert torch.equal(again, node(x.detach()))  # same input, reset state: same spikes
