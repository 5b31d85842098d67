"""A trained spiking network as a NIR graph (https://neuroir.org): the network the chip holds.

NIR mapping (``nir`` 1.0 primitives; simulation time step ``dt = 1e-4 s`` per timestep, the
convention snnTorch's importer assumes):

* fc on a flat input -> ``Affine``; fc on a feature map [C, H, W] -> ``Conv2d`` with an H x W
  kernel (output [N, 1, 1]; later fc layers are 1 x 1 ``Conv2d``): NIR's ``Flatten`` is
  batch-free, and snnTorch, Norse and nirtorch all map it to a ``torch.nn.Flatten`` that
  flattens the batch too.  conv -> ``Conv2d``.  The weights are the **quantized** weights the
  crossbar stores, de-quantized (integer level x the learned step), i.e. what a digital or
  ideal array computes.
* per-row-group conversion (fc and conv layers with an ADC or a sense amplifier): each
  row group is a ``Linear`` node of its cell levels (conv: a ``Conv2d`` whose weight is 0
  outside the group's fan-in rows, :func:`_emit_converted_conv`; the comparators then act per
  output position), each converter its comparators as NIR
  ``Threshold`` nodes (a b-bit ADC as its ladder of 2^b - 1 comparators, a sense amplifier as
  one, with the chip's skip of an idle row group composed from a driven-rows detector), and the
  digital periphery an ``Affine`` node (shift-and-add, steps, reference column, bias) into which
  NIR sums every comparator: chip mode on an ideal device (:func:`_emit_converted_fc`).  NIR has
  no quantiser node; a comparator ladder is the flash ADC itself, so no custom node is needed.
  snnTorch 1.0 and Norse 1.1 map no ``Threshold``: ``to_nir(..., converters=False)`` is the
  "ideal" graph (one node per layer, exact sums of the quantized weights; the export writes it
  as ``model_ideal.nir``).  A conv layer whose converted form would exceed
  ``MAX_CONVERTED_CONV_NODES`` nodes or ``MAX_CONVERTED_CONV_VALUES`` weight values keeps exact
  sums (noted in the metadata; its converters are exact in the member's ``chip/`` package), as
  does any layer reading a ``concat`` skip (its row groups would read two nodes' outputs).
* ``lif`` (v <- v + (x - v) / tau, hard reset to 0) -> ``LIF(tau = tau * dt, r = 1,
  v_leak = 0, v_threshold)``: forward-Euler with step dt reproduces it exactly.
* ``if`` -> ``IF(r = 1, v_threshold)``.
* ``ld_lif`` (v <- max(v - d, 0) + x) has no NIR primitive: it is exported as ``IF`` with the
  linear decay ``d`` folded into the preceding layer's bias (v <- v - d + x), which is what stock
  importers run: exact while the membrane stays >= d before the decay, below rest otherwise (the
  clamp is lost).  The node's metadata (``neuronas_model: ld_lif``, ``decay_step``) lets
  neuronas' own reader, :func:`run_graph`, run the exact LD-LIF.
* soft reset (subtract the threshold) has no NIR primitive either; such networks are exported
  with NIR's reset-to-``v_reset`` and flagged in the metadata.
* pooling is a ``Conv2d`` whose output channel c sums (max) or averages (avg) the window of
  input channel c: snnTorch maps ``AvgPool2d`` but not ``SumPool2d``, Norse the reverse, all
  three map ``Conv2d``.  Max pooling of binary spikes is an OR: the window's sum into a
  memoryless ``LIF(tau = dt, r = 1, v_threshold = 0.5)``, which fires iff any input spiked.
* the readout (last weighted layer) has no neuron: the graph's output is its per-timestep
  output current, like neuronas' own network.
* skip connections are graph edges (:func:`wire_skips`; NIR sums every input of a node, and
  snnTorch's and Norse's importers, both through nirtorch, add a node's inputs the same way):
  ``add`` is an edge from the source's output node into the consumer's neuron node (so the
  neuron integrates crossbar current + source spikes, as neuronas runs it).  Into the readout,
  which has no neuron, the two inputs meet in an identity ``Affine`` / 1 x 1 ``Conv2d`` node
  ``sum<i>`` (the importers take one input into ``output``).  ``concat`` splits the consumer's
  weights by input channel into two nodes, ``<layer>`` over the main input and
  ``<layer>_skip`` over the source, whose outputs are summed at the next node:
  ``W [a; b] = W_a a + W_b b`` exactly (NIR has no concatenation node the stock importers map).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from neuronas.errors import SearchError

__all__ = [
    "NIR_DT_S",
    "chip_weights",
    "has_converters",
    "nir_notes",
    "run_graph",
    "to_nir",
    "wire_skips",
    "write_nir",
]

#: seconds per network timestep in exported NIR graphs (snnTorch's importer assumes 1e-4)
NIR_DT_S = 1e-4


def chip_weights(layer: Any) -> tuple[Any, Any]:
    """(weight, bias) numpy arrays as the chip holds them: quantized levels x step."""
    q, step = layer.stored_weights()
    w = (q * step).reshape(
        layer.weight.shape if layer.weight.dim() == 2 else (layer.fan_out, *layer.weight.shape[1:])
    )
    b = layer.bias.detach() if layer.bias is not None else torch.zeros(layer.fan_out)
    return w.cpu().numpy().astype("float32"), b.cpu().numpy().astype("float32")


def _conv(
    weight: np.ndarray, bias: np.ndarray, in_hw: tuple[int, int], stride: int, pad: int
) -> Any:
    return nir.Conv2d(
        input_shape=in_hw,
        weight=weight.astype(np.float32),
        stride=stride,
        padding=pad,
        dilation=1,
        groups=1,
        bias=bias.astype(np.float32),
    )


def _pool_weight(channels: int, k: int, value: float) -> np.ndarray:
    """``[C, C, k, k]``: channel c of the output sums (times ``value``) the window of channel c."""
    w = np.zeros((channels, channels, k, k), np.float32)
    w[np.arange(channels), np.arange(channels)] = value
    return w


def _signed_cells(layer: Any) -> np.ndarray:
    """``[K, S, Nc]`` signed per-slice cell levels (differential: the pair's difference; offset:
    the data columns and the reference column)."""
    levels = layer.cell_levels().cpu().numpy().astype(np.float32)  # [K, S, P, Nc]
    if layer.config.differential:
        return levels[:, :, 0] - levels[:, :, 1]
    return levels[:, :, 0]


#: the most nodes / weight values one conv layer's converted form may add to the graph; a larger
#: layer keeps exact sums (noted in the graph's metadata and the export's notes)
MAX_CONVERTED_CONV_NODES = 2048
MAX_CONVERTED_CONV_VALUES = 1 << 24


def _conv_converted_size(r: Any) -> tuple[int, int]:
    """(nodes, weight values) at most that :func:`_emit_converted_conv` adds for resolved conv
    layer ``r``: per row group a Conv2d over all input channels (``S*Nc`` outputs; ``S`` at most
    weight_bits / bits_per_cell slices, ``Nc`` = fan_out + a reference column) and its comparators."""
    groups = -(-r.fan_in // r.rows)
    per_group = (2**r.adc_bits - 1) if r.adc_kind in ("sar", "flash") else 4
    slices = -(-r.weight_bits // r.bits_per_cell)
    outs = slices * (r.fan_out + 1)
    return groups * (1 + per_group) + 1, groups * (outs + 1) * r.fan_in + outs * r.fan_out


def _converts(r: Any) -> bool:
    """Whether :func:`to_nir` represents resolved layer ``r``'s converters (see the limits)."""
    if r.adc_kind == "digital" or r.kind not in ("fc", "conv"):
        return False
    if r.skip_op == "concat":
        # its row groups would read two nodes' outputs (NIR has no concatenation node)
        return False
    if r.kind == "fc":
        return True
    nodes, values = _conv_converted_size(r)
    return nodes <= MAX_CONVERTED_CONV_NODES and values <= MAX_CONVERTED_CONV_VALUES


