"""The numba kernels behind :mod:`neuronas.snn._neuron_kernels`: a neuron layer's whole time
scan (charge, fire, reset for all T) in one pass, and its reverse scan for the backward.

Imported lazily (after :func:`neuronas.snn._kernels.available` has set numba's CPU tuning).
Module-level functions, so that numba's on-disk cache serves later processes.

Every value is float32 and every operation is the one SpikingJelly's torch path performs, in the
same order (no ``fastmath``: no contraction into FMAs, no reassociation), so that the spikes and
membranes are bit-identical to it.  The neurons of a layer are independent: the scans run over
blocks of ``BLOCK`` neurons (their membranes stay in L1 while the block steps through T), and
the inner loops run over the neurons of a block, on 1-D row views, where LLVM vectorises them.
The loops are branch-free: every kind's charge (and every reset's gradient) is computed and the
layer's is selected, so one compiled loop serves all variants and vectorises (a branch in the
loop cost 2-5x, 2-D indexing ~10x, and a variant per compiled copy minutes of compile time,
measured; the arithmetic is cheap next to the memory traffic).  ``error_model="numpy"``: a
division is IEEE (as in torch), without Python's zero check, which kept the backward's loops
scalar (~10x).

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


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _fwd_block(
    x, v0, kind, hard, tau, decay, v_charge, thr, v_reset, s, h, v, m0, m1
):  # pragma: no cover
    one = np.float32(1.0)
    zero = np.float32(0.0)
    k0, k1, k2 = kind == 0, kind == 1, kind == 2
    vb = v[m0:m1]
    v0b = v0[m0:m1]
    n = m1 - m0
    for i in range(n):
        vb[i] = v0b[i]
    for t in range(x.shape[0]):
        xr = x[t, m0:m1]
        hr = h[t, m0:m1]
        sr = s[t, m0:m1]
        for i in range(n):
            vv = vb[i]
            xv = xr[i]
            d = vv - v_charge
            h0 = vv + (xv - d) / tau
            h1 = vv - d / tau + xv
            h2 = vv + xv
            u = vv - decay
            h3 = (v_charge if u < v_charge else u) + xv  # torch.clamp(min): NaN stays NaN
            hv = h0 if k0 else (h1 if k1 else (h2 if k2 else h3))
            hr[i] = hv
            sp = one if hv - thr >= zero else zero
            sr[i] = sp
            vh = sp * v_reset + (one - sp) * hv
            vs = hv - sp * thr
            vb[i] = vh if hard else vs


@njit(cache=True, nogil=True, error_model="numpy")
def forward(x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v):  # pragma: no cover
    """Spikes ``s[T, M]``, charged membranes ``h[T, M]`` (what the backward needs) and the last
    membrane ``v[M]`` from the inputs ``x[T, M]`` and the initial membrane ``v0[M]``."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    n = x.shape[1]
    for m0 in range(0, n, BLOCK):
        m1 = min(n, m0 + BLOCK)
        _fwd_block(x, v0, kind, hard, tau, decay, v_charge, thr, v_reset, s, h, v, m0, m1)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def forward_parallel(
    x, v0, kind, tau, decay, v_charge, thr, v_reset, hard, s, h, v
):  # pragma: no cover
    """:func:`forward` with the blocks spread over numba's threads."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    n = x.shape[1]
    for b in prange((n + BLOCK - 1) // BLOCK):
        m0 = b * BLOCK
        m1 = min(n, m0 + BLOCK)
        _fwd_block(x, v0, kind, hard, tau, decay, v_charge, thr, v_reset, s, h, v, m0, m1)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bwd_row(
    gsr,
    hr,
    hp,
    v0b,
    gxr,
    cb,
    n,
    first,
    kind,
    hard,
    detach,
    tau,
    decay,
    v_charge,
    thr,
    v_reset,
    sg_scale,
    sg_height,
):  # pragma: no cover
    """One timestep of the reverse scan for a block's row: ``gxr`` gets the input's gradient and
    ``cb`` (the next membrane's gradient on entry) the previous membrane's.  ``hp``: the previous
    step's charged membranes (LD-LIF recomputes its membrane from them; ``v0b`` when ``first``)."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    # two loops of few arrays each: with more, LLVM's runtime alias checks can exceed its limit
    # and leave the loop scalar
    for i in range(n):  # the gradient reaching h: through the spike and the reset
        # in the order autograd sums SpikingJelly's graph (bit-identical gradients): the spike's
        # gradient is its output's plus the reset's, then through the surrogate, then h's
        # direct share of the reset
        hv = hr[i]
        u = hv - thr
        z = u * sg_scale
        sg = (one / (one + z * z)) * sg_height  # ATan: alpha/2 / (1 + z^2)
        cv = cb[i]
        gsv = gsr[i]
        g_hard = (gsv + -(cv * hv)) + cv * v_reset  # v = s v_reset + (1 - s) h
        g_soft = gsv + (-cv) * thr  # v = h - s thr
        g_spike = gsv if detach else (g_hard if hard else g_soft)
        direct = cv * (one - (one if u >= zero else zero)) if hard else cv
        gxr[i] = direct + g_spike * sg
    # through the charge: dh/dx and dh/dv[t-1]
    k0, k3 = kind == 0, kind == 3
    leak = kind == 0 or kind == 1
    for i in range(n):
        gh = gxr[i]
        g_tau = gh / tau
        gxr[i] = g_tau if k0 else gh
        # LD-LIF: torch.clamp's gradient passes where its input v - decay >= min; v: the
        # membrane before this step (v0, or reset from hp as the forward reset it)
        hpv = hp[i]
        spp = one if hpv - thr >= zero else zero
        vp_h = spp * v_reset + (one - spp) * hpv
        vp_s = hpv - spp * thr
        vp = v0b[i] if first else (vp_h if hard else vp_s)
        g_ld = gh if vp - decay >= v_charge else zero
        cb[i] = (gh - g_tau) if leak else (g_ld if k3 else gh)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _bwd_block(
    gs,
    h,
    v0,
    kind,
    hard,
    detach,
    tau,
    decay,
    v_charge,
    thr,
    v_reset,
    sg_scale,
    sg_height,
    gx,
    carry,
    m0,
    m1,
):  # pragma: no cover
    cb = carry[m0:m1]
    v0b = v0[m0:m1]
    n = m1 - m0
    for t in range(h.shape[0] - 1, 0, -1):
        _bwd_row(
            gs[t, m0:m1], h[t, m0:m1], h[t - 1, m0:m1], v0b, gx[t, m0:m1], cb, n, False,
            kind, hard, detach, tau, decay, v_charge, thr, v_reset, sg_scale, sg_height,
        )  # fmt: skip
    _bwd_row(
        gs[0, m0:m1], h[0, m0:m1], h[0, m0:m1], v0b, gx[0, m0:m1], cb, n, True,
        kind, hard, detach, tau, decay, v_charge, thr, v_reset, sg_scale, sg_height,
    )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
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
        m1 = min(n, m0 + BLOCK)
        _bwd_block(
            gs,
            h,
            v0,
            kind,
            hard,
            detach,
            tau,
            decay,
            v_charge,
            thr,
            v_reset,
            sg_scale,
            sg_height,
            gx,
            carry,
            m0,
            m1,
        )


@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def backward_parallel(
    gs, h, v0, kind, tau, decay, v_charge, thr, v_reset, hard, detach, alpha, gx, carry
):  # pragma: no cover
    """:func:`backward` with the blocks spread over numba's threads."""
    tau, decay, v_charge = np.float32(tau), np.float32(decay), np.float32(v_charge)
    thr, v_reset = np.float32(thr), np.float32(v_reset)
    sg_scale = np.float32(np.pi / 2 * alpha)
    sg_height = np.float32(alpha / 2)
    n = h.shape[1]
    for b in prange((n + BLOCK - 1) // BLOCK):
        m0 = b * BLOCK
        m1 = min(n, m0 + BLOCK)
        _bwd_block(
            gs,
            h,
            v0,
            kind,
            hard,
            detach,
            tau,
            decay,
            v_charge,
            thr,
            v_reset,
            sg_scale,
            sg_height,
            gx,
            carry,
            m0,
            m1,
        )
