"""The numba kernel behind :func:`neuronas.snn._kernels.noisy_cells` (imported lazily, after
:mod:`neuronas.snn._kernels` has set numba's CPU tuning): a chip instance's noisy cell levels in
one pass.

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
    for k in range(n_in):
        for s in range(n_slices):
            sh = s * bits
            o = out[k, s]
            for p in range(n_pairs):
                base = ((k * n_slices + s) * n_pairs + p) * nc
                # branch-free (selects) so that LLVM can vectorise the loop over the columns
                for j in range(nc):
                    if differential:
                        v = np.int32(qt[k, j])
                        mag = max(v if p == 0 else -v, 0)
                    else:
                        mag = np.int32(qt[k, j] + offset) if j < n_out else np.int32(offset)
                    g = np.float32((mag >> sh) & lowmask) + g_off
                    if use_eps:
                        g = g * (one + psig * eps[base + j])
                    if use_u:
                        uj = u[base + j]
                        g = g_off if uj < off_thr else (g_on if uj < on_thr else g)
                    if use_r:
                        g = g * (one + rsig * r[base + j])
                    o[j] = g if p == 0 else o[j] - g