def _emit_converters(
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    name: str,
    layer: Any,
    bias: np.ndarray,
    read: Any,
    point: Any,
    vec: Any,
) -> None:
    """Row groups, converters and periphery of crossbar layer ``layer`` into final node ``name``
    (shared by fc and conv; see :func:`_emit_converted_fc` for the nodes).  ``read(g, r0, r1,
    cells, rows)`` adds row group g's node(s) from the layer's input: the partial sums
    ``{name}_g{g}`` of the group's fan-in rows ``r0:r1`` (``cells [R_g, S*Nc]``), or (``rows``)
    the driven-row count ``{name}_g{g}_rows``; ``point(weight [out, in], bias | None)`` a
    position-wise node; ``vec(v)`` a per-channel constant shaped for it."""
    cfg = layer.config
    cells = _signed_cells(layer)  # [K, S, Nc]
    k, n_slices, nc = cells.shape
    n = layer.fan_out
    conv = layer.converter_params()
    step = conv["step"].cpu().numpy().astype(np.float64)  # [S, Nc]
    _, w_step = layer.stored_weights()
    rows, groups = cfg.rows, layer.row_groups
    shift = 2.0 ** (np.arange(n_slices) * cfg.bits_per_cell)
    sa = cfg.adc_kind == "sa"
    bipolar = sa and cfg.differential
    factor = 2.0 if bipolar else 1.0  # a bipolar comparator's code is 2 H - 1 (see below)
    col = np.zeros((n, nc))
    col[np.arange(n), np.arange(n)] = 1.0
    if not cfg.differential:
        col[:, n] = -1.0  # the reference column
    # periphery weight [N, S*Nc]: (s, c) -> output n
    scale = factor * float(w_step) * shift[:, None] * step  # [S, Nc]
    periphery = (col[:, None, :] * scale[None]).reshape(n, n_slices * nc)
    const = np.zeros(n_slices * nc)  # per (s, c), in the periphery's input units
    for g in range(groups):
        r0, r1 = g * rows, min(k, (g + 1) * rows)
        psum = f"{name}_g{g}"
        read(g, r0, r1, cells[r0:r1].reshape(r1 - r0, -1), False)
        if not sa:
            lo, hi = cfg.adc_range
            for j in range(lo, hi):
                cmp_ = f"{psum}_c{j - lo}"
                nodes[cmp_] = nir.Threshold(threshold=vec((j + 0.5) * step))
                edges.extend([(psum, cmp_), (cmp_, name)])
            const += lo
            continue
        thr = conv["threshold"].cpu().numpy().astype(np.float64).reshape(-1)
        cmp_ = f"{psum}_sa"
        nodes[cmp_] = nir.Threshold(threshold=vec(thr))
        edges.extend([(psum, cmp_), (cmp_, name)])
        # an idle group reads p = 0, so its comparator gives c = [0 > threshold]; the chip
        # skips it (code 0).  Code = 2H - 1 (bipolar) or H (unipolar) when driven, 0 when idle:
        # bipolar 2 (H + (c - 1/2) driven - c), unipolar H + c driven - c
        c = (thr < 0).astype(np.float64)
        read(g, r0, r1, None, True)
        nodes[f"{psum}_driven"] = nir.Threshold(threshold=vec(np.full(1, 0.5)))
        idle = (c - 0.5) if bipolar else c
        nodes[f"{psum}_idle"] = point(idle.reshape(-1, 1), None)
        edges.extend(
            [
                (f"{psum}_rows", f"{psum}_driven"),
                (f"{psum}_driven", f"{psum}_idle"),
                (f"{psum}_idle", name),
            ]
        )
        const -= c
    b = bias.astype(np.float64) + periphery @ const
    nodes[name] = point(periphery, b.astype(np.float32))
    nodes[name].metadata.update(
        {
            "neuronas_role": "crossbar periphery",
            "converter": cfg.adc_kind,
            "row_groups": groups,
            "slices": n_slices,
        },
    )


