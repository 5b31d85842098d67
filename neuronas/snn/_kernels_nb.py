"""The numba kernels behind :mod:`neuronas.snn._kernels` (imported lazily: importing numba costs
~0.3 s, and its CPU tuning is set before the import).  Module-level functions, so that numba's
on-disk cache (next to this file, or ``NUMBA_CACHE_DIR``) serves later processes."""

# ruff: noqa: E501

from __future__ import annotations

import numpy as np
from numba import njit, prange

# reassociation lets LLVM vectorise the reductions; no 'nnan'/'ninf': NaNs must still surface
# (the trainer detects divergence from them)
FM = {"reassoc", "contract"}

# fewer partial sums per output position than this (K = S*Nc: 8 in a two-channel readout with
# four slices), and at least this share of the output positions receiving a gradient, the conv
# backward runs the converters position-minor (sconv_bwd_items_minor), each a vector loop over
# all positions; else position by position, a vector loop over the partial sums, skipping the
# positions without gradient.  Measured on a flow readout (K = 8: ~1.5x faster with every
# position's gradient, even at a quarter of the positions, slower at a fifth) and on the
# position-minor variant of every conv layer (K = 64, 128: slower, on digits-cnn 2.24x plain
# against 2.05x): benchmarks/RESULTS.md, "Few-channel conv layers: the backward position-minor".
FEW_SUMS = 16
FEW_SUMS_LIVE = 0.25


@njit(cache=True, fastmath=FM, nogil=True)
def read_array(x, w, g, m, idx, val, acc):  # pragma: no cover
    """acc[:] = the partial sums of group g for input row m (inputs ``x[m, g*R:(g+1)*R]``),
    visiting only the driven rows; returns how many rows were driven.

    Four driven rows per pass over the columns: one load and one store of the accumulator
    per four multiply-adds.  Reading the driven rows' conductances (from L2) bounds it: eight
    rows a pass, the same bits, measured no faster (benchmarks/RESULTS.md)."""
    n = 0
    n_rows = w.shape[1]
    base = g * n_rows
    for r in range(n_rows):  # branch-free compaction: spikes are too irregular to predict
        xv = x[m, base + r]
        idx[n] = r
        val[n] = xv
        n += 1 if xv != 0.0 else 0
    # explicit loops throughout: numba 0.68's parfor pass dropped a slice assignment to an
    # array view inside prange
    for k in range(acc.shape[0]):
        acc[k] = 0.0
    i = 0
    while i + 4 <= n:
        w0, w1, w2, w3 = w[g, idx[i]], w[g, idx[i + 1]], w[g, idx[i + 2]], w[g, idx[i + 3]]
        v0, v1, v2, v3 = val[i], val[i + 1], val[i + 2], val[i + 3]
        for k in range(acc.shape[0]):
            acc[k] += v0 * w0[k] + v1 * w1[k] + v2 * w2[k] + v3 * w3[k]
        i += 4
    while i < n:
        wr, v = w[g, idx[i]], val[i]
        for k in range(acc.shape[0]):
            acc[k] += v * wr[k]
        i += 1
    return n


@njit(cache=True, fastmath=FM, nogil=True)
def fwd_block(
    x, w, scale, thr, win, coef, mode, qn, qp, want_mask, total, dsum, h, mask, y, yscale, m0, m1
):  # pragma: no cover
    n_groups, n_rows, n_cols = w.shape
    n_slices = coef.shape[0]
    nc = n_cols // n_slices
    for m in range(m0, m1):  # the running sums start here, in cache (not a separate memset)
        for k in range(n_cols):
            total[m, k] = 0.0
            dsum[m, k] = 0.0
    centre = np.float32(0.5 * (qn + qp))
    half = np.float32(0.5 * (qp - qn))
    lo, hi = np.float32(qn), np.float32(qp)
    neg = np.float32(-1.0) if mode == 1 else np.float32(0.0)
    one, zero = np.float32(1.0), np.float32(0.0)
    acc = np.empty(n_cols, np.float32)
    idx = np.empty(n_rows, np.int64)
    val = np.empty(n_rows, np.float32)
    for g in range(n_groups):
        for m in range(m0, m1):
            driven = read_array(x, w, g, m, idx, val, acc)
            tot, ds, hr, mk = total[m], dsum[m], h[g, m], mask[g, m]
            for j in range(nc):
                hr[j] = 0.0
            if mode != 0 and driven == 0:
                # sense amplifiers of an idle group: skipped (event-driven), contribute nothing
                if want_mask:
                    for k in range(n_cols):
                        mk[k] = 0
                continue
            for s in range(n_slices):
                c = coef[s]
                off = s * nc
                # branch-free bodies so that LLVM vectorises them
                if mode == 0:
                    # b-bit ADC (an idle group's partial sum is 0 and converts to code 0)
                    for j in range(nc):
                        k = off + j
                        v = (
                            acc[k] / scale[k]
                        )  # a division, as the tensor twin: same codes at the edges
                        tot[k] += np.rint(min(max(v, lo), hi))
                        inside = one if abs(v - centre) <= half else zero
                        ds[k] += inside * v
                        hr[j] += c * inside
                else:
                    for j in range(nc):
                        k = off + j
                        u = acc[k] - thr[k]
                        tot[k] += one if u >= 0.0 else neg
                        inside = one if abs(u) <= win[k] else zero
                        ds[k] += inside
                        hr[j] += c * inside
                if want_mask:
                    for j in range(nc):
                        k = off + j
                        if mode == 0:
                            mk[k] = 1 if abs(acc[k] / scale[k] - centre) <= half else 0
                        else:
                            mk[k] = 1 if abs(acc[k] - thr[k]) <= win[k] else 0
    # the digital periphery: shift-and-add the slices (yscale[k] = 2^(s*bits) * step[k])
    for m in range(m0, m1):
        yr, tot = y[m], total[m]
        for j in range(nc):
            yr[j] = 0.0
        for s in range(n_slices):
            off = s * nc
            for j in range(nc):
                yr[j] += yscale[off + j] * tot[off + j]


