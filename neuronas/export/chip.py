"""The chip programming package of one front member (``chip/``): what to write into the arrays
and how to set the converters so that the chip computes what neuronas trained and evaluated.

Files::

    chip/README.md            this format, in words
    chip/mapping.json         per weighted layer: shapes, the mapping (tiles, arrays, row groups,
                              columns, bit slices, signed scheme: the cost model's), converter
                              kind / bits / code range, the weight step, where the tensors are
    chip/layerNN.safetensors  per weighted layer NN (its index in arch.layers), tensors below

Tensors of ``layerNN.safetensors`` (G row groups of R rows, CG column groups of C columns, S bit
slices of ``bits_per_cell`` bits, N outputs; one array = one (row group, column group) pair):

* ``cells`` uint8 ``[G, CG, R, C]``: the integer conductance level (0 .. 2^bits_per_cell - 1) of
  every cell of every array; rows past the fan-in and unused columns hold 0.
* ``column_output``, ``column_slice``, ``column_polarity`` int32 ``[CG, C]``: what each physical
  column holds: output neuron n, slice s (least significant first, weight 2^(s*bits_per_cell)),
  and +1 / -1 for the positive / negative cell column of a differential pair (0: offset-scheme
  data column); -1 everywhere for an unused column.  Columns are ordered (n, s, polarity).
* ``reference_cells`` uint8 ``[G, R, S]`` (offset scheme only): the reference column of every
  array of row group g, one per slice (the cells hold the digits of the offset 2^(b_w - 1)).
* ``converter_step`` float32 ``[S, N]`` (``[S, N + 1]`` for offset, the last column being the
  reference): per slice and output, in cell-level units (one unit = the current of one level
  of one cell on one driven row).  A b-bit ADC outputs ``code = rint(clip(p / step, lo, hi))``
  (``lo``/``hi`` in mapping.json); a sense amplifier outputs +1 / -1 (differential) or 1 / 0
  (offset) and ``step`` is the digital weight of that bit.  Always > 0.
* ``sense_threshold`` float32 ``[S, N(+1)]`` (sense amplifier only): it reads +1 where the
  partial sum ``p >= threshold`` (cell-level units); a row group with no driven row is skipped.
* ``bias`` float32 ``[N]``; ``weight_step`` float32 ``[]``: the value of one weight level.

A partial sum p is the current of one column (differential: the pair's difference) of one array
for the spikes on that array's rows.  The digital periphery then computes, per output n,
``y[n] = weight_step * sum_s 2^(s*bits) * step[s, n] * sum_g code[g, s, n]`` (offset scheme:
minus the same sum for the reference column), plus ``bias[n]``: the layer's output current.
Convolutions read the arrays once per output position with the input unrolled as
``torch.nn.functional.unfold`` orders it (channel, kernel row, kernel column). Transposed
convolutions (``deconv``) do too, as the convolution that computes them: the input with
``stride - 1`` zeros between its pixels, padded by ``kernel - 1 - padding`` (cropped where that
is negative), unrolled with stride 1, and row (c, i, j) (the fan-in in ``ConvTranspose2d``'s
weight order) reading tap (k-1-i, k-1-j); the inserted zeros drive no row (:func:`unfold_transposed`).
:func:`simulate_layer` is that computation from the package alone.

Levels are the targets to program: level L of a cell with ``bits_per_cell`` bits sits L equal
conductance steps above the cell's off state (0 .. 2^bits_per_cell - 1 steps; neuronas' device
model lets the off state conduct 1 / on_off_ratio of the top level's current); the chip's
programming variation and read noise, which neuronas evaluates over sampled chip instances, come
on top.  The check in ``metrics.json`` (``chip_package``) rebuilds
every layer from these files and compares it with neuronas' chip mode on an ideal device.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "check_package",
    "load_layer",
    "simulate_layer",
    "unfold",
    "unfold_transposed",
    "write_chip_package",
]


def _columns(n_out: int, slices: int, differential: bool, cols: int) -> tuple[np.ndarray, ...]:
    """Physical column maps ``[CG, C]`` (output, slice, polarity) for columns ordered (n, s, p)."""
    pols = (1, -1) if differential else (0,)
    used = n_out * slices * len(pols)
    cg = -(-used // cols)
    out = np.full(cg * cols, -1, np.int32)
    sl = np.full(cg * cols, -1, np.int32)
    pol = np.full(cg * cols, -1, np.int32)
    idx = np.arange(used)
    out[:used] = idx // (slices * len(pols))
    sl[:used] = (idx // len(pols)) % slices
    pol[:used] = np.array(pols, np.int32)[idx % len(pols)]
    return out.reshape(cg, cols), sl.reshape(cg, cols), pol.reshape(cg, cols)


def _layer_package(
    layer: Any, r: Any, mapping: Any
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tensors and mapping.json entry of one crossbar layer (torch module ``layer``, resolved ``r``)."""
    cfg = layer.config
    diff = cfg.differential
    q, w_step = layer.stored_weights()
    levels = layer.cell_levels().cpu().numpy()  # [K, S, P, Nc]
    conv = layer.converter_params()
    k, s = layer.fan_in, cfg.slices
    g, rows, cols = layer.row_groups, cfg.rows, r.cols
    col_out, col_slice, col_pol = _columns(layer.fan_out, s, diff, cols)
    cg = col_out.shape[0]
    padded = np.zeros((g * rows, s, levels.shape[2], levels.shape[3]), np.uint8)
    padded[:k] = levels.astype(np.uint8)
    flat_out, flat_slice, flat_pol = col_out.reshape(-1), col_slice.reshape(-1), col_pol.reshape(-1)
    used = flat_out >= 0
    pair = np.where(flat_pol == -1, 1, 0)
    phys = np.zeros((g * rows, cg * cols), np.uint8)
    phys[:, used] = padded[:, flat_slice[used], pair[used], flat_out[used]]
    cells = phys.reshape(g, rows, cg, cols).transpose(0, 2, 1, 3).copy()
    tensors: dict[str, np.ndarray] = {
        "cells": cells,
        "column_output": col_out,
        "column_slice": col_slice,
        "column_polarity": col_pol,
        "converter_step": conv["step"].cpu().numpy().astype(np.float32),
        "bias": (
            layer.bias.detach().cpu().numpy() if layer.bias is not None else np.zeros(layer.fan_out)
        ).astype(np.float32),
        "weight_step": w_step.reshape(()).cpu().numpy().astype(np.float32),
    }
    if not diff:
        tensors["reference_cells"] = padded[:, :, 0, layer.fan_out].reshape(g, rows, s).copy()
    if "threshold" in conv:
        tensors["sense_threshold"] = conv["threshold"].cpu().numpy().astype(np.float32)
    lo, hi = cfg.adc_range if cfg.adc_kind in ("sar", "flash") else (None, None)
    entry = {
        "index": r.index,
        "kind": r.kind,
        "file": f"layer{r.index:02d}.safetensors",
        "fan_in": k,
        "fan_out": layer.fan_out,
        "kernel": r.kernel,
        "stride": r.stride,
        "padding": r.padding,
        "positions": r.positions,
        "is_readout": r.is_readout,
        "rows": rows,
        "cols": cols,
        "row_groups": g,
        "last_row_group_rows": k - (g - 1) * rows,
        "col_groups": cg,
        "arrays": g * cg,
        "slices": s,
        "bits_per_cell": cfg.bits_per_cell,
        "weight_bits": cfg.weight_bits,
        "weight_levels": list(cfg.weight_range),
        "signed_scheme": cfg.signed_scheme,
        "columns_used": int(used.sum()),
        "reference_columns_per_array": 0 if diff else s,
        "converter": {
            "kind": cfg.adc_kind,
            "bits": cfg.adc_bits
            if cfg.adc_kind in ("sar", "flash")
            else (1 if cfg.adc_kind == "sa" else 0),
            "code_range": None if lo is None else [lo, hi],
            "output": {
                "sa": "+1/-1 (differential) or 1/0 (offset) times step",
                "digital": "exact sum (no converter)",
            }.get(cfg.adc_kind, "rint(clip(p / step, lo, hi)) times step"),
            "units": "cell levels: one unit = one level of one cell on one driven row",
        },
        "weight_step": float(w_step),
        "cost_model": {
            "row_groups": mapping.row_groups,
            "col_groups": mapping.col_groups,
            "arrays": mapping.arrays,
            "pes": mapping.pes,
            "slices": mapping.slices,
            "columns_used": mapping.cols_used,
            "utilisation": mapping.utilisation,
        },
    }
    return tensors, entry


