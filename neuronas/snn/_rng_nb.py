"""The numba kernels behind :func:`neuronas.snn._kernels.torch_rand` / ``torch_randn`` (imported
lazily, after :mod:`neuronas.snn._kernels` has set numba's CPU tuning): torch's own CPU draws,
bit for bit, from torch's own generator state, faster.

torch draws ``rand`` and ``randn`` of a float32 tensor on the CPU one 32-bit Mersenne Twister
(MT19937) word at a time through its tensor iterator; on the crossbar's per-batch noise (three
draws over a layer's ``[K, S, P, Nc]`` cells every training batch) that is ~45 % of a default
MLP trial.  These kernels compute the very same numbers:

- :func:`uniforms`: MT19937 (twist and tempering as ``at::mt19937``), each word to
  ``(w & 0xFFFFFF) * 2**-24`` (torch's ``uniform_real_distribution<float>``);
- :func:`box_muller`: torch's ``normal_fill_16_AVX2`` on blocks of 16 uniforms (the first 8 give
  the radius ``sqrt(-2 log(1 - u))``, the next 8 the angle ``2 pi u``; cos to the first half, sin
  to the second), with avx_mathfun's ``log256_ps`` and ``sincos256_ps`` written out per lane:
  the same float32 operations, and fused multiply-adds exactly where torch's build contracted
  its multiply-add pairs (``fma32``).  No ``fastmath``: nothing else may be contracted or
  reassociated.

:mod:`neuronas.snn._kernels` checks these against torch itself before it first uses them (a torch
built without AVX2 draws normals another way), and keeps torch's own draws if they differ."""

# ruff: noqa: E501

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_N, _M = 624, 397  # MT19937's state size and shift


@intrinsic
def fma32(typingctx, a, b, c):  # pragma: no cover
    """float32 ``a * b + c`` rounded once (``llvm.fma.f32``)."""
    sig = types.float32(a, b, c)

    def codegen(context, builder, signature, args):
        vals = [
            context.cast(builder, v, t, types.float32)
            for v, t in zip(args, signature.args, strict=True)
        ]
        f = ir.FloatType()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f, [f, f, f]), "llvm.fma.f32"
        )
        return builder.call(fn, vals)

    return sig, codegen


@intrinsic
def _bits(typingctx, a):  # pragma: no cover
    """The int32 bit pattern of a float32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _from_bits(typingctx, a):  # pragma: no cover
    """The float32 of an int32 bit pattern."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(cache=True, nogil=True)
def _twist(st):  # pragma: no cover
    """MT19937's next state, in place (``at::mt19937::next_state``)."""
    upper, lower, a = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)
    one, zero = np.uint32(1), np.uint32(0)
    for i in range(_N - _M):
        y = (st[i] & upper) | (st[i + 1] & lower)
        st[i] = st[i + _M] ^ (y >> one) ^ (a if st[i + 1] & one else zero)
    for i in range(_N - _M, _N - 1):
        y = (st[i] & upper) | (st[i + 1] & lower)
        st[i] = st[i + _M - _N] ^ (y >> one) ^ (a if st[i + 1] & one else zero)
    y = (st[_N - 1] & upper) | (st[0] & lower)
    st[_N - 1] = st[_M - 1] ^ (y >> one) ^ (a if st[0] & one else zero)


@njit(cache=True, nogil=True)
def uniforms(st, pos, out):  # pragma: no cover
    """``out`` (float32, 1-D) <- the next ``len(out)`` values of torch's ``rand`` from the MT19937
    state ``st`` (uint32[624]) and ``pos = [left, next]`` (``at::mt19937``'s counters), both
    advanced in place."""
    left, nxt = pos[0], pos[1]
    n = out.shape[0]
    scale = np.float32(1.0 / 16777216.0)
    i = 0
    while i < n:
        left -= 1
        if left == 0:
            _twist(st)
            left, nxt = _N, 0
        run = min(left, n - i)  # words left in this state, taken in one loop
        src, dst = st[nxt : nxt + run], out[i : i + run]  # (views: a loop LLVM vectorises)
        for j in range(run):
            y = src[j]
            y ^= y >> np.uint32(11)
            y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
            y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
            y ^= y >> np.uint32(18)
            dst[j] = np.float32(y & np.uint32(0xFFFFFF)) * scale
        nxt += run
        left -= run - 1
        i += run
    pos[0], pos[1] = left, nxt


_f32 = np.float32
_TWO_PI = _f32(2.0 * math.pi)
_SQRTHF = _f32(0.707106781186547524)
_LP0, _LP1, _LP2, _LP3, _LP4, _LP5, _LP6, _LP7, _LP8 = (
    _f32(v)
    for v in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
)
_LQ1, _LQ2 = _f32(-2.12194440e-4), _f32(0.693359375)
_DP1, _DP2, _DP3 = _f32(-0.78515625), _f32(-2.4187564849853515625e-4), _f32(-3.77489497744594108e-8)
_S0, _S1, _S2 = _f32(-1.9515295891e-4), _f32(8.3321608736e-3), _f32(-1.6666654611e-1)
_C0, _C1, _C2 = (
    _f32(2.443315711809948e-005),
    _f32(-1.388731625493765e-003),
    _f32(4.166664568298827e-002),
)
_FOPI = _f32(1.27323954473516)


