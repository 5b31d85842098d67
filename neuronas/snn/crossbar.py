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

Everything is tensor ops: the row groups are a batch dimension of one ``matmul`` (timesteps and,
for convolutions, output positions are folded into the row dimension of that matmul).

Gradients: rounding and the comparator are straight-through (identity inside the converter's
range, zero outside: the hardtanh STE of binarized networks), so a 1-bit partial sum still passes
a gradient to the weights and inputs of its group; steps and references are learned (LSQ,
Esser et al. 2020).  Programming noise is drawn afresh at every training forward (noise
injection) and fixed per chip instance in evaluation (:meth:`resample_chip_instance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuronas.spec import ResolvedLayer

__all__ = [
    "CrossbarConfig",
    "CrossbarConv2d",
    "CrossbarConvTranspose2d",
    "CrossbarLinear",
    "DeviceModel",
    "adc_quantize",
    "quantize_weight",
    "round_ste",
    "sense_amp",
]


# --------------------------------------------------------------------------------------------
# pure quantizers (golden-value tested)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward."""
    return x + (torch.round(x) - x).detach()


def quantize_weight(w: torch.Tensor, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    """Integer weight levels ``round(clamp(w / step, qn, qp))`` (LSQ; STE through the rounding)."""
    return round_ste(torch.clamp(w / step, qn, qp))


def adc_quantize(p: torch.Tensor, step: torch.Tensor, qn: int, qp: int) -> torch.Tensor:
    """A b-bit ADC with a learned step: ``step * round(clamp(p / step, qn, qp))``."""
    return step * round_ste(torch.clamp(p / step, qn, qp))


def sense_amp(p: torch.Tensor, step: torch.Tensor, ref: torch.Tensor, bipolar: bool = True) -> torch.Tensor:
    """A 1-bit sense amplifier: ``step * sign(p - ref)`` (bipolar, differential columns) or
    ``step * H(p - ref)`` (unipolar).

    Backward: straight-through inside the comparator's window ``|p - ref| <= step`` (bipolar) or
    ``|p - ref| <= step / 2`` (unipolar), zero outside.
    """
    u = (p - ref) / step
    if bipolar:
        hard = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
        soft = u.clamp(-1.0, 1.0)
    else:
        hard = (u >= 0).to(u.dtype)
        soft = (u + 0.5).clamp(0.0, 1.0)
    return step * (soft + (hard - soft).detach())


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
            self.program_sigma > 0 or self.read_noise_sigma > 0 or self.stuck_off_rate > 0 or self.stuck_on_rate > 0
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
            weight_bits=layer.weight_bits, adc_bits=layer.adc_bits, adc_kind=layer.adc_kind,
            rows=layer.rows, bits_per_cell=layer.bits_per_cell, signed_scheme=layer.signed_scheme,
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


class _ConvertSum(torch.autograd.Function):
    """``Y[m, k] = step[k] * sum_g active[g, m] * C((x_g @ w_g)[m, k])``, fused.

    C is the converter code: mode 0 ``round(clamp(p / step, qn, qp))`` (b-bit ADC), mode 1
    ``sign(p - ref)`` (bipolar sense amplifier), mode 2 ``H(p - ref)`` (unipolar).  Written as one
    autograd function so the ``[G, M, K]`` partial sums are materialised once and walked a few
    times (this is the inner loop of every hardware-aware training step); the backward is the
    straight-through estimator of :func:`adc_quantize` / :func:`sense_amp`, with LSQ gradients for
    the step and the reference.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, xg: torch.Tensor, wg: torch.Tensor, step: torch.Tensor, ref: torch.Tensor | None,
        active: torch.Tensor | None, mode: int, qn: int, qp: int,
    ) -> torch.Tensor:
        # Memory traffic over the [G, M, K] partial sums is what costs here, so every pass is
        # in place or on 1-byte masks.
        p = torch.matmul(xg, wg)  # [G, M, K]
        if mode == 0:
            v = p.div_(step)  # partial sums in ADC codes; an idle group gives code 0 by itself
            total = torch.clamp(v, qn, qp).round_().sum(0)
            saved = v
        else:
            assert ref is not None and active is not None
            # a tie (p == ref) reads as 1, as in sense_amp: shift by a hair so that sign() never
            # sees an exact 0 (integer partial sums meet an initial ref of 0 often)
            tie = 1e-4 * step
            u = p.sub_(ref - tie)
            signs = torch.sign(u).sum(0)  # [M, K], +-1 per group
            # an idle group's sum is exactly 0 (no row driven), so its comparator would read
            # sign(tie - ref): take those out instead of masking the [G, M, K] tensor
            n_act = active.sum(0).unsqueeze(-1)  # [M, 1]
            n_idle = active.shape[0] - n_act
            signs = signs - n_idle * torch.sign(tie - ref)
            total = signs if mode == 1 else 0.5 * (signs + n_act)
            saved = u
        ctx.save_for_backward(xg, wg, step, saved, active, total)
        ctx.mode, ctx.qn, ctx.qp = mode, qn, qp
        ctx.idle_u = None if ref is None else (tie - ref).detach()
        return total * step

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        xg, wg, step, saved, active, total = ctx.saved_tensors
        mode = ctx.mode
        if mode == 0:
            v = saved
            centre, half = 0.5 * (ctx.qn + ctx.qp), 0.5 * (ctx.qp - ctx.qn)
            grad_p = (v - centre).abs_().le_(half).mul_(grad.unsqueeze(0))  # STE inside the range
            # LSQ: d(step * round(clamp(p / step))) / d step = code - (p / step) * inside
            grad_step = (grad * total).sum(0) - (grad_p * v).sum((0, 1))
            grad_ref = None
        else:
            u = saved
            window = step if mode == 1 else 0.5 * step
            grad_p = u.abs().le_(window).mul_(grad.unsqueeze(0))  # STE inside the comparator window
            # idle groups (u = -ref exactly) are in grad_p too: take their share out of the
            # step / reference gradients analytically (their weight gradient is 0: no row driven)
            n_idle = active.shape[0] - active.sum(0)  # [M]
            idle_grad = (n_idle.unsqueeze(-1) * grad).sum(0)  # [K]
            u_idle = ctx.idle_u
            idle_in = (u_idle.abs() <= window).to(u.dtype) * idle_grad
            grad_step = (grad * total).sum(0) - ((grad_p * u).sum((0, 1)) - idle_in * u_idle) / step
            grad_ref = -(grad_p.sum((0, 1)) - idle_in)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.matmul(grad_p, wg.transpose(1, 2))  # [G, M, R]
            if active is not None:
                grad_x.mul_(active.unsqueeze(-1))  # a skipped group passes nothing back
        grad_w = torch.matmul(xg.transpose(1, 2), grad_p) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, grad_step, grad_ref, None, None, None, None


# --------------------------------------------------------------------------------------------
# the shared crossbar machinery


class _CrossbarMixin(nn.Module):
    """Hardware path shared by the crossbar layers (weights viewed as ``[N, K]``)."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def _init_crossbar(self, fan_in: int, fan_out: int, config: CrossbarConfig, device: DeviceModel) -> None:
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
        self.register_buffer("slice_weight", torch.tensor([2.0 ** (i * bpc) for i in range(s)]), persistent=False)
        # the gradient of w reaches every slice, each scaled so that the slices sum back to w
        self.register_buffer("slice_grad", torch.tensor([2.0 ** (-i * bpc) / s for i in range(s)]), persistent=False)
        self.register_buffer("_prog_eps", torch.empty(0), persistent=False)
        self.register_buffer("_fault_u", torch.empty(0), persistent=False)
        self.instance_seed: int | None = None

    # -- chip instances --------------------------------------------------------------------

    def _cell_shape(self) -> tuple[int, int, int, int]:
        pairs = 2 if self.config.differential else 1
        return (self.config.slices, pairs, self.n_cols, self.fan_in)

    def resample_chip_instance(self, seed: int) -> None:
        """Draw one chip instance: programming variation and stuck cells, fixed until resampled."""
        gen = torch.Generator().manual_seed(int(seed))
        shape = self._cell_shape()
        dev = self.weight.device
        self._prog_eps = torch.randn(shape, generator=gen).to(dev)
        self._fault_u = torch.rand(shape, generator=gen).to(dev)
        self.instance_seed = int(seed)

    # -- weights on cells --------------------------------------------------------------------

    def _levels(self, q: torch.Tensor) -> torch.Tensor:
        """Integer conductance levels ``[S, P, Nc, K]`` of the cells holding integer weights q."""
        cfg = self.config
        base = 2**cfg.bits_per_cell
        div = (base ** torch.arange(cfg.slices, device=q.device, dtype=q.dtype)).view(-1, 1, 1)
        qd = q.detach()
        if cfg.differential:
            mag = torch.stack([qd.clamp(min=0), (-qd).clamp(min=0)])  # [2, N, K]
            return torch.floor(mag.unsqueeze(0) / div.unsqueeze(1)) % base
        b = cfg.weight_bits
        offset = 2 ** (b - 1)
        u = torch.cat([qd + offset, torch.full_like(qd[:1], offset)])  # [N + 1, K]: + reference column
        return (torch.floor(u.unsqueeze(0) / div) % base).unsqueeze(1)

    def _cell_weights(self, q: torch.Tensor, noise: bool) -> torch.Tensor:
        """Signed per-slice cell weights ``[S, Nc, K]`` (level units), noisy when asked."""
        cfg, dev = self.config, self.device_model
        ideal = not (noise and (dev.noisy or math.isfinite(dev.on_off_ratio)))
        if ideal and cfg.differential and cfg.slices == 1:
            return q.unsqueeze(0)  # one signed cell pair per weight, exact: the cells are q
        levels = self._levels(q)
        if noise and (dev.noisy or math.isfinite(dev.on_off_ratio)):
            lmax = 2**cfg.bits_per_cell - 1
            g_off = lmax / dev.on_off_ratio if math.isfinite(dev.on_off_ratio) else 0.0
            g = levels + g_off
            if not self.training and self._prog_eps.shape != g.shape:
                self.resample_chip_instance(0 if self.instance_seed is None else self.instance_seed)
            if dev.program_sigma > 0:
                eps = torch.randn_like(g) if self.training else self._prog_eps
                g = g * (1.0 + dev.program_sigma * eps)
            if dev.stuck_off_rate > 0 or dev.stuck_on_rate > 0:
                u = torch.rand_like(g) if self.training else self._fault_u
                g = torch.where(u < dev.stuck_off_rate, torch.full_like(g, g_off), g)
                stuck_on = (u >= dev.stuck_off_rate) & (u < dev.stuck_off_rate + dev.stuck_on_rate)
                g = torch.where(stuck_on, torch.full_like(g, lmax + g_off), g)
            if dev.read_noise_sigma > 0:
                g = g * (1.0 + dev.read_noise_sigma * torch.randn_like(g))
            levels = g
        cells = levels[:, 0] - levels[:, 1] if cfg.differential else levels[:, 0]
        # straight-through: the cells carry q's gradient, split over the slices
        qg = q - q.detach()
        if not cfg.differential:
            qg = torch.cat([qg, torch.zeros_like(qg[:1])])
        return cells.detach() + qg.unsqueeze(0) * self.slice_grad.view(-1, 1, 1)

    def _quantized(self) -> torch.Tensor:
        qn, qp = self.config.weight_range
        return quantize_weight(self.weight.reshape(self.fan_out, -1), self._w_step(), qn, qp)

    def _w_step(self) -> torch.Tensor:
        return self.w_step.abs() + 1e-12

    # -- partial sums through the converters ------------------------------------------------

    def _group(self, x2d: torch.Tensor) -> torch.Tensor:
        """``[M, K]`` -> ``[G, M, R]`` (zero rows pad the last group)."""
        r, g = self.config.rows, self.row_groups
        if g * r != self.fan_in:
            x2d = F.pad(x2d, (0, g * r - self.fan_in))
        return x2d.reshape(x2d.shape[0], g, r).transpose(0, 1)

    def _crossbar_mm(self, xg: torch.Tensor, noise: bool = True) -> torch.Tensor:
        """Grouped inputs ``[G, M, R]`` -> integer-unit outputs ``[M, N]`` (before ``w_step``)."""
        cfg = self.config
        q = self._quantized()
        cells = self._cell_weights(q, noise)  # [S, Nc, K]
        s, nc = cells.shape[0], cells.shape[1]
        g, r = self.row_groups, cfg.rows
        if cfg.adc_kind == "digital":
            w = (cells * self.slice_weight.view(-1, 1, 1)).sum(0)  # exact sums: slices combine first
            x2d = xg.transpose(0, 1).reshape(xg.shape[1], -1)[:, : self.fan_in]
            y = x2d @ w.t()
            self.calibrated.fill_(True)
        else:
            if g * r != self.fan_in:
                cells = F.pad(cells, (0, g * r - self.fan_in))
            wg = cells.reshape(s * nc, g, r).permute(1, 2, 0)  # [G, R, S*Nc]
            if not bool(self.calibrated):
                with torch.no_grad():
                    self._calibrate(torch.matmul(xg, wg).view(g, xg.shape[1], s, nc), xg)
            step = (self.adc_step.abs() + 1e-8).reshape(-1)
            if cfg.adc_kind == "sa":
                active = (xg.abs().amax(-1) > 0).to(xg.dtype)  # event-driven: idle groups are skipped
                mode = 1 if cfg.differential else 2
                ref = self.sa_ref.reshape(-1)
                qn, qp = 0, 0
            else:
                active, mode, ref = None, 0, None
                qn, qp = cfg.adc_range
            codes = _ConvertSum.apply(xg, wg, step, ref, active, mode, qn, qp)  # [M, S*Nc]
            y = (codes.view(-1, s, nc) * self.slice_weight.view(1, -1, 1)).sum(1)  # [M, Nc]
        if not cfg.differential:
            y = y[:, : self.fan_out] - y[:, self.fan_out :]
        return y

    @torch.no_grad()
    def _calibrate(self, psum: torch.Tensor, xg: torch.Tensor) -> None:
        """Initial converter steps from the partial sums of active groups (LSQ initialisation)."""
        active = (xg.abs().amax(-1) > 0).view(xg.shape[0], -1, 1, 1).expand_as(psum)
        count = active.sum((0, 1)).clamp(min=1)
        mean_abs = (psum.abs() * active).sum((0, 1)) / count  # [S, Nc]
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
            peak = psum.amax((0, 1)).clamp(min=1e-3)
            self.adc_step.copy_(peak / qp)
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


class CrossbarLinear(_CrossbarMixin, nn.Linear):
    """``nn.Linear`` on crossbars (see the module docstring); input ``[M, K]``."""

    def __init__(
        self, in_features: int, out_features: int, config: CrossbarConfig | None = None,
        device_model: DeviceModel | None = None, bias: bool = True,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_crossbar(in_features, out_features, config or CrossbarConfig(), device_model or DeviceModel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = float(self.hardware_awareness)
        if a <= 0.0:
            return F.linear(x, self.weight, self.bias)
        self._ensure_weight_step()
        lead = x.shape[:-1]
        x2d = x.reshape(-1, self.fan_in)
        y = self._crossbar_mm(self._group(x2d)) * self._w_step()
        if self.bias is not None:
            y = y + self.bias
        y = y.view(*lead, self.fan_out)
        ideal = F.linear(x, self.weight, self.bias) if a < 1.0 else None
        return self._mix(ideal, y)


class CrossbarConv2d(_CrossbarMixin, nn.Conv2d):
    """``nn.Conv2d`` on crossbars: fan-in C_in*k*k rows, one output column per channel; each
    output position is one read of the arrays (im2col)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        config: CrossbarConfig | None = None, device_model: DeviceModel | None = None, bias: bool = True,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        k = in_channels * kernel_size * kernel_size
        self._init_crossbar(k, out_channels, config or CrossbarConfig(), device_model or DeviceModel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = float(self.hardware_awareness)
        ideal = F.conv2d(x, self.weight, self.bias, self.stride, self.padding) if a < 1.0 else None
        if a <= 0.0:
            assert ideal is not None
            return ideal
        self._ensure_weight_step()
        b, _, h, w = x.shape
        kh = self.kernel_size[0]
        sh, ph = self.stride[0], self.padding[0]
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * ph - kh) // sh + 1
        cols = F.unfold(x, kh, padding=ph, stride=sh)  # [B, K, P]
        p = cols.shape[-1]
        g, r = self.row_groups, self.config.rows
        if g * r != self.fan_in:
            cols = F.pad(cols, (0, 0, 0, g * r - self.fan_in))
        xg = cols.view(b, g, r, p).permute(1, 0, 3, 2).reshape(g, b * p, r)
        y = self._crossbar_mm(xg) * self._w_step()  # [B*P, N]
        if self.bias is not None:
            y = y + self.bias
        y = y.view(b, p, self.fan_out).transpose(1, 2).reshape(b, self.fan_out, oh, ow)
        return self._mix(ideal, y)


class CrossbarConvTranspose2d(_CrossbarMixin, nn.ConvTranspose2d):
    """Transposed convolution (decoders of dense tasks) with quantized, noisy cell weights.

    The per-row-group conversion is not modelled here: the weights pass through the cells
    (quantization, slices, device noise) and the sums are exact, as on a digital CIM macro.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
        config: CrossbarConfig | None = None, device_model: DeviceModel | None = None, bias: bool = True,
    ) -> None:
        nn.ConvTranspose2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        k = in_channels * kernel_size * kernel_size
        self._init_crossbar(k, out_channels, config or CrossbarConfig(), device_model or DeviceModel())

    def _quantized(self) -> torch.Tensor:
        qn, qp = self.config.weight_range
        # ConvTranspose2d weights are [C_in, C_out, k, k]; as columns: [C_out, C_in*k*k]
        w = self.weight.transpose(0, 1).reshape(self.fan_out, -1)
        return quantize_weight(w, self._w_step(), qn, qp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a = float(self.hardware_awareness)
        ideal = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding) if a < 1.0 else None
        if a <= 0.0:
            assert ideal is not None
            return ideal
        self._ensure_weight_step()
        self.calibrated.fill_(True)
        cells = self._cell_weights(self._quantized(), noise=True)
        w = (cells * self.slice_weight.view(-1, 1, 1)).sum(0)
        if not self.config.differential:
            w = w[: self.fan_out] - w[self.fan_out :]
        k = self.kernel_size[0]
        w = (w * self._w_step()).view(self.fan_out, -1, k, k).transpose(0, 1)
        y = F.conv_transpose2d(x, w, self.bias, self.stride, self.padding)
        return self._mix(ideal, y)
