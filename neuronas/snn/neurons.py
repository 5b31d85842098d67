"""Spiking neurons: LIF and IF (SpikingJelly), and LD-LIF (linear decay by subtraction).

All neurons run in SpikingJelly's multi-step mode: input ``[T, B, ...]``, output spikes of the
same shape.  The spike is a Heaviside step of ``v - threshold`` in the forward pass and a
surrogate gradient (arctan, SpikingJelly's ``surrogate.ATan``) in the backward pass.

Each timestep is *charge*, *fire*, *reset*:

- ``lif`` (SpikingJelly ``LIFNode``, ``decay_input=True``):
  ``h[t] = v[t-1] + (x[t] - (v[t-1] - v_rest)) / tau``
- ``ld_lif`` (linear-decay LIF; the membrane loses a fixed ``decay_step`` per timestep instead of
  a fraction, clamped at rest, which an SRAM array can do in place by subtraction):
  ``h[t] = max(v[t-1] - decay_step, v_rest) + x[t]``
- ``if``: ``h[t] = v[t-1] + x[t]``

then ``s[t] = H(h[t] - threshold)`` and reset ``hard``: ``v[t] = h[t] (1 - s[t]) + v_rest s[t]``
or ``soft``: ``v[t] = h[t] - threshold s[t]``.  ``v_rest`` is 0.

LD-LIF follows the pure-function-then-module pattern of Norse: :func:`ld_lif_step` is the whole
equation, :class:`LDLIFNode` wraps it in SpikingJelly's ``BaseNode`` so that it shares the
state handling (``reset_net``, multi-step mode) of the other neurons.

On the CPU in float32 every neuron layer runs its whole time scan as one fused numba kernel
(forward and backward, :mod:`neuronas.snn._neuron_kernels`) instead of SpikingJelly's per-step
tensor ops: same spikes, membranes and gradients bit for bit.  Elsewhere (CUDA,
other dtypes or surrogates, ``store_v_seq``, no numba, ``NEURONAS_REFERENCE_NEURONS=1``) the
SpikingJelly path runs; it is the reference the kernels are tested against.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from spikingjelly.activation_based import surrogate
from spikingjelly.activation_based.neuron import BaseNode, IFNode, LIFNode

from neuronas.snn import _neuron_kernels as nk
from neuronas.spec import NeuronSpec

__all__ = [
    "FusedIFNode",
    "FusedLIFNode",
    "LDLIFNode",
    "default_surrogate",
    "ld_lif_step",
    "make_neuron",
]


def default_surrogate() -> surrogate.SurrogateFunctionBase:
    """The surrogate gradient used by every neuron: arctan, alpha = 2 (SpikingJelly default)."""
    return surrogate.ATan(alpha=2.0)


def ld_lif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    *,
    decay_step: float,
    threshold: float,
    reset: str = "hard",
    v_rest: float = 0.0,
    spike_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    detach_reset: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LD-LIF timestep; returns ``(spike, v_next)``.

    ``h = max(v - decay_step, v_rest) + x``; ``spike = H(h - threshold)``;
    hard reset ``v_next = h (1 - spike) + v_rest spike``, soft reset ``v_next = h - threshold spike``.
    ``spike_fn`` maps ``h - threshold`` to spikes (a surrogate-gradient Heaviside); the default is
    the exact step (no gradient through it).
    """
    h = torch.clamp(v - decay_step, min=v_rest) + x
    fire = spike_fn if spike_fn is not None else (lambda u: (u >= 0).to(u.dtype))
    spike = fire(h - threshold)
    s = spike.detach() if detach_reset else spike
    v_next = h * (1.0 - s) + v_rest * s if reset == "hard" else h - threshold * s
    return spike, v_next


def _scan_params(node: BaseNode) -> nk.ScanParams | None:
    """``node``'s dynamics for the fused scan, or None when it has no fused form (a surrogate
    other than SpikingJelly's ATan with a plain number for alpha)."""
    sg = node.surrogate_function
    if type(sg) is not surrogate.ATan or not sg.spiking:
        return None
    alpha = sg.alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        return None
    v_reset = float(node.v_reset) if node.v_reset is not None else 0.0
    common: dict[str, Any] = {
        "threshold": float(node.v_threshold),
        "hard": node.v_reset is not None,
        "detach_reset": bool(node.detach_reset),
        "alpha": float(alpha),
    }
    if isinstance(node, LDLIFNode):  # its own reset mode; the clamp's rest and reset value: 0
        common["hard"] = node.reset_mode == "hard"
        return nk.ScanParams(kind=nk.LD_LIF, v_reset=0.0, decay_step=node.decay_step, **common)
    if isinstance(node, LIFNode):
        kind = nk.LIF_DECAY_INPUT if node.decay_input else nk.LIF
        return nk.ScanParams(
            kind=kind, v_reset=v_reset, tau=float(node.tau), v_charge=v_reset, **common
        )
    if isinstance(node, IFNode):
        return nk.ScanParams(kind=nk.IF, v_reset=v_reset, **common)
    return None