def _emit_converted_fc(
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    src: str,
    name: str,
    layer: Any,
    bias: np.ndarray,
    in_map: tuple[int, ...] | None = None,
) -> None:
    """The crossbar layer ``layer`` (fc) with its per-row-group converters, from
    node ``src`` to a final node ``name`` (NIR sums the edges into one node):

    * ``{name}_g{g}_in``: ``Linear [R_g, K]``, the 0/1 selection of row group g's inputs (NIR
      has no slice node; absent when there is one group), then ``{name}_g{g}``: ``Linear
      [S*Nc, R_g]``, the group's cell levels: the partial sum p of every slice and column of
      that group's arrays, in cell levels (the graph holds ~K^2 + S*Nc*K values per layer);
    * a b-bit ADC (``sar``/``flash``, code ``rint(clip(p / step, lo, hi))``) as its comparator
      ladder, one ``Threshold`` per code boundary: ``{name}_g{g}_c{j}`` fires where
      ``p > (j + 1/2) step`` (j = lo .. hi-1); the code is lo + the number that fire;
    * a sense amplifier as ``Threshold`` ``{name}_g{g}_sa`` (p > threshold); the chip skips a
      group with no driven row, which is ``{name}_g{g}_rows`` (``Linear [1, R_g]``, ones on the
      group's inputs) -> ``{name}_g{g}_driven`` (``Threshold`` 0.5) -> ``{name}_g{g}_idle``
      (``Linear [S*Nc, 1]``) correcting an idle group's code to 0 (inputs must be >= 0: spikes,
      event counts);
    * ``{name}``: ``Affine [N, S*Nc]``, the digital periphery: shift-and-add of the slices,
      converter step, weight step, the offset scheme's reference column subtracted, the bias and
      the codes' constant parts.

    ``in_map``: the layer reads a feature map ``[C, H, W]`` (rows in its flattened order): the
    nodes reading it are ``Conv2d`` with an H x W kernel and the rest 1 x 1 ``Conv2d`` on
    ``[X, 1, 1]`` (as :func:`to_nir` writes fc layers after a feature map: no ``Flatten``).
    """

    def dense(weight: np.ndarray, reads_input: bool, bias: np.ndarray | None = None) -> Any:
        w32 = np.ascontiguousarray(weight, dtype=np.float32)
        if in_map is None:
            if bias is None:
                return nir.Linear(weight=w32)
            return nir.Affine(weight=w32, bias=bias.astype(np.float32))
        c_in, hw = (in_map[0], in_map[1:]) if reads_input else (w32.shape[1], (1, 1))
        return _conv(
            w32.reshape(w32.shape[0], c_in, *hw),
            np.zeros(w32.shape[0], np.float32) if bias is None else bias,
            (int(hw[0]), int(hw[1])),
            1,
            0,
        )

    def vec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float32).reshape(-1)
        return v if in_map is None else v.reshape(-1, 1, 1)

    k = layer.fan_in
    groups = layer.row_groups

    def read(g: int, r0: int, r1: int, cells: np.ndarray | None, rows: bool) -> None:
        psum = f"{name}_g{g}"
        group_in = src
        if groups > 1:
            # the group's rows of the input (NIR has no slice node: a 0/1 selection)
            group_in = f"{psum}_in"
            if group_in not in nodes:
                pick = np.zeros((r1 - r0, k), np.float32)
                pick[np.arange(r1 - r0), np.arange(r0, r1)] = 1.0
                nodes[group_in] = dense(pick, True)
                edges.append((src, group_in))
        if rows:
            nodes[f"{psum}_rows"] = dense(np.ones((1, r1 - r0)), group_in == src)
            edges.append((group_in, f"{psum}_rows"))
        else:
            assert cells is not None
            nodes[psum] = dense(cells.T, group_in == src)
            edges.append((group_in, psum))

    _emit_converters(nodes, edges, name, layer, bias, read, lambda w, b: dense(w, False, b), vec)


