"""Crossbar layers: what a compute-in-memory array computes, differentiably.

A weighted layer with fan-in K and fan-out N sits on crossbars of ``rows`` R rows.  On the chip

1. each weight is quantized to ``weight_bits`` b levels (LSQ: a learned step, straight-through
   rounding) and stored as conductances: a ``differential`` pair of cells (w = g+ - g-,
   |w| <= 2^b - 1) or one cell holding ``w + 2^(b-1)`` beside an ``offset`` reference column;
   each stored magnitude is split into S = ceil(b / bits_per_cell) cell slices;
2. the fan-in is split into G = ceil(K / R) row groups (one crossbar each); spikes drive the rows
   of a group and every column of every slice produces a partial sum (Kirchhoff's current law);
3. **each partial sum goes through its own converter**: a b_adc-bit ADC with a learned step (LSQ
   range), a 1-bit sense amplifier comparing it with a learned reference (``sa``, ADC-less), or
   nothing (``digital`` CIM: exact); a group with no input spike is skipped (event-driven), so it
   contributes nothing;
4. the digital periphery shifts-and-adds slices and sums groups.

Devices are imperfect: programmed conductances vary per cell and per chip instance
(``program_sigma``, relative), every read adds noise (``read_noise_sigma``), some cells are stuck
off or on, and an "off" cell still conducts 1 / ``on_off_ratio`` of the full-scale level.

``hardware_awareness`` a in [0, 1] interpolates the layer's output between the ideal float layer
(a = 0: exactly ``nn.Linear`` / ``nn.Conv2d``, and the crossbar path is skipped entirely) and the
full chip model (a = 1): ``y = (1 - a) y_ideal + a y_chip``.  A progressive schedule raises a
across epochs (ADC-less IMC, Apolinario et al.: 1-bit partial sums keep accuracy when the
hardware is introduced gradually).

Everything is tensor ops or one-pass kernels: for a linear layer the row groups are a batch
dimension of one ``matmul`` (timesteps folded into its rows); for a convolution every group's
partial sums are the output channels of one grouped ``conv2d`` on the input (no im2col), computed
in batch chunks and converted chunk by chunk.

Gradients: rounding and the comparator are straight-through (identity inside the converter's
range, zero outside: the hardtanh STE of binarized networks), so a 1-bit partial sum still passes
a gradient to the weights and inputs of its group; steps and references are learned (LSQ,
Esser et al. 2020).  Programming noise is drawn afresh at every training forward (noise
injection) and fixed per chip instance in evaluation (:meth:`resample_chip_instance`); in
evaluation each instance also reads from its own seeded read-noise stream, so re-evaluating an
instance reproduces its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from neuronas.snn import _kernels
from neuronas.spec import ResolvedLayer

__all__ = [
    "ConvRowGroups",
    "CrossbarLayer",
    "CrossbarConfig",
    "CrossbarConv2d",
    "CrossbarConvTranspose2d",
    "CrossbarLinear",
    "DeviceModel",
    "adc_quantize",
    "quantize_weight",
    "round_ste",
    "sense_amp",
    "zero_inserted",
]


# --------------------------------------------------------------------------------------------
# pure quantizers (golden-value tested)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward."""
    return x + (torch.round(x) - x).detach()


class _QuantizeWeight(torch.autograd.Function):
    """:func:`quantize_weight` as one autograd node (the composed ops cost ~5x more per step)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
        ctx.qn, ctx.qp = qn, qp
        ctx.fast = (
            w.device.type == "cpu"
            and w.dtype == torch.float32
            and step.numel() == 1
            and _kernels.available()
        )
        if ctx.fast:
            ctx.save_for_backward(w, step)
            return _kernels.quantize_forward(w, float(step), qn, qp)
        v = w / step
        ctx.save_for_backward(v, step)
        return v.clamp(qn, qp).round_()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        if ctx.fast:
            w, step = ctx.saved_tensors
            grad_wf, g_step = _kernels.quantize_backward(w, float(step), ctx.qn, ctx.qp, grad)
            return grad_wf, torch.full_like(step, g_step), None, None
        v, step = ctx.saved_tensors
        g_in = grad * ((v >= ctx.qn) & (v <= ctx.qp))  # straight through inside the range
        grad_w: torch.Tensor | None = g_in / step if ctx.needs_input_grad[0] else None
        grad_step = None
        if ctx.needs_input_grad[1]:
            # d(w / step) / d step = -(w / step) / step
            grad_step = (-(g_in * v).sum() / step).reshape(step.shape)
        return grad_w, grad_step, None, None


def _fast_draws(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the noise of cells on ``device`` in ``dtype`` is drawn by the kernels
    (:func:`neuronas.snn._kernels.randn` / ``rand``: torch's own numbers, faster)."""
    return device.type == "cpu" and dtype == torch.float32 and _kernels.fast_draws()