@njit(cache=True, fastmath=FM, nogil=True)
def fwd(
    x, w, scale, thr, win, coef, mode, qn, qp, want_mask, total, dsum, h, mask, y, yscale, block
):  # pragma: no cover
    # x [M, G*R], w [G, R, S*Nc]; scale, thr, win, yscale [K]; coef [S]; outputs total, dsum
    # [M, K], h [G, M, Nc], mask [G, M, K] (written only when want_mask), y [M, Nc].  Mode 0 (ADC):
    # v = p / scale (the step); modes 1, 2 (comparator): u = p - thr, inside |u| <= win.
    # Blocks of `block` input rows, groups outermost inside a block: one group's conductances
    # (R x K) are read from L2 by every row of the block.
    n_blocks = (x.shape[0] + block - 1) // block
    fwd_blocks(
        x,
        w,
        scale,
        thr,
        win,
        coef,
        mode,
        qn,
        qp,
        want_mask,
        total,
        dsum,
        h,
        mask,
        y,
        yscale,
        block,
        0,
        n_blocks,
    )


@njit(cache=True, fastmath=FM, nogil=True)
def fwd_blocks(
    x,
    w,
    scale,
    thr,
    win,
    coef,
    mode,
    qn,
    qp,
    want_mask,
    total,
    dsum,
    h,
    mask,
    y,
    yscale,
    block,
    b0,
    b1,
):  # pragma: no cover
    # fwd's blocks b0 .. b1 - 1 only (rows b0 * block .. b1 * block - 1): the rows are
    # independent, so any split of the blocks between callers writes the same bits
    for b in range(b0, b1):
        m0 = b * block
        m1 = min(x.shape[0], m0 + block)
        fwd_block(
            x,
            w,
            scale,
            thr,
            win,
            coef,
            mode,
            qn,
            qp,
            want_mask,
            total,
            dsum,
            h,
            mask,
            y,
            yscale,
            m0,
            m1,
        )


@njit(parallel=True, cache=True, fastmath=FM, nogil=True)
def fwd_parallel(
    x, w, scale, thr, win, coef, mode, qn, qp, want_mask, total, dsum, h, mask, y, yscale, block
):  # pragma: no cover
    # fwd, its blocks spread over numba's threads
    n_blocks = (x.shape[0] + block - 1) // block
    for b in prange(n_blocks):
        m0 = b * block
        m1 = min(x.shape[0], m0 + block)
        fwd_block(
            x,
            w,
            scale,
            thr,
            win,
            coef,
            mode,
            qn,
            qp,
            want_mask,
            total,
            dsum,
            h,
            mask,
            y,
            yscale,
            m0,
            m1,
        )


@njit(cache=True, nogil=True)
def digits(a, n_slices, bits, signed, out):  # pragma: no cover
    # a [K, X] integers held as floats; out [K, S, X]: the base-2^bits digits of |a|, times
    # sign(a) when signed (a differential pair's signed slices), of a otherwise (a >= 0)
    lowmask = (1 << bits) - 1
    for k in range(a.shape[0]):
        for s in range(n_slices):
            sh = s * bits
            for j in range(a.shape[1]):
                v = np.int32(a[k, j])
                mag = abs(v) if signed else v
                d = np.float32((mag >> sh) & lowmask)
                out[k, s, j] = -d if (signed and v < 0) else d


@njit(cache=True, fastmath=FM, nogil=True)
def quantize_fwd(w, step, qn, qp, out):  # pragma: no cover
    # LSQ integer levels: out = round(clamp(w / step, qn, qp)); w, out flat
    for i in range(w.shape[0]):
        out[i] = np.rint(min(max(w[i] / step, qn), qp))


@njit(cache=True, fastmath=FM, nogil=True)
def quantize_bwd(w, step, qn, qp, grad, grad_w):  # pragma: no cover
    # straight through inside the range; returns d/d step = -sum(grad * inside * (w / step)) / step
    acc = 0.0
    for i in range(w.shape[0]):
        v = w[i] / step
        inside = 1.0 if (v >= qn and v <= qp) else 0.0
        g = grad[i] * inside
        grad_w[i] = g / step
        acc += g * v
    return -acc / step


@njit(cache=True, fastmath=FM, nogil=True)
def column_dots(sums, grad, out):  # pragma: no cover
    # sums [C, M, S*Nc], grad [M, Nc]; out [C, S*Nc] (zeroed):
    # out[c, s*Nc + j] = sum_m sums[c, m, s*Nc + j] * grad[m, j]
    nc = grad.shape[1]
    n_slices = sums.shape[2] // nc
    for c in range(sums.shape[0]):
        o = out[c]
        for m in range(sums.shape[1]):
            row, gr = sums[c, m], grad[m]
            for s in range(n_slices):
                os_, rs = o[s * nc : (s + 1) * nc], row[s * nc : (s + 1) * nc]
                for j in range(nc):
                    os_[j] += rs[j] * gr[j]


# -- convolutions, event-driven: partial sums straight from the (sparse) input, no conv2d ---------
#
# x [B, H, W, C] channels-last input, read per group through chan [G*span] (slot j of the groups'
# gathered channels reads input channel chan[j]: ConvRowGroups); w [G, span, k, k, K] the
# cells of every weight slot (K = S*Nc; slots outside their group's rows hold 0); slot [G, span,
# k, k] 1 where a slot holds a row.  For one batch item and one group, every non-zero input adds
# its conductance rows into the accumulators of the output positions it reaches (acc [P, K], in
# L1/L2), and counts as a driven row there (cnt [P]); work is nnz(x) x k*k x K instead of
# positions x rows x K.


@njit(cache=True, nogil=True)
def tap_table(n_in, n_out, k, stride, pad, dil):  # pragma: no cover
    """``t [n_in, k]``: the output coordinate that input coordinate i reaches through kernel tap
    j (``(i * dil + pad - j) / stride`` when that is a whole number inside ``[0, n_out)``), else
    -1.  ``dil``: the input's dilation (a transposed convolution's zero-inserted input: pixel i
    sits at ``i * dil``, the inserted zeros are never visited).  Looked up instead of computed per
    tap: the integer divisions by a run-time stride were most of the scatter's time (~3x
    measured)."""
    t = np.full((n_in, k), -1, np.int64)
    for i in range(n_in):
        for j in range(k):
            n = i * dil + pad - j
            if n >= 0 and n % stride == 0 and n // stride < n_out:
                t[i, j] = n // stride
    return t


@njit(cache=True, nogil=True)
def read_table(n_out, n_in, k, stride, pad, dil):  # pragma: no cover
    """``r [n_out, k]``: the input coordinate that output coordinate o reads through kernel tap
    i (``(o * stride - pad + i) / dil`` when that is a whole number inside ``[0, n_in)``), else
    -1: the inverse of :func:`tap_table`."""
    r = np.full((n_out, k), -1, np.int64)
    for o in range(n_out):
        for i in range(k):
            n = o * stride - pad + i
            if n >= 0 and n % dil == 0 and n // dil < n_in:
                r[o, i] = n // dil
    return r