def _emit_converted_conv(
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    src: str,
    name: str,
    layer: Any,
    bias: np.ndarray,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
) -> None:
    """The crossbar convolution ``layer`` with its per-row-group converters at every output
    position, from node ``src`` to ``name``: as :func:`_emit_converted_fc`, but row group g's
    partial sums ``{name}_g{g}`` are a ``Conv2d [S*Nc, C, k, k]`` (the layer's stride and
    padding) whose weight is the group's cell levels on its fan-in rows (input channel, kernel
    row, kernel column, in im2col order, as :class:`neuronas.snn.crossbar.ConvRowGroups`
    groups them) and 0 elsewhere; the driven-rows detector ``{name}_g{g}_rows`` the same
    convolution with ones on the group's rows (padding drives no row, as on the chip); the
    comparators act per output position, and the periphery is a 1 x 1 ``Conv2d``."""
    c_in, kern = int(layer.in_channels), int(layer.kernel_size[0])
    stride, pad = int(layer.stride[0]), int(layer.padding[0])
    k = layer.fan_in

    def read(g: int, r0: int, r1: int, cells: np.ndarray | None, rows: bool) -> None:
        width = 1 if rows else (cells.shape[1] if cells is not None else 0)
        full = np.zeros((k, width), np.float32)
        full[r0:r1] = 1.0 if rows else cells
        weight = full.T.reshape(width, c_in, kern, kern)
        node = f"{name}_g{g}_rows" if rows else f"{name}_g{g}"
        nodes[node] = _conv(weight, np.zeros(width, np.float32), in_hw, stride, pad)
        edges.append((src, node))

    def point(weight: np.ndarray, b: np.ndarray | None) -> Any:
        w32 = np.asarray(weight, np.float32)
        zeros = np.zeros(w32.shape[0], np.float32)
        return _conv(w32.reshape(*w32.shape, 1, 1), zeros if b is None else b, out_hw, 1, 0)

    def vec(v: np.ndarray) -> np.ndarray:
        # per output position (NIR infers a Threshold's shape from its threshold's)
        v = np.asarray(v, np.float32).reshape(-1, 1, 1)
        return np.ascontiguousarray(np.broadcast_to(v, (v.shape[0], *out_hw)))

    _emit_converters(nodes, edges, name, layer, bias, read, point, vec)


