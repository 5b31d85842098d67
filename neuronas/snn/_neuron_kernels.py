"""Fused CPU time scans for the spiking neurons (numba): one kernel call per layer and direction
instead of SpikingJelly's per-timestep tensor ops.

SpikingJelly runs a multi-step LIF / IF layer on the CPU as a Python loop over T with several
elementwise tensor ops per step in the forward and about a dozen in the backward, and LD-LIF
(through ``BaseNode``'s generic path) as an autograd graph of ~8 ops per step.  :func:`scan`
computes the same charge, fire and reset for all T in one pass over the membranes, keeping only
the charged membranes ``h[T, ...]`` for the backward (as SpikingJelly's LIF does), and the
backward is one reverse scan with the same surrogate gradient (SpikingJelly's ``ATan``:
``alpha / 2 / (1 + (pi / 2 alpha (h - threshold))^2)``).

Used for float32 tensors on the CPU when numba is available (:func:`available`); CUDA, other
dtypes or surrogates, ``store_v_seq`` and ``NEURONAS_REFERENCE_NEURONS=1`` take SpikingJelly's
path, which stays the reference (``tests/test_neuron_kernels.py`` checks bit-identical spikes,
membranes and gradients against it: the backward sums in the order autograd sums
SpikingJelly's graph, which is what its CPU path runs for these nodes).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuronas.snn import _kernels

__all__ = ["ScanParams", "available", "scan"]

# the kinds of neuronas.snn._neuron_kernels_nb
LIF_DECAY_INPUT, LIF, IF, LD_LIF = 0, 1, 2, 3

_NB: Any = None


def available() -> bool:
    """Whether the fused scans can run here: numba usable (``NEURONAS_NO_NUMBA=1`` switches all
    numba kernels off) and ``NEURONAS_REFERENCE_NEURONS`` unset (SpikingJelly's path for the
    neurons only)."""
    if os.environ.get("NEURONAS_REFERENCE_NEURONS", "") not in ("", "0"):
        return False
    if not _kernels.available():  # also sets numba's CPU tuning and threading layer
        return False
    return _load() is not None


def _load() -> Any:
    global _NB
    if _NB is None:
        try:
            _NB = importlib.import_module("neuronas.snn._neuron_kernels_nb")
        except Exception:  # numba unusable: SpikingJelly's path remains
            _NB = False
    return _NB or None


@dataclass(frozen=True)
class ScanParams:
    """One neuron layer's dynamics, in the terms of the kernels.

    ``v_charge``: the rest the charge decays toward (LIF: ``v_reset``, or 0 with a soft reset;
    LD-LIF: the clamp's ``v_rest``); ``v_reset``: the hard reset's value; ``alpha``: the ATan
    surrogate's."""

    kind: int
    threshold: float
    v_reset: float
    hard: bool
    detach_reset: bool
    alpha: float
    tau: float = 1.0
    decay_step: float = 0.0
    v_charge: float = 0.0


def _kernel(name: str, work: int) -> Any:
    """The serial scan, or its parallel twin for a scan of at least
    ``_kernels.PARALLEL_MIN_WORK[name]`` timesteps x neurons (``work``) on several torch threads
    (:func:`neuronas.snn._kernels.serial_or_parallel`; the same numbers either way)."""
    return _kernels.serial_or_parallel(_load(), name, work)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _forward(
    x2: torch.Tensor, v0: torch.Tensor, p: ScanParams
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    s = torch.empty_like(x2)
    h = torch.empty_like(x2)
    v = torch.empty_like(v0)
    with torch.profiler.record_function("neuronas::neuron_scan"):
        _kernel("forward", x2.numel())(
            _np(x2),
            _np(v0),
            p.kind,
            p.tau,
            p.decay_step,
            p.v_charge,
            p.threshold,
            p.v_reset,
            p.hard,
            s.numpy(),
            h.numpy(),
            v.numpy(),
        )
    return s, h, v


class _Scan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x2: torch.Tensor, v0: torch.Tensor, p: ScanParams
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, h, v = _forward(x2, v0, p)
        ctx.save_for_backward(h, v0)
        ctx.params = p
        return s, v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, gs: torch.Tensor | None, gv: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        h, v0 = ctx.saved_tensors
        p: ScanParams = ctx.params
        gs = torch.zeros_like(h) if gs is None else gs.to(torch.float32).contiguous()
        carry = torch.zeros_like(v0) if gv is None else gv.to(torch.float32).contiguous().clone()
        gx = torch.empty_like(h)
        with torch.profiler.record_function("neuronas::neuron_scan_backward"):
            _kernel("backward", h.numel())(
                gs.numpy(),
                _np(h),
                _np(v0),
                p.kind,
                p.tau,
                p.decay_step,
                p.v_charge,
                p.threshold,
                p.v_reset,
                p.hard,
                p.detach_reset,
                p.alpha,
                gx.numpy(),
                carry.numpy(),
            )
        return gx, carry, None


def scan(x_seq: torch.Tensor, v0: torch.Tensor, p: ScanParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, ...]`` and the last membrane ``[...]`` of a layer of neurons ``p`` fed
    ``x_seq`` (float32, CPU) from the membrane ``v0`` (shape ``x_seq.shape[1:]``); differentiable
    in both inputs when autograd needs it."""
    shape = x_seq.shape
    x2 = x_seq.reshape(shape[0], -1)
    v1 = v0.reshape(-1)
    if torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad):
        s, v = _Scan.apply(x2, v1, p)
    else:
        s, _, v = _forward(x2, v1, p)
    return s.view(shape), v.view(shape[1:])