@njit(cache=True, fastmath=FM, nogil=True)
def scatter_group(x, chan, w, slot, b, g, ty, tx, ow, acc, cnt):  # pragma: no cover
    h_in, w_in = x.shape[2], x.shape[3]
    span, k = w.shape[1], w.shape[2]
    n_k = w.shape[4]
    for q in range(acc.shape[0]):
        cnt[q] = 0.0
        for c in range(n_k):
            acc[q, c] = 0.0
    for iy in range(h_in):
        for ix in range(w_in):
            for s in range(span):
                v = x[b, chan[g * span + s], iy, ix]
                if v == 0.0:
                    continue
                for i in range(k):
                    oy = ty[iy, i]
                    if oy < 0:
                        continue
                    for j in range(k):
                        ox = tx[ix, j]
                        if ox < 0:
                            continue
                        if slot[g, s, i, j] == 0.0:
                            continue
                        q = oy * ow + ox
                        cnt[q] += 1.0
                        wr, ar = w[g, s, i, j], acc[q]
                        for c in range(n_k):
                            ar[c] += v * wr[c]


@njit(cache=True, fastmath=FM, nogil=True)
def sconv_fwd_items(
    x,
    chan,
    w,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    yscale,
    bias,
    mode,
    qn,
    qp,
    y,
    n_codes,
    codes,
    act,
    b0,
    b1,
):  # pragma: no cover
    # n_codes (comparators only): for the items b < n_codes also keep, per partial sum, one byte
    # codes [n_codes, G, P, K]: bit 0 the comparator's code (u >= 0), bit 1 its straight-through
    # window (|u| <= win), and act [n_codes, G, P] 1 where the group's sense amplifiers were read:
    # all the backward needs of those items' partial sums, so it need not scatter them again
    n_groups, n_k = w.shape[0], w.shape[4]
    n_slices = thr.shape[0]
    nc = n_k // n_slices
    n_pos = oh * ow
    lo, hi = np.float32(qn), np.float32(qp)
    neg = np.float32(-1.0) if mode == 1 else np.float32(0.0)
    one = np.float32(1.0)
    ty = tap_table(x.shape[2], oh, w.shape[2], stride, pad, dil)
    tx = tap_table(x.shape[3], ow, w.shape[2], stride, pad, dil)
    acc = np.empty((n_pos, n_k), np.float32)
    cnt = np.empty(n_pos, np.float32)
    tot = np.empty((n_pos, n_k), np.float32)
    yq = np.empty((n_pos, nc), np.float32)
    thrf, winf = thr.reshape(n_k), win.reshape(n_k)
    # four slices (4-bit weights in 1-bit cells, 8-bit in 2-bit): the shift-add in one loop
    # over the columns, the same multiply-adds in the same order from 0 as a loop per slice
    # (five loops of Nc per position cost ~3 ms of a digits-cnn conv 1 forward in set-up)
    zero = np.float32(0.0)
    four = n_slices == 4
    last = n_slices - 1
    y0, y1, y2, y3 = yscale[0], yscale[min(1, last)], yscale[min(2, last)], yscale[min(3, last)]
    for b in range(b0, b1):
        want_codes = b < n_codes
        for q in range(n_pos):
            for c in range(n_k):
                tot[q, c] = 0.0
        for g in range(n_groups):
            scatter_group(x, chan, w, slot, b, g, ty, tx, ow, acc, cnt)
            if mode == 0:  # one loop nest per converter (see sconv_bwd_items)
                for q in range(n_pos):
                    ar, tr = acc[q], tot[q]
                    for s in range(n_slices):
                        off, sc = s * nc, scale[s]
                        for n in range(nc):
                            tr[off + n] += np.rint(min(max(ar[off + n] / sc[n], lo), hi))
            else:
                for q in range(n_pos):
                    if cnt[q] == 0.0:
                        if want_codes:
                            act[b, g, q] = 0
                        continue  # an idle group's sense amplifiers are skipped
                    ar, tr = acc[q], tot[q]
                    # over all S*Nc partial sums at once (thr, win flat): longer vector loops
                    if want_codes:  # the same u as the backward's (sconv_bwd_items)
                        act[b, g, q] = 1
                        cd = codes[b, g, q]
                        for c in range(n_k):
                            u = ar[c] - thrf[c]
                            tr[c] += one if u >= 0.0 else neg
                            cd[c] = (1 if u >= 0.0 else 0) + (2 if abs(u) <= winf[c] else 0)
                    else:
                        for c in range(n_k):
                            tr[c] += one if ar[c] - thrf[c] >= 0.0 else neg
        for q in range(n_pos):
            tr, yl = tot[q], yq[q]
            if four:
                for n in range(nc):
                    v = zero + y0[n] * tr[n]
                    v = v + y1[n] * tr[nc + n]
                    v = v + y2[n] * tr[2 * nc + n]
                    yl[n] = v + y3[n] * tr[3 * nc + n]
                continue
            for n in range(nc):
                yl[n] = 0.0
            for s in range(n_slices):
                ys = yscale[s]
                off = s * nc
                for n in range(nc):
                    yl[n] += ys[n] * tr[off + n]
        for n in range(nc):  # written channel by channel: contiguous stores
            yr, bn = y[b, n], bias[n]
            for q in range(n_pos):
                yr[q] = yq[q, n] + bn


@njit(cache=True, fastmath=FM, nogil=True)
def sconv_fwd(
    x,
    chan,
    w,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    yscale,
    bias,
    mode,
    qn,
    qp,
    y,
    n_codes,
    codes,
    act,
    n_tasks,
):  # pragma: no cover
    sconv_fwd_items(
        x,
        chan,
        w,
        slot,
        stride,
        pad,
        dil,
        oh,
        ow,
        thr,
        win,
        scale,
        yscale,
        bias,
        mode,
        qn,
        qp,
        y,
        n_codes,
        codes,
        act,
        0,
        x.shape[0],
    )


@njit(parallel=True, cache=True, fastmath=FM, nogil=True)
def sconv_fwd_parallel(
    x,
    chan,
    w,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    yscale,
    bias,
    mode,
    qn,
    qp,
    y,
    n_codes,
    codes,
    act,
    n_tasks,
):  # pragma: no cover
    n = x.shape[0]
    for t in prange(n_tasks):
        sconv_fwd_items(
            x,
            chan,
            w,
            slot,
            stride,
            pad,
            dil,
            oh,
            ow,
            thr,
            win,
            scale,
            yscale,
            bias,
            mode,
            qn,
            qp,
            y,
            n_codes,
            codes,
            act,
            t * n // n_tasks,
            (t + 1) * n // n_tasks,
        )