def to_nir(model: Any, arch: Any, converters: bool = True) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (a :class:`neuronas.snn.SpikingNetwork` of ``arch``).

    ``converters``: represent the per-row-group converters of fc and conv layers
    (:func:`_emit_converted_fc`, :func:`_emit_converted_conv`: what the chip computes; ``Threshold`` nodes, which snnTorch 1.0
    and Norse 1.1 do not map); False: the "ideal" graph, one node per layer with exact sums of
    the quantized weights (what a digital CIM macro computes; every stock importer loads it)."""
    if arch.input.encoding == "rate":
        raise SearchError(
            "NIR export: rate-encoded inputs (Bernoulli sampling) have no NIR primitive; export archs with events or direct encoding"
        )
    deconv = [i for i, layer in enumerate(arch.layers) if layer.kind == "deconv"]
    if deconv:
        # NIR 1.0 has Conv1d/Conv2d but no transposed convolution primitive
        raise SearchError(
            f"NIR export: layers {deconv} are transposed convolutions (deconv), which NIR has no "
            "primitive for; the weights are exported, the graph is not"
        )
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(arch.input.shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    shape: tuple[int, ...] = tuple(arch.input.shape)
    shapes = arch.shapes()
    neuron = arch.neuron
    dt = NIR_DT_S
    notes: list[str] = []
    converter_notes: list[str] = []
    converted: list[int] = []  # layers whose converters the graph represents
    too_big: list[str] = []  # conv layers over the converted form's limits
    resolved = {r.index: r for r in arch.resolved()}

    # per arch layer: (the node its input enters, the node that gives its output), for skips
    layer_nodes: list[tuple[str, str]] = []

    def add(name: str, node: Any) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    def spike_or(name: str, out: tuple[int, ...]) -> None:
        ones = np.ones(out, dtype=np.float32)
        # tau = dt: v <- x every step (no memory); fires iff the window held a spike
        add(name, nir.LIF(tau=dt * ones, r=ones, v_leak=0 * ones, v_threshold=0.5 * ones))

    for i, layer in enumerate(arch.layers):
        mod = model.layers[i]
        first = f"{'pool' if layer.kind == 'pool' else layer.kind}{i}"
        if layer.kind == "pool":
            k, s, p = layer.kernel, layer.stride, layer.pad
            c = shape[0]
            out3 = tuple(shapes[i])
            value = 1.0 if layer.pool == "max" else 1.0 / (k * k)
            zeros = np.zeros(c, np.float32)
            add(f"pool{i}", _conv(_pool_weight(c, k, value), zeros, (shape[1], shape[2]), s, p))
            if layer.pool == "max":
                spike_or(f"pool{i}_or", out3)
            shape = out3
            layer_nodes.append((first, prev))
            continue
        r = resolved[i]
        converter_notes.append(
            f"layer {i}: {r.adc_kind}"
            + (f" {r.adc_bits}-bit" if r.adc_kind in ("sar", "flash") else "")
            + f", {r.weight_bits}-bit weights, {r.rows}x{r.cols} arrays"
        )
        w, b = chip_weights(mod)
        if not r.is_readout and neuron.model == "ld_lif":
            b = b - np.float32(neuron.decay_step)
        if layer.kind == "fc":
            if converters and _converts(r):
                # the row groups, their converters and the digital periphery (see there)
                in_map = tuple(shape) if len(shape) == 3 else None
                _emit_converted_fc(nodes, edges, prev, f"fc{i}", mod, b, in_map)
                prev = f"fc{i}"
                converted.append(i)
                shape = (layer.out, 1, 1) if in_map is not None else (layer.out,)
            elif len(shape) == 3:
                # a convolution over the whole map instead of Flatten + Affine: the stock
                # importers turn NIR's batch-free Flatten(start_dim=0) into one that also
                # flattens the batch; the output is [out, 1, 1] from here on
                # channels from r.in_shape: a concat skip's are after the main input's
                kernel = w.reshape(layer.out, r.in_shape[0], *shape[1:])
                add(f"fc{i}", _conv(kernel, b, (shape[1], shape[2]), 1, 0))
                shape = (layer.out, 1, 1)
            else:
                add(f"fc{i}", nir.Affine(weight=w.reshape(layer.out, -1), bias=b))
                shape = (layer.out,)
        elif layer.kind == "conv":
            out3 = tuple(shapes[i])
            if converters and _converts(r):
                _emit_converted_conv(
                    nodes,
                    edges,
                    prev,
                    f"conv{i}",
                    mod,
                    b,
                    (shape[1], shape[2]),
                    (out3[1], out3[2]),
                )
                prev = f"conv{i}"
                converted.append(i)
            else:
                if converters and r.adc_kind != "digital" and r.skip_op != "concat":
                    n_nodes, n_values = _conv_converted_size(r)
                    too_big.append(f"{i} ({n_nodes} nodes, {n_values} values)")
                add(f"conv{i}", _conv(w, b, (shape[1], shape[2]), layer.stride, layer.pad))
            shape = out3
        else:
            raise SearchError(
                f"NIR export: layer {i} kind {layer.kind} has no NIR mapping in neuronas yet"
            )
        if not r.is_readout:
            ones = np.ones(shape, dtype=np.float32)
            thr = float(neuron.threshold) * ones
            if neuron.model == "lif":
                add(
                    f"lif{i}",
                    nir.LIF(
                        tau=float(neuron.tau) * dt * ones, r=ones, v_leak=0 * ones, v_threshold=thr
                    ),
                )
            elif neuron.model == "ld_lif":
                # stock importers run this as IF (the decay sits in the bias); the metadata lets
                # neuronas' own reader (run_graph) add the clamp at rest back: exact LD-LIF
                decay = float(neuron.decay_step)
                meta = {"neuronas_model": "ld_lif", "decay_step": decay, "folded_into_bias": decay}
                add(f"if{i}", nir.IF(r=ones, v_threshold=thr, metadata=meta))
            else:
                add(f"if{i}", nir.IF(r=ones, v_threshold=thr))
        layer_nodes.append((first, prev))
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    if any(layer.skip is not None for layer in arch.layers):
        wire_skips(arch, nodes, edges, layer_nodes)
        notes.append(
            "skips are edges: add into the consumer's neuron (into the readout: an identity node), "
            "concat as the consumer's weights split by input channel into <layer> and <layer>_skip"
        )
    if neuron.model == "ld_lif":
        notes.append(
            f"ld_lif exported as IF with the linear decay {neuron.decay_step} folded into the bias; stock importers lose "
            "the clamp at rest, neuronas.snn.nir.run_graph reads the IF nodes' metadata and runs LD-LIF exactly"
        )
    if neuron.reset == "soft":
        notes.append(
            "soft reset (subtract threshold) is not representable in NIR; exported with reset to v_reset = 0"
        )
    if any(layer.kind == "pool" and layer.pool == "max" for layer in arch.layers):
        notes.append(
            "max pooling of binary spikes exported as a per-channel summing Conv2d + memoryless LIF(tau = dt, threshold 0.5) = OR of the window"
        )
    if len(shape) == 3 and arch.layers[-1].kind == "fc":
        notes.append(f"the readout is [{shape[0]}, 1, 1]: fc layers after a feature map are Conv2d")
    unconverted = [
        r.index for r in arch.resolved() if r.adc_kind != "digital" and r.index not in converted
    ]
    if converted:
        notes.append(
            f"layers {converted}: per-row-group conversion represented (row-group Linear / Conv2d "
            "nodes, comparator Threshold nodes, a periphery Affine / 1 x 1 Conv2d); exact for "
            "non-negative inputs"
        )
    if too_big:
        notes.append(
            f"conv layers {', '.join(too_big)}: converted form over the limits "
            f"({MAX_CONVERTED_CONV_NODES} nodes, {MAX_CONVERTED_CONV_VALUES} values per layer): "
            "exact sums"
        )
    if unconverted:
        notes.append(
            f"layers {unconverted}: partial-sum conversion not represented (exact sums; the "
            "converters are in chip/)"
        )
    metadata = {
        "producer": "neuronas",
        "dt_s": dt,
        "timesteps": int(arch.input.timesteps),
        "neuron_model": neuron.model,
        "converters": "; ".join(converter_notes),
        "notes": " | ".join(notes) if notes else "exact",
        "arch_json": arch.to_json(),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def wire_skips(
    arch: Any,
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    layer_nodes: list[tuple[str, str]],
) -> None:
    """Add ``arch``'s skip connections to a chain graph, in place (see the module docstring).

    ``layer_nodes[i]`` names layer i's first node (a concat consumer's weight node, built over
    the joined input: main channels first) and its output node; every edge out of a weighted
    layer's first node leads to its neuron, or to ``output`` for the readout.
    """
    shapes = arch.shapes()
    for i, layer in enumerate(arch.layers):
        if layer.skip is None:
            continue
        src = arch.layer_index(layer.skip.source)
        src_out = layer_nodes[src][1]
        first = layer_nodes[i][0]
        (nxt,) = [b for a, b in edges if a == first]
        if nxt == "output":
            # the readout has no neuron, and the stock importers take one input into the output
            # node: its current and the skip meet in an identity node
            nxt = f"sum{i}"
            nodes[nxt] = _identity(tuple(np.atleast_1d(nodes["output"].output_type["output"])))
            edges.remove((first, "output"))
            edges += [(first, nxt), (nxt, "output")]
        if layer.skip.op == "add":
            edges.append((src_out, nxt))
            continue
        main_channels = (arch.input.shape if i == 0 else shapes[i - 1])[0]
        node = nodes[first]
        w = np.asarray(node.weight)
        w_main, w_skip = w[:, :main_channels], w[:, main_channels:]
        zeros = np.zeros(w.shape[0], np.float32)
        if isinstance(node, nir.Affine):
            nodes[first] = nir.Affine(weight=w_main, bias=node.bias)
            part = nir.Affine(weight=w_skip, bias=zeros)
        else:
            h, w_ = (int(v) for v in np.atleast_1d(node.input_shape))
            in_hw = (h, w_)
            stride = int(np.atleast_1d(node.stride)[0])
            pad = int(np.atleast_1d(node.padding)[0])
            nodes[first] = _conv(w_main, np.asarray(node.bias), in_hw, stride, pad)
            part = _conv(w_skip, zeros, in_hw, stride, pad)
        nodes[f"{first}_skip"] = part
        edges += [(src_out, f"{first}_skip"), (f"{first}_skip", nxt)]


def _identity(shape: tuple[int, ...]) -> Any:
    """An identity node on ``shape``: ``Affine`` (flat) or a 1 x 1 ``Conv2d`` (maps)."""
    ch = int(shape[0])
    zeros = np.zeros(ch, np.float32)
    if len(shape) == 1:
        return nir.Affine(weight=np.eye(ch, dtype=np.float32), bias=zeros)
    eye = np.eye(ch, dtype=np.float32).reshape(ch, ch, 1, 1)
    return _conv(eye, zeros, (int(shape[1]), int(shape[2])), 1, 0)


def write_nir(model: Any, arch: Any, path: Path) -> None:
    """Write :func:`to_nir` of ``model`` to ``path`` (HDF5)."""
    nir.write(str(path), to_nir(model, arch))


def _order(graph: Any) -> list[str]:
    """The graph's nodes after ``input`` in an order where every node follows its inputs."""
    if "input" not in graph.nodes or "output" not in graph.nodes:
        raise SearchError(
            "NIR graph: run_graph reads graphs from 'input' to 'output' (as to_nir writes)"
        )
    preds: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order: list[str] = []
    done = {"input"}
    pending = [name for name in graph.nodes if name != "input"]
    while pending:
        ready = [name for name in pending if all(p in done for p in preds[name])]
        if not ready:
            raise SearchError("NIR graph: run_graph reads feed-forward graphs (it has a cycle)")
        order += ready
        done.update(ready)
        pending = [name for name in pending if name not in done]
    return order


