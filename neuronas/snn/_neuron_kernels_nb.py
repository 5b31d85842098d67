"""The numba kernels behind :mod:`neuronas.snn._neuron_kernels`: a neuron layer's whole time
scan (charge, fire, reset for all T) in one pass, and its reverse scan for the backward.

Imported lazily (after :func:`neuronas.snn._kernels.available` has set numba's CPU tuning).
Module-level functions, so that numba's on-disk cache serves later processes.

Every value is float32 and every operation is the one SpikingJelly's torch path performs, in the
same order (no ``fastmath``: no contraction into FMAs, no reassociation), so that the spikes and
membranes are bit-identical to it.  The neurons of a layer are independent: the scans run over
blocks of ``BLOCK`` neurons (their membranes stay in L1 while the block steps through T), and
the inner loops run over the neurons of a block, where LLVM vectorises them.

``kind``: 0 LIF with ``decay_input`` (``h = v + (x - (v - v_reset)) / tau``), 1 LIF without it
(``h = v - (v - v_reset) / tau + x``), 2 IF (``h = v + x``), 3 LD-LIF
(``h = max(v - decay_step, v_rest) + x``).  Fire: ``s = (h - threshold >= 0)``.  Reset: hard
``v = s v_reset + (1 - s) h``, soft ``v = h - s threshold``.
"""

# ruff: noqa: E501

from __future__ import annotations

import numpy as np
from numba import njit, prange

BLOCK = 1024  # neurons per block: membrane, carry and one step's rows of x, h, s in L1/L2

LIF_DECAY_INPUT, LIF, IF, LD_LIF = 0, 1, 2, 3


@njit(cache=True, nogil=True, inline="always")
def _charge(kind, x, v, h, t, m0, m1, tau, decay, v_charge):  # pragma: no cover
    """h[t, m] for m in [m0, m1) from the membranes v[m] (one loop per kind: each vectorises)."""
    if kind == 0:
        for m in range(m0, m1):
            h[t, m] = v[m] + (x[t, m] - (v[m] - v_charge)) / tau
    elif kind == 1:
        for m in range(m0, m1):
            h[t, m] = v[m] - (v[m] - v_charge) / tau + x[t, m]
    elif kind == 2:
        for m in range(m0, m1):
            h[t, m] = v[m] + x[t, m]
    else:
        for m in range(m0, m1):
            u = v[m] - decay
            # torch.clamp(u, min=rest): NaN stays NaN
            h[t, m] = (v_charge if u < v_charge else u) + x[t, m]


@njit(cache=True, nogil=True, inline="always")
def _fire_reset(h, s, v, t, m0, m1, thr, v_reset, hard):  # pragma: no cover
    one = np.float32(1.0)
    zero = np.float32(0.0)
    if hard:
        for m in range(m0, m1):
            hv = h[t, m]
            sp = one if hv - thr >= zero else zero
            s[t, m] = sp
            v[m] = sp * v_reset + (one - sp) * hv
    else:
        for m in range(m0, m1):
            hv = h[t, m]
            sp = one if hv - thr >= zero else zero
            s[t, m] = sp
            v[m] = hv - sp * thr


@njit(cache=True, nogil=True, inline="always")
def _forward_block(
    x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v, m0, m1
):  # pragma: no cover
    for m in range(m0, m1):
        v[m] = v0[m]
    for t in range(x.shape[0]):
        _charge(kind, x, v, h, t, m0, m1, tau, decay, v_charge)
        _fire_reset(h, s, v, t, m0, m1, thr, v_reset, hard)


@njit(cache=True, nogil=True)
def forward(x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v):  # pragma: no cover
    """Spikes ``s[T, M]``, charged membranes ``h[T, M]`` (what the backward needs) and the last
    membrane ``v[M]`` from the inputs ``x[T, M]`` and the initial membrane ``v0[M]``."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    n = x.shape[1]
    for m0 in range(0, n, BLOCK):
        _forward_block(
            x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v, m0, min(n, m0 + BLOCK)
        )


@njit(parallel=True, cache=True, nogil=True)
def forward_parallel(
    x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v
):  # pragma: no cover
    """:func:`forward` with the blocks spread over numba's threads."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    n = x.shape[1]
    n_blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(n_blocks):
        m0 = b * BLOCK
        _forward_block(
            x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v, m0, min(n, m0 + BLOCK)
        )


@njit(cache=True, nogil=True, inline="always")
def _surrogate(hv, thr, sg_scale, sg_height):  # pragma: no cover
    """SpikingJelly's ATan surrogate gradient at h: alpha/2 / (1 + (pi/2 alpha (h - thr))^2)."""
    one = np.float32(1.0)
    z = (hv - thr) * sg_scale
    return (one / (one + z * z)) * sg_height