@njit(cache=True, nogil=True)
def cells_by_column(w, out):  # pragma: no cover
    """out [G, K, T'] = the cells w [G, span, k, k, K] per partial sum (column) in the order the
    input gradient reads them ([k, k, span]), T' >= k*k*span, the rest zero: one pass (a strided
    torch copy of the permuted cells and a second into the padded buffer cost ~1 ms per batch)."""
    n_g, span, k, n_k = w.shape[0], w.shape[1], w.shape[2], w.shape[4]
    for g in range(n_g):
        for c in range(n_k):
            o = out[g, c]
            t = 0
            for i in range(k):
                for j in range(k):
                    for s in range(span):
                        o[t] = w[g, s, i, j, c]
                        t += 1
            for u in range(t, o.shape[0]):
                o[u] = 0.0


@njit(cache=True, nogil=True)
def fold_channels(gxg, chan, out):  # pragma: no cover
    """out [B, C, H, W] = the gradient of the gathered input gxg [B, H, W, G*span] (slot j read
    input channel chan[j]) summed per input channel, slots in order from 0: what
    ``zeros.index_add_(1, chan, gxg)`` (the backward of ``index_select``) computes.  Both
    contiguous (read and written as flat planes)."""
    n_b, h_in, w_in, n_j = gxg.shape
    n_p = h_in * w_in
    for b in range(n_b):
        ob = out[b].reshape(out.shape[1] * n_p)
        for c in range(ob.shape[0]):
            ob[c] = 0.0
        gb = gxg[b].reshape(n_p, n_j)
        # slot by slot into its channel's plane (contiguous stores; each element still sums
        # the slots in order): 2.4x faster than pixel by pixel, measured alone
        for j in range(n_j):
            o = chan[j] * n_p
            for p in range(n_p):
                ob[o + p] += gb[p, j]


@njit(cache=True, fastmath=FM, nogil=True)
def gather_rows(wt, g, idx, val, n, out):  # pragma: no cover
    """out[:] = sum over i < n of val[i] * wt[g, idx[i]] (wt [G, K, T]): the gradient that the
    non-zero partial-sum gradients (val, at idx) of one output position send to the weight slots
    of group g.  Eight entries per pass over the slots: one load and one store of ``out`` per
    eight multiply-adds (T padded to a multiple of 16 by the caller: no scalar remainder)."""
    for t in range(out.shape[0]):
        out[t] = 0.0
    i = 0
    while i + 8 <= n:
        w0, w1, w2, w3 = wt[g, idx[i]], wt[g, idx[i + 1]], wt[g, idx[i + 2]], wt[g, idx[i + 3]]
        w4, w5, w6, w7 = wt[g, idx[i + 4]], wt[g, idx[i + 5]], wt[g, idx[i + 6]], wt[g, idx[i + 7]]
        v0, v1, v2, v3 = val[i], val[i + 1], val[i + 2], val[i + 3]
        v4, v5, v6, v7 = val[i + 4], val[i + 5], val[i + 6], val[i + 7]
        for t in range(out.shape[0]):
            out[t] += (v0 * w0[t] + v1 * w1[t] + v2 * w2[t] + v3 * w3[t]) + (
                v4 * w4[t] + v5 * w5[t] + v6 * w6[t] + v7 * w7[t]
            )
        i += 8
    while i < n:
        wr, vi = wt[g, idx[i]], val[i]
        for t in range(out.shape[0]):
            out[t] += vi * wr[t]
        i += 1


@njit(cache=True, nogil=True)
def group_inputs(xb, chan, g, x_off, start, e_ch, e_val):  # pragma: no cover
    """Group g's non-zero inputs of one item (xb: its planes flat, [C*H*W]), per pixel in
    compressed rows: pixel p's are e_ch / e_val [start[p]:start[p + 1]] (slot within the group,
    value), slots in order.  x_off [span]: scratch."""
    span, n_pix = x_off.shape[0], start.shape[0] - 1
    for s in range(span):
        x_off[s] = chan[g * span + s] * n_pix
    ne = 0
    for pix in range(n_pix):
        start[pix] = ne
        for s in range(span):  # branch-free compaction
            v = xb[x_off[s] + pix]
            e_ch[ne] = s
            e_val[ne] = v
            ne += 1 if v != 0.0 else 0
    start[n_pix] = ne


# the index of a 64-bit word's lowest set bit from its isolated bit (de Bruijn: the word
# 0x022FDD63CC95386D times a power of two has a distinct top six bits for each power)
DE_BRUIJN = np.uint64(0x022FDD63CC95386D)
DE_BRUIJN_BIT = np.zeros(64, np.int64)
for _b in range(64):
    DE_BRUIJN_BIT[((DE_BRUIJN << np.uint64(_b)) >> np.uint64(58)) & np.uint64(63)] = _b
del _b
MASK_SLOTS = 64  # a group with at most this many slots (input channels) has bit-mask rows


@njit(cache=True, nogil=True)
def lowest_bit(m, bits):  # pragma: no cover
    """The index of the lowest set bit of the non-zero uint64 ``m`` (``bits``: DE_BRUIJN_BIT)."""
    return bits[((m & (~m + np.uint64(1))) * DE_BRUIJN) >> np.uint64(58)]


@njit(cache=True, nogil=True)
def group_masks(xb, chan, g, x_off, mask):  # pragma: no cover
    """Group g's non-zero inputs of one item (xb: its planes flat, [C*H*W]) as one word per
    pixel: bit s of mask[p] set where slot s (within the group) is non-zero at pixel p.  Built
    slot by slot (vector loops over the pixels); x_off [span]: the slots' plane offsets."""
    span, n_pix = x_off.shape[0], mask.shape[0]
    for s in range(span):
        x_off[s] = chan[g * span + s] * n_pix
    for pix in range(n_pix):
        mask[pix] = 0
    for s in range(span):
        o, bit = x_off[s], np.uint64(1) << np.uint64(s)
        for pix in range(n_pix):
            mask[pix] |= bit if xb[o + pix] != 0.0 else np.uint64(0)


