"""The numba kernel behind :func:`neuronas.snn._kernels.noisy_cells` (imported lazily, after
:mod:`neuronas.snn._kernels` has set numba's CPU tuning): a chip instance's noisy cell levels in
one call, with no tensor passes in between.

No ``fastmath`` here, on purpose: every element must get the same float32 operations, in the same
order and with the same roundings, as the tensor-op path of
:meth:`neuronas.snn.crossbar.CrossbarLayer._cell_levels` (no contraction into fused multiply-adds,
no reassociation), so that both paths give bit-identical cells from the same random draws."""

# ruff: noqa: E501

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def noisy_cells(
    qt,
    n_slices,
    bits,
    differential,
    offset,
    g_off,
    g_on,
    psig,
    eps,
    use_eps,
    off_thr,
    on_thr,
    u,
    use_u,
    rsig,
    r,
    use_r,
    out,
):  # pragma: no cover
    """qt ``[K, N]`` integer weights (floats); out ``[K, S, Nc]`` the signed per-slice cells.

    Per cell (k, s, p, j) of the ``[K, S, P, Nc]`` layout (P = 2 cells per differential pair, else
    1 with Nc = N + 1, the last column the offset reference): its level d (the s-th base-2^bits
    digit of max(q, 0) / max(-q, 0) or of q + offset), then
    ``g = (d + g_off) * (1 + psig * eps)``, stuck-off (``u < off_thr``) -> ``g_off``, stuck-on
    (``off_thr <= u < on_thr``) -> ``g_on``, ``g *= 1 + rsig * r``; a pair's two cells are
    subtracted.  All scalars arrive as float32, the draws flat in the cells' layout."""
    n_in, n_out = qt.shape
    nc = out.shape[2]
    n_pairs = 2 if differential else 1
    lowmask = (1 << bits) - 1
    one = np.float32(1.0)
    # per input row: the magnitudes each cell of a pair holds, then per (slice, cell) the cells
    # in simple loops over the columns, each one LLVM vectorises (the flags are tested outside
    # them): 2.3-3.5x faster than one loop testing them per element on the default chip's
    # layers (benchmarks/RESULTS.md, "The noisy-cell pass vectorised"), the same operations
    mag = np.empty((2, nc), np.int32)
    g = np.empty(nc, np.float32)
    every = use_eps and use_u and use_r
    for k in range(n_in):
        if differential:
            for j in range(nc):
                v = np.int32(qt[k, j])
                mag[0, j] = max(v, 0)
                mag[1, j] = max(-v, 0)
        else:
            for j in range(n_out):
                mag[0, j] = np.int32(qt[k, j] + offset)
            for j in range(n_out, nc):  # the offset reference column
                mag[0, j] = np.int32(offset)
        for s in range(n_slices):
            sh = s * bits
            o = out[k, s]
            for p in range(n_pairs):
                base = ((k * n_slices + s) * n_pairs + p) * nc
                m = mag[p]
                if every:  # a noisy chip: all three draws, one pass
                    e, uu, rr = eps[base : base + nc], u[base : base + nc], r[base : base + nc]
                    for j in range(nc):
                        gj = np.float32((m[j] >> sh) & lowmask) + g_off
                        gj = gj * (one + psig * e[j])
                        uj = uu[j]
                        gj = g_off if uj < off_thr else (g_on if uj < on_thr else gj)
                        g[j] = gj * (one + rsig * rr[j])
                else:
                    for j in range(nc):
                        g[j] = np.float32((m[j] >> sh) & lowmask) + g_off
                    if use_eps:
                        e = eps[base : base + nc]
                        for j in range(nc):
                            g[j] = g[j] * (one + psig * e[j])
                    if use_u:
                        uu = u[base : base + nc]
                        for j in range(nc):
                            uj = uu[j]
                            g[j] = g_off if uj < off_thr else (g_on if uj < on_thr else g[j])
                    if use_r:
                        rr = r[base : base + nc]
                        for j in range(nc):
                            g[j] = g[j] * (one + rsig * rr[j])
                if p == 0:
                    for j in range(nc):
                        o[j] = g[j]
                else:
                    for j in range(nc):
                        o[j] = o[j] - g[j]
