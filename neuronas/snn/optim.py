"""The trainer's optimizer: torch's CPU ``Adam(foreach=True)``, bit for bit, with less work.

A crossbar network's training step on the CPU is a few milliseconds, and torch's Adam took
0.4-0.9 ms of it, ~8 % of a default-space MLP's training (``benchmarks/RESULTS.md``, "Adam in
two passes"):
seven separate passes over every parameter (``lerp_``, ``mul_``, ``addcmul_``, ``sqrt``,
``div_``, ``add_``, ``addcdiv_``) and Python bookkeeping around them (per-parameter step
tensors read back with ``.item()``, grouping by device and dtype, the lists for the foreach
calls).  :class:`Adam` computes the same update in two numba passes per parameter
(:mod:`neuronas.snn._adam_nb`: the moments, then the parameter) around torch's own
``sqrt``, with the same float32 operations and roundings, so the parameters and both moments are
bit-identical to torch's (``tests/test_optim.py``); its step counts are plain integers.

:func:`adam` is what the trainer calls: this optimizer where it applies (the numba kernels
usable, every parameter a contiguous float32 CPU tensor), else torch's ``Adam(foreach=True)``
(CUDA, other dtypes, ``NEURONAS_NO_NUMBA=1``): the same numbers either way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

import torch

from neuronas.snn import _kernels

__all__ = ["Adam", "adam", "available"]

_NB: Any = None


def _load() -> Any:
    """The kernels, or None where numba cannot run them (torch's Adam is used instead)."""
    global _NB
    if _NB is None:
        try:
            if not _kernels.available():  # also sets numba's CPU tuning first
                raise RuntimeError("numba kernels off")
            _NB = importlib.import_module("neuronas.snn._adam_nb")
        except Exception:
            _NB = False
    return _NB or None


def available() -> bool:
    """Whether :class:`Adam` can run here (the numba kernels usable: ``NEURONAS_NO_NUMBA=1``
    switches them off)."""
    return _load() is not None


def _fits(p: torch.Tensor) -> bool:
    return p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous()


def adam(params: Iterable[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The trainer's Adam (default betas and eps, no weight decay): :class:`Adam` where every
    parameter is a contiguous float32 CPU tensor and the kernels run here, torch's
    ``Adam(foreach=True)`` otherwise; the same updates, bit for bit."""
    params = list(params)
    if available() and all(_fits(p) for p in params):
        return Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, foreach=True)


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba, 2015) as torch's CPU ``Adam(foreach=True)`` computes it, without
    weight decay, AMSGrad or ``maximize``: each parameter's moments in one numba pass, torch's
    ``sqrt`` of the second moment, the parameter in a second pass (module docstring).

    Parameters: contiguous float32 CPU tensors (:func:`adam` checks); a parameter without a
    gradient at a step is skipped and its step count stays, as in torch.  ``betas[0]`` above
    0.5 (torch's ``lerp`` takes its other formula for a weight ``1 - beta1`` of 0.5 or more).
    State per parameter: ``step`` (int), ``exp_avg``, ``exp_avg_sq``."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        # torch's Adam's messages, which the trainer's callers report as they are
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.5 < betas[0] < 1.0:
            raise ValueError(
                f"Invalid beta parameter at index 0: {betas[0]} (need 0.5 < beta1 < 1)"
            )
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not available():
            raise RuntimeError("the numba kernels are not usable here: use neuronas.snn.optim.adam")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        if not all(_fits(p) for group in self.param_groups for p in group["params"]):
            raise ValueError(
                "Adam: parameters must be contiguous float32 CPU tensors (neuronas.snn.optim.adam "
                "gives torch's Adam for others)"
            )
        self._views: dict[torch.Tensor, tuple[Any, ...]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            super().zero_grad(set_to_none=False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _arrays(self, p: torch.Tensor) -> tuple[Any, ...]:
        """``(state, exp_avg, exp_avg_sq, p's data pointer, root, and 1-D numpy views of p, exp_avg,
        exp_avg_sq, root)``: the state made on the parameter's first step, ``root`` a buffer for
        the second moment's square root; kept between steps, made again if the state (its dict or
        its tensors) or the parameter's storage were replaced (``load_state_dict``)."""
        st = self.state[p]
        if not st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        held = self._views.get(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if (
            held is None
            or held[0] is not st
            or held[1] is not m
            or held[2] is not v
            or held[3] != p.data_ptr()
        ):
            if not (_fits(m) and _fits(v) and m.shape == p.shape and v.shape == p.shape):
                raise ValueError(
                    "Adam state: exp_avg / exp_avg_sq must be contiguous float32 like the parameter"
                )
            root = torch.empty_like(v)
            flat = tuple(t.detach().view(-1).numpy() for t in (p, m, v, root))
            held = (st, m, v, p.data_ptr(), root, *flat)
            self._views[p] = held
        return held

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        nb = _load()
        f32 = torch.float32
        for group in self.param_groups:
            lr, eps = float(group["lr"]), float(group["eps"])
            beta1, beta2 = (float(b) for b in group["betas"])
            scalars: dict[float, tuple[float, float]] = {}
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if g.dtype != f32 or g.layout != torch.strided or not g.is_contiguous():
                    raise RuntimeError(
                        "Adam: gradients must be dense contiguous float32 on the CPU"
                    )
                st, _, v, _, root, p_np, m_np, v_np, root_np = self._arrays(p)
                st["step"] += 1
                step = float(st["step"])
                if step not in scalars:
                    # torch's: step_size = -lr / (1 - beta1^t) and sqrt(1 - beta2^t), in double
                    scalars[step] = ((lr / (1 - beta1**step)) * -1, (1 - beta2**step) ** 0.5)
                step_size, bc2_sqrt = scalars[step]
                nb.moments(g.numpy(), m_np, v_np, beta1, beta2)
                torch.sqrt(v, out=root)
                nb.update(p_np, m_np, root_np, bc2_sqrt, eps, step_size)
        return loss