@njit(cache=True, nogil=True)
def slot_masks(slot, out):  # pragma: no cover
    """out[g, i, j]: bit s set where group g holds a cell for slot s at tap (i, j)
    (``slot [G, span, k, k]`` non-zero)."""
    n_g, span, k = slot.shape[0], slot.shape[1], slot.shape[2]
    for g in range(n_g):
        for i in range(k):
            for j in range(k):
                m = np.uint64(0)
                for s in range(span):
                    if slot[g, s, i, j] != 0.0:
                        m |= np.uint64(1) << np.uint64(s)
                out[g, i, j] = m


@njit(cache=True, fastmath=FM, nogil=True)
def add_running_sums(gt, gd, gwl, gsum, gw):  # pragma: no cover
    """A backward task's running sums into its outputs: gsum [2, S, Nc] += (gt, gd), gw += gwl
    ([G, span, k, k, Nc])."""
    for s in range(gt.shape[0]):
        for n in range(gt.shape[1]):
            gsum[0, s, n] += gt[s, n]
            gsum[1, s, n] += gd[s, n]
    gwf, glf = gw.reshape(gw.size), gwl.reshape(gwl.size)
    for e in range(glf.shape[0]):
        gwf[e] += glf[e]


@njit(cache=True, nogil=True)
def live_share(grad, gscale, b0, b1):  # pragma: no cover
    """The share of the items b0..b1's output positions with a non-zero gradient (``grad [B, Nc,
    P]`` times ``gscale``, any column)."""
    n_pos = grad.shape[2]
    live = np.empty(n_pos, np.int32)
    n_live = 0
    for b in range(b0, b1):
        for q in range(n_pos):
            live[q] = 0
        for n in range(grad.shape[1]):
            gn = grad[b, n]
            for q in range(n_pos):
                live[q] |= 1 if gn[q] * gscale != 0.0 else 0
        for q in range(n_pos):
            n_live += live[q]
    return n_live / max((b1 - b0) * n_pos, 1)


