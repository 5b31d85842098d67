"""A trained spiking network as a NIR graph (https://neuroir.org): the network the chip holds.

NIR mapping (``nir`` 1.0 primitives; simulation time step ``dt = 1e-4 s`` per timestep, the
convention snnTorch's importer assumes):

* fc on a flat input -> ``Affine``; fc on a feature map [C, H, W] -> ``Conv2d`` with an H x W
  kernel (output [N, 1, 1]; later fc layers are 1 x 1 ``Conv2d``): NIR's ``Flatten`` is
  batch-free, and snnTorch, Norse and nirtorch all map it to a ``torch.nn.Flatten`` that
  flattens the batch too.  conv -> ``Conv2d``.  The weights are the **quantized** weights the
  crossbar stores, de-quantized (integer level x the learned step), i.e. what a digital or
  ideal array computes.
* per-row-group conversion (fc and conv layers with an ADC or a sense amplifier), in
  primitives every stock importer maps (:func:`_emit_converted`): a comparator bank
  (``Affine`` / ``Conv2d``: every row group's partial sums in cell levels, once per comparator,
  less the comparator's threshold), a memoryless ``LIF(tau = dt, v_threshold = 0)`` that is the
  comparators (a b-bit ADC as its ladder of 2^b - 1, a sense amplifier as one, with the chip's
  skip of an idle row group from the group's driven-row count), and the digital periphery
  (``Affine`` / 1 x 1 ``Conv2d``: shift-and-add, steps, reference column, bias): chip mode on an
  ideal device, exact at every timestep because the inputs are integers (spikes, event counts)
  and the thresholds half-integers.  NIR has a ``Threshold`` node, but snnTorch 1.0 and Norse
  1.1 map none and neither importer takes a user node map; NIR has no quantiser node.
  ``to_nir(..., converters=False)`` is the "ideal" graph (one node per layer, exact sums of the
  quantized weights, what a digital CIM macro computes; the export writes it as
  ``model_ideal.nir``).  A layer keeps exact sums (noted in the metadata; its converters are
  exact in the member's ``chip/`` package) when its converted form would write more than
  ``MAX_CONVERTED_VALUES`` values (:func:`converted_size`), when it reads non-integers (a
  direct-encoded input, an average pooling: the half-integer thresholds need integer partial
  sums, and a real-valued comparator input is not exact in the importers' forward Euler, which
  forms ``v + (x - v)``), or when it reads a ``concat`` skip (its rows would read two nodes).
* ``lif`` (v <- v + (x - v) / tau, hard reset to 0) -> ``LIF(tau = tau * dt, r = 1,
  v_leak = 0, v_threshold)``: forward-Euler with step dt reproduces it exactly.
* ``if`` (v <- v + x, hard reset to 0) -> ``CubaLIF`` written as an integrator
  (:func:`_integrator`; metadata ``neuronas_model: if``), **not** NIR's ``IF``: snnTorch 1.0's
  importer maps ``nir.IF`` to ``snn.Leaky(beta=0.9, init_hidden=False)`` (snntorch/import_nir.py,
  ``_nir_to_snntorch_module``), a *leaky* neuron that returns ``(spk, mem)``, which the next
  layer of its nirtorch graph receives as a tuple (``TypeError``); it cannot run an IF network.
  The ``CubaLIF`` has a memoryless synapse (``tau_syn = dt``, ``w_in = 1``) and a membrane with
  ``tau_mem = 2^60 dt`` and ``r = 2^60``: forward Euler gives ``i = x`` and
  ``v <- v + 2^-60 (2^60 x - v)``, whose decay factor ``1 - 2^-60`` is exactly 1.0 in float32 and
  float64 (the float below 1 is ``1 - 2^-53`` / ``1 - 2^-24``) and whose input gain
  ``r dt / tau_mem`` is exactly 1 in float32 (powers of two; in float64 within one float32
  rounding of 1e-4): integrate-and-fire to float rounding.
  snnTorch maps it to ``snn.Synaptic(alpha = 0, beta = 1.0)`` (``mem <- mem + x``, exact), Norse
  to its ``CubaLIF`` (``LIBox`` synapse, ``r`` x, ``LIFBox`` membrane: within one rounding of the
  input per step), and :func:`run_graph` reads the metadata and runs IF exactly.
* ``ld_lif`` (v <- max(v - d, 0) + x) has no NIR primitive: it is exported as that integrator
  with the linear decay ``d`` folded into the preceding layer's bias (v <- v - d + x), which is
  what stock importers run: exact while the membrane stays >= d before the decay, below rest
  otherwise (the clamp is lost).  The node's metadata (``neuronas_model: ld_lif``,
  ``decay_step``) lets neuronas' own reader, :func:`run_graph`, run the exact LD-LIF.
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
    "MAX_CONVERTED_VALUES",
    "NIR_DT_S",
    "chip_weights",
    "converted_size",
    "has_converters",
    "nir_notes",
    "run_graph",
    "to_nir",
    "wire_skips",
    "write_nir",
]

#: seconds per network timestep in exported NIR graphs (snnTorch's importer assumes 1e-4)
NIR_DT_S = 1e-4

#: ``tau_mem / dt`` and ``r`` of the ``CubaLIF`` that carries an IF neuron (:func:`_integrator`):
#: a power of two with ``dt / tau_mem = 2^-60`` below half the spacing of floats under 1.0 in
#: float64 (2^-54), so ``1 - dt / tau_mem`` rounds to exactly 1.0 in every importer's arithmetic
IF_AS_CUBALIF_SCALE = 2.0**60


def _integrator(thr: np.ndarray, metadata: dict[str, Any]) -> Any:
    """An integrate-and-fire neuron as NIR's ``CubaLIF`` (see the module docstring): memoryless
    synapse, membrane decay ``1 - 2^-60`` (1.0 in float32 / float64), unit input gain."""
    ones = np.ones_like(thr, dtype=np.float32)
    scale = np.float32(IF_AS_CUBALIF_SCALE)
    return nir.CubaLIF(
        tau_syn=np.float32(NIR_DT_S) * ones,
        tau_mem=np.float32(NIR_DT_S) * scale * ones,
        r=scale * ones,
        v_leak=0 * ones,
        v_threshold=thr.astype(np.float32),
        w_in=ones,
        metadata={
            "integrate_and_fire": "CubaLIF with tau_syn = dt, tau_mem = 2^60 dt, r = 2^60, w_in = 1: forward Euler is v <- v + x (decay 1 - 2^-60 = 1.0 in float)",
            **metadata,
        },
    )


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


#: the most float values (weights, biases, neuron parameters) one layer's converted form
#: (:func:`_emit_converted`, fc and conv alike: see :func:`converted_size`) may write: 2^24
#: float32 values are 64 MiB of HDF5.  A larger layer keeps exact sums, said in the graph's
#: metadata and the export's notes (its converters are exact in the member's ``chip/`` package).
MAX_CONVERTED_VALUES = 1 << 24

#: comparator thresholds are half-integers within this magnitude: float32 holds every
#: half-integer below 2^23 exactly, so every comparator input is exact (see _emit_converted)
_MAX_HALF_INTEGER = float(1 << 22)


def converted_size(r: Any) -> int:
    """The float values :func:`_emit_converted` writes for resolved layer ``r`` (fc or conv), at
    most: the comparator bank (``G n_g`` outputs x ``K`` weights + ``G n_g`` biases), its
    memoryless ``LIF`` (4 parameters per output and position) and the periphery (``N x G n_g``
    weights + ``N`` biases), for ``G`` row groups of ``n_g`` = comparators per slice and column
    (``2^b - 1``, a sense amplifier 1) x slices x columns, + 1 driven-row count for a sense
    amplifier.  Slices (``ceil(weight_bits / bits_per_cell)``) and columns (+ the offset
    scheme's reference) are upper bounds.  It grows as ``G K`` ~ ``K^2 / rows`` in the fan-in."""
    groups = -(-r.fan_in // r.rows)
    sa = r.adc_kind == "sa"
    comparators = 1 if sa else 2**r.adc_bits - 1
    slices = -(-r.weight_bits // r.bits_per_cell)
    columns = r.fan_out + (1 if r.signed_scheme == "offset" else 0)
    outs = groups * (comparators * slices * columns + (1 if sa else 0))
    return outs * (r.fan_in + 1 + 4 * r.positions + r.fan_out) + r.fan_out


def _integer_input(arch: Any, index: int) -> bool:
    """Whether layer ``index`` of ``arch`` reads integers: spikes (a neuron layer's or a max
    pooling's, which the graph exports as a spike OR) or event counts (``events`` input).  A
    direct-encoded input and an average pooling's fractions are not."""
    for j in range(index - 1, -1, -1):
        prev = arch.layers[j]
        if prev.kind != "pool":
            return True  # a hidden layer's neurons: spikes
        return prev.pool == "max"
    return bool(arch.input.encoding == "events")


def _converts(arch: Any, r: Any) -> bool:
    """Whether :func:`to_nir` represents resolved layer ``r``'s converters (see the limits)."""
    if r.adc_kind == "digital" or r.kind not in ("fc", "conv"):
        return False
    if r.skip_op == "concat":
        # its row groups would read two nodes' outputs (NIR has no concatenation node)
        return False
    if not _integer_input(arch, r.index):
        return False
    return converted_size(r) <= MAX_CONVERTED_VALUES


def _half_integer_above(t: np.ndarray) -> np.ndarray:
    """``floor(t) + 1/2``: for an integer p, ``p > t`` exactly when ``p > floor(t) + 1/2``."""
    return np.clip(np.floor(t) + 0.5, -_MAX_HALF_INTEGER - 0.5, _MAX_HALF_INTEGER + 0.5)


def _emit_converted(
    nodes: dict[str, Any],
    edges: list[tuple[str, str]],
    src: str,
    name: str,
    layer: Any,
    bias: np.ndarray,
    bank: Any,
    point: Any,
    out_shape: tuple[int, ...],
) -> None:
    """The crossbar layer ``layer`` (fc or conv) with its per-row-group converters, from node
    ``src`` to a final node ``name``: a chain of three nodes (no node with two inputs, which
    Norse's importer misorders) in primitives every stock importer maps:

    * ``{name}_bank``, the comparator bank: ``bank(weight [G n_g, K], bias)``, an ``Affine`` (fc),
      a ``Conv2d`` with an H x W kernel (fc on a feature map) or the layer's ``Conv2d`` (conv:
      its stride and padding; the comparators act per output position).  Output ``(g, j, s,
      c)`` is ``p - t``: the partial sum ``p`` of row group g, slice s, column c in cell levels
      (its weight row is the cell levels on the group's fan-in rows, 0 elsewhere; conv rows in
      im2col order, as :class:`neuronas.snn.crossbar.ConvRowGroups` groups them) less
      comparator j's threshold ``t`` (the bias).  A b-bit ADC (``sar``/``flash``, code
      ``rint(clip(p / step, lo, hi))``) is its ladder of 2^b - 1 comparators ``p > (j + 1/2)
      step`` (j = lo .. hi-1; the code is lo + the number that fire), a sense amplifier one
      comparator ``p > threshold`` and, last in each group, the group's driven-row count less
      1/2 (the chip skips a group with no driven row: code 0);
    * ``{name}_cmp``: ``LIF(tau = dt, r = 1, v_leak = 0, v_threshold = 0)``, one comparator per
      output: with tau = dt, forward Euler sets ``v <- v + (0 - v + x) = x`` and the node fires
      where ``x > 0``;
    * ``{name}``: the digital periphery, ``point(weight [N, G n_g], bias [N])`` (``Affine`` / 1 x 1
      ``Conv2d``): shift-and-add of the slices, converter step, weight step, the offset scheme's
      reference column subtracted, the idle groups' correction, the bias and the codes'
      constant parts.

    Exact at every timestep in every importer: the inputs are integers (spikes, event counts;
    :func:`_integer_input`), so every partial sum p is an integer, and ``p > t`` for a real t is
    ``p > floor(t) + 1/2``: the thresholds are half-integers, and every comparator input,
    membrane and difference an importer forms (``x``, ``x - v``, ``v + (x - v)``, snnTorch's
    ``0 * v + x``) is an integer or a half-integer below 2^23, which float32 holds exactly.  The
    state a comparator keeps between timesteps never changes its output, and ``x`` is never 0,
    so ``>`` and ``>=`` agree.
    """
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
    # periphery weight per comparator [N, S*Nc]: (s, c) -> output n
    scale = factor * float(w_step) * shift[:, None] * step  # [S, Nc]
    periphery = (col[:, None, :] * scale[None]).reshape(n, n_slices * nc)
    if sa:
        thresholds = conv["threshold"].cpu().numpy().astype(np.float64).reshape(1, -1)
        # an idle group reads p = 0, so its comparator gives c = [0 > threshold]; the chip skips
        # it (code 0).  Code = 2H - 1 (bipolar) or H (unipolar) when driven, 0 when idle:
        # bipolar 2 (H + (c - 1/2) driven - c), unipolar H + c driven - c
        c = (thresholds[0] < 0).astype(np.float64)
        idle = (c - 0.5) if bipolar else c
        const = -c  # per (s, c) in the periphery's input units
        weight = np.concatenate([periphery, (periphery @ idle)[:, None]], axis=1)
    else:
        lo, hi = cfg.adc_range
        j = np.arange(lo, hi, dtype=np.float64)[:, None]
        thresholds = (j + 0.5) * step.reshape(1, -1)  # [2^b - 1, S*Nc]
        const = np.full(n_slices * nc, float(lo))
        weight = np.tile(periphery, (1, hi - lo))
    cut = _half_integer_above(thresholds).reshape(-1)
    n_g = cut.size + (1 if sa else 0)  # outputs per row group
    flat_cells = cells.reshape(k, -1)  # [K, S*Nc]
    w = np.zeros((groups, n_g, k), np.float32)
    b = np.zeros((groups, n_g), np.float32)
    for g in range(groups):
        r0, r1 = g * rows, min(k, (g + 1) * rows)
        w[g, : cut.size, r0:r1] = np.tile(flat_cells[r0:r1].T, (len(thresholds), 1))
        b[g, : cut.size] = -cut
        if sa:
            w[g, -1, r0:r1] = 1.0  # the driven-row count
            b[g, -1] = -0.5
    ones = np.ones((groups * n_g, *out_shape), np.float32)
    nodes[f"{name}_bank"] = bank(w.reshape(groups * n_g, k), b.reshape(-1))
    nodes[f"{name}_cmp"] = nir.LIF(
        tau=np.float32(NIR_DT_S) * ones, r=ones, v_leak=0 * ones, v_threshold=0 * ones
    )
    edges.extend([(src, f"{name}_bank"), (f"{name}_bank", f"{name}_cmp"), (f"{name}_cmp", name)])
    b_out = bias.astype(np.float64) + groups * (periphery @ const)  # every group's constants
    nodes[name] = point(np.tile(weight, (1, groups)), b_out.astype(np.float32))
    nodes[name].metadata.update(
        {
            "neuronas_role": "crossbar periphery",
            "converter": cfg.adc_kind,
            "row_groups": groups,
            "slices": n_slices,
        },
    )


def _converted_nodes(
    kind: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...], layer: Any
) -> tuple[Any, Any]:
    """``(bank, point)`` for :func:`_emit_converted`: ``bank(weight [n, K], bias)`` reads the
    layer's input (fc: ``Affine``; fc on a map [C, H, W]: ``Conv2d`` with an H x W kernel;
    conv: the layer's ``Conv2d``), ``point(weight [n, m], bias)`` acts per output position
    (``Affine`` / 1 x 1 ``Conv2d``)."""

    def affine(weight: np.ndarray, bias: np.ndarray) -> Any:
        return nir.Affine(weight=weight.astype(np.float32), bias=bias.astype(np.float32))

    if len(out_shape) == 1:
        return affine, affine
    out_hw = (int(out_shape[1]), int(out_shape[2]))
    in_hw = (int(in_shape[1]), int(in_shape[2]))
    if kind == "conv":
        kern, stride, pad = int(layer.kernel_size[0]), int(layer.stride[0]), int(layer.padding[0])
    else:
        kern, stride, pad = 0, 1, 0  # a kernel over the whole map

    def bank(weight: np.ndarray, bias: np.ndarray) -> Any:
        shape = (kern, kern) if kind == "conv" else in_hw
        return _conv(weight.reshape(weight.shape[0], in_shape[0], *shape), bias, in_hw, stride, pad)

    def point(weight: np.ndarray, bias: np.ndarray) -> Any:
        return _conv(weight.reshape(*weight.shape, 1, 1), bias, out_hw, 1, 0)

    return bank, point


def to_nir(model: Any, arch: Any, converters: bool = True) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (a :class:`neuronas.snn.SpikingNetwork` of ``arch``).

    ``converters``: represent the per-row-group converters of fc and conv layers
    (:func:`_emit_converted`: what the chip computes, in nodes every stock importer maps);
    False: the "ideal" graph, one node per layer with exact sums of the quantized weights (what
    a digital CIM macro computes)."""
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
    too_big: list[str] = []  # layers over the converted form's limits
    not_integer: list[int] = []  # converter layers reading non-integers
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
        if layer.kind not in ("fc", "conv"):
            raise SearchError(
                f"NIR export: layer {i} kind {layer.kind} has no NIR mapping in neuronas yet"
            )
        # fc layers after a feature map are convolutions over the whole map: [out, 1, 1]
        out_shape = tuple(shapes[i]) if layer.kind == "conv" else (layer.out, 1, 1)[: len(shape)]
        if converters and _converts(arch, r):
            # the row groups, their comparators and the digital periphery (see there)
            bank, point = _converted_nodes(layer.kind, tuple(shape), out_shape, mod)
            _emit_converted(
                nodes, edges, prev, f"{layer.kind}{i}", mod, b, bank, point, out_shape[1:]
            )
            prev = f"{layer.kind}{i}"
            converted.append(i)
            shape = out_shape
        else:
            if converters and r.adc_kind != "digital" and r.skip_op != "concat":
                if not _integer_input(arch, i):
                    not_integer.append(i)
                else:
                    too_big.append(f"{i} ({converted_size(r)} values)")
            if layer.kind == "conv":
                add(f"conv{i}", _conv(w, b, (shape[1], shape[2]), layer.stride, layer.pad))
            elif len(shape) == 3:
                # a convolution over the whole map instead of Flatten + Affine: the stock
                # importers turn NIR's batch-free Flatten(start_dim=0) into one that also
                # flattens the batch; the output is [out, 1, 1] from here on
                # channels from r.in_shape: a concat skip's are after the main input's
                kernel = w.reshape(layer.out, r.in_shape[0], *shape[1:])
                add(f"fc{i}", _conv(kernel, b, (shape[1], shape[2]), 1, 0))
            else:
                add(f"fc{i}", nir.Affine(weight=w.reshape(layer.out, -1), bias=b))
            shape = out_shape
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
                add(f"if{i}", _integrator(thr, meta))
            else:
                add(f"if{i}", _integrator(thr, {"neuronas_model": "if"}))
        layer_nodes.append((first, prev))
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    if any(layer.skip is not None for layer in arch.layers):
        wire_skips(arch, nodes, edges, layer_nodes)
        notes.append(
            "skips are edges: add into the consumer's neuron (into the readout: an identity node), "
            "concat as the consumer's weights split by input channel into <layer> and <layer>_skip"
        )
    if neuron.model in ("if", "ld_lif"):
        notes.append(
            "IF neurons are CubaLIF nodes that integrate exactly (tau_syn = dt, tau_mem = 2^60 dt, r = 2^60, w_in = 1: "
            "decay 1 - 2^-60 = 1.0 in float, unit gain), not nir.IF, which snnTorch 1.0 imports as a leaky neuron "
            "returning a tuple; the nodes' metadata says neuronas_model"
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
            f"layers {converted}: per-row-group conversion represented (per row group an "
            "Affine / Conv2d comparator bank, partial sum minus each comparator's half-integer "
            "threshold, into a memoryless LIF(tau = dt, threshold 0); a periphery Affine / 1 x 1 "
            "Conv2d); exact for integer inputs (spikes, event counts)"
        )
    if too_big:
        notes.append(
            f"layers {', '.join(too_big)}: converted form over the limits "
            f"({MAX_CONVERTED_VALUES} values per layer): exact sums"
        )
    if not_integer:
        notes.append(
            f"layers {not_integer} read non-integers (a direct-encoded input, an average "
            "pooling): their comparators have no exact stock form, exact sums"
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
    graph's accuracy beside the chip's.  A neuron node (``CubaLIF`` as :func:`to_nir` writes IF,
    or ``IF``) whose metadata says ``neuronas_model: if`` runs as exact IF, ``v <- v + x``, and
    one that says ``ld_lif`` as LD-LIF, ``v <- max(v - d, 0) + x`` (the decay folded into the
    preceding bias is added back), which stock importers cannot express."""
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
    elif isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        cur = h.view(t_steps, batch, *h.shape[1:])
        thr = torch.as_tensor(node.v_threshold, dtype=torch.float32)
        v_reset = torch.as_tensor(node.v_reset, dtype=torch.float32)
        v = torch.zeros_like(cur[0])
        meta = getattr(node, "metadata", None) or {}
        kind = str(meta.get("neuronas_model", ""))
        if isinstance(node, nir.LIF) or kind not in ("if", "ld_lif"):
            kind = type(node).__name__
        decay, folded = 0.0, 0.0
        if kind == "ld_lif":
            decay, folded = float(meta["decay_step"]), float(meta.get("folded_into_bias", 0.0))
        r = torch.as_tensor(node.r, dtype=torch.float32)
        i_syn = torch.zeros_like(cur[0])
        spikes = []
        for t in range(t_steps):
            if kind == "LIF":
                k = torch.as_tensor(dt / node.tau, dtype=torch.float32)
                v = v + k * (torch.as_tensor(node.v_leak, dtype=torch.float32) - v + r * cur[t])
            elif kind == "CubaLIF":
                k_syn = torch.as_tensor(dt / node.tau_syn, dtype=torch.float32)
                k_mem = torch.as_tensor(dt / node.tau_mem, dtype=torch.float32)
                w_in = torch.as_tensor(node.w_in, dtype=torch.float32)
                i_syn = i_syn + k_syn * (w_in * cur[t] - i_syn)
                v = v + k_mem * (torch.as_tensor(node.v_leak, dtype=torch.float32) - v + r * i_syn)
            elif kind == "ld_lif":
                v = torch.clamp(v - decay, min=0.0) + (cur[t] + folded)
            elif isinstance(node, nir.IF):
                v = v + r * cur[t]
            else:  # an integrator CubaLIF (to_nir's IF): unit gain, decay 1.0 in float
                v = v + cur[t]
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
    return any(_converts(arch, r) for r in arch.resolved())


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
            "converters as comparator banks into memoryless LIF nodes (model_ideal.nir: exact sums)"
        )
    big = [r.index for r in arch.resolved() if r.adc_kind != "digital" and not _converts(arch, r)]
    if big:
        notes.append(
            f"layers {big}: partial-sum conversion not in NIR (reading a concatenation or "
            "non-integers, or over the graph-size limits: exact sums; see chip/)"
        )
    return "; ".join(notes) or "exact"