def fused_multi_step(node: BaseNode, x_seq: torch.Tensor) -> torch.Tensor | None:
    """``node``'s multi-step forward through the fused scan (spikes; the node's membrane left as
    SpikingJelly leaves it), or None where the scan does not apply (see the module docstring)."""
    if (
        x_seq.device.type != "cpu"
        or x_seq.dtype != torch.float32
        or x_seq.dim() < 2
        or node.store_v_seq
        or not nk.available()
    ):
        return None
    params = _scan_params(node)
    if params is None:
        return None
    v = node.v
    shape = x_seq.shape[1:]
    if isinstance(v, torch.Tensor) and v.shape == shape:
        v0 = v.to(torch.float32)
    else:  # SpikingJelly's materialize_states: a number, or a membrane of another shape
        fill = v if isinstance(v, float) else (node.v_reset if node.v_reset is not None else 0.0)
        v0 = torch.full(shape, float(fill), dtype=torch.float32)
    spikes, v_last = nk.scan(x_seq, v0, params)
    node.v = v_last
    return spikes


class FusedLIFNode(LIFNode):
    """SpikingJelly's ``LIFNode`` whose multi-step forward runs the fused scan where it applies."""

    def multi_step_forward(self, x_seq: torch.Tensor, *args: torch.Tensor, **kwargs: object) -> Any:
        out = None if args or kwargs else fused_multi_step(self, x_seq)
        return out if out is not None else super().multi_step_forward(x_seq, *args, **kwargs)


class FusedIFNode(IFNode):
    """SpikingJelly's ``IFNode`` whose multi-step forward runs the fused scan where it applies."""

    def multi_step_forward(self, x_seq: torch.Tensor, *args: torch.Tensor, **kwargs: object) -> Any:
        out = None if args or kwargs else fused_multi_step(self, x_seq)
        return out if out is not None else super().multi_step_forward(x_seq, *args, **kwargs)


class LDLIFNode(BaseNode):
    """Linear-decay LIF on SpikingJelly's ``BaseNode`` (equation: see :func:`ld_lif_step`)."""

    def __init__(
        self,
        decay_step: float = 0.125,
        v_threshold: float = 1.0,
        reset: str = "hard",
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "m",
    ) -> None:
        super().__init__(
            v_threshold=float(v_threshold),
            v_reset=0.0 if reset == "hard" else None,
            surrogate_function=surrogate_function or default_surrogate(),
            detach_reset=detach_reset,
            step_mode=step_mode,
        )
        self.decay_step = float(decay_step)
        self.reset_mode = reset

    def extra_repr(self) -> str:
        return super().extra_repr() + f", decay_step={self.decay_step}"

    def multi_step_forward(self, x_seq: torch.Tensor, *args: torch.Tensor, **kwargs: object) -> Any:
        out = None if args or kwargs else fused_multi_step(self, x_seq)
        return out if out is not None else super().multi_step_forward(x_seq, *args, **kwargs)

    def single_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[object, ...], **kwargs: object
    ) -> tuple[tuple[torch.Tensor, ...], tuple[object, ...]]:
        v = states[0]
        assert isinstance(v, torch.Tensor)
        spike, v_next = ld_lif_step(
            inputs[0],
            v,
            decay_step=self.decay_step,
            threshold=self.v_threshold,
            reset=self.reset_mode,
            spike_fn=self.surrogate_function,
            detach_reset=self.detach_reset,
        )
        return (spike,), (v_next, *states[1:])


def make_neuron(
    spec: NeuronSpec, surrogate_function: surrogate.SurrogateFunctionBase | None = None
) -> BaseNode:
    """A multi-step neuron layer for ``spec`` (model lif | ld_lif | if)."""
    sg = surrogate_function or default_surrogate()
    v_reset = 0.0 if spec.reset == "hard" else None
    if spec.model == "lif":
        # SpikingJelly asserts tau > 1; tau == 1 (no memory) is allowed by NeuronSpec and is
        # reproduced to 1e-6 by a tau just above 1.
        return FusedLIFNode(
            tau=max(float(spec.tau), 1.0 + 1e-6),
            decay_input=True,
            v_threshold=float(spec.threshold),
            v_reset=v_reset,
            surrogate_function=sg,
            step_mode="m",
        )
    if spec.model == "if":
        return FusedIFNode(
            v_threshold=float(spec.threshold), v_reset=v_reset, surrogate_function=sg, step_mode="m"
        )
    if spec.model == "ld_lif":
        return LDLIFNode(
            decay_step=spec.decay_step,
            v_threshold=spec.threshold,
            reset=spec.reset,
            surrogate_function=sg,
        )
    raise ValueError(f"unknown neuron model {spec.model!r}")  # NeuronSpec validates; unreachable