def write_chip_package(model: Any, arch: Any, chip: Any, out: Path) -> dict[str, Any]:
    """Write ``out/`` (see the module docstring) for ``model`` (a trained
    :class:`~neuronas.snn.SpikingNetwork` of ``arch``) on ``chip``; returns mapping.json."""
    from safetensors.numpy import save_file

    from neuronas.hardware.mapping import map_layer
    from neuronas.snn import crossbar_layers

    out.mkdir(parents=True, exist_ok=True)
    layout = chip.periphery.layout
    offset_cols = int(chip.constants["offset_columns_per_array"])
    pes_per_tile = int(chip.capacity.pes_per_tile)
    layers = []
    next_pe = 0
    for layer, r in zip(crossbar_layers(model), arch.resolved(), strict=True):
        mapping = map_layer(r, layout, offset_cols)
        first_pe = next_pe
        next_pe += mapping.pes
        tensors, entry = _layer_package(layer, r, mapping)
        entry["tiles"] = {
            "first": first_pe // pes_per_tile,
            "last": (next_pe - 1) // pes_per_tile,
            "pes_per_tile": pes_per_tile,
        }
        save_file(tensors, str(out / entry["file"]))
        layers.append(entry)
    meta = {
        "format": "neuronas chip package 1",
        "chip": chip.name,
        "layout": layout,
        "arch_key": arch.key,
        "tiles": -(-next_pe // pes_per_tile),
        "layers": layers,
        "notes": [
            "exact reproduction of neuronas' chip mode (ideal device) for integer inputs (spikes, event counts)",
            *(
                [
                    "kernel_split layout: the cost model counts k*k arrays per PE; these arrays follow the "
                    "im2col grouping the network was trained and evaluated with"
                ]
                if layout == "kernel_split"
                else []
            ),
        ],
    }
    (out / "mapping.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "README.md").write_text((__doc__ or "").split("\n\n", 1)[1])
    return meta


def load_layer(package: Path, index: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(mapping entry, tensors)`` of weighted layer ``index`` of a chip package folder."""
    from safetensors.numpy import load_file

    meta = json.loads((Path(package) / "mapping.json").read_text())
    entry = next(e for e in meta["layers"] if e["index"] == index)
    return entry, load_file(str(Path(package) / entry["file"]))


def simulate_layer(entry: dict[str, Any], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The layer's output currents ``[M, N]`` for array inputs ``x [M, K]`` (one row per array
    read: per timestep and sample, and per output position for a convolution), computed from the
    package alone, as the arrays, converters and digital periphery do it."""
    x = np.asarray(x, np.float32)
    m, k = x.shape
    g, cg, rows, cols = t["cells"].shape
    n, s = entry["fan_out"], entry["slices"]
    conv = entry["converter"]
    diff = entry["signed_scheme"] == "differential"
    xp = np.zeros((m, g * rows), np.float32)
    xp[:, :k] = x
    xg = xp.reshape(m, g, rows).transpose(1, 0, 2)  # [G, M, R]
    driven = (xg != 0).any(-1)  # [G, M]
    n_cols = n if diff else n + 1
    psum = np.zeros((g, m, s, n_cols), np.float32)  # per group, slice, logical column
    cells = t["cells"].astype(np.float32)
    out_map, slice_map, pol_map = t["column_output"], t["column_slice"], t["column_polarity"]
    for gi in range(g):
        flat = psum[gi].reshape(m, s * n_cols).T  # a view: [S*Nc, M]
        for ci in range(cg):
            p = xg[gi] @ cells[gi, ci]  # [M, C]: every column current of this array
            used = out_map[ci] >= 0
            sign = np.where(pol_map[ci, used] == -1, -1.0, 1.0).astype(np.float32)
            # a differential pair's two columns land on the same partial sum: their difference
            np.add.at(flat, slice_map[ci, used] * n_cols + out_map[ci, used], (p[:, used] * sign).T)
        if not diff:
            psum[gi, :, :, n] = xg[gi] @ t["reference_cells"][gi].astype(np.float32)
    step = t["converter_step"]
    if conv["kind"] == "digital":
        codes = psum.sum(0)
        scale = np.ones_like(step)
    elif conv["kind"] == "sa":
        fire = psum >= t["sense_threshold"][None, None]
        low = -1.0 if diff else 0.0
        codes = (np.where(fire, 1.0, low) * driven[:, :, None, None]).astype(np.float32).sum(0)
        scale = step
    else:
        lo, hi = conv["code_range"]
        codes = np.rint(np.clip(psum / step[None, None], lo, hi)).sum(0)
        scale = step
    shift = np.float32(2.0) ** (np.arange(s, dtype=np.float32) * entry["bits_per_cell"])
    y = np.zeros((m, n_cols), np.float32)
    for si in range(s):
        y += (shift[si] * scale[si])[None] * codes[:, si]
    if not diff:
        y = y[:, :n] - y[:, n:]
    return y * t["weight_step"] + t["bias"]


def unfold(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """``[B, C, H, W]`` -> ``[B * P, C * k * k]``: one array read per output position, rows in
    ``torch.nn.functional.unfold`` order (channel, kernel row, kernel column)."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w + 2 * padding - kernel) // stride + 1
    cols = np.empty((b, oh, ow, c, kernel, kernel), x.dtype)
    for i in range(kernel):
        for j in range(kernel):
            cols[:, :, :, :, i, j] = xp[
                :, :, i : i + stride * oh : stride, j : j + stride * ow : stride
            ].transpose(0, 2, 3, 1)
    return cols.reshape(b * oh * ow, c * kernel * kernel)


def unfold_transposed(x: np.ndarray, kernel: int, stride: int, padding: int) -> np.ndarray:
    """A transposed convolution's array reads: ``[B, C, H, W]`` -> ``[B * P, C * k * k]``, one
    row per output position (``(H-1)*stride - 2*padding + kernel`` per axis), rows in the fan-in
    order ``(c, i, j)`` of ``ConvTranspose2d``'s weight.  The input with ``stride - 1`` zeros
    between its pixels, unrolled with stride 1 and padding ``kernel - 1 - padding`` (cropped
    where negative); row (c, i, j) reads tap (k-1-i, k-1-j)."""
    b, c, h, w = x.shape
    xd = np.zeros((b, c, (h - 1) * stride + 1, (w - 1) * stride + 1), x.dtype)
    xd[:, :, ::stride, ::stride] = x
    pad = kernel - 1 - padding
    if pad < 0:
        xd = xd[:, :, -pad : xd.shape[2] + pad, -pad : xd.shape[3] + pad]
        pad = 0
    cols = unfold(xd, kernel, 1, pad)
    n = cols.shape[0]
    return cols.reshape(n, c, kernel, kernel)[:, :, ::-1, ::-1].reshape(n, c * kernel * kernel)


def check_package(model: Any, arch: Any, package: Path, x: Any) -> float:
    """The largest deviation, relative to each layer's largest output, between the layers rebuilt
    from ``package`` (:func:`simulate_layer`) and ``model``'s own chip mode on inputs ``x [T, B,
    *input]``.  ``model`` should be on an ideal device (the package holds the ideal levels).
    Integer inputs (spikes, event counts) give float32 rounding only (~1e-7)."""
    import torch

    from neuronas.snn import crossbar_layers

    layers = crossbar_layers(model)
    seen: list[tuple[Any, Any]] = []
    hooks = [
        m.register_forward_hook(lambda _m, i, o: seen.append((i[0].detach(), o.detach())))
        for m in layers
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    worst = 0.0
    for r, (inp, out) in zip(arch.resolved(), seen, strict=True):
        entry, t = load_layer(package, r.index)
        if r.kind in ("conv", "deconv"):
            cols = unfold if r.kind == "conv" else unfold_transposed
            x2d = cols(inp.cpu().numpy(), r.kernel, r.stride, r.padding)
            want = out.permute(0, 2, 3, 1).reshape(-1, r.fan_out).cpu().numpy()
        else:
            x2d = inp.reshape(-1, r.fan_in).cpu().numpy()
            want = out.reshape(-1, r.fan_out).cpu().numpy()
        got = simulate_layer(entry, t, x2d)
        scale = float(np.abs(want).max()) or 1.0
        worst = max(worst, float(np.abs(got - want).max()) / scale)
    return worst