@njit(cache=True, nogil=True, inline="always")
def _grad_h(
    gs, h, carry, gh, t, m0, m1, thr, v_reset, hard, detach, sg_scale, sg_height
):  # pragma: no cover
    """gh[t, m] = the gradient reaching h[t, m]: through the spike (surrogate) and through the
    reset into the next membrane (``carry``).  One loop per reset variant: each vectorises."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    if hard and not detach:
        for m in range(m0, m1):
            hv = h[t, m]
            sg = _surrogate(hv, thr, sg_scale, sg_height)
            rg = (one - (one if hv - thr >= zero else zero)) + (v_reset - hv) * sg
            gh[t, m] = gs[t, m] * sg + carry[m] * rg
    elif hard:
        for m in range(m0, m1):
            hv = h[t, m]
            sg = _surrogate(hv, thr, sg_scale, sg_height)
            rg = one - (one if hv - thr >= zero else zero)
            gh[t, m] = gs[t, m] * sg + carry[m] * rg
    elif not detach:
        for m in range(m0, m1):
            hv = h[t, m]
            sg = _surrogate(hv, thr, sg_scale, sg_height)
            gh[t, m] = gs[t, m] * sg + carry[m] * (one - thr * sg)
    else:
        for m in range(m0, m1):
            sg = _surrogate(h[t, m], thr, sg_scale, sg_height)
            gh[t, m] = gs[t, m] * sg + carry[m]


@njit(cache=True, nogil=True, inline="always")
def _grad_charge(
    kind, h, v0, gx, carry, t, m0, m1, tau, decay, v_charge, thr, v_reset, hard
):  # pragma: no cover
    """From gh (in ``gx[t]``) through the charge: ``gx[t] = gh dh/dx``, ``carry = gh dh/dv[t-1]``."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    if kind == 0:
        for m in range(m0, m1):
            gh = gx[t, m]
            gx[t, m] = gh / tau
            carry[m] = gh - gh / tau
    elif kind == 1:
        for m in range(m0, m1):
            carry[m] = gx[t, m] - gx[t, m] / tau
    elif kind == 2:
        for m in range(m0, m1):
            carry[m] = gx[t, m]
    elif t == 0:  # LD-LIF: torch.clamp's gradient passes where its input v - decay >= rest
        for m in range(m0, m1):
            carry[m] = gx[t, m] if v0[m] - decay >= v_charge else zero
    else:  # the membrane before step t, recomputed from h[t - 1] as the forward reset it
        for m in range(m0, m1):
            hp = h[t - 1, m]
            spp = one if hp - thr >= zero else zero
            vp = spp * v_reset + (one - spp) * hp if hard else hp - spp * thr
            carry[m] = gx[t, m] if vp - decay >= v_charge else zero


@njit(cache=True, nogil=True, inline="always")
def _backward_block(
    gs,
    h,
    v0,
    kind,
    tau,
    decay,
    v_charge,
    thr,
    v_reset,
    hard,
    detach,
    sg_scale,
    sg_height,
    gx,
    carry,
    m0,
    m1,
):  # pragma: no cover
    """Reverse scan over T for the neurons [m0, m1); ``carry[m]`` enters as the gradient of the
    last membrane and leaves as the gradient of the initial one."""
    for t in range(h.shape[0] - 1, -1, -1):
        _grad_h(gs, h, carry, gx, t, m0, m1, thr, v_reset, hard, detach, sg_scale, sg_height)
        _grad_charge(kind, h, v0, gx, carry, t, m0, m1, tau, decay, v_charge, thr, v_reset, hard)


@njit(cache=True, nogil=True)
def backward(
    gs, h, v0, kind, tau, decay, v_charge, thr, v_reset, hard, detach, alpha, gx, carry
):  # pragma: no cover
    """Input gradient ``gx[T, M]`` from the spikes' gradient ``gs[T, M]``; ``carry[M]``: the last
    membrane's gradient in, the initial membrane's out."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    sg_scale = np.float32(np.pi / 2 * alpha)
    sg_height = np.float32(alpha / 2)
    n = h.shape[1]
    for m0 in range(0, n, BLOCK):
        _backward_block(
            gs, h, v0, kind, tau, decay, v_charge, thr, v_reset, hard, detach, sg_scale, sg_height,
            gx, carry, m0, min(n, m0 + BLOCK),
        )  # fmt: skip


@njit(parallel=True, cache=True, nogil=True)
def backward_parallel(
    gs, h, v0, kind, tau, decay, v_charge, thr, v_reset, hard, detach, alpha, gx, carry
):  # pragma: no cover
    """:func:`backward` with the blocks spread over numba's threads."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    sg_scale = np.float32(np.pi / 2 * alpha)
    sg_height = np.float32(alpha / 2)
    n = h.shape[1]
    n_blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(n_blocks):
        m0 = b * BLOCK
        _backward_block(
            gs, h, v0, kind, tau, decay, v_charge, thr, v_reset, hard, detach, sg_scale, sg_height,
            gx, carry, m0, min(n, m0 + BLOCK),
        )  # fmt: skip