@torch.no_grad()
def run_graph(graph: Any, x: torch.Tensor, dt: float = NIR_DT_S) -> torch.Tensor:
    """Run a feed-forward NIR graph (as :func:`to_nir` writes: a chain with skip edges) on ``x [T, B, *input]`` by NIR's
    own definitions (forward Euler with step ``dt``; a neuron fires when v > v_threshold and
    resets to v_reset): outputs ``[T, B, *output]``.  What a faithful importer computes: the
    graph's accuracy beside the chip's.  An ``IF`` node whose metadata says ``neuronas_model:
    ld_lif`` runs as LD-LIF, ``v <- max(v - d, 0) + x`` (the decay folded into the preceding bias
    is added back), which stock importers cannot express."""
    t_steps, batch = x.shape[:2]
    outs = {"input": x.reshape(t_steps * batch, *x.shape[2:]).float()}
    preds: dict[str, list[str]] = {}
    for a, b in graph.edges:
        preds.setdefault(b, []).append(a)
    for name in _order(graph):
        ins = [outs[p] for p in preds.get(name, [])]
        if not ins:
            raise SearchError(f"NIR graph: node {name!r} has no input")
        h = ins[0] if len(ins) == 1 else torch.stack(ins).sum(0)  # NIR: edges into a node sum
        outs[name] = _apply_node(graph.nodes[name], name, h, t_steps, batch, dt)
    h = outs["output"]
    return h.reshape(t_steps, batch, *h.shape[1:])