@njit(cache=True, fastmath=FM, nogil=True)
def sconv_bwd_items_minor(
    x,
    chan,
    w,
    wt,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    coef,
    sw,
    mode,
    qn,
    qp,
    grad,
    gscale,
    want_gx,
    gx,
    gw,
    gsum,
    n_codes,
    codes,
    act,
    b0,
    b1,
):  # pragma: no cover
    # sconv_bwd_items (the same arguments; wt unused) for K < FEW_SUMS partial sums per position
    # (a few-channel readout: 8 with two channels and four slices) when most positions get a
    # gradient: position by position, such a layer's time went to loop set-ups, not arithmetic.
    # Per item and group, three passes:
    # 1. the converters, partial sum by partial sum over all positions (vector loops as long as
    #    the output, on the partial sums scattered again or the forward's codes, turned
    #    position-minor first), giving every partial sum's gradient inst [K, P] and the slices'
    #    combined windows times grad, hq [P, Nc];
    # 2. the weights' gradient input by input: every non-zero input adds itself times hq of the
    #    positions it reached into its slots (per slot, the positions in order, as there);
    # 3. the input's gradient position by position over the non-zero partial-sum gradients
    #    (slice-major), as there, but gathering only the cells of the taps that meet the input's
    #    pixels at the position (a dilated input: one class of taps, 4 of 16 at stride 2).
    # The same gradients as sconv_bwd_items, the same bits but for gsum's column sums (summed
    # in another order).
    h_in, w_in = x.shape[2], x.shape[3]
    n_groups, span, k, n_k = w.shape[0], w.shape[1], w.shape[2], w.shape[4]
    n_slices = thr.shape[0]
    nc = n_k // n_slices
    n_pos = oh * ow
    lo, hi = np.float32(qn), np.float32(qp)
    centre = np.float32(0.5 * (qn + qp))
    half = np.float32(0.5 * (qp - qn))
    neg = np.float32(-1.0) if mode == 1 else np.float32(0.0)
    one, zero = np.float32(1.0), np.float32(0.0)
    ty = tap_table(h_in, oh, k, stride, pad, dil)
    tx = tap_table(w_in, ow, k, stride, pad, dil)
    ry = read_table(oh, h_in, k, stride, pad, dil)
    rx = read_table(ow, w_in, k, stride, pad, dil)
    thrf, winf = thr.reshape(n_k), win.reshape(n_k)
    acc = np.empty((n_pos, n_k), np.float32)  # a scattered group's partial sums
    cnt = np.empty(n_pos, np.float32)
    gr = np.empty((nc, n_pos), np.float32)  # the item's gradient times gscale
    rd = np.empty(n_pos, np.float32)  # 1 where the group's converters were read
    cdt = np.empty((n_k, n_pos), np.uint8)  # the comparators' codes and windows
    vt = np.empty((n_k, n_pos), np.float32)  # ADC: p / step of a scattered group
    hrt = np.empty((nc, n_pos), np.float32)  # the slices' combined windows
    hq = np.empty((n_pos, nc), np.float32)  # ... times grad, position-major (pass 2)
    inst = np.empty((n_k, n_pos), np.float32)  # the partial sums' gradients
    nzm = np.empty(n_pos, np.int32)  # how many of a position's are non-zero
    n_pix = h_in * w_in
    start = np.empty(n_pix + 1, np.int64)
    x_off = np.empty(span, np.int64)
    e_ch = np.empty(h_in * w_in * span, np.int64)
    e_val = np.empty(h_in * w_in * span, np.float32)
    # the cells per partial sum by tap class (a dilated input's pixels meet the taps i = cy +
    # ii * dil, j = cx + jj * dil of one class (cy, cx) at each output position; dil 1: one
    # class, every tap), [ii, jj, span] padded to whole vectors: the input's gradient gathers
    # the taps that reach a pixel only (4 of 16 in a 4 x 4 kernel at stride 2)
    nkd = (k + dil - 1) // dil
    blk = -(-(nkd * nkd * span) // 16) * 16
    wtc = np.zeros((dil * dil, n_groups, n_k, blk), np.float32)
    for cy in range(dil):
        for cx in range(dil):
            for ii in range(nkd):
                i = cy + ii * dil
                for jj in range(nkd):
                    j = cx + jj * dil
                    if i >= k or j >= k:
                        continue
                    tb = (ii * nkd + jj) * span
                    for g in range(n_groups):
                        for c in range(n_k):
                            for s in range(span):
                                wtc[cy * dil + cx, g, c, tb + s] = w[g, s, i, j, c]
    gq = np.empty(blk, np.float32)
    idx = np.empty(n_k, np.int64)
    val = np.empty(n_k, np.float32)
    gt = np.zeros((n_slices, nc), np.float32)
    gd = np.zeros((n_slices, nc), np.float32)
    gwl = np.zeros((n_groups, span, k, k, nc), np.float32)
    for b in range(b0, b1):
        have_codes = b < n_codes
        n_nz = 0  # the item's non-zero gradients
        for n in range(nc):
            gn, gl = grad[b, n], gr[n]
            for q in range(n_pos):
                v = gn[q] * gscale
                gl[q] = v
                n_nz += 1 if v != 0.0 else 0
        if want_gx:
            gxb = gx[b].reshape(gx.shape[1] * gx.shape[2] * gx.shape[3])
            for c in range(gxb.shape[0]):
                gxb[c] = 0.0
        if n_nz == 0:
            continue  # no gradient reaches this item: nothing to add anywhere
        xb = x[b].reshape(x.shape[1] * n_pix)
        for g in range(n_groups):
            if mode == 0:
                scatter_group(x, chan, w, slot, b, g, ty, tx, ow, acc, cnt)
                for s in range(n_slices):
                    sc = scale[s]
                    for n in range(nc):
                        vr, sn = vt[s * nc + n], sc[n]
                        for q in range(n_pos):
                            vr[q] = acc[q, s * nc + n] / sn
            elif have_codes:
                cd = codes[b, g]
                for q in range(n_pos):  # unread groups' sense amplifiers pass none
                    rd[q] = one if act[b, g, q] != 0 else zero
                for c in range(n_k):
                    cr = cdt[c]
                    for q in range(n_pos):
                        cr[q] = cd[q, c]
            else:
                scatter_group(x, chan, w, slot, b, g, ty, tx, ow, acc, cnt)
                for q in range(n_pos):  # idle sense amplifiers pass none
                    rd[q] = one if cnt[q] != 0.0 else zero
                for c in range(n_k):  # the same u as the forward's (sconv_fwd_items)
                    cr, th, wn = cdt[c], thrf[c], winf[c]
                    for q in range(n_pos):
                        u = acc[q, c] - th
                        cr[q] = (1 if u >= 0.0 else 0) + (2 if abs(u) <= wn else 0)
            # pass 1: the converters (one loop nest per converter: with both bodies in one nest
            # LLVM vectorised neither)
            for q in range(n_pos):
                nzm[q] = 0
            for n in range(nc):
                hn = hrt[n]
                for q in range(n_pos):
                    hn[q] = 0.0
            for s in range(n_slices):
                c_s, w_s = coef[s], sw[s]
                for n in range(nc):
                    c = s * nc + n
                    gn, hn, insr = gr[n], hrt[n], inst[c]
                    st, sd = zero, zero
                    if mode == 0:
                        vr = vt[c]
                        for q in range(n_pos):
                            v = vr[q]
                            inside = one if abs(v - centre) <= half else zero
                            st += np.rint(min(max(v, lo), hi)) * gn[q]
                            sd += inside * v * gn[q]
                            hn[q] += c_s * inside
                            iv = inside * w_s * gn[q]
                            insr[q] = iv
                            nzm[q] += 1 if iv != 0.0 else 0
                    else:
                        cr = cdt[c]
                        for q in range(n_pos):
                            cc = cr[q]
                            r = rd[q]
                            inside = (one if cc & 2 else zero) * r
                            st += (one if cc & 1 else neg) * r * gn[q]
                            sd += inside * gn[q]
                            hn[q] += c_s * inside
                            iv = inside * w_s * gn[q]
                            insr[q] = iv
                            nzm[q] += 1 if iv != 0.0 else 0
                    gt[s, n] += st
                    gd[s, n] += sd
            for q in range(n_pos):
                hl = hq[q]
                for n in range(nc):
                    hl[n] = hrt[n, q] * gr[n, q]
            # pass 2: the integer weights' gradient
            group_inputs(xb, chan, g, x_off, start, e_ch, e_val)
            for iy in range(h_in):
                for i in range(k):
                    oy = ty[iy, i]
                    if oy < 0:
                        continue
                    for ix in range(w_in):
                        pix = iy * w_in + ix
                        e0, e1 = start[pix], start[pix + 1]
                        if e0 == e1:
                            continue
                        for j in range(k):
                            ox = tx[ix, j]
                            if ox < 0:
                                continue
                            hl = hq[oy * ow + ox]
                            for e in range(e0, e1):
                                s = e_ch[e]
                                if slot[g, s, i, j] == 0.0:
                                    continue
                                gwr, v = gwl[g, s, i, j], e_val[e]
                                for n in range(nc):
                                    gwr[n] += v * hl[n]
            if not want_gx:
                continue
            # pass 3: the input's gradient, position by position: its non-zero partial-sum
            # gradients times their cells, added into the inputs it read
            oy, ox = 0, -1  # the position's row and column, counted (no integer division)
            for q in range(n_pos):
                ox += 1
                if ox == ow:
                    oy, ox = oy + 1, 0
                if nzm[q] == 0:
                    continue
                m = 0
                for c in range(n_k):
                    vc = inst[c, q]
                    idx[m] = c
                    val[m] = vc
                    m += 1 if vc != 0.0 else 0
                # only the taps of the position's class meet the input's pixels (all taps
                # when dil is 1): their cells, contiguous in wtc
                cy, cx = (pad - oy * stride) % dil, (pad - ox * stride) % dil
                gather_rows(wtc[cy * dil + cx], g, idx, val, m, gq)
                for ii in range(nkd):
                    i = cy + ii * dil
                    if i >= k:
                        break
                    iy = ry[oy, i]
                    if iy < 0:
                        continue
                    for jj in range(nkd):
                        j = cx + jj * dil
                        if j >= k:
                            break
                        ix = rx[ox, j]
                        if ix < 0:
                            continue
                        gxr = gx[b, iy, ix]  # channels-last: span channels per tap
                        tb = (ii * nkd + jj) * span
                        for s in range(span):
                            gxr[g * span + s] += gq[tb + s]
    add_running_sums(gt, gd, gwl, gsum, gw)


@njit(cache=True, fastmath=FM, nogil=True)
def sconv_bwd_items(
    x,
    chan,
    w,
    wt,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    coef,
    sw,
    mode,
    qn,
    qp,
    grad,
    gscale,
    want_gx,
    gx,
    gw,
    gsum,
    n_codes,
    codes,
    act,
    b0,
    b1,
):  # pragma: no cover
    # grad [B, Nc, P] (times gscale); outputs gx [B, H, W, G*span] (when want_gx: the gradient of
    # the gathered input, channels-last, every item written; fold_channels sums it per channel), gw [G, span, k, k, Nc] (+=: the integer
    # weights' gradient, sum over inputs of x times the slices' combined window times grad),
    # gsum [2, S, Nc] (+=: column sums of grad * code and grad * (ADC: inside * p / step;
    # comparator: inside)).  wt [G, K, T]: the cells transposed, [k, k, span] in the first k*k*span
    # of T (the rest 0), for the input's gradient.
    # n_codes (comparators only): for the items b < n_codes the forward's codes, windows and read
    # groups (codes, act; sconv_fwd_items) stand in for the partial sums, which are then not
    # scattered again; the other items' are.
    # Exact skips: an item whose gradient is all 0 costs nothing, an output position whose
    # gradient row is all 0 passes through no converter, and only non-zero partial-sum gradients
    # reach the input's gradient.  Few partial sums and gradients at enough positions:
    # sconv_bwd_items_minor.
    if w.shape[4] < FEW_SUMS and live_share(grad, gscale, b0, b1) >= FEW_SUMS_LIVE:
        sconv_bwd_items_minor(
            x,
            chan,
            w,
            wt,
            slot,
            stride,
            pad,
            dil,
            oh,
            ow,
            thr,
            win,
            scale,
            coef,
            sw,
            mode,
            qn,
            qp,
            grad,
            gscale,
            want_gx,
            gx,
            gw,
            gsum,
            n_codes,
            codes,
            act,
            b0,
            b1,
        )
        return
    h_in, w_in = x.shape[2], x.shape[3]
    n_groups, span, k, n_k = w.shape[0], w.shape[1], w.shape[2], w.shape[4]
    n_slices = thr.shape[0]
    nc = n_k // n_slices
    n_pos = oh * ow
    n_t = wt.shape[2]
    lo, hi = np.float32(qn), np.float32(qp)
    centre = np.float32(0.5 * (qn + qp))
    half = np.float32(0.5 * (qp - qn))
    neg = np.float32(-1.0) if mode == 1 else np.float32(0.0)
    one, zero = np.float32(1.0), np.float32(0.0)
    ty = tap_table(h_in, oh, k, stride, pad, dil)
    tx = tap_table(w_in, ow, k, stride, pad, dil)
    ry = read_table(oh, h_in, k, stride, pad, dil)
    rx = read_table(ow, w_in, k, stride, pad, dil)
    acc = np.empty((n_pos, n_k), np.float32)
    cnt = np.empty(n_pos, np.float32)
    hr = np.empty(nc, np.float32)
    grt = np.empty((n_pos, nc), np.float32)  # the item's gradient, position-major, times gscale
    live = np.empty(n_pos, np.bool_)  # positions with a non-zero gradient
    nzq = np.empty(n_pos, np.int32)  # how many non-zero gradients each position gets
    nzc = np.empty((n_pos, nc), np.int64)  # and in which columns
    # one group's non-zero inputs per input pixel: the weights' gradient visits, per live
    # position, the inputs its taps read.  For at most MASK_SLOTS slots one word per pixel (and
    # per tap, the slots with cells): no compaction (~2 ms of each digits-cnn conv backward),
    # the non-zero slots read in order by their bits, so each weight slot sums the same products
    # in the same order; above that, compressed rows (each layout's scratch only where it serves)
    n_pix = h_in * w_in
    masked = span <= MASK_SLOTS
    n_rows = 0 if masked else n_pix * span
    start = np.empty(1 if masked else n_pix + 1, np.int64)
    x_off = np.empty(span, np.int64)
    e_ch = np.empty(n_rows, np.int64)
    e_val = np.empty(n_rows, np.float32)
    xmask = np.empty(n_pix if masked else 0, np.uint64)
    smask = np.empty((n_groups, k, k) if masked else (0, 0, 0), np.uint64)
    if masked:
        slot_masks(slot, smask)
    bits = DE_BRUIJN_BIT
    ins = np.empty(n_k, np.float32)
    gq = np.empty(n_t, np.float32)
    idx = np.empty(n_k, np.int64)
    val = np.empty(n_k, np.float32)
    gt = np.zeros((n_slices, nc), np.float32)  # own arrays: LLVM vectorises what cannot alias
    gd = np.zeros((n_slices, nc), np.float32)
    gwl = np.zeros((n_groups, span, k, k, nc), np.float32)
    gtf, gdf = gt.reshape(n_k), gd.reshape(n_k)  # flat views (have_codes)
    grk = np.empty(n_k, np.float32)
    ink = np.empty(n_k, np.float32)
    swk = np.empty(n_k, np.float32)
    for s in range(n_slices):
        for n in range(nc):
            swk[s * nc + n] = sw[s]
    for b in range(b0, b1):
        have_codes = b < n_codes
        # which positions receive a gradient, counted over grad's contiguous rows (vectorised)
        for q in range(n_pos):
            nzq[q] = 0
        for n in range(nc):
            gn = grad[b, n]
            for q in range(n_pos):
                nzq[q] += 1 if gn[q] * gscale != 0.0 else 0
        any_live = False
        for q in range(n_pos):
            live[q] = nzq[q] > 0
            any_live = any_live or nzq[q] > 0
        if want_gx:
            gxb = gx[b].reshape(gx.shape[1] * gx.shape[2] * gx.shape[3])
            for c in range(gxb.shape[0]):
                gxb[c] = 0.0
        if not any_live:
            continue  # no gradient reaches this item: nothing to add anywhere
        for q in range(n_pos):  # the live positions' gradients, position-major
            if live[q] and not want_gx:  # (the non-zero columns serve the input's gradient)
                gr = grt[q]
                for n in range(nc):
                    gr[n] = grad[b, n, q] * gscale
            elif live[q]:
                gr, nz = grt[q], nzc[q]
                m = 0
                for n in range(nc):
                    v = grad[b, n, q] * gscale
                    gr[n] = v
                    nz[m] = n  # its non-zero columns (branch-free compaction)
                    m += 1 if v != 0.0 else 0
                nzq[q] = m
        # the item's planes flat; each group reads its channels at offsets (1.2-1.6x faster
        # than reading x[b, chan[...], iy, ix] with four indices, measured alone)
        xb = x[b].reshape(x.shape[1] * n_pix)
        for g in range(n_groups):
            if not have_codes:
                scatter_group(x, chan, w, slot, b, g, ty, tx, ow, acc, cnt)
            if masked:
                group_masks(xb, chan, g, x_off, xmask)
            else:
                group_inputs(xb, chan, g, x_off, start, e_ch, e_val)
            # one loop nest per converter: with both bodies in one nest LLVM vectorised neither
            oy, ox = 0, -1  # the position's row and column, counted (no integer division)
            for q in range(n_pos):
                ox += 1
                if ox == ow:
                    oy, ox = oy + 1, 0
                if not live[q]:
                    continue  # no gradient here
                if mode != 0 and (act[b, g, q] == 0 if have_codes else cnt[q] == 0.0):
                    continue  # skipped sense amplifiers pass none
                gr, ar = grt[q], acc[q]
                for n in range(nc):
                    hr[n] = 0.0
                if mode == 0:
                    for s in range(n_slices):
                        off, c_s, w_s = s * nc, coef[s], sw[s]
                        gts, gds, sc = gt[s], gd[s], scale[s]
                        for n in range(nc):
                            v = ar[off + n] / sc[n]
                            inside = one if abs(v - centre) <= half else zero
                            gts[n] += np.rint(min(max(v, lo), hi)) * gr[n]
                            gds[n] += inside * v * gr[n]
                            hr[n] += c_s * inside
                            ins[off + n] = inside * w_s * gr[n]
                elif have_codes:
                    # over all S*Nc partial sums at once (gr tiled per slice, sw per partial sum)
                    cd = codes[b, g, q]
                    for s in range(n_slices):
                        for n in range(nc):
                            grk[s * nc + n] = gr[n]
                    for c in range(n_k):
                        cc = cd[c]
                        inside = one if cc & 2 else zero
                        gtf[c] += (one if cc & 1 else neg) * grk[c]
                        gdf[c] += inside * grk[c]
                        ink[c] = inside
                        ins[c] = inside * swk[c] * grk[c]
                    for s in range(n_slices):
                        off, c_s = s * nc, coef[s]
                        for n in range(nc):
                            hr[n] += c_s * ink[off + n]
                else:
                    for s in range(n_slices):
                        off, c_s, w_s = s * nc, coef[s], sw[s]
                        gts, gds, th, wn = gt[s], gd[s], thr[s], win[s]
                        for n in range(nc):
                            u = ar[off + n] - th[n]
                            inside = one if abs(u) <= wn[n] else zero
                            gts[n] += (one if u >= 0.0 else neg) * gr[n]
                            gds[n] += inside * gr[n]
                            hr[n] += c_s * inside
                            ins[off + n] = inside * w_s * gr[n]
                for n in range(nc):
                    hr[n] *= gr[n]
                # the integer weights' gradient: every driven input of this position times the
                # windows it fed (each weight slot's sum runs over the positions in order, as
                # the forward scattered them)
                for i in range(k):
                    iy = ry[oy, i]
                    if iy < 0:
                        continue
                    for j in range(k):
                        ix = rx[ox, j]
                        if ix < 0:
                            continue
                        pix = iy * w_in + ix
                        if masked:
                            mk = xmask[pix] & smask[g, i, j]
                            while mk != 0:
                                s = lowest_bit(mk, bits)
                                mk &= mk - np.uint64(1)
                                gwr, v = gwl[g, s, i, j], xb[x_off[s] + pix]
                                for n in range(nc):
                                    gwr[n] += v * hr[n]
                            continue
                        for e in range(start[pix], start[pix + 1]):
                            s = e_ch[e]
                            if slot[g, s, i, j] == 0.0:
                                continue
                            gwr, v = gwl[g, s, i, j], e_val[e]
                            for n in range(nc):
                                gwr[n] += v * hr[n]
                # the non-zero partial-sum gradients, in order (slice-major, as ins), looked for
                # in the columns with a gradient only
                m = 0
                if want_gx:
                    nz = nzc[q]
                    for s in range(n_slices):
                        off = s * nc
                        for t in range(nzq[q]):
                            c = off + nz[t]
                            vc = ins[c]
                            idx[m] = c
                            val[m] = vc
                            m += 1 if vc != 0.0 else 0
                if m > 0:
                    gather_rows(wt, g, idx, val, m, gq)
                    # the transposed convolution of this position: gq [k, k, span] into the
                    # inputs it read (channels-last: span contiguous channels per tap)
                    for i in range(k):
                        iy = ry[oy, i]
                        if iy < 0:
                            continue
                        for j in range(k):
                            ix = rx[ox, j]
                            if ix < 0:
                                continue
                            gxr = gx[b, iy, ix]
                            tb = (i * k + j) * span
                            for s in range(span):
                                gxr[g * span + s] += gq[tb + s]
    add_running_sums(gt, gd, gwl, gsum, gw)


@njit(cache=True, fastmath=FM, nogil=True)
def sconv_bwd(
    x,
    chan,
    w,
    wt,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    coef,
    sw,
    mode,
    qn,
    qp,
    grad,
    gscale,
    want_gx,
    gx,
    gw,
    gsum,
    n_codes,
    codes,
    act,
    n_tasks,
):  # pragma: no cover
    sconv_bwd_items(
        x,
        chan,
        w,
        wt,
        slot,
        stride,
        pad,
        dil,
        oh,
        ow,
        thr,
        win,
        scale,
        coef,
        sw,
        mode,
        qn,
        qp,
        grad,
        gscale,
        want_gx,
        gx,
        gw[0],
        gsum[0],
        n_codes,
        codes,
        act,
        0,
        x.shape[0],
    )


@njit(parallel=True, cache=True, fastmath=FM, nogil=True)
def sconv_bwd_parallel(
    x,
    chan,
    w,
    wt,
    slot,
    stride,
    pad,
    dil,
    oh,
    ow,
    thr,
    win,
    scale,
    coef,
    sw,
    mode,
    qn,
    qp,
    grad,
    gscale,
    want_gx,
    gx,
    gw,
    gsum,
    n_codes,
    codes,
    act,
    n_tasks,
):  # pragma: no cover
    # gw [tasks, ...], gsum [tasks, 2, S, Nc]: one running sum per task, added up by the caller;
    # gx: every task writes its own items
    n = x.shape[0]
    for t in prange(n_tasks):
        sconv_bwd_items(
            x,
            chan,
            w,
            wt,
            slot,
            stride,
            pad,
            dil,
            oh,
            ow,
            thr,
            win,
            scale,
            coef,
            sw,
            mode,
            qn,
            qp,
            grad,
            gscale,
            want_gx,
            gx,
            gw[t],
            gsum[t],
            n_codes,
            codes,
            act,
            t * n // n_tasks,
            (t + 1) * n // n_tasks,
        )
