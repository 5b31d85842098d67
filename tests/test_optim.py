"""The trainer's Adam (:mod:`neuronas.snn.optim`): torch's CPU ``Adam(foreach=True)``'s updates,
bit for bit, from two numba passes per parameter."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from neuronas.snn import optim

pytestmark = pytest.mark.skipif(
    not optim.available(), reason="numba kernels unusable here (torch's Adam is used instead)"
)

# the crossbar layers' parameter shapes (weights, biases, scalar weight steps, [S, Nc] converter
# steps and references) and sizes that leave vector tails of every length
SHAPES = [(128, 512), (128,), (), (3, 128), (3, 128), (10, 128), (10,), (), (3, 10), (1, 17), (33,)]


def _train(make: Any, steps: int = 300, lr: float = 3e-2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]
    opt = make(ps, lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        for i, p in enumerate(ps):
            if (step + i) % 11 == 0:
                continue  # no gradient this step: the parameter and its step count stay
            scale = 10.0 ** float(torch.randint(-6, 3, (), generator=g))
            p.grad = torch.randn(p.shape, generator=g) * scale
            if step % 7 == 0 and p.dim() > 0:
                p.grad[..., 0] = 0.0
            if step % 13 == 0 and p.dim() > 0:
                p.grad[..., -1] = -0.0
        opt.step()
        sched.step()
    state = [opt.state[p] for p in ps]
    return (
        [p.detach().clone() for p in ps]
        + [s["exp_avg"] for s in state]
        + [s["exp_avg_sq"] for s in state]
        + [torch.tensor(float(s["step"])) for s in state]
    )


def _torch_adam(ps: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(ps, lr=lr, foreach=True)


@pytest.mark.parametrize("lr", [3e-2, 1e-3])
def test_adam_is_bit_identical_to_torch_foreach_adam(lr: float) -> None:
    """Hundreds of steps on the crossbar layers' parameter shapes, gradients over eight decades,
    some exactly zero (and -0), some parameters without a gradient on some steps, a cosine
    schedule: parameters, both moments and step counts equal to torch's to the bit."""
    ours, ref = _train(optim.adam, lr=lr), _train(_torch_adam, lr=lr)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        assert torch.isfinite(a).all()
        assert torch.equal(a.view(torch.int32), b.view(torch.int32)) if a.dim() else a == b


def test_the_factory_takes_torch_adam_where_the_kernels_do_not_apply() -> None:
    """float64 or non-contiguous parameters get torch's foreach Adam; float32 CPU ones ours."""
    p32 = [torch.nn.Parameter(torch.zeros(3, 4))]
    assert isinstance(optim.adam(p32, 1e-3), optim.Adam)
    p64 = [torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))]
    other = optim.adam(p64, 1e-3)
    assert type(other) is torch.optim.Adam and other.defaults["foreach"] is True
    strided = [torch.nn.Parameter(torch.zeros(4, 3).t())]
    assert type(optim.adam(strided, 1e-3)) is torch.optim.Adam


def test_zero_grad_and_a_replaced_state() -> None:
    """``zero_grad`` drops the gradients; a state loaded from another optimizer, or its own loaded
    back (new dicts, the same tensors), is the one used (the numpy views are made again) and the
    next steps equal torch's from the same state."""
    g = torch.Generator().manual_seed(3)
    pa = [torch.nn.Parameter(torch.randn(5, 7, generator=g))]
    pb = [torch.nn.Parameter(pa[0].detach().clone())]
    a, b = optim.Adam(pa, lr=1e-2), torch.optim.Adam(pb, lr=1e-2, foreach=True)

    def steps_agree(n: int) -> None:
        for _ in range(n):
            grad = torch.randn(5, 7, generator=g)
            pa[0].grad, pb[0].grad = grad.clone(), grad.clone()
            a.step()
            b.step()
        sa, sb = a.state[pa[0]], b.state[pb[0]]
        assert torch.equal(pa[0], pb[0])
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
        assert float(sa["step"]) == float(sb["step"])

    steps_agree(3)
    a.zero_grad()
    assert pa[0].grad is None
    # a's own state loaded back: new dicts holding the same tensors (and int step counts)
    a.load_state_dict(a.state_dict())
    steps_agree(3)
    # a copy of b's state (tensor step counts, other moment tensors)
    a.load_state_dict(copy.deepcopy(b.state_dict()))
    assert isinstance(a.state[pa[0]]["step"], torch.Tensor)
    steps_agree(3)


def test_what_the_kernels_do_not_compute_is_refused() -> None:
    """Betas for which torch's ``lerp`` takes its other formula, and parameters the kernels do not
    take (the factory gives those torch's Adam)."""
    with pytest.raises(ValueError, match="beta1"):
        optim.Adam([torch.nn.Parameter(torch.zeros(2))], betas=(0.4, 0.999))
    # a learning rate torch refuses is refused with torch's words (a trial reports them)
    for lr in (float("nan"), -1.0):
        for make in (optim.adam, lambda ps, lr: torch.optim.Adam(ps, lr=lr, foreach=True)):
            with pytest.raises(ValueError, match="Invalid learning rate"):
                make([torch.nn.Parameter(torch.zeros(2))], lr)
    with pytest.raises(ValueError, match="contiguous float32"):
        optim.Adam([torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))])