def _apply_node(
    node: Any, name: str, h: torch.Tensor, t_steps: int, batch: int, dt: float
) -> torch.Tensor:
    """One node of :func:`run_graph` on its summed input ``h [T*B, ...]``."""
    if isinstance(node, nir.Output):
        return h
    if isinstance(node, nir.Threshold):
        return (h > torch.as_tensor(node.threshold, dtype=torch.float32)).float()
    if isinstance(node, nir.Affine):
        h = F.linear(h, torch.as_tensor(node.weight), torch.as_tensor(node.bias))
    elif isinstance(node, nir.Linear):
        h = F.linear(h, torch.as_tensor(node.weight))
    elif isinstance(node, nir.Conv2d):
        h = F.conv2d(
            h,
            torch.as_tensor(node.weight),
            torch.as_tensor(node.bias),
            tuple(np.atleast_1d(node.stride).tolist()),
            tuple(np.atleast_1d(node.padding).tolist()),
            tuple(np.atleast_1d(node.dilation).tolist()),
            int(node.groups),
        )
    elif isinstance(node, nir.Flatten):
        h = h.flatten(node.start_dim + 1, node.end_dim if node.end_dim < 0 else node.end_dim + 1)
    elif isinstance(node, nir.AvgPool2d):
        h = F.avg_pool2d(
            h,
            tuple(node.kernel_size.tolist()),
            tuple(node.stride.tolist()),
            tuple(node.padding.tolist()),
        )
    elif isinstance(node, (nir.LIF, nir.IF)):
        cur = h.view(t_steps, batch, *h.shape[1:])
        r = torch.as_tensor(node.r, dtype=torch.float32)
        thr = torch.as_tensor(node.v_threshold, dtype=torch.float32)
        v_reset = torch.as_tensor(node.v_reset, dtype=torch.float32)
        v = torch.zeros_like(cur[0])
        meta = getattr(node, "metadata", None) or {}
        ld_lif = None
        if isinstance(node, nir.IF) and str(meta.get("neuronas_model", "")) == "ld_lif":
            ld_lif = (float(meta["decay_step"]), float(meta.get("folded_into_bias", 0.0)))
        spikes = []
        for t in range(t_steps):
            if isinstance(node, nir.LIF):
                k = torch.as_tensor(dt / node.tau, dtype=torch.float32)
                v = v + k * (torch.as_tensor(node.v_leak, dtype=torch.float32) - v + r * cur[t])
            elif ld_lif is not None:
                decay, folded = ld_lif
                v = torch.clamp(v - decay, min=0.0) + (r * cur[t] + folded)
            else:
                v = v + r * cur[t]
            z = (v > thr).float()
            v = torch.where(z > 0, v_reset, v)
            spikes.append(z)
        h = torch.stack(spikes).reshape(t_steps * batch, *h.shape[1:])
    else:
        raise SearchError(
            f"NIR graph: node {name!r} ({type(node).__name__}) is not one run_graph reads"
        )
    return h


def has_converters(arch: Any) -> bool:
    """Whether :func:`to_nir` represents converters for ``arch`` (an fc or conv layer with an
    ADC or a sense amplifier, within the size limits): then the "ideal" graph differs."""
    return any(_converts(r) for r in arch.resolved())


def nir_notes(arch: Any) -> str:
    """One line: what the NIR graph of ``arch`` approximates (``exact`` when nothing)."""
    notes = []
    if arch.neuron.model == "ld_lif":
        notes.append(
            "LD-LIF exported as IF + bias: stock importers lose the clamp at rest, run_graph is exact"
        )
    if arch.neuron.reset == "soft":
        notes.append("soft reset exported as reset to 0")
    if has_converters(arch):
        notes.append(
            "converters as NIR Threshold nodes (snnTorch/Norse do not map them: model_ideal.nir has exact sums)"
        )
    big = [r.index for r in arch.resolved() if r.adc_kind != "digital" and not _converts(r)]
    if big:
        notes.append(
            f"layers {big}: partial-sum conversion not in NIR (reading a concatenation, or a "
            "conv over the graph-size limits: exact sums; see chip/)"
        )
    return "; ".join(notes) or "exact"