def quantize_weight(w: torch.Tensor, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    """Integer weight levels ``round(clamp(w / step, qn, qp))`` (LSQ: straight through the
    rounding inside the range, zero where clamped; the step learns through ``w / step``)."""
    return _QuantizeWeight.apply(w, step, qn, qp)


def adc_quantize(p: torch.Tensor, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    """A b-bit ADC with a learned step: ``step * round(clamp(p / step, qn, qp))``."""
    return step * round_ste(torch.clamp(p / step, qn, qp))


def sense_amp(
    p: torch.Tensor, step: torch.Tensor, ref: torch.Tensor, bipolar: bool = True
) -> torch.Tensor:
    """A 1-bit sense amplifier: ``step * sign(p - ref)`` (bipolar, differential columns; a tie
    reads +1) or ``step * H(p - ref)`` (unipolar).

    Backward: the decision does not depend on ``step`` (a pure output level), so ``step`` gets its
    exact gradient, the decision itself; ``p`` and ``ref`` pass straight through inside the
    comparator's window ``|p - ref| <= step`` (bipolar) or ``step / 2`` (unipolar), zero outside.
    """
    u = p - ref
    w = step.detach() if bipolar else 0.5 * step.detach()
    hard = torch.where(u >= 0, 1.0, -1.0 if bipolar else 0.0).to(u.dtype)
    soft = u.clamp(-w, w)  # slope 1 inside the window (edges included), 0 outside
    return step * hard + (soft - soft.detach())


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class DeviceModel:
    """Non-idealities of the memory cells (relative sigmas; fractions of cells).

    Read from ``chip.technology.device`` (:meth:`from_chip`); the default is an ideal device.
    """

    program_sigma: float = 0.0
    read_noise_sigma: float = 0.0
    stuck_off_rate: float = 0.0
    stuck_on_rate: float = 0.0
    on_off_ratio: float = math.inf

    @classmethod
    def from_chip(cls, chip: Any | None) -> DeviceModel:
        if chip is None:
            return cls()
        dev = chip.technology.device
        ratio = getattr(dev, "on_off_ratio", None)
        return cls(
            program_sigma=float(getattr(dev, "program_sigma", 0.0) or 0.0),
            read_noise_sigma=float(getattr(dev, "read_noise_sigma", 0.0) or 0.0),
            stuck_off_rate=float(getattr(dev, "stuck_off_rate", 0.0) or 0.0),
            stuck_on_rate=float(getattr(dev, "stuck_on_rate", 0.0) or 0.0),
            on_off_ratio=float(ratio) if ratio else math.inf,
        )

    @property
    def noisy(self) -> bool:
        return (
            self.program_sigma > 0
            or self.read_noise_sigma > 0
            or self.stuck_off_rate > 0
            or self.stuck_on_rate > 0
        )


@dataclass(frozen=True)
class CrossbarConfig:
    """Per-layer precision and mapping (from :meth:`ArchSpec.resolved`)."""

    weight_bits: int = 4
    adc_bits: int = 4
    adc_kind: str = "sar"
    rows: int = 128
    bits_per_cell: int = 1
    signed_scheme: str = "differential"

    @classmethod
    def from_resolved(cls, layer: ResolvedLayer) -> CrossbarConfig:
        return cls(
            weight_bits=layer.weight_bits,
            adc_bits=layer.adc_bits,
            adc_kind=layer.adc_kind,
            rows=layer.rows,
            bits_per_cell=layer.bits_per_cell,
            signed_scheme=layer.signed_scheme,
        )

    @property
    def differential(self) -> bool:
        return self.signed_scheme == "differential"

    @property
    def slices(self) -> int:
        return math.ceil(self.weight_bits / self.bits_per_cell)

    @property
    def weight_range(self) -> tuple[int, int]:
        """Integer weight levels (qn, qp): b-bit magnitudes per cell pair, or b-bit offset code."""
        b = self.weight_bits
        if self.differential:
            return -(2**b - 1), 2**b - 1
        return -(2 ** (b - 1)), 2 ** (b - 1) - 1

    @property
    def adc_range(self) -> tuple[int, int]:
        """ADC output codes: signed for differential columns, unsigned for offset columns."""
        b = self.adc_bits
        if self.differential:
            return -(2 ** (b - 1)), 2 ** (b - 1) - 1
        return 0, 2**b - 1


def _convert_sum_dense(
    x2d: torch.Tensor,
    wg: torch.Tensor,
    step: torch.Tensor,
    ref: torch.Tensor | None,
    tie: torch.Tensor | None,
    coef: torch.Tensor,
    yscale: torch.Tensor,
    mode: int,
    qn: int,
    qp: int,
    want_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Tensor-op twin of :func:`neuronas.snn._kernels.convert_sum_forward` (same outputs).

    Used on CUDA and where numba is unavailable: it materialises the ``[G, M, K]`` partial sums.
    """
    g, r, k = wg.shape
    xg = x2d.reshape(-1, g, r).transpose(0, 1)  # [G, M, R]
    p = torch.matmul(xg, wg)  # [G, M, K]
    if mode == 0:
        v = p.div_(step)  # partial sums in ADC codes; an idle group gives code 0 by itself
        total = torch.clamp(v, qn, qp).round_().sum(0)
        centre, half = 0.5 * (qn + qp), 0.5 * (qp - qn)
        inside = (v - centre).abs_().le_(half)  # float 0 / 1
        dsum = (v * inside).sum(0)
    else:
        assert ref is not None and tie is not None
        u = p.sub_(ref - tie)
        act = (xg != 0).any(-1).unsqueeze(-1)  # [G, M, 1]: an idle group's comparators are skipped
        pos = ((u >= 0) & act).sum(0).to(u.dtype)
        total = 2 * pos - act.sum(0).to(u.dtype) if mode == 1 else pos
        window = step if mode == 1 else 0.5 * step
        inside = ((u.abs() <= window) & act).to(u.dtype)
        dsum = inside.sum(0)
    n_slices = coef.shape[0]
    h = (inside.view(g, -1, n_slices, k // n_slices) * coef.view(1, 1, -1, 1)).sum(2)  # [G, M, Nc]
    y = (total.view(-1, n_slices, k // n_slices) * yscale.view(1, n_slices, -1)).sum(1)
    return y, torch.stack([total, dsum]), h, (inside.to(torch.uint8) if want_mask else None)


class _ConvertSum(torch.autograd.Function):
    """``y[m, n] = sum_s 2^(s*bits) step[s, n] sum_g C((x_g @ w_g)[m, (s, n)])``, fused.

    C is the converter code: mode 0 ``round(clamp(p / step, qn, qp))`` (b-bit ADC), mode 1
    ``sign(p - ref)`` (bipolar sense amplifier), mode 2 ``H(p - ref)`` (unipolar); a sense
    amplifier of an idle group (no input row driven) is skipped; the digital periphery then
    sums the groups and shifts-and-adds the slices.  The ``[G, M, S*Nc]`` partial sums are the
    inner loop of every hardware-aware training step; on the CPU they are never materialised
    (:mod:`neuronas.snn._kernels`: event-driven, the converter applied in the same pass).

    Backward: straight-through inside the converter's range (ADC) or window ``|p - ref| <= step``
    (``step / 2`` unipolar), zero outside, as :func:`adc_quantize` / :func:`sense_amp`; LSQ for an
    ADC's step; a comparator's decision does not depend on its output level, so its step (a pure
    output scale) gets its exact gradient, and its reference the straight-through one.

    ``x2d [M, G*R]`` inputs; ``wg [G, R, S*Nc]`` the (detached) cells; ``q [N, K]`` the integer
    weights, which the gradient reaches: the cells are a fixed function of q (straight-through,
    slice s scaled by ``slice_grad[s]``), so the per-slice gradients are combined before the outer
    product with the inputs (``[G, R, Nc]``, then q's layout: padding rows and the offset
    reference column dropped).  ``adc_step``, ``sa_ref`` ``[S, Nc]``: the layer's parameters
    (step ``|adc_step| + 1e-8``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x2d: torch.Tensor,
        wg: torch.Tensor,
        q: torch.Tensor,
        slice_weight: torch.Tensor,
        slice_grad: torch.Tensor,
        adc_step: torch.Tensor,
        sa_ref: torch.Tensor | None,
        mode: int,
        qn: int,
        qp: int,
    ) -> torch.Tensor:
        # the converter step and reference as the layer holds them ([S, Nc]): |adc_step| + 1e-8
        # flattened is computed here, its gradient (that of abs) in backward; one autograd node
        # instead of five small ones per layer and step (same numbers)
        step = (adc_step.abs() + 1e-8).reshape(-1)
        ref = None if sa_ref is None else sa_ref.reshape(-1)
        # a tie (p == ref) reads as 1, as in sense_amp: shift by a hair so that integer partial
        # sums meeting an integer reference do not sit exactly on the comparator's edge
        tie = None if mode == 0 else 1e-4 * step
        coef = slice_grad * slice_weight  # [S]: a slice's share of the weight gradient
        fast = (
            x2d.device.type == "cpu"
            and x2d.dtype == torch.float32
            and wg.dtype == torch.float32
            and _kernels.available()
        )
        conv = _kernels.convert_sum_forward if fast else _convert_sum_dense
        want_mask = bool(ctx.needs_input_grad[0])
        nc = wg.shape[-1] // slice_weight.shape[0]
        yscale = slice_weight.repeat_interleave(nc) * step  # [K]: shift-and-add, step
        y, sums, h, mask = conv(
            x2d, wg, step, ref, tie, coef, yscale, mode, qn, qp, want_mask
        )  # sums: total, dsum
        ctx.save_for_backward(x2d, wg, adc_step, sums, h, mask, slice_weight)
        ctx.mode, ctx.used, ctx.fast = mode, False, fast
        ctx.q_shape = tuple(q.shape)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        if ctx.used:
            raise RuntimeError(
                "a crossbar layer's backward runs once per forward (its buffers are reused in place)"
            )
        ctx.used = True
        x2d, wg, adc_step, sums, h, mask, slice_weight = ctx.saved_tensors
        g_groups, r, _ = wg.shape
        m, nc = grad.shape
        n_slices = slice_weight.shape[0]
        sw = slice_weight.repeat_interleave(nc)  # [K]: each partial sum's shift
        # the same gradient reaches every slice (times sw): column sums of grad * total, grad * dsum
        if ctx.fast:
            g_total, g_dsum = _kernels.column_dots(sums, grad)
        else:
            g_total, g_dsum = (
                (sums.view(2, m, n_slices, nc) * grad.view(1, m, 1, nc)).sum(1).view(2, -1)
            )
        if ctx.mode == 0:
            # LSQ: d(step * round(p / step)) / d step = code - (p / step) * inside
            grad_step = sw * (g_total - g_dsum)
            grad_ref = None
        else:
            grad_step = sw * g_total  # the decision itself: exact
            grad_ref = (-sw * g_dsum).view(adc_step.shape)  # straight-through: moves by -1 per unit
        # through step = |adc_step| + 1e-8 (torch's abs backward: grad * sgn)
        grad_adc = grad_step.view(adc_step.shape) * adc_step.sgn()
        grad_x = grad_q = None
        if ctx.needs_input_grad[2]:
            xg = x2d.reshape(m, g_groups, r).transpose(0, 1)  # [G, M, R]
            grad_wq = torch.matmul(xg.transpose(1, 2), h.mul_(grad))  # [G, R, Nc]
            # back to q's [N, K]: the padding rows and the offset reference column dropped
            n_out, k_in = ctx.q_shape
            grad_q = grad_wq.view(g_groups * r, nc)[:k_in, :n_out].t()
        if ctx.needs_input_grad[0]:
            gp = torch.mul(mask, grad.repeat(1, n_slices) * sw)  # [G, M, K]
            grad_x = torch.matmul(gp, wg.transpose(1, 2)).transpose(0, 1).reshape(x2d.shape)
        return grad_x, None, grad_q, None, None, grad_adc, grad_ref, None, None, None


# --------------------------------------------------------------------------------------------
# convolutions: every row group's partial sums from one grouped conv2d


@dataclass(frozen=True)
class ConvRowGroups:
    """Where a convolution's row groups sit in its input.

    The fan-in rows are ordered as im2col orders them, ``(c, i, j)`` (input channel, kernel row,
    kernel column), so row group g (rows ``g*R:(g+1)*R``) reads a run of whole or cut kernels of
    consecutive input channels.  Giving every group the ``span`` channels it touches (``channels``,
    gathered from the input; neighbouring groups share a cut channel) turns all groups' partial
    sums into ONE grouped ``conv2d`` with G groups, whose weight slots outside the group's rows
    hold 0 (``rows == fan_in``).  When R is a multiple of k*k the groups hold whole channels and
    the gather is the identity (``channels is None``).
    """

    groups: int
    span: int
    channels: torch.Tensor | None  # [G*span] input channel behind each slot, or None: the identity
    rows: torch.Tensor  # [G, span, k, k] the fan-in row behind each weight slot; fan_in: none

    @classmethod
    def of(cls, in_channels: int, kernel: int, rows: int) -> ConvRowGroups:
        kk = kernel * kernel
        fan_in = in_channels * kk
        groups = math.ceil(fan_in / rows)
        lo = [g * rows // kk for g in range(groups)]
        hi = [(min((g + 1) * rows, fan_in) - 1) // kk for g in range(groups)]
        span = max(h - c + 1 for c, h in zip(lo, hi, strict=True))
        chan = torch.tensor(
            [[min(c + w, in_channels - 1) for w in range(span)] for c in lo]
        )  # [G, span]
        local = torch.arange(kk).view(1, 1, kk)
        row = (
            torch.tensor(lo).view(-1, 1, 1) + torch.arange(span).view(1, -1, 1)
        ) * kk + local  # [G, span, kk]
        g_lo = (torch.arange(groups) * rows).view(-1, 1, 1)
        valid = (row >= g_lo) & (row < torch.clamp(g_lo + rows, max=fan_in))
        row = torch.where(valid, row, torch.full_like(row, fan_in)).view(
            groups, span, kernel, kernel
        )
        identity = groups * span == in_channels and bool(
            (chan.view(-1) == torch.arange(in_channels)).all()
        )
        return cls(groups, span, None if identity else chan.view(-1), row)


def _conv_convert_dense_forward(
    psum: torch.Tensor,
    act: torch.Tensor | None,
    thr: torch.Tensor,
    scale: torch.Tensor,
    yscale: torch.Tensor,
    bias: torch.Tensor,
    mode: int,
    qn: int,
    qp: int,
    out: torch.Tensor,
) -> None:
    """The converters over partial sums ``psum [M, G, S, Nc]`` (row m = (b, p) of a channels-last
    grouped conv2d's output) into ``out [B, Nc, P]``: ``bias + sum_s yscale[s] * sum_g code``
    (mode 0, ADC: ``scale`` is the step; modes 1, 2, comparators: the code from ``p - thr``, an
    idle group (``act [M, G]`` = 0 driven rows) skipped).  What the event-driven kernels compute
    on the CPU, as tensor ops (CUDA; no numba)."""
    if mode == 0:
        total = torch.clamp(psum / scale, qn, qp).round_().sum(1)  # [M, S, Nc]
    else:
        assert act is not None
        a = (act > 0).view(act.shape[0], -1, 1, 1)  # [M, G, 1, 1]
        pos = ((psum >= thr) & a).sum(1).to(psum.dtype)
        total = 2 * pos - a.sum(1).to(psum.dtype) if mode == 1 else pos
    rows = (total * yscale).sum(1) + bias  # [M, Nc]
    out.copy_(rows.view(out.shape[0], -1, out.shape[1]).transpose(1, 2))


def _conv_convert_dense_backward(
    psum: torch.Tensor,
    act: torch.Tensor | None,
    thr: torch.Tensor,
    win: torch.Tensor,
    scale: torch.Tensor,
    coef: torch.Tensor,
    sw: torch.Tensor,
    mode: int,
    qn: int,
    qp: int,
    grad: torch.Tensor,
    gscale: float,
    want_gp: bool,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The backward of :func:`_conv_convert_dense_forward` for ``gscale * grad`` (``grad [B, Nc,
    P]``): ``(gp [M, G, S, Nc]`` the gradient reaching each partial sum (when ``want_gp``), ``hg
    [M, G, Nc]`` the straight-through windows combined over slices with ``coef`` times grad,
    ``gsum [2, S, Nc]`` the column sums of grad * code and grad * (ADC: inside * p / step;
    comparator: inside))."""
    g_rows = grad.transpose(1, 2).reshape(-1, grad.shape[1]) * gscale  # [M, Nc]
    gr = g_rows.view(g_rows.shape[0], 1, 1, -1)  # [M, 1, 1, Nc]
    if mode == 0:
        v = psum / scale
        code = torch.clamp(v, qn, qp).round_()
        inside = ((v - 0.5 * (qn + qp)).abs_() <= 0.5 * (qp - qn)).to(psum.dtype)
        dval = inside * v
    else:
        assert act is not None
        a = (act > 0).view(act.shape[0], -1, 1, 1)
        u = psum - thr
        code = torch.where(u >= 0, 1.0, -1.0 if mode == 1 else 0.0).to(psum.dtype) * a
        inside = ((u.abs() <= win) & a).to(psum.dtype)
        dval = inside
    gsum = torch.stack([(code * gr).sum((0, 1)), (dval * gr).sum((0, 1))])
    hg = (inside * coef.view(1, 1, -1, 1)).sum(2) * g_rows.unsqueeze(1)
    gp = inside * gr * sw.view(1, 1, -1, 1) if want_gp else None
    return gp, hg, gsum


# partial sums per batch chunk: within L2 on the CPU (the converter pass reads them while cached),
# bounded on a GPU so that they never grow with batch x positions
_CHUNK_FLOATS = {"cpu": 1 << 20, "cuda": 1 << 26}
# the most bytes a conv layer's forward keeps per call of its comparators' codes and windows (a
# byte per partial sum) for the backward: for as many leading batch items as fit; the backward
# scatters the other items' partial sums again
_CODES_BYTES = 1 << 28  # 256 MiB


class _CodesSpare:
    """A conv layer's spare buffers for its sense amplifiers' codes (:class:`_ConvConvertSum`):
    the backward hands back those it read, and the layer's next forward writes into them (views
    of their leading items) instead of new tensors, whose first touch costs a page fault per
    page every call (~0.6 ms per MB measured, as much as the kernel's work on digits-cnn's conv
    1).  A buffer is only here while no graph holds it: a forward takes it (a second forward
    before the backward gets new ones), a backward puts its own back; a forward that keeps no
    codes (evaluation, no grad) lets go of it.  Copies and pickles of the layer start empty."""

    __slots__ = ("bufs",)

    def __init__(self) -> None:
        self.bufs: tuple[torch.Tensor, torch.Tensor] | None = None

    def take(
        self, n: int, g: int, p: int, k: int
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Buffers for ``n`` items' codes ``[n, g, p, k]`` and read flags ``[n, g, p]``: (the
        views to write, the whole buffers to give back)."""
        bufs, self.bufs = self.bufs, None
        if bufs is None or bufs[0].shape[1:] != (g, p, k) or bufs[0].shape[0] < n:
            bufs = (
                torch.empty((n, g, p, k), dtype=torch.uint8),
                torch.empty((n, g, p), dtype=torch.uint8),
            )
        return (bufs[0][:n], bufs[1][:n]), bufs

    def give(self, bufs: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.bufs = bufs

    def __deepcopy__(self, memo: dict[int, Any]) -> _CodesSpare:
        return _CodesSpare()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_CodesSpare, ())


def _rows_of(t: torch.Tensor) -> torch.Tensor:
    """A channels-last ``[b, C, OH, OW]`` tensor as its ``[b*OH*OW, C]`` rows (a view)."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def _as_channels(rows: torch.Tensor, b: int, oh: int, ow: int) -> torch.Tensor:
    """``[b*OH*OW, ...]`` rows back as a channels-last ``[b, C, OH, OW]`` tensor (a view)."""
    return rows.reshape(b, oh, ow, -1).permute(0, 3, 1, 2)


class _ConvConvertSum(torch.autograd.Function):
    """:class:`_ConvertSum` for a convolution, without im2col, with the layer's weight step and
    bias folded in: ``y [B, Nc, OH, OW] = w_step * chip(x) + bias``.

    Inputs: the input ``x [B, C, H, W]`` (contiguous: the kernels read it in place) and ``chan``
    (:class:`ConvRowGroups`' channels behind the groups' ``G*span`` slots, or ``None``: the
    identity), the cells of every weight slot ``wcell [G, span, k, k, S, Nc]``
    (:class:`ConvRowGroups`; detached), ``wq [G, span, k, k, Nc]`` which carries the integer
    weights' gradient (the cells are a fixed function of them, the slices combined by
    ``slice_grad`` first), ``act_w [G, span, k, k]`` 1 where a slot holds a row (a group's driven
    rows are counted through it: an idle group's sense amplifiers are skipped).

    On the CPU (numba): event-driven kernels (:func:`neuronas.snn._kernels.sparse_conv_forward`)
    scatter every non-zero input's cells into cached partial sums and convert them in the same
    pass, reading the groups' channels through ``chan`` (no gathered copy of the input); for
    sense amplifiers they keep a byte per partial sum (code and straight-through window) for as
    many leading batch items as fit ``_CODES_BYTES`` per call, so that the backward need not
    scatter those items' partial sums again (it does for ADCs and the items over the budget).  The backward takes the input's gradient in the same
    pass, per output position over its non-zero partial-sum gradients only (items and positions
    that receive no gradient cost nothing), and sums it per input channel as the backward of
    ``index_select`` would.
    Elsewhere (CUDA, no numba): one grouped channels-last ``conv2d`` per batch chunk gives every group's partial
    sums (channels-last: oneDNN / cuDNN write them without a reorder), converted by tensor ops,
    computed again in the backward; chunks bound the memory whatever the batch x positions.
    Nothing of the partial sums' size is kept between forward and backward there.  Gradients
    as :class:`_ConvertSum`; the weight step's is ``sum(grad * chip(x))``, from the same column
    sums as the converters' steps.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        chan: torch.Tensor | None,
        wcell: torch.Tensor,
        wq: torch.Tensor,
        act_w: torch.Tensor,
        slice_weight: torch.Tensor,
        slice_grad: torch.Tensor,
        step: torch.Tensor,
        ref: torch.Tensor | None,
        w_step: torch.Tensor,
        bias: torch.Tensor | None,
        mode: int,
        qn: int,
        qp: int,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
        grad_enabled: bool = True,
        spare: _CodesSpare | None = None,
        dilation: int = 1,
    ) -> torch.Tensor:
        g, span, k = wcell.shape[:3]
        n_slices, nc = wcell.shape[4], wcell.shape[5]
        thr, win, scale, yscale = _conv_constants(step, ref, slice_weight, mode)
        ws = float(w_step)
        bias_c = bias.detach() if bias is not None else x.new_zeros(nc)
        if bias_c.shape[0] < nc:  # the offset reference column carries no bias
            bias_c = torch.cat([bias_c, bias_c.new_zeros(nc - bias_c.shape[0])])
        h_in, w_in = (x.shape[2] - 1) * dilation + 1, (x.shape[3] - 1) * dilation + 1
        oh = (h_in + 2 * padding[0] - k) // stride[0] + 1
        ow = (w_in + 2 * padding[1] - k) // stride[1] + 1
        y = torch.empty((x.shape[0], nc, oh, ow), dtype=x.dtype, device=x.device)
        fast = _conv_kernels_take(x, stride, padding)
        assert fast or dilation == 1, "a dilated input is read by the kernels only"
        act = None
        ctx.codes = None
        ctx.spare = None
        if spare is not None and not fast:
            spare.give(None)  # kept no codes: nothing to reuse them for
        if fast:
            # event-driven: the partial sums never leave the cache, idle inputs cost nothing;
            # comparators' codes and windows kept for the backward (a byte per partial sum)
            # when a backward may follow: for the leading items that fit _CODES_BYTES
            keep = (
                min(
                    x.shape[0],
                    _CODES_BYTES // _kernels.conv_codes_bytes(1, g, oh * ow, n_slices * nc),
                )
                if mode != 0 and grad_enabled and any(ctx.needs_input_grad)
                else 0
            )
            into = None
            if spare is not None:
                if keep:  # the buffers the last backward read, if they fit
                    into, bufs = spare.take(keep, g, oh * ow, n_slices * nc)
                    ctx.spare = (spare, bufs)
                else:  # evaluation: let go of them
                    spare.give(None)
            # the kernel reads the groups' channels through chan: no gathered copy of x
            ctx.codes = _kernels.sparse_conv_forward(
                x.detach(),
                chan,
                wcell.reshape(g, span, k, k, -1),
                act_w,
                stride[0],
                padding[0],
                oh,
                ow,
                thr,
                win,
                scale,
                yscale * ws,
                bias_c,
                mode,
                qn,
                qp,
                y.view(y.shape[0], nc, -1),
                keep,
                into,
                dilation,
            )
        else:
            xg = _gather_channels(x, chan)
            wconv = _grouped_weight(wcell)
            act = _conv_active(xg, act_w, stride, padding) if mode else None
            for b0, b1, psum in _conv_partial_sums(xg, wconv, g, stride, padding):
                p4 = _rows_of(psum).view(-1, g, n_slices, nc)
                a2 = None if act is None else _rows_of(act[b0:b1])
                _conv_convert_dense_forward(
                    p4,
                    a2,
                    thr,
                    scale,
                    yscale * ws,
                    bias_c,
                    mode,
                    qn,
                    qp,
                    y[b0:b1].view(b1 - b0, nc, oh * ow),
                )
        saved = (x, wcell, act_w, step, slice_weight, slice_grad, w_step)
        ctx.save_for_backward(
            *saved, *(() if act is None else (act,)), *(() if ref is None else (ref,))
        )
        ctx.chan = chan
        ctx.args = (
            mode,
            qn,
            qp,
            stride,
            padding,
            fast,
            0 if bias is None else bias.shape[0],
            act is not None,
            dilation,
        )
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, wcell, act_w, step, slice_weight, slice_grad, w_step, *rest = ctx.saved_tensors
        chan = ctx.chan
        mode, qn, qp, stride, padding, fast, n_bias, has_act, dilation = ctx.args
        act = rest.pop(0) if has_act else None
        ref = rest[0] if rest else None
        g, span, k = wcell.shape[:3]
        n_slices, nc = wcell.shape[4], wcell.shape[5]
        thr, win, scale, _ = _conv_constants(step, ref, slice_weight, mode)
        coef = slice_grad * slice_weight
        ws = float(w_step)
        want_x, want_w = bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[3])
        grad = grad.contiguous()
        oh, ow = grad.shape[2], grad.shape[3]
        grad_x = None
        if fast:
            tasks = _kernels.backward_tasks()
            gw = torch.zeros((tasks, g, span, k, k, nc))
            gsum_t = torch.zeros((tasks, 2, n_slices, nc))
            # one pass, no chunks: the input's gradient is taken in the kernel over the non-zero
            # partial-sum gradients only; nothing of the partial sums' size is written
            grad_x = _kernels.sparse_conv_backward(
                x.detach(),
                chan,
                wcell.reshape(g, span, k, k, -1),
                act_w,
                stride[0],
                padding[0],
                oh,
                ow,
                thr,
                win,
                scale,
                coef,
                slice_weight,
                mode,
                qn,
                qp,
                grad.view(grad.shape[0], nc, -1),
                ws,
                want_x,
                gw,
                gsum_t,
                ctx.codes,
                dilation,
            )
            ctx.codes = None
            if ctx.spare is not None:  # read: the layer's next forward may write them
                ctx.spare[0].give(ctx.spare[1])
                ctx.spare = None
            grad_wq = gw.sum(0) if want_w else None
            gsum = gsum_t.sum(0)
        else:
            xg = _gather_channels(x, chan)
            wconv = _grouped_weight(wcell)
            grad_x = torch.empty_like(xg) if want_x else None
            grad_wc = (
                torch.zeros((g * nc, span, k, k), dtype=xg.dtype, device=xg.device)
                if want_w
                else None
            )
            gsum = torch.zeros((2, n_slices, nc), dtype=xg.dtype, device=xg.device)
            for b0, b1, psum in _conv_partial_sums(xg, wconv, g, stride, padding):
                b = b1 - b0
                p4 = _rows_of(psum).view(-1, g, n_slices, nc)
                a2 = None if act is None else _rows_of(act[b0:b1])
                gr = grad[b0:b1].view(b, nc, oh * ow)
                gp2, hg, gs = _conv_convert_dense_backward(
                    p4, a2, thr, win, scale, coef, slice_weight, mode, qn, qp, gr, ws, want_x
                )
                gsum += gs
                if grad_x is not None and gp2 is not None:
                    grad_x[b0:b1] = conv2d_input(
                        (b, *xg.shape[1:]),
                        wconv,
                        _as_channels(gp2, b, oh, ow),
                        stride,
                        padding,
                        groups=g,
                    )
                if grad_wc is not None:
                    grad_wc += conv2d_weight(
                        xg[b0:b1],
                        tuple(grad_wc.shape),
                        _as_channels(hg, b, oh, ow),
                        stride,
                        padding,
                        groups=g,
                    )
            if grad_x is not None and chan is not None:  # as the backward of index_select
                grad_x = torch.zeros(x.shape, dtype=x.dtype, device=x.device).index_add_(
                    1, chan, grad_x
                )
            # [G*Nc, span, k, k] -> the slots' layout [G, span, k, k, Nc]
            grad_wq = (
                None if grad_wc is None else grad_wc.view(g, nc, span, k, k).permute(0, 2, 3, 4, 1)
            )
        sw = slice_weight.repeat_interleave(nc)  # [S*Nc]: each partial sum's shift
        g_total, g_dsum = gsum.reshape(2, -1)  # column sums against w_step * grad
        if mode == 0:
            grad_step, grad_ref = sw * (g_total - g_dsum), None  # LSQ
        else:
            grad_step, grad_ref = sw * g_total, -sw * g_dsum
        # d y / d w_step = chip(x) = sum_s sw[s] step[s] * codes: the same column sums, over w_step
        grad_w = (
            ((sw * step.detach() * g_total).sum() / ws).reshape(w_step.shape)
            if ctx.needs_input_grad[9]
            else None
        )
        grad_bias = None
        if n_bias and ctx.needs_input_grad[10]:
            grad_bias = grad.sum((0, 2, 3))[:n_bias]
        return (
            grad_x,
            None,
            None,
            grad_wq,
            None,
            None,
            None,
            grad_step,
            grad_ref,
            grad_w,
            grad_bias,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def _conv_kernels_take(x: torch.Tensor, stride: tuple[int, ...], padding: tuple[int, ...]) -> bool:
    """Whether :class:`_ConvConvertSum` runs on the event-driven kernels (else tensor ops)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and _kernels.available()
        and stride[0] == stride[1]
        and padding[0] == padding[1]
    )


def _gather_channels(x: torch.Tensor, chan: torch.Tensor | None) -> torch.Tensor:
    """The groups' ``G*span`` channels of ``x`` (:class:`ConvRowGroups`), channels-last."""
    xg = x if chan is None else x.index_select(1, chan)
    return xg.contiguous(memory_format=torch.channels_last)


def _grouped_weight(wcell: torch.Tensor) -> torch.Tensor:
    """Cells per slot ``[G, span, k, k, S, Nc]`` as a grouped conv2d's weight ``[G*S*Nc, span, k, k]``
    (channels-last: the layout oneDNN writes partial sums from without a reorder)."""
    g, span, k = wcell.shape[:3]
    w = wcell.permute(0, 4, 5, 1, 2, 3).reshape(-1, span, k, k)
    return w.contiguous(memory_format=torch.channels_last)


def _conv_constants(
    step: torch.Tensor,
    ref: torch.Tensor | None,
    slice_weight: torch.Tensor,
    mode: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column ``(thr, win, scale, yscale)`` as ``[S, Nc]`` for the conv converters."""
    n_slices = slice_weight.shape[0]
    st = step.detach().view(n_slices, -1)
    yscale = slice_weight.view(-1, 1) * st
    if mode == 0:
        return st, st, st, yscale
    assert ref is not None
    # a tie (p == ref) reads as 1: the same hair as _ConvertSum
    thr = (ref.detach() - 1e-4 * step.detach()).view(n_slices, -1)
    return thr, (st if mode == 1 else 0.5 * st), st, yscale


def _conv_active(
    xg: torch.Tensor, act_w: torch.Tensor, stride: tuple[int, ...], padding: tuple[int, ...]
) -> torch.Tensor:
    """Driven rows per row group and output position, ``[B, G, OH, OW]`` (channels-last): one
    small convolution for the whole batch (per chunk, its fixed cost was ~1/3 of the partial
    sums' own)."""
    with torch.no_grad():
        xd = xg.detach()
        return F.conv2d((xd != 0).to(xd.dtype), act_w, None, stride, padding, 1, act_w.shape[0])


def _conv_partial_sums(
    xg: torch.Tensor,
    wconv: torch.Tensor,
    groups: int,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(b0, b1, psum [b, G*S*Nc, OH, OW])`` over batch chunks, channels-last (as ``xg`` and
    ``wconv`` are)."""
    kh = wconv.shape[-1]
    oh = (xg.shape[2] + 2 * padding[0] - kh) // stride[0] + 1
    ow = (xg.shape[3] + 2 * padding[1] - kh) // stride[1] + 1
    size = max(1, _CHUNK_FLOATS.get(xg.device.type, 1 << 26) // (wconv.shape[0] * oh * ow))
    with torch.no_grad():
        for b0 in range(0, xg.shape[0], size):
            b1 = min(xg.shape[0], b0 + size)
            yield b0, b1, F.conv2d(xg[b0:b1].detach(), wconv, None, stride, padding, 1, groups)


# --------------------------------------------------------------------------------------------
# the shared crossbar machinery


class CrossbarLayer(nn.Module):
    """Hardware path shared by the crossbar layers (weights viewed as ``[N, K]``)."""

    weight: torch.Tensor
    bias: Any  # torch.Tensor | None (each torch base class types it its own way)
    calibrated: torch.Tensor
    slice_weight: torch.Tensor
    slice_grad: torch.Tensor
    _prog_eps: torch.Tensor
    _fault_u: torch.Tensor
    sa_ref: nn.Parameter | None

    def _init_crossbar(
        self, fan_in: int, fan_out: int, config: CrossbarConfig, device: DeviceModel
    ) -> None:
        self.config = config
        self.device_model = device
        self.fan_in, self.fan_out = fan_in, fan_out
        self.hardware_awareness = 0.0
        s = config.slices
        self.n_cols = fan_out + (0 if config.differential else 1)  # + the offset reference column
        self.row_groups = math.ceil(fan_in / config.rows)
        self.w_step = nn.Parameter(torch.ones(()))
        self.adc_step = nn.Parameter(torch.ones(s, self.n_cols))
        self.sa_ref = nn.Parameter(torch.zeros(s, self.n_cols)) if config.adc_kind == "sa" else None
        self.register_buffer("calibrated", torch.zeros((), dtype=torch.bool))
        bpc = config.bits_per_cell
        self.register_buffer(
            "slice_weight", torch.tensor([2.0 ** (i * bpc) for i in range(s)]), persistent=False
        )
        # the gradient of w reaches every slice, each scaled so that the slices sum back to w
        self.register_buffer(
            "slice_grad", torch.tensor([2.0 ** (-i * bpc) / s for i in range(s)]), persistent=False
        )
        self.register_buffer("_prog_eps", torch.empty(0), persistent=False)
        self.register_buffer("_fault_u", torch.empty(0), persistent=False)
        self.instance_seed: int | None = None
        self._read_seed: int | None = None
        self._read_gen: torch.Generator | None = None

    # -- chip instances --------------------------------------------------------------------

    def _cell_shape(self) -> tuple[int, int, int, int]:
        """``[K, S, P, Nc]``: rows, weight slices, cells per weight (pair or one), columns."""
        pairs = 2 if self.config.differential else 1
        return (self.fan_in, self.config.slices, pairs, self.n_cols)

    def training_draws(self) -> int:
        """Random numbers a training read of the cells draws from torch's global generator (a
        normal per cell for programming noise, a uniform per cell for stuck cells, a normal per
        cell for read noise, each when the device has it; 0 on a noiseless device)."""
        dev = self.device_model
        kinds = (
            int(dev.program_sigma > 0)
            + int(dev.stuck_off_rate > 0 or dev.stuck_on_rate > 0)
            + int(dev.read_noise_sigma > 0)
        )
        return kinds * math.prod(self._cell_shape())

    def resample_chip_instance(self, seed: int, *, fixed_reads: bool = True) -> None:
        """Draw one chip instance from ``seed``: programming variation and stuck cells, fixed
        until resampled, and (``fixed_reads``) the instance's own read-noise stream, so that the
        same instance read the same way again gives the same numbers.  Each evaluation read still
        draws fresh noise from that stream; training reads always draw from torch's global
        generator (noise injection).  ``fixed_reads=False``: evaluation reads draw from the global
        generator too (the implicit instance of a validation pass during training, whose draws
        are part of the training's random stream)."""
        gen = torch.Generator().manual_seed(int(seed))
        shape = self._cell_shape()
        dev = self.weight.device
        # torch's numbers (and torch's own calls where the kernels do not draw), ~3x faster
        self._prog_eps = _kernels.randn(shape, generator=gen).to(dev)
        self._fault_u = _kernels.rand(shape, generator=gen).to(dev)
        # drawn after the cells, so the cells of an instance do not depend on fixed_reads
        read_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        self._read_seed = read_seed if fixed_reads else None
        self._read_gen = None  # created on the weights' device at the first read
        self.instance_seed = int(seed)

    def _read_noise(self, g: torch.Tensor) -> torch.Tensor:
        """Standard normal noise of ``g``'s shape for one read of the cells ``g``."""
        gen = None
        if not (self.training or self._read_seed is None):
            if self._read_gen is None or self._read_gen.device != g.device:
                self._read_gen = torch.Generator(device=g.device).manual_seed(self._read_seed)
            gen = self._read_gen
        if _fast_draws(g.device, g.dtype):  # torch's numbers from the kernels, faster
            return _kernels.randn(tuple(g.shape), generator=gen)
        if gen is None:
            return torch.randn_like(g)
        return torch.randn(g.shape, generator=gen, device=g.device, dtype=g.dtype)

    # -- weights on cells --------------------------------------------------------------------

    def _digits(self, a: torch.Tensor, signed: bool = False) -> torch.Tensor:
        """``[K, X]`` stored magnitudes or codes -> their cell slices ``[K, S, X]`` (the base-2^bits
        digits, least significant first); ``signed``: the digits of |a| times sign(a), i.e. the
        signed slices of a differential pair (one of its two cells holds 0)."""
        cfg = self.config
        if a.device.type == "cpu" and a.dtype == torch.float32 and _kernels.available():
            return _kernels.digits(a, cfg.slices, cfg.bits_per_cell, signed)
        base = 2**cfg.bits_per_cell
        scale = base ** -torch.arange(cfg.slices, device=a.device, dtype=a.dtype)
        t = torch.floor((a.abs() if signed else a).unsqueeze(1) * scale.view(1, -1, 1))
        d = t - base * torch.floor(t / base)
        return d * a.sign().unsqueeze(1) if signed else d

    def _levels(self, q: torch.Tensor) -> torch.Tensor:
        """Integer conductance levels ``[K, S, P, Nc]`` of the cells holding integer weights q.

        Laid out row-major (the crossbar's rows first) so that the row groups are a free view:
        ``[K, S*Nc] -> [G, R, S*Nc]``.  Slices are the base-2^bits_per_cell digits of the stored
        magnitude (differential pair) or of the offset code."""
        cfg = self.config
        qt = q.detach().t()  # [K, N]
        if cfg.differential:
            n = qt.shape[1]
            d = self._digits(torch.cat([qt.clamp(min=0), (-qt).clamp(min=0)], 1))  # [K, S, 2N]
            return d.view(d.shape[0], d.shape[1], 2, n)
        offset = 2 ** (cfg.weight_bits - 1)
        ref_col = torch.full_like(qt[:, :1], offset)  # the offset reference column
        return self._digits(torch.cat([qt + offset, ref_col], 1)).unsqueeze(2)  # [K, S, 1, N + 1]

    def _cell_levels(self, q: torch.Tensor, noise: bool) -> torch.Tensor:
        """Signed per-slice cell weights ``[K, S, Nc]`` (level units, detached), noisy when asked."""
        cfg, dev = self.config, self.device_model
        ideal = not (noise and (dev.noisy or math.isfinite(dev.on_off_ratio)))
        if ideal and cfg.differential:
            # one cell of each pair holds 0: the pair's signed slices are sign(q) * digits(|q|)
            qt = q.detach().t()
            if cfg.slices == 1:
                return qt.unsqueeze(1)
            return self._digits(qt, signed=True)
        if ideal:
            levels = self._levels(q)
            return levels[:, :, 0] - levels[:, :, 1] if cfg.differential else levels[:, :, 0]
        lmax = 2**cfg.bits_per_cell - 1
        g_off = lmax / dev.on_off_ratio if math.isfinite(dev.on_off_ratio) else 0.0
        shape = self._cell_shape()
        if not self.training and tuple(self._prog_eps.shape) != shape:
            self.resample_chip_instance(
                0 if self.instance_seed is None else self.instance_seed, fixed_reads=False
            )
        # the draws depend on the cells' shape only: taken first, in the order programming,
        # stuck cells, read noise (training: one stream from torch's global generator)
        eps = u = r = None
        dv, dt = q.device, q.dtype  # the draws of randn_like(levels) etc. before
        on_below = dev.stuck_off_rate + dev.stuck_on_rate
        offset = 0 if cfg.differential else 2 ** (cfg.weight_bits - 1)
        # (on the CPU in float32 the kernels draw torch's very numbers from its generator, faster)
        fast = _fast_draws(dv, dt)
        params = _kernels.CellParams(
            n_slices=cfg.slices,
            bits=cfg.bits_per_cell,
            differential=cfg.differential,
            offset=offset,
            g_off=g_off,
            g_on=lmax + g_off,
            program_sigma=dev.program_sigma,
            stuck_off_below=dev.stuck_off_rate,
            stuck_on_below=on_below,
            read_sigma=dev.read_noise_sigma,
            n_cols=self.n_cols,
        )
        if fast and self.training and math.prod(shape) >= 16:
            # training: the three draws and the cells in one call, the draws in reused buffers
            return _kernels.drawn_noisy_cells(q.detach(), shape, params)
        if dev.program_sigma > 0:
            if not self.training:
                eps = self._prog_eps
            else:
                eps = _kernels.randn(shape) if fast else torch.randn(shape, device=dv, dtype=dt)
        if dev.stuck_off_rate > 0 or dev.stuck_on_rate > 0:
            if not self.training:
                u = self._fault_u
            else:
                u = _kernels.rand(shape) if fast else torch.rand(shape, device=dv, dtype=dt)
        if dev.read_noise_sigma > 0:
            r = self._read_noise(torch.empty(shape, device=dv, dtype=dt))
        if q.device.type == "cpu" and q.dtype == torch.float32 and _kernels.available():
            # one pass over the cells instead of ~10 tensor passes (same numbers, tested)
            return _kernels.noisy_cells(q.detach(), params, eps, u, r)
        g = self._levels(q) + g_off
        if eps is not None:
            g.mul_(1.0 + dev.program_sigma * eps)
        if u is not None:
            # stuck-off and stuck-on cells are disjoint: the order of the two fills is free
            g.masked_fill_(u < dev.stuck_off_rate, g_off)
            g.masked_fill_((u >= dev.stuck_off_rate) & (u < on_below), lmax + g_off)
        if r is not None:
            g.mul_(1.0 + dev.read_noise_sigma * r)
        return g[:, :, 0] - g[:, :, 1] if cfg.differential else g[:, :, 0]

    def _column_weights(self, q: torch.Tensor) -> torch.Tensor:
        """q as ``[Nc, K]`` columns (the offset reference column holds no trainable weight)."""
        if self.config.differential:
            return q
        return torch.cat([q, torch.zeros_like(q[:1])])

    def _cell_weights(self, q: torch.Tensor, noise: bool) -> torch.Tensor:
        """:meth:`_cell_levels` carrying q's gradient straight through, split over the slices."""
        qg = self._column_weights(q - q.detach()).t()  # [K, Nc]
        return self._cell_levels(q, noise) + qg.unsqueeze(1) * self.slice_grad.view(1, -1, 1)

    def _quantized(self) -> torch.Tensor:
        qn, qp = self.config.weight_range
        return quantize_weight(self.weight.reshape(self.fan_out, -1), self._w_step(), qn, qp)

    def _w_step(self) -> torch.Tensor:
        return self.w_step.abs() + 1e-12

    # -- partial sums through the converters ------------------------------------------------

    def _pad_rows(self, x2d: torch.Tensor) -> torch.Tensor:
        """``[M, K]`` -> ``[M, G*R]``: zero rows pad the last group."""
        extra = self.row_groups * self.config.rows - self.fan_in
        return F.pad(x2d, (0, extra)) if extra else x2d

    def _crossbar_mm(
        self, x2d: torch.Tensor, noise: bool = True, w_step: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Inputs ``[M, G*R]`` (row group g = columns ``g*R:(g+1)*R``) -> integer-unit outputs
        ``[M, N]`` (before ``w_step``).  ``w_step``: :meth:`_w_step`, when the caller has it."""
        cfg = self.config
        if w_step is None:
            w_step = self._w_step()
        qn, qp = cfg.weight_range
        w = self.weight
        q = quantize_weight(w if w.dim() == 2 else w.reshape(self.fan_out, -1), w_step, qn, qp)
        g, r = self.row_groups, cfg.rows
        if cfg.adc_kind == "digital":
            cells = self._cell_weights(q, noise)  # [K, S, Nc]
            w = (cells * self.slice_weight.view(1, -1, 1)).sum(
                1
            )  # [K, Nc] exact sums: slices combine first
            y = x2d[:, : self.fan_in] @ w
            self.calibrated.fill_(True)
        else:
            cells = self._cell_levels(q, noise)  # [K, S, Nc], detached
            s, nc = cells.shape[1], cells.shape[2]
            if g * r != self.fan_in:
                cells = F.pad(cells, (0, 0, 0, 0, 0, g * r - self.fan_in))
            wg = cells.reshape(g, r, s * nc)  # [G, R, S*Nc]: a view, the rows come first
            if not bool(self.calibrated):
                with torch.no_grad():
                    xg = x2d.reshape(-1, g, r).transpose(0, 1)
                    self._calibrate(torch.matmul(xg, wg).view(g, x2d.shape[0], s, nc), xg)
            if cfg.adc_kind == "sa":
                mode = 1 if cfg.differential else 2
                ref = self.sa_ref
                qn, qp = 0, 0
            else:
                mode, ref = 0, None
                qn, qp = cfg.adc_range
            # q itself carries the gradient (the cells are detached): _ConvertSum returns it in
            # q's layout, and takes the converter's step and reference as the parameters
            y = _ConvertSum.apply(
                x2d, wg, q, self.slice_weight, self.slice_grad, self.adc_step, ref, mode, qn, qp
            )
        if not cfg.differential:
            y = y[:, : self.fan_out] - y[:, self.fan_out :]
        return y

    @torch.no_grad()
    def _calibrate(self, psum: torch.Tensor, xg: torch.Tensor) -> None:
        """Initial converter steps from the partial sums ``[G, M, S, Nc]`` of active groups
        (LSQ initialisation); ``xg [G, M, R]`` the inputs."""
        active = (xg.abs().amax(-1) > 0).view(xg.shape[0], -1, 1, 1).expand_as(psum)
        count = active.sum((0, 1)).clamp(min=1)
        self._set_converter_ranges((psum.abs() * active).sum((0, 1)) / count, psum.amax((0, 1)))

    @torch.no_grad()
    def _set_converter_ranges(self, mean_abs: torch.Tensor, peak: torch.Tensor) -> None:
        """Converter steps ``[S, Nc]`` from the mean |partial sum| of active groups and the peak."""
        mean_abs = torch.where(mean_abs > 0, mean_abs, mean_abs.mean().clamp(min=1e-3))
        if self.config.adc_kind == "sa":
            # the scale that best fits sign(p) to p in the L2 sense is E|p|
            self.adc_step.copy_(mean_abs)
        elif self.config.differential:
            qp = self.config.adc_range[1]
            self.adc_step.copy_(2.0 * mean_abs / math.sqrt(qp))
        else:
            # offset columns carry a large common-mode current: the range must reach the largest sum
            qp = self.config.adc_range[1]
            self.adc_step.copy_(peak.clamp(min=1e-3) / qp)
        self.calibrated.fill_(True)

    @torch.no_grad()
    def calibrate_weights(self) -> None:
        """LSQ initial weight step ``2 mean|w| / sqrt(qp)``."""
        qp = self.config.weight_range[1]
        self.w_step.copy_(2.0 * self.weight.abs().mean().clamp(min=1e-8) / math.sqrt(qp))

    def _ensure_weight_step(self) -> None:
        if not bool(self.calibrated):
            self.calibrate_weights()

    def _mix(self, ideal: torch.Tensor | None, chip: torch.Tensor) -> torch.Tensor:
        a = float(self.hardware_awareness)
        if ideal is None or a >= 1.0:
            return chip
        return (1.0 - a) * ideal + a * chip

    def extra_repr(self) -> str:
        c = self.config
        return (
            super().extra_repr()
            + f", w{c.weight_bits}b, adc={c.adc_kind}:{c.adc_bits}b, rows={c.rows}, row_groups={self.row_groups}, "
            f"slices={c.slices}, {c.signed_scheme}"
        )

    # -- what the chip stores (public: the export reads these) --------------------------------

    @torch.no_grad()
    def stored_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, step)``: the integer weight levels ``[N, K]`` and the positive value of one level,
        so that ``q * step`` is the weight the chip computes with."""
        self._ensure_weight_step()
        return self._quantized().detach().clone(), self._w_step().detach().clone()

    @torch.no_grad()
    def cell_levels(self) -> torch.Tensor:
        """Integer level of every cell, ``[K, S, P, Nc]`` (see :meth:`_levels`)."""
        return self._levels(self.stored_weights()[0]).clone()

    @torch.no_grad()
    def converter_params(self) -> dict[str, torch.Tensor]:
        """Per slice and column ``[S, Nc]``, in cell-level units as the chip-mode forward uses them:
        ``step`` (ADC step or comparator output level, > 0) and, for a sense amplifier,
        ``threshold`` (it reads +1 where the partial sum >= threshold: the reference less the tie
        margin)."""
        step = self.adc_step.detach().abs() + 1e-8
        out = {"step": step.clone()}
        if self.sa_ref is not None:
            out["threshold"] = self.sa_ref.detach() - 1e-4 * step
        return out


class CrossbarLinear(CrossbarLayer, nn.Linear):
    """``nn.Linear`` on crossbars (see the module docstring); input ``[M, K]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        config: CrossbarConfig | None = None,
        device_model: DeviceModel | None = None,
        bias: bool = True,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_crossbar(
            in_features, out_features, config or CrossbarConfig(), device_model or DeviceModel()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = float(self.hardware_awareness)
        if a <= 0.0:
            return F.linear(x, self.weight, self.bias)
        self._ensure_weight_step()
        lead = x.shape[:-1]
        x2d = x.reshape(-1, self.fan_in)
        w_step = self._w_step()  # one node for both uses (the same gradient: abs' is +-1)
        y = self._crossbar_mm(self._pad_rows(x2d), w_step=w_step) * w_step
        if self.bias is not None:
            y = y + self.bias
        y = y.view(*lead, self.fan_out)
        ideal = F.linear(x, self.weight, self.bias) if a < 1.0 else None
        return self._mix(ideal, y)


class _ConvArrays(CrossbarLayer):
    """What a convolution's arrays compute, for :class:`CrossbarConv2d` and
    :class:`CrossbarConvTranspose2d`: the row groups' geometry (:class:`ConvRowGroups`) and the
    converted partial sums of every output position (:class:`_ConvConvertSum`)."""

    group_rows: torch.Tensor
    group_channels: torch.Tensor | None
    group_slots: torch.Tensor

    def _init_conv_arrays(self, in_channels: int, kernel_size: int, flip_taps: bool) -> None:
        """The groups of the fan-in rows ``(c, i, j)`` (as im2col orders them).  ``flip_taps``:
        the arrays read their input through the kernel turned by 180 degrees (a transposed
        convolution as a convolution of its zero-inserted input): weight slot ``(i, j)`` holds
        row ``(c, k-1-i, k-1-j)``, so every row stays in the group it is in."""
        geo = ConvRowGroups.of(in_channels, kernel_size, self.config.rows)
        rows = geo.rows.flip(2, 3).contiguous() if flip_taps else geo.rows
        self.register_buffer("group_rows", rows, persistent=False)
        self.register_buffer("group_channels", geo.channels, persistent=False)
        # 1 where a weight slot holds one of its group's rows: counts a group's driven rows
        self.register_buffer(
            "group_slots", (rows < self.fan_in).to(torch.float32), persistent=False
        )
        # the sense amplifiers' codes' buffers, reused from batch to batch (_CodesSpare)
        self._codes_spare = _CodesSpare()

    def _converted_conv(
        self,
        x: torch.Tensor,
        q: torch.Tensor,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: int = 1,
    ) -> torch.Tensor:
        """Every row group's partial sums of the convolution of ``x [B, C, H, W]`` (quantized
        weights ``q [N, K]``), each through its converter, slices and groups summed:
        ``[B, Nc, OH, OW]`` with the weight step and the bias applied (all ``n_cols`` columns).
        ``dilation`` > 1 (the CPU kernels only, :func:`_conv_kernels_take`): the convolution of
        ``x`` with ``dilation - 1`` zeros between its pixels, ``padding`` negative for a crop."""
        cfg = self.config
        cells = self._cell_levels(q, True)  # [K, S, Nc], detached
        n_slices, nc = cells.shape[1], cells.shape[2]
        rows = self.group_rows  # [G, span, k, k]
        # weight slots outside their group's rows read the appended zero row
        wcell = torch.cat([cells, cells.new_zeros(1, n_slices, nc)])[rows]  # [G, span, k, k, S, Nc]
        wq = self._column_weights(q).t()  # [K, Nc]: what the gradient reaches
        wqs = torch.cat([wq, wq.new_zeros(1, nc)])[rows]  # [G, span, k, k, Nc]
        # contiguous: the kernels read it in place (the tensor-op path gathers channels-last)
        xc = x.contiguous()
        act_w = self.group_slots.to(x.dtype).contiguous(memory_format=torch.channels_last)
        if not bool(self.calibrated):
            xcal, pcal = _dilated(xc.detach(), dilation, padding[0])
            self._calibrate_conv(
                _gather_channels(xcal, self.group_channels),
                _grouped_weight(wcell),
                act_w,
                stride,
                (pcal, pcal),
            )
        step = (self.adc_step.abs() + 1e-8).reshape(-1)
        if cfg.adc_kind == "sa":
            mode = 1 if cfg.differential else 2
            ref = self.sa_ref.reshape(-1) if self.sa_ref is not None else None
            qn, qp = 0, 0
        else:
            mode, ref = 0, None
            qn, qp = cfg.adc_range
        return _ConvConvertSum.apply(
            xc,
            self.group_channels,
            wcell,
            wqs,
            act_w,
            self.slice_weight,
            self.slice_grad,
            step,
            ref,
            self._w_step(),
            self.bias,
            mode,
            qn,
            qp,
            stride,
            padding,
            torch.is_grad_enabled(),
            self._codes_spare,
            dilation,
        )

    @torch.no_grad()
    def _calibrate_conv(
        self,
        xg: torch.Tensor,
        wconv: torch.Tensor,
        act_w: torch.Tensor,
        stride: tuple[int, ...],
        padding: tuple[int, ...],
    ) -> None:
        n_slices, nc = self.adc_step.shape
        g = self.row_groups
        sum_abs = torch.zeros(n_slices, nc, dtype=xg.dtype, device=xg.device)
        peak = torch.full((n_slices, nc), -math.inf, dtype=xg.dtype, device=xg.device)
        count = torch.zeros((), dtype=xg.dtype, device=xg.device)
        act = _conv_active(xg, act_w, stride, padding)
        for b0, b1, psum in _conv_partial_sums(xg, wconv, g, stride, padding):
            p4 = _rows_of(psum).view(-1, g, n_slices, nc)
            active = (_rows_of(act[b0:b1]) > 0).to(xg.dtype).view(-1, g, 1, 1)
            sum_abs += (p4.abs() * active).sum((0, 1))
            count += active.sum()
            peak = torch.maximum(peak, p4.amax((0, 1)))
        self._set_converter_ranges(sum_abs / count.clamp(min=1), peak)


class CrossbarConv2d(_ConvArrays, nn.Conv2d):
    """``nn.Conv2d`` on crossbars: fan-in C_in*k*k rows (ordered as im2col orders them), one
    output column per channel; each output position is one read of the arrays.  All row groups'
    partial sums come from one grouped convolution (:class:`ConvRowGroups`), not from im2col."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        config: CrossbarConfig | None = None,
        device_model: DeviceModel | None = None,
        bias: bool = True,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        k = in_channels * kernel_size * kernel_size
        self._init_crossbar(
            k, out_channels, config or CrossbarConfig(), device_model or DeviceModel()
        )
        self._init_conv_arrays(in_channels, kernel_size, flip_taps=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = float(self.hardware_awareness)
        ideal = F.conv2d(x, self.weight, self.bias, self.stride, self.padding) if a < 1.0 else None
        if a <= 0.0:
            assert ideal is not None
            return ideal
        self._ensure_weight_step()
        return self._mix(ideal, self._crossbar_conv(x))

    def _crossbar_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs ``[B, C, H, W]`` -> the chip's outputs ``[B, N, OH, OW]`` (weight step and
        bias applied)."""
        cfg = self.config
        q = self._quantized()
        k = self.kernel_size[0]
        stride = (int(self.stride[0]), int(self.stride[1]))
        padding = (int(self.padding[0]), int(self.padding[1]))
        if cfg.adc_kind == "digital":
            cells = self._cell_weights(q, True)  # [K, S, Nc]
            w = (cells * self.slice_weight.view(1, -1, 1)).sum(
                1
            )  # exact sums: slices combine first
            y = (
                F.conv2d(x, w.t().reshape(self.n_cols, -1, k, k), None, stride, padding)
                * self._w_step()
            )
            if self.bias is not None:
                bias = (
                    self.bias
                    if cfg.differential
                    else torch.cat([self.bias, self.bias.new_zeros(1)])
                )
                y = y + bias.view(1, -1, 1, 1)
            self.calibrated.fill_(True)
        else:
            y = self._converted_conv(x, q, stride, padding)
        if not cfg.differential:
            y = y[:, : self.fan_out] - y[:, self.fan_out :]
        return y


def zero_inserted(
    x: torch.Tensor, stride: int, kernel: int, padding: int
) -> tuple[torch.Tensor, int]:
    """A transposed convolution's input as the convolution that computes it reads it:
    ``conv_transpose2d(x, w, stride=s, padding=p) == conv2d(xd, w', padding=pd)`` with ``xd``
    the input with ``s - 1`` zeros between neighbouring pixels (``[B, C, (H-1)s+1, (W-1)s+1]``),
    ``w'`` the kernel turned by 180 degrees with its channel axes swapped and ``pd = k - 1 - p``;
    when ``p > k - 1`` the surplus is cropped from ``xd`` instead (``pd = 0``).  Returns
    ``(xd, pd)``; differentiable (the gradient of ``x`` is the gradient of ``xd`` at its pixels).
    The CPU kernels read ``x`` itself as that input (``dilation``), without building ``xd``."""
    return _dilated(x, stride, kernel - 1 - padding)


def _dilated(x: torch.Tensor, dilation: int, pad: int) -> tuple[torch.Tensor, int]:
    """``x`` with ``dilation - 1`` zeros between neighbouring pixels, and a negative ``pad``
    applied as a crop: ``(xd, max(pad, 0))``."""
    if dilation > 1:
        b, c, h, w = x.shape
        xd = x.new_zeros(b, c, (h - 1) * dilation + 1, (w - 1) * dilation + 1)
        xd[:, :, ::dilation, ::dilation] = x
    else:
        xd = x
    if pad < 0:
        xd = xd[:, :, -pad : xd.shape[2] + pad, -pad : xd.shape[3] + pad]
        pad = 0
    return xd, pad


class CrossbarConvTranspose2d(_ConvArrays, nn.ConvTranspose2d):
    """Transposed convolution (decoders of dense tasks) on crossbars, converted like every other
    crossbar layer.

    Mapped as the convolution that computes it (the zero-insertion mapping, the baseline of
    processing-in-memory transposed convolutions in LerGAN, Mao et al., MICRO 2018): the input
    with ``stride - 1`` zeros between its pixels (:func:`zero_inserted`), padded by
    ``kernel - 1 - padding``, read through the kernel turned by 180 degrees.  Fan-in C_in*k*k rows
    ``(c, i, j)`` in ``nn.ConvTranspose2d``'s weight order, one column per output channel; each
    output position is one read of the arrays, whose inserted zeros drive no row (the cost model
    prices the same reads: ``hardware.cost``, the input rate divided by ``stride**2``).  Every
    row group's partial sums go through their converters; idle groups are skipped.  ``digital``
    arrays sum exactly (one ``conv_transpose2d`` of the cells' weights).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        config: CrossbarConfig | None = None,
        device_model: DeviceModel | None = None,
        bias: bool = True,
    ) -> None:
        nn.ConvTranspose2d.__init__(
            self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        k = in_channels * kernel_size * kernel_size
        self._init_crossbar(
            k, out_channels, config or CrossbarConfig(), device_model or DeviceModel()
        )
        self._init_conv_arrays(in_channels, kernel_size, flip_taps=True)

    def _quantized(self) -> torch.Tensor:
        qn, qp = self.config.weight_range
        # ConvTranspose2d weights are [C_in, C_out, k, k]; as columns: [C_out, C_in*k*k]
        w = self.weight.transpose(0, 1).reshape(self.fan_out, -1)
        return quantize_weight(w, self._w_step(), qn, qp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a = float(self.hardware_awareness)
        stride = (int(self.stride[0]), int(self.stride[1]))
        padding = (int(self.padding[0]), int(self.padding[1]))
        ideal = F.conv_transpose2d(x, self.weight, self.bias, stride, padding) if a < 1.0 else None
        if a <= 0.0:
            assert ideal is not None
            return ideal
        self._ensure_weight_step()
        cfg = self.config
        k = self.kernel_size[0]
        q = self._quantized()
        if cfg.adc_kind == "digital":
            self.calibrated.fill_(True)
            cells = self._cell_weights(q, noise=True)  # [K, S, Nc]
            w = (cells * self.slice_weight.view(1, -1, 1)).sum(1).t()  # [Nc, K]
            if not cfg.differential:
                w = w[: self.fan_out] - w[self.fan_out :]
            w = (w * self._w_step()).view(self.fan_out, -1, k, k).transpose(0, 1)
            y = F.conv_transpose2d(x, w, self.bias, stride, padding)
        else:
            pad = k - 1 - padding[0]
            if _conv_kernels_take(x, (1, 1), (pad, pad)):
                # the kernels read x's pixels where the zero-inserted input holds them: the zeros
                # are neither built nor visited, and only x's own pixels get a gradient
                y = self._converted_conv(x, q, (1, 1), (pad, pad), dilation=stride[0])
            else:
                xd, pd = zero_inserted(x, stride[0], k, padding[0])
                y = self._converted_conv(xd, q, (1, 1), (pd, pd))
            if not cfg.differential:
                y = y[:, : self.fan_out] - y[:, self.fan_out :]
        return self._mix(ideal, y)


# the base's earlier name, for code written against it
_CrossbarMixin = CrossbarLayer
