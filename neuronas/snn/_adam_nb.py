"""The numba kernels behind :class:`neuronas.snn.optim.Adam` (imported lazily, after
:mod:`neuronas.snn._kernels` has set numba's CPU tuning): Adam's update of one parameter in two
passes, around torch's own square root.

No ``fastmath`` here, on purpose: every element gets the float32 operations of torch's CPU
``Adam(foreach=True)`` (``torch.optim.adam._multi_tensor_adam``: ``lerp_``, ``mul_``,
``addcmul_``, ``sqrt``, ``div_``, ``add_``, ``addcdiv_``, each a separate pass over the
parameter there) with the same roundings -- the fused multiply-adds where ATen's CPU kernels
use them (``lerp`` with a weight below 0.5, ``addcmul``) and nowhere else -- so that the
parameters and moments are bit-identical to torch's (``tests/test_optim.py``).
``error_model="numpy"``: a division is IEEE (as in torch), without Python's zero check, which
would keep the loop scalar.  The square root stays torch's: its vectorised CPU kernel is not
the correctly rounded one, so a numba ``sqrt`` would differ in the last bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


@intrinsic
def _fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once (IEEE fused multiply-add) on float32 values; LLVM lowers it to
    the CPU's FMA instruction, vectorised with the loop."""
    if not all(isinstance(t, types.Float) and t.bitwidth == 32 for t in (a, b, c)):
        return None
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return sig, codegen


@njit(cache=True, nogil=True, error_model="numpy")
def moments(g, m, v, beta1, beta2):  # pragma: no cover
    """The moments, in place (``g`` any shape, C-contiguous; ``m``, ``v`` 1-D float32 views):
    ``m.lerp_(g, 1 - beta1)`` (ATen, for a weight below 0.5: ``fma(w, g - m, m)``), then
    ``v.mul_(beta2).addcmul_(g, g, 1 - beta2)`` (``fma(c * g, g, v * beta2)``); the scalars
    computed in double and rounded to float32, as ATen does with Python numbers."""
    w1 = np.float32(1.0 - beta1)
    b2 = np.float32(beta2)
    c2 = np.float32(1.0 - beta2)
    gf = g.ravel()
    for i in range(gf.shape[0]):
        gi = gf[i]
        m[i] = _fma(w1, gi - m[i], m[i])
        v[i] = _fma(c2 * gi, gi, v[i] * b2)


@njit(cache=True, nogil=True, error_model="numpy")
def update(p, m, root, bc2_sqrt, eps, step_size):  # pragma: no cover
    """The parameter, in place (1-D float32 views): ``denom = root / bc2_sqrt + eps`` (``root``:
    torch's ``sqrt`` of the second moment), then ``p.addcdiv_(m, denom, step_size)``: ``p +
    (step_size * m) / denom``; the scalars (double) rounded to float32, as ATen does."""
    bc = np.float32(bc2_sqrt)
    e = np.float32(eps)
    ss = np.float32(step_size)
    for i in range(p.shape[0]):
        p[i] = p[i] + (ss * m[i]) / (root[i] / bc + e)
