"""Row-group occupancy: the fraction of a layer's array reads whose row group holds a spike.

One array read is (output position x timestep x row group): the rows one array (``im2col``) or
one PE (``kernel_split``: the k*k crossbars of a chunk of input channels) drives at once.  The
cost model charges a row group's read whenever at least one of its rows carries a spike; without a
measurement it assumes independent spikes, 1 - (1 - a)^R.  Real spikes cluster, so the measured
fraction is what the trainer records (``Activity.row_group_occupancy``).

Row groups follow the chip's layout, as the cost model's mapping does:

* ``im2col``: the fan-in rows in im2col order ``(c, i, j)`` are cut every R rows (the partition of
  :class:`~neuronas.snn.crossbar.ConvRowGroups`); an fc layer's fan-in likewise;
* ``kernel_split``: conv row group g holds input channels ``g*R .. g*R+R-1`` at every kernel
  position; an fc layer is cut every R rows as under im2col.

Counting is one small convolution of the layer's binary input with a 0/1 group-indicator kernel
(``[G, C, k, k]``), run only while the network's probes are on (the evaluation pass).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from neuronas.snn.crossbar import CrossbarConv2d, CrossbarConvTranspose2d, CrossbarLayer

__all__ = ["LAYOUTS", "group_of_rows", "occupied_reads", "row_group_indicator"]

LAYOUTS = ("im2col", "kernel_split")


def group_of_rows(in_channels: int, kernel: int, rows: int, layout: str) -> torch.Tensor:
    """The row group of every fan-in row ``(c, i, j)`` in im2col order, as ``[C*k*k]`` integers."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: got {layout!r}, must be one of {', '.join(LAYOUTS)}")
    kk = kernel * kernel
    idx = torch.arange(in_channels * kk)
    if layout == "kernel_split" and kk > 1:
        return (idx // kk) // rows  # the channel's chunk of R channels
    return idx // rows


def row_group_indicator(layer: CrossbarLayer, layout: str) -> torch.Tensor:
    """0/1 kernel that counts a layer's driven rows per row group: conv ``[G, C, k, k]``,
    transposed conv ``[C, G, k, k]`` (conv_transpose2d's weight layout), fc ``[G, K]``."""
    if isinstance(layer, (CrossbarConv2d, CrossbarConvTranspose2d)):
        k = int(layer.kernel_size[0])
        c_in = int(layer.in_channels)
        grp = group_of_rows(c_in, k, layer.config.rows, layout)
    else:
        k, c_in = 1, layer.fan_in
        grp = group_of_rows(c_in, 1, layer.config.rows, "im2col")
    n_groups = int(grp.max()) + 1
    ind = F.one_hot(grp, n_groups).t().to(torch.float32)  # [G, C*k*k]
    if isinstance(layer, CrossbarConvTranspose2d):
        return ind.view(n_groups, c_in, k, k).transpose(0, 1).contiguous()
    if isinstance(layer, CrossbarConv2d):
        return ind.view(n_groups, c_in, k, k)
    return ind


def _whole_channels(indicator: torch.Tensor) -> bool:
    """True when every input channel of a conv indicator ``[G, C, k, k]`` sits, with all its k*k
    rows, in one row group (kernel_split; im2col when R is a multiple of k*k)."""
    per = indicator.sum((2, 3))  # [G, C]: rows of channel c in group g
    kk = indicator.shape[2] * indicator.shape[3]
    return bool(((per == 0) | (per == kk)).all() and (per.sum(0) == kk).all())


@torch.no_grad()
def occupied_reads(
    layer: CrossbarLayer, x: torch.Tensor, indicator: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """``(occupied, reads)``: array reads (positions x samples x row groups) with at least one
    spike on their rows, and all of them, for the layer's input ``x`` (``[M, C, H, W]`` or
    ``[M, K]``; any nonzero input drives its row).  ``occupied`` stays a tensor on ``x``'s
    device (no host sync per batch)."""
    xd = (x.detach() != 0).to(indicator.dtype)
    if isinstance(layer, (CrossbarConv2d, CrossbarConvTranspose2d)):
        s = (int(layer.stride[0]), int(layer.stride[1]))
        p = (int(layer.padding[0]), int(layer.padding[1]))
    if isinstance(layer, CrossbarConvTranspose2d):
        driven = F.conv_transpose2d(xd, indicator, None, s, p)
    elif isinstance(layer, CrossbarConv2d):
        g, _, kh, kw = indicator.shape
        if _whole_channels(indicator):
            # whole channels per group: spikes per group and pixel (a 1x1 conv), then a grouped
            # conv of ones, k*k times cheaper than the full indicator conv
            per_pixel = F.conv2d(xd, indicator[:, :, :1, :1])
            ones = indicator.new_ones(g, 1, kh, kw)
            driven = F.conv2d(per_pixel, ones, None, s, p, 1, g)
        else:
            driven = F.conv2d(xd, indicator, None, s, p)
    else:
        driven = xd.reshape(-1, indicator.shape[1]) @ indicator.t()
    return (driven > 0.5).sum(), math.prod(driven.shape)
