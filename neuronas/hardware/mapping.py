"""Layer -> crossbar tiles: bit slices, signed columns, row/column groups, processing elements.

Two layouts (the chip's ``periphery.layout``):

* ``im2col``: the fan-in K = C_in·k·k is unrolled on the rows; a processing element (PE) is one
  array.  arrays = ceil(K/R) · ceil(N·s·d/C).
* ``kernel_split``: one crossbar per kernel position (SpikeSim); a PE is the k·k crossbars of
  one input-channel chunk, whose column currents share one set of converters.
  PEs = ceil(C_in/R) · ceil(N·s·d/C), arrays = k·k · PEs.

s = ceil(b_w / bits_per_cell) slices per weight; d = 2 columns for a differential pair, 1 for
an offset scheme (whose reference columns are counted per PE, ``offset_columns_per_array``).
"""

from __future__ import annotations

from typing import NamedTuple

from neuronas.spec import ResolvedLayer

__all__ = ["LayerMapping", "map_counts", "map_layer"]


class LayerMapping(NamedTuple):
    slices: int  # s
    col_factor: int  # d
    cols_used: int  # N·s·d data columns
    ref_cols: int  # offset reference columns over all column groups
    rows_per_pe_group: int  # rows of one array that one PE row group drives (R or less)
    rows_total: int  # K rows in total (all kernel positions)
    row_groups: int
    last_rows: int  # rows of the last (possibly partial) row group, per array
    col_groups: int
    arrays_per_pe: int
    pes: int
    arrays: int
    used_cells: int
    allocated_cells: int

    @property
    def utilisation(self) -> float:
        return self.used_cells / self.allocated_cells if self.allocated_cells else 0.0


def map_layer(layer: ResolvedLayer, layout: str, offset_cols: int) -> LayerMapping:
    kk = layer.kernel * layer.kernel if layout == "kernel_split" and layer.kind != "fc" else 1
    return LayerMapping(
        *map_counts(
            layer.fan_in,
            layer.fan_out,
            layer.rows,
            layer.cols,
            layer.weight_bits,
            layer.bits_per_cell,
            layer.signed_scheme == "differential",
            kk,
            offset_cols,
        )
    )


def map_counts(
    fan_in: int,
    fan_out: int,
    R: int,
    C: int,
    weight_bits: int,
    bits_per_cell: int,
    differential: bool,
    kk: int,
    offset_cols: int,
) -> tuple[int, ...]:
    """:class:`LayerMapping`'s fields as a plain tuple, from plain integers (the cost model's hot path)."""
    s = -(-weight_bits // bits_per_cell)
    d = 2 if differential else 1
    cols_used = fan_out * s * d
    rows = fan_in // kk  # C_in for kernel_split, K for im2col
    rg = -(-rows // R)
    cg = -(-cols_used // C)
    pes = rg * cg
    arrays = pes * kk
    return (
        s,
        d,
        cols_used,
        0 if differential else offset_cols * cg,
        R if rows > R else rows,
        fan_in,
        rg,
        rows - (rg - 1) * R,
        cg,
        kk,
        pes,
        arrays,
        fan_in * cols_used,
        arrays * R * C,
    )