@njit(cache=True, nogil=True, inline="always")
def _pair(u, v):  # pragma: no cover
    """One lane of ``normal_fill_16_AVX2``: (r cos t, r sin t) for r = sqrt(-2 log(1 - u)),
    t = 2 pi v (mean 0, std 1: the final ``fmadd(n, 1, 0)`` is ``n + 0``)."""
    one, half, zero = np.float32(1.0), np.float32(0.5), np.float32(0.0)
    # log256_ps(1 - u), u in [0, 1): 1 - u in (0, 1], no NaN / denormal cases
    bits = _bits(one - u)
    e = np.float32(((bits >> 23) & 0x1FF) - 127) + one
    x = _from_bits((bits & np.int32(-2139095041)) | np.int32(0x3F000000))  # ~0x7f800000, | 0.5
    small = x < _SQRTHF
    tmp = x if small else zero
    x = x - one
    e = e - (one if small else zero)
    x = x + tmp
    z = x * x
    y = fma32(_LP0, x, _LP1)
    y = fma32(y, x, _LP2)
    y = fma32(y, x, _LP3)
    y = fma32(y, x, _LP4)
    y = fma32(y, x, _LP5)
    y = fma32(y, x, _LP6)
    y = fma32(y, x, _LP7)
    y = fma32(y, x, _LP8)
    y = y * x
    y = fma32(y, z, e * _LQ1)
    y = fma32(-z, half, y)
    x = x + y
    x = fma32(e, _LQ2, x)
    radius = np.sqrt(np.float32(-2.0) * x)
    # sincos256_ps(2 pi v), the angle >= 0
    xs = _TWO_PI * v
    j = (np.int32(xs * _FOPI) + np.int32(1)) & np.int32(-2)
    yj = np.float32(j)
    xs = fma32(yj, _DP1, xs)
    xs = fma32(yj, _DP2, xs)
    xs = fma32(yj, _DP3, xs)
    neg_sin = (j & np.int32(4)) != 0
    poly = (j & np.int32(2)) == 0
    neg_cos = ((~(j - np.int32(2))) & np.int32(4)) != 0
    z = xs * xs
    yc = fma32(_C0, z, _C1)
    yc = fma32(yc, z, _C2)
    yc = yc * z
    yc = fma32(yc, z, -(z * half))
    yc = yc + one
    ys = fma32(_S0, z, _S1)
    ys = fma32(ys, z, _S2)
    ys = ys * z
    ys = fma32(ys, xs, xs)
    sin2 = ys if poly else zero
    sin1 = zero if poly else yc
    s = sin1 + sin2
    c = (yc - sin1) + (ys - sin2)
    s = -s if neg_sin else s
    c = -c if neg_cos else c
    return radius * c + zero, radius * s + zero


@njit(cache=True, nogil=True)
def box_muller(d, start, n_blocks):  # pragma: no cover
    """``d[start : start + 16 * n_blocks]``: uniforms -> standard normals, in place, 16 at a time
    as torch's ``normal_fill_16_AVX2``.  (A version that gathers the halves into two arrays and
    vectorises one long loop over the lanes measured slower in the draws' pipeline: 1.0 against
    0.6 ms for 393k normals.)"""
    for b in range(n_blocks):
        o = start + 16 * b
        for j in range(8):
            c, s = _pair(d[o + j], d[o + j + 8])
            d[o + j] = c
            d[o + j + 8] = s


@njit(cache=True, nogil=True)
def normals(st, pos, out):  # pragma: no cover
    """``out`` (float32, 1-D, at least 16) <- torch's ``randn`` of that many values (its
    ``normal_fill_AVX2``: all uniforms first, then the blocks; a last partial block is redrawn
    as 16 fresh uniforms over the last 16 places)."""
    n = out.shape[0]
    uniforms(st, pos, out)
    box_muller(out, 0, n // 16)
    if n % 16 != 0:
        uniforms(st, pos, out[n - 16 :])
        box_muller(out, n - 16, 1)


@njit(cache=True, nogil=True)
def cell_draws(st, pos, want_eps, want_u, want_r, eps, u, r):  # pragma: no cover
    """The training draws of a crossbar's cells (at least 16) in their order: programming noise
    (``randn``) into ``eps``, stuck-cell uniforms (``rand``) into ``u``, read noise (``randn``)
    into ``r``, each only when wanted."""
    if want_eps:
        normals(st, pos, eps)
    if want_u:
        uniforms(st, pos, u)
    if want_r:
        normals(st, pos, r)
