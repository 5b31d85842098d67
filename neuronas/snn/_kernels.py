"""Event-driven CPU kernels for the crossbar's partial sums (numba).

What a crossbar computes per row group is cheap on the chip and expensive in a framework: every
column of every weight slice produces a partial sum that must pass its own converter, so written
with dense tensor ops a hardware-aware layer materialises ``[groups, rows_in, slices x columns]``
partial sums and walks them several times (matmul, compare, sum, window mask, ...).  The forward
kernel does what the array does instead: for one input row ``m`` and one row group ``g`` only the
rows that received a spike (or a non-zero input) add their conductance row into a column
accumulator that stays in L1 cache -- the event-driven read of the array -- and the converter (ADC
or sense amplifier) is applied in the same pass.  Only per-row results leave the kernel:

- ``total [M, K]``: the digital sum over groups of the converter codes;
- ``dsum [M, K]``: what the step / reference gradients need (ADC: the sum over groups of
  ``inside * p / step``; comparator: the number of groups inside the straight-through window);
- ``h [G, M, Nc]``: the straight-through window of every partial sum, already combined over the
  weight slices (``sum_s coef[s] * inside``): the weight gradient only ever reaches the integer
  weight q (the cells are a fixed function of q), so the backward needs no more than this;
- ``mask [G, M, K]`` (1 byte per partial sum), only when the input needs a gradient;
- ``y [M, Nc]``: what the digital periphery makes of ``total`` (shift-and-add of the slices).

Work is ``nnz(x) x columns`` instead of ``rows x columns``; the partial sums never exist in
memory, and the backward is two dense tensor products on these outputs.

Convolutions (``sparse_conv_*``) are read the same way without im2col: per batch item and row
group, every non-zero input of the channels-last input adds its cells into the partial sums of
the output positions it reaches (an accumulator of positions x columns in cache), which are
converted, summed over groups and shifted-and-added there.  For sense amplifiers the forward
keeps a byte per partial sum (its code and straight-through window) when that fits a budget, so
the backward need not scatter them again (ADCs, or over the budget: it does); the backward takes
the input's gradient (over the non-zero partial-sum gradients only) and the weights' gradient
per output position that receives a gradient.

Used for float32 CPU tensors; CUDA tensors (where bandwidth is plentiful) and other dtypes take
the dense tensor-op twin in :mod:`neuronas.snn.crossbar`, which computes the same outputs (tested
against each other).  Numba compiles the kernels on first use (seconds) and caches the machine
code next to this file (or in ``NUMBA_CACHE_DIR``), so later processes load them in milliseconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuronas.snn._draws_ahead import DrawsAhead

__all__ = [
    "PARALLEL_MIN_WORK",
    "CellParams",
    "available",
    "backward_tasks",
    "cell_kernels_from",
    "column_dots",
    "conv_codes_bytes",
    "convert_sum_forward",
    "digits",
    "drawn_noisy_cells",
    "draws_ahead_on",
    "noisy_cells",
    "quantize_backward",
    "quantize_forward",
    "rand",
    "randn",
    "serial_or_parallel",
    "set_draws_ahead",
    "sparse_conv_backward",
    "sparse_conv_forward",
]

_NB: Any = None  # the compiled kernels, loaded lazily: importing numba costs ~0.3 s


def available() -> bool:
    """Whether the numba kernels can be used here (``NEURONAS_NO_NUMBA=1`` switches them off)."""
    if os.environ.get("NEURONAS_NO_NUMBA", "") not in ("", "0"):
        return False
    return _load() is not None


def _load() -> Any:
    global _NB
    if _NB is None:
        try:
            _NB = _compile()
        except Exception:  # numba missing or unusable on this platform: the tensor-op path remains
            _NB = False
    return _NB or None


@contextlib.contextmanager
def kernels_from(module: Any | None = None) -> Iterator[Any]:
    """Inside the block this module's calls into ``_kernels_nb`` (the crossbar and convolution
    kernels; not the noisy cells' or the random draws' modules) run ``module``'s kernels: another
    copy of ``neuronas.snn._kernels_nb``, e.g. another checkout's, loaded under another name
    (``benchmarks/bench_conv_kernels.py`` compares two checkouts' kernels in one process);
    ``None``: this package's own.  Yields the kernels' module in use.  For benchmarks: the
    swap is process-wide, not per thread."""
    global _NB
    own = _load()
    _NB = own if module is None else module
    try:
        yield _NB
    finally:
        _NB = own


def _prefer_wide_vectors() -> None:
    """Let LLVM use 512-bit vectors on AVX-512 CPUs (its default tuning caps them at 256 bits
    there; these kernels are bound by vector loads and stores, ~15 % faster measured).  An
    explicit ``NUMBA_CPU_FEATURES`` wins."""
    if "NUMBA_CPU_FEATURES" in os.environ:
        return
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
    except Exception:
        return
    if "+avx512f" in features.split(","):
        os.environ["NUMBA_CPU_FEATURES"] = features + ",-prefer-256-bit"


def _compile() -> Any:
    _prefer_wide_vectors()
    import numba

    numba.core.config.reload_config()  # numba may have been imported before the line above
    config: Any = numba.config  # its settings are set at run time: untyped
    config.THREADING_LAYER = "workqueue"  # no TBB/OpenMP clash with torch's own pool
    from neuronas.snn import _kernels_nb

    return _kernels_nb


def _block_rows(n_cols: int) -> int:
    """Input rows per block: the block's two running sums (float32, K columns) in ~256 KiB of
    L2 next to one group's conductances."""
    return max(4, min(256, (256 * 1024) // (8 * n_cols)))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


#: The least work (the kernel's own measure, see :func:`serial_or_parallel`'s callers) for which a call
#: runs the kernel's parallel twin when torch has several threads; smaller calls run the serial
#: kernel, which computes the same bits.  Measured inside 2-thread training epochs on the 2-core
#: machine (benchmarks/RESULTS.md, "Threads inside a trial"): below these the parallel twins
#: were 1.05-17x slower per call (their dispatch, and numba's second thread waiting for the core
#: torch's OpenMP thread spins on after each of its own parallel regions), above them 0.6-0.8x.
PARALLEL_MIN_WORK = {
    # rows x dense multiply-adds per row (M * G * R * S * Nc): digits-mlp's 2.6M and 134M calls
    # 1.05-1.44x, the gesture CNN's fc 537M 0.81x
    "fwd": 1 << 28,
    # items x input elements x taps x columns (B * C * H * W * k * k * S * Nc): digits-cnn's 75M
    # and 302M calls 1.06-1.10x, the gesture CNN's 1.2G-19G 0.58-0.60x
    "sconv_fwd": 1 << 30,
    # neuron scans, timesteps x neurons: forward 0.5M-2M 1.4-3.4x, 8M-16M 0.71-0.77x; backward
    # 0.5M-1M 1.3-2.2x, 2M-16M 0.63-0.71x
    "forward": 1 << 22,
    "backward": 1 << 21,
}


def serial_or_parallel(nb: Any, name: str, work: int | None) -> Any:
    """Of the numba module ``nb``'s kernel ``name`` and its parallel twin ``name_parallel``: the
    serial one when torch runs on one thread or the call's ``work`` is under
    :data:`PARALLEL_MIN_WORK` for it, else the twin on as many threads as torch has.  ``work``
    None: by the threads alone (``sconv_bwd``, whose running sums per task make its numbers
    depend on the number of tasks: chosen by the threads only, so that a thread count gives the
    same numbers for every size)."""
    import numba

    config: Any = numba.config
    n = max(1, min(torch.get_num_threads(), config.NUMBA_NUM_THREADS))
    if n > 1 and work is not None and work < PARALLEL_MIN_WORK[name]:
        n = 1
    if n == 1:
        # (on one thread the parallel runtime's dispatch costs ~1/3 of the kernel)
        return getattr(nb, name)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return getattr(nb, name + "_parallel")


def _fwd_kernel(name: str = "fwd", work: int | None = None) -> Any:
    """:func:`serial_or_parallel` of this module's kernels."""
    return serial_or_parallel(_load(), name, work)


def convert_sum_forward(
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
    """One event-driven pass over the arrays: ``(y, sums, h, mask or None)``, ``sums = [total,
    dsum]`` (module docstring), ``y[m, j] = sum_s yscale[s*Nc + j] * total[m, s*Nc + j]``.

    ``x2d [M, G*R]`` inputs (row group g = columns ``g*R:(g+1)*R``), ``wg [G, R, S*Nc]`` cells,
    ``coef [S]`` each slice's share of the weight gradient.
    """
    m = x2d.shape[0]
    g, _, k = wg.shape
    n_slices = coef.shape[0]
    # torch's allocator, not numpy's (numpy asks for huge pages for large arrays: fresh ones
    # measured up to 3-4 ms to zero here)
    sums_t = torch.empty((2, m, k))
    h_t = torch.empty((g, m, k // n_slices))
    mask_t = torch.empty((g, m, k) if want_mask else (1, 1, 1), dtype=torch.uint8)
    y_t = torch.empty((m, k // n_slices))
    sums, h, mask, y = sums_t.numpy(), h_t.numpy(), mask_t.numpy(), y_t.numpy()
    total, dsum = sums[0], sums[1]
    if mode == 0:
        thr, win = step, step  # unused
    else:
        assert ref is not None and tie is not None
        thr, win = ref - tie, (step if mode == 1 else 0.5 * step)
    work = m * x2d.shape[1] * k
    block = _block_rows(k)
    args = (
        _np(x2d),
        _np(wg),
        _np(step),
        _np(thr),
        _np(win),
        _np(coef),
        int(mode),
        float(qn),
        float(qp),
        bool(want_mask),
        total,
        dsum,
        h,
        mask,
        y,
        _np(yscale),
        block,
    )
    n_blocks = (m + block - 1) // block
    parts = min(n_blocks, SPARE_PARTS, work // SPARE_PART_WORK)
    kernel = _fwd_kernel("fwd", work)
    if parts > 1 and kernel is _load().fwd and draws_ahead_on():
        # torch is on one thread fewer and the spare core only draws part of the time: it
        # takes blocks of rows too (the same bits: rows are independent), where the call
        # would otherwise run on one thread
        fwd_blocks = _load().fwd_blocks
        _share_range(lambda b0, b1: fwd_blocks(*args, b0, b1), n_blocks, parts)
    else:
        kernel(*args)
    return y_t, sums_t, h_t, (mask_t if want_mask else None)


def digits(a: torch.Tensor, n_slices: int, bits: int, signed: bool = False) -> torch.Tensor:
    """``[K, X]`` integers (as floats) -> base-2^bits digits ``[K, S, X]`` (of |a| times sign(a)
    when ``signed``)."""
    out = torch.empty((a.shape[0], n_slices, a.shape[1]))
    _load().digits(_np(a), int(n_slices), int(bits), bool(signed), out.numpy())
    return out


def quantize_forward(w: torch.Tensor, step: float, qn: int, qp: int) -> torch.Tensor:
    """``round(clamp(w / step, qn, qp))`` in one pass (the LSQ weight levels)."""
    out = torch.empty_like(w)
    _load().quantize_fwd(
        _np(w).reshape(-1), float(step), float(qn), float(qp), out.numpy().reshape(-1)
    )
    return out


def quantize_backward(
    w: torch.Tensor,
    step: float,
    qn: int,
    qp: int,
    grad: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """The LSQ quantizer's gradients in one pass: ``(d/dw, d/dstep)``."""
    grad_w = torch.empty_like(w)
    g_step = _load().quantize_bwd(
        _np(w).reshape(-1),
        float(step),
        float(qn),
        float(qp),
        _np(grad).reshape(-1),
        grad_w.numpy().reshape(-1),
    )
    return grad_w, float(g_step)


def column_dots(sums: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``[C, S*Nc]``: column sums over m of ``sums[c, m, s*Nc + j] * grad[m, j]``."""
    out = torch.zeros((sums.shape[0], sums.shape[2]))
    _load().column_dots(_np(sums), _np(grad), out.numpy())
    return out


def _tasks(name: str, work: int | None = None) -> tuple[Any, int]:
    """The kernel ``name`` (serial or parallel, as :func:`_fwd_kernel`) and its number of tasks."""
    kernel = _fwd_kernel(name, work)
    return kernel, (1 if kernel is getattr(_load(), name) else torch.get_num_threads())


def sparse_conv_forward(
    x: torch.Tensor,
    chan: torch.Tensor | None,
    cells: torch.Tensor,
    slots: torch.Tensor,
    stride: int,
    pad: int,
    oh: int,
    ow: int,
    thr: torch.Tensor,
    win: torch.Tensor,
    scale: torch.Tensor,
    yscale: torch.Tensor,
    bias: torch.Tensor,
    mode: int,
    qn: int,
    qp: int,
    out: torch.Tensor,
    keep_codes: int = 0,
    into: tuple[torch.Tensor, torch.Tensor] | None = None,
    dilation: int = 1,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Event-driven convolution on crossbars into ``out [B, Nc, OH*OW]``: for every batch item and
    row group the non-zero inputs of ``x [B, C, H, W]`` (read in place when contiguous: no
    channels-last copy; the groups' ``G*span`` slots read channels ``chan``,
    :class:`~neuronas.snn.crossbar.ConvRowGroups`; ``None``: the identity) add their cells
    ``cells [G, span, k, k, S*Nc]`` into the partial sums of the positions they reach, which go
    through the converters (codes summed over groups, slices shifted and added, bias added); no
    partial sum leaves the cache.

    ``keep_codes`` (comparators, ``mode`` 1 / 2, only; ``0 <= keep_codes <= B``): also returns
    what the backward needs of the first ``keep_codes`` items' partial sums, a byte each
    (:func:`conv_codes_bytes`): ``[keep_codes, G, OH*OW, S*Nc]`` with bit 0 the comparator's
    code and bit 1 its straight-through window (``|p - thr| <= win``), and ``[keep_codes, G,
    OH*OW]`` 1 where the group's sense amplifiers were read; passed to
    :func:`sparse_conv_backward`, they spare it scattering those items' partial sums again.
    ``into``: two contiguous ``uint8`` tensors of those shapes to write them to (returned; their
    bytes need not be set: every item's read flags are written, and a code wherever its group
    was read, which is all the backward reads), else new ones.

    ``dilation``: ``x``'s pixels sit ``dilation`` apart in the input the convolution reads, with
    zeros between them (a transposed convolution as the convolution of its zero-inserted
    input); the zeros are never stored or visited, and ``pad`` may then be negative (a crop)."""
    work = x.numel() * cells.shape[2] * cells.shape[3] * cells.shape[-1]
    kernel, n = _tasks("sconv_fwd", work)
    g = cells.shape[0]
    keep_codes = int(keep_codes)
    if keep_codes:
        assert mode != 0, "codes are kept for comparators only"
        assert 0 < keep_codes <= x.shape[0], "codes are kept for leading batch items"
        if into is None:
            codes = torch.empty((keep_codes, g, oh * ow, cells.shape[-1]), dtype=torch.uint8)
            act = torch.empty((keep_codes, g, oh * ow), dtype=torch.uint8)
        else:
            codes, act = into
            assert codes.shape == (keep_codes, g, oh * ow, cells.shape[-1]), "codes' shape"
            assert act.shape == (keep_codes, g, oh * ow), "read flags' shape"
            assert codes.dtype == act.dtype == torch.uint8, "codes are bytes"
            assert codes.is_contiguous() and act.is_contiguous(), "codes are contiguous"
    else:
        codes = torch.empty((1, 1, 1, 1), dtype=torch.uint8)
        act = torch.empty((1, 1, 1), dtype=torch.uint8)
    args = (
        _np(x),
        _channel_map(chan, x.shape[1]),
        _np(cells),
        _np(slots),
        int(stride),
        int(pad),
        int(dilation),
        int(oh),
        int(ow),
        _np(thr),
        _np(win),
        _np(scale),
        _np(yscale),
        _np(bias),
        int(mode),
        float(qn),
        float(qp),
        out.numpy(),
        keep_codes,
        codes.numpy(),
        act.numpy(),
    )
    n_items = x.shape[0]
    parts = min(n_items, SPARE_PARTS, work // SPARE_PART_WORK)
    if parts > 1 and n == 1 and draws_ahead_on():
        # the spare core (see convert_sum_forward) takes batch items: each item's outputs and
        # codes are its own, the same bits
        items = _load().sconv_fwd_items
        _share_range(lambda b0, b1: items(*args, b0, b1), n_items, parts)
    else:
        kernel(*args, n)
    return (codes, act) if keep_codes else None


def conv_codes_bytes(batch: int, groups: int, positions: int, columns: int) -> int:
    """Bytes :func:`sparse_conv_forward` keeps with ``keep_codes = batch`` (``columns`` =
    S*Nc)."""
    return batch * groups * positions * (columns + 1)


def sparse_conv_backward(
    x: torch.Tensor,
    chan: torch.Tensor | None,
    cells: torch.Tensor,
    slots: torch.Tensor,
    stride: int,
    pad: int,
    oh: int,
    ow: int,
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
    want_gx: bool,
    gw: torch.Tensor,
    gsum: torch.Tensor,
    codes: tuple[torch.Tensor, torch.Tensor] | None = None,
    dilation: int = 1,
) -> torch.Tensor | None:
    """The backward of :func:`sparse_conv_forward` for ``gscale * grad`` (``grad [B, Nc, P]``):
    adds the integer weights' gradient to ``gw [tasks, G, span, k, k, Nc]`` and the column sums
    of ``grad * code`` and ``grad * (ADC: inside * p / step; comparator: inside)`` to ``gsum
    [tasks, 2, S, Nc]`` (both zeroed by the caller, ``tasks`` = :func:`backward_tasks`); returns
    the input's gradient ``[B, C, H, W]`` when ``want_gx``: with a channel map ``chan``
    contiguous, the gathered slots' gradients summed per input channel in slot order (as the
    backward of ``index_select`` sums them); without, a channels-last view.

    The partial sums are scattered again unless ``codes`` is given, and the input's gradient is
    taken in the same pass, as the transposed convolution of every
    output position over its non-zero partial-sum gradients only: no ``[B, P, G*S*Nc]`` tensor
    is written, and the zeros left by the straight-through windows, by idle sense amplifiers and
    by a max-pool's or surrogate's zero gradients cost nothing.  Items with no gradient at all,
    and positions with none, cost no converter work -- except in a layer with few partial sums
    per position (``S*Nc`` under ``_kernels_nb.FEW_SUMS``, a few-channel readout) whose gradient
    reaches at least ``FEW_SUMS_LIVE`` of its positions: there the converters' backward runs for
    all positions at once, partial sum by partial sum (vector loops over the positions), the
    same gradients but for the column sums' order.  ``codes``: what :func:`sparse_conv_forward`
    kept with ``keep_codes`` for these inputs and constants; the partial sums of the items they
    cover (the leading ``codes[0].shape[0]``) are then not scattered again, the other items' are
    (the same gradients).  ``dilation``: as :func:`sparse_conv_forward`'s; the input's gradient
    is that of ``x``'s own pixels."""
    kernel, n = _tasks("sconv_bwd")
    g, span, k = cells.shape[0], cells.shape[1], cells.shape[2]
    n_b, h_in, w_in = x.shape[0], x.shape[2], x.shape[3]
    gx = torch.empty((n_b, h_in, w_in, g * span) if want_gx else (1, 1, 1, 1))
    if want_gx:
        # [G, K, T]: per partial sum, the cells it read in the input gradient's order [k, k, span],
        # T padded with zeros to a multiple of 16 (whole vectors: ~20 % faster than a scalar tail)
        t = k * k * span
        wt = torch.empty((g, cells.shape[-1], -(-t // 16) * 16))
        _load().cells_by_column(_np(cells), wt.numpy())
    else:
        wt = torch.zeros((1, 1, 1))
    head = (
        _np(x),
        _channel_map(chan, x.shape[1]),
        _np(cells),
        wt.numpy(),
        _np(slots),
        int(stride),
        int(pad),
        int(dilation),
        int(oh),
        int(ow),
        _np(thr),
        _np(win),
        _np(scale),
        _np(coef),
        _np(sw),
        int(mode),
        float(qn),
        float(qp),
        _np(grad),
        float(gscale),
        bool(want_gx),
        gx.numpy(),
    )
    tail = (
        0 if codes is None else codes[0].shape[0],
        *(
            (codes[0].numpy(), codes[1].numpy())
            if codes is not None
            else (np.empty((1, 1, 1, 1), np.uint8), np.empty((1, 1, 1), np.uint8))
        ),
    )
    gw_np, gsum_np = gw.numpy(), gsum.numpy()
    if n == 1 and gw.shape[0] > 1 and draws_ahead_on():
        # the spare core runs the parallel twin's tasks with the calling thread (the same
        # items per task and running sums: that twin's bits), as many as gw has room for
        # (backward_tasks)
        n = gw.shape[0]
        items = _load().sconv_bwd_items

        def part(t: int) -> None:
            items(*head, gw_np[t], gsum_np[t], *tail, t * n_b // n, (t + 1) * n_b // n)

        _AHEAD.share(part, n)
    else:
        kernel(*head, gw_np, gsum_np, *tail, n)
    if not want_gx:
        return None
    if chan is None:
        return gx.permute(0, 3, 1, 2)
    out = torch.empty((n_b, x.shape[1], h_in, w_in))
    _load().fold_channels(gx.numpy(), _channel_map(chan, x.shape[1]), out.numpy())
    return out


def _channel_map(chan: torch.Tensor | None, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if chan is None else _np(chan.to(torch.int64))


def backward_tasks() -> int:
    """How many running sums :func:`sparse_conv_backward` needs (one per parallel task): one per
    torch thread when its parallel twin runs; on one torch thread with the draws taken ahead,
    :data:`SPARE_CONV_TASKS` (the calling thread and the spare one); else one."""
    n = _tasks("sconv_bwd")[1]
    return SPARE_CONV_TASKS if n == 1 and draws_ahead_on() else n


@dataclass(frozen=True)
class CellParams:
    """What a layer's noisy cells depend on besides the weights and the draws: ``n_slices``
    weight slices of ``bits``-bit cells, ``differential`` pairs or an ``offset`` reference
    column, the off / on conductances ``g_off`` / ``g_on`` (level units), the programming and
    read noise's relative sigmas, the stuck-off / stuck-on thresholds of the uniform draw, and
    ``n_cols`` columns per slice."""

    n_slices: int
    bits: int
    differential: bool
    offset: int
    g_off: float
    g_on: float
    program_sigma: float
    stuck_off_below: float
    stuck_on_below: float
    read_sigma: float
    n_cols: int


_CELLS: Any = None  # another copy of _cell_kernels_nb, inside cell_kernels_from's block


def _cell_kernels() -> Any:
    """The noisy cells' kernel module (after numba's CPU tuning is set)."""
    _load()
    if _CELLS is not None:
        return _CELLS
    from neuronas.snn import _cell_kernels_nb

    return _cell_kernels_nb


@contextlib.contextmanager
def cell_kernels_from(module: Any | None = None) -> Iterator[Any]:
    """:func:`kernels_from` for the noisy cells' kernel: inside the block :func:`noisy_cells`
    runs ``module``'s (another copy of ``neuronas.snn._cell_kernels_nb``, e.g. another
    checkout's); ``None``: this package's own.  Yields the module in use.  For benchmarks
    (``benchmarks/bench_noisy_cells.py``): the swap is process-wide, not per thread."""
    global _CELLS
    _CELLS = module
    try:
        yield _cell_kernels()
    finally:
        _CELLS = None


def noisy_cells(
    q: torch.Tensor,
    p: CellParams,
    eps: torch.Tensor | None,
    u: torch.Tensor | None,
    r: torch.Tensor | None,
) -> torch.Tensor:
    """A chip's signed per-slice cells ``[K, S, Nc]`` from the integer weights ``q [N, K]`` and
    the draws ``eps`` (programming), ``u`` (stuck cells), ``r`` (read), each ``[K, S, P, Nc]`` or
    ``None`` (that non-ideality is off) in one pass: the cells' levels, ``+ g_off``, ``* (1 +
    program_sigma * eps)``, stuck-off (``u < stuck_off_below``) -> ``g_off``, stuck-on (below
    ``stuck_on_below``) -> ``g_on``, ``* (1 + read_sigma * r)``, a differential pair's cells
    subtracted.  Bit-identical to the tensor ops of ``CrossbarLayer._cell_levels`` (float32
    scalars, same operation order; :mod:`neuronas.snn._cell_kernels_nb`)."""
    cells_nb = _cell_kernels()

    f32 = np.float32
    none = np.zeros(1, dtype=np.float32)
    n_in = q.shape[1]
    out = torch.empty((n_in, p.n_slices, p.n_cols))
    qt, o = _np(q.t()), out.numpy()
    flat = [none if d is None else _np(d).reshape(-1) for d in (eps, u, r)]

    def rows(k0: int, k1: int) -> None:
        # input rows k0 .. k1 - 1: their draws are a contiguous run of the flat layout
        per = o.shape[1] * o.shape[2] * (2 if p.differential else 1)
        d_eps, d_u, d_r = (d if d is none else d[k0 * per : k1 * per] for d in flat)
        cells_nb.noisy_cells(
            qt[k0:k1],
            int(p.n_slices),
            int(p.bits),
            bool(p.differential),
            f32(p.offset),
            f32(p.g_off),
            f32(p.g_on),
            f32(p.program_sigma),
            d_eps,
            eps is not None,
            f32(p.stuck_off_below),
            f32(p.stuck_on_below),
            d_u,
            u is not None,
            f32(p.read_sigma),
            d_r,
            r is not None,
            o[k0:k1],
        )

    parts = min(n_in, SPARE_PARTS, o.size // SPARE_PART_CELLS)
    if parts > 1 and draws_ahead_on():
        # the spare core (see convert_sum_forward) takes input rows too: each row's cells are
        # its own, the same bits
        _share_range(rows, n_in, parts)
    else:
        rows(0, n_in)
    return out


# --------------------------------------------------------------------------------------------
# torch's CPU draws, bit for bit (neuronas.snn._rng_nb)

_STATE_BYTES = 5056  # torch's CPU generator state: the MT19937 words at byte 24, 8 bytes each
_DRAWS_OK: bool | None = None  # whether the kernels reproduce torch's draws here (checked once)
# a draw reads the generator's state, advances it here and writes it back (and the training draws
# fill shared buffers): one thread at a time, as torch's own draws hold the generator's mutex
_DRAW_LOCK = threading.Lock()


def _mt_state(gen: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(raw state bytes, MT words uint32[624], [left, next])`` of a CPU generator."""
    raw = gen.get_state().numpy().copy()
    words = raw[24 : 24 + 624 * 8].view(np.uint64).astype(np.uint32)
    pos = np.array([raw[8:12].view(np.int32)[0], raw[16:24].view(np.uint64)[0]], dtype=np.int64)
    return raw, words, pos


def _set_mt_state(
    gen: torch.Generator, raw: np.ndarray, words: np.ndarray, pos: np.ndarray
) -> None:
    raw[8:12] = np.array([pos[0]], dtype=np.int32).view(np.uint8)
    raw[16:24] = np.array([pos[1]], dtype=np.uint64).view(np.uint8)
    raw[24 : 24 + 624 * 8] = words.astype(np.uint64).view(np.uint8)
    gen.set_state(torch.from_numpy(raw))


def _draw(n: int, normal: bool, generator: torch.Generator | None) -> torch.Tensor:
    from neuronas.snn import _rng_nb

    gen = generator if generator is not None else torch.default_generator
    out = np.empty(n, dtype=np.float32)
    with _DRAW_LOCK:
        raw, words, pos = _mt_state(gen)
        (_rng_nb.normals if normal else _rng_nb.uniforms)(words, pos, out)
        _set_mt_state(gen, raw, words, pos)
    return torch.from_numpy(out)


def _draws_match_torch() -> bool:
    """Whether :func:`_draw` gives torch's own numbers and leaves its generator where torch
    does, on this machine and torch build (uniforms, normals of whole and partial blocks of 16,
    across the twist; a generator each side, same seed)."""
    sizes = [(False, 1000), (True, 16), (True, 1000), (True, 16 * 80 + 7), (False, 3), (True, 33)]
    for seed in (0, 20261201):
        ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for normal, n in sizes:
            a = _draw(n, normal, ours)
            b = (torch.randn if normal else torch.rand)(n, generator=theirs)
            if not torch.equal(a.view(torch.int32), b.view(torch.int32)):
                return False
        if not torch.equal(ours.get_state(), theirs.get_state()):
            return False
    return True


def fast_draws() -> bool:
    """Whether :func:`rand` / :func:`randn` draw with the kernels (numba here, torch's generator
    state in the layout they read, and the kernels checked once against torch itself); else
    they are torch's own calls.  ``NEURONAS_TORCH_DRAWS=1``: torch's own calls (the reference
    path: the same numbers, slower)."""
    global _DRAWS_OK
    if os.environ.get("NEURONAS_TORCH_DRAWS", "") not in ("", "0") or not available():
        return False
    if _DRAWS_OK is None:
        try:
            _DRAWS_OK = (
                torch.default_generator.get_state().numel() == _STATE_BYTES and _draws_match_torch()
            )
        except Exception:  # an unexpected generator layout or torch build: torch's own draws
            _DRAWS_OK = False
    return _DRAWS_OK


def rand(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.rand(shape, generator=generator)`` (float32, CPU; torch's global generator when
    None): the same numbers and the generator left in the same state, ~3x faster (MT19937 in
    numba, :mod:`neuronas.snn._rng_nb`)."""
    n = math.prod(shape)
    if not fast_draws() or n == 0:
        return torch.rand(shape, generator=generator)
    return _draw(n, False, generator).view(shape)


def randn(shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.randn(shape, generator=generator)`` (float32, CPU): the same numbers and the
    generator left in the same state (torch's Box-Muller over blocks of 16 in numba, see
    :mod:`neuronas.snn._rng_nb`); fewer than 16 values are torch's own (another path)."""
    n = math.prod(shape)
    if n < 16 or not fast_draws():
        return torch.randn(shape, generator=generator)
    return _draw(n, True, generator).view(shape)


_AHEAD = DrawsAhead()  # the process's training-draw buffers and speculative draws
#: While the draws are taken ahead (a core kept free of torch for them), the noisy-cell pass and
#: the kernels that would run on one thread (the linear and conv forwards, the conv backward) give
#: parts of their rows / batch items / tasks to that core too: at most
#: SPARE_PARTS parts, each at least SPARE_PART_WORK of the kernel's work (rows x inputs x
#: columns; its blocks of rows, :func:`_block_rows`, are the unit) or SPARE_PART_CELLS signed
#: cells; smaller calls stay on the calling thread.  Measured one call at a time on the 2-core
#: machine (benchmarks/RESULTS.md, "The spare core takes kernel work too"): the forward 1.04-1.64x
#: faster from 10M of work to 302M, the noisy cells 1.2-1.5x from 524k cells; 131k cells in two
#: parts were 0.90-0.98x (a part's call costs ~15 us; 16 parts of 8k cells 2.4x slower).
SPARE_PARTS = 8
SPARE_PART_WORK = 1 << 22
SPARE_PART_CELLS = 1 << 17
#: The convolutions' backward, while the draws are taken ahead: this many tasks (running sums),
#: shared by the calling thread and the spare one; the same tasks and bits as its parallel twin
#: on this many torch threads (the draws are taken ahead from two threads given)
SPARE_CONV_TASKS = 2


def _share_range(run: Callable[[int, int], None], n: int, parts: int) -> None:
    """``run(lo, hi)`` over ``0 .. n`` in at most ``parts`` contiguous runs of equal length (the
    last shorter), shared by the calling thread and the spare core (:meth:`DrawsAhead.share`)."""
    per = -(-n // parts)
    _AHEAD.share(lambda i: run(i * per, min(n, (i + 1) * per)), -(-n // per))


_AHEAD_ON = False  # set by the trainer (set_draws_ahead) for the trainings it gives a spare core


def set_draws_ahead(on: bool) -> bool:
    """Take the training draws one request ahead on a background thread
    (:mod:`neuronas.snn._draws_ahead`) from now on (``True``) or in place (``False``, the
    default).  The numbers are the same either way; the background thread wants a core of its
    own.  Returns whether they are now taken ahead: never where the kernels do not draw
    (:func:`fast_draws`)."""
    global _AHEAD_ON
    _AHEAD_ON = bool(on)
    return draws_ahead_on()


def draws_ahead_on() -> bool:
    """Whether the training draws are taken ahead (:func:`set_draws_ahead`)."""
    return _AHEAD_ON and fast_draws()


def drawn_noisy_cells(q: torch.Tensor, cell_shape: tuple[int, ...], p: CellParams) -> torch.Tensor:
    """:func:`noisy_cells` of a training read, its draws taken here from torch's global
    generator: ``torch.randn(cell_shape)`` (programming, when ``program_sigma`` > 0), then
    ``torch.rand(cell_shape)`` (stuck cells, when ``stuck_on_below`` > 0), then
    ``torch.randn(cell_shape)`` (read, when ``read_sigma`` > 0) -- the same numbers, the generator
    left where those calls leave it -- into buffers reused from batch to batch (the draws never
    leave this function); taken one request ahead on a background thread when
    :func:`draws_ahead_on` (the same numbers).  Needs :func:`fast_draws` and at least 16 cells."""
    from neuronas.snn import _rng_nb

    n = math.prod(cell_shape)
    want_eps, want_u, want_r = p.program_sigma > 0, p.stuck_on_below > 0, p.read_sigma > 0

    def view(buf: np.ndarray, wanted: bool) -> torch.Tensor | None:
        return torch.from_numpy(buf).view(cell_shape) if wanted else None

    gen = torch.default_generator
    request = (n, want_eps, want_u, want_r)
    with _DRAW_LOCK:
        ahead = draws_ahead_on()
        raw, words, pos = _mt_state(gen)
        bufs = _AHEAD.take(request, words, pos) if ahead else None
        if bufs is None:
            bufs = _AHEAD.buffers(n)
            _rng_nb.cell_draws(words, pos, want_eps, want_u, want_r, *bufs)
        _set_mt_state(gen, raw, words, pos)
        if ahead:
            _AHEAD.start(request, words, pos)
        eps, u, r = bufs
        cells = noisy_cells(q, p, view(eps, want_eps), view(u, want_u), view(r, want_r))
        _AHEAD.release(bufs)
        return cells
