"""A trained spiking network as a NIR graph (https://neuroir.org): the network the chip holds.

NIR mapping (``nir`` 1.0 primitives; simulation time step ``dt = 1e-4 s`` per timestep, the
convention snnTorch's importer assumes):

* fc -> ``Affine`` (a ``Flatten`` first when the input is spatial); conv -> ``Conv2d``.  The
  weights are the **quantized** weights the crossbar stores, de-quantized (integer level x the
  learned step), i.e. what a digital or ideal array computes.  The per-row-group ADC / sense
  amplifier conversion of partial sums has no NIR primitive; each layer's converter is listed
  in the graph's metadata instead.
* ``lif`` (v <- v + (x - v) / tau, hard reset to 0) -> ``LIF(tau = tau * dt, r = 1,
  v_leak = 0, v_threshold)``: forward-Euler with step dt reproduces it exactly.
* ``if`` -> ``IF(r = 1, v_threshold)``.
* ``ld_lif`` (v <- max(v - d, 0) + x) has no NIR primitive: it is exported as ``IF`` with the
  linear decay ``d`` folded into the preceding layer's bias (v <- v - d + x).  This is exact
  while the membrane stays >= d before the decay and lets the membrane fall below rest
  otherwise (the clamp at rest is lost); the metadata says so.
* soft reset (subtract the threshold) has no NIR primitive either; such networks are exported
  with NIR's reset-to-``v_reset`` and flagged in the metadata.
* max pooling of binary spikes is an OR: ``AvgPool2d(k)`` followed by a memoryless
  ``LIF(tau = dt, r = 1, v_threshold = 0.5 / k^2)`` fires iff any input of the window spiked
  (exact for binary inputs).  Average pooling is ``AvgPool2d``.
* the readout (last weighted layer) has no neuron: the graph's output is its per-timestep
  output current, like neuronas' own network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from neuronas.errors import SearchError

__all__ = ["NIR_DT_S", "chip_weights", "nir_notes", "to_nir", "write_nir"]

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


def to_nir(model: Any, arch: Any) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (a :class:`neuronas.snn.SpikingNetwork` of ``arch``)."""
    if arch.input.encoding == "rate":
        raise SearchError(
            "NIR export: rate-encoded inputs (Bernoulli sampling) have no NIR primitive; export archs with events or direct encoding"
        )
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(arch.input.shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    shape: tuple[int, ...] = tuple(arch.input.shape)
    shapes = arch.shapes()
    neuron = arch.neuron
    dt = NIR_DT_S
    notes: list[str] = []
    converters: list[str] = []
    resolved = {r.index: r for r in arch.resolved()}

    def add(name: str, node: Any) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, layer in enumerate(arch.layers):
        mod = model.layers[i]
        out_shape = tuple(shapes[i])
        if layer.kind == "pool":
            k, s, p = layer.kernel, layer.stride, layer.pad
            add(
                f"pool{i}",
                nir.AvgPool2d(
                    kernel_size=np.array([k, k]), stride=np.array([s, s]), padding=np.array([p, p])
                ),
            )
            if layer.pool == "max":
                ones = np.ones(out_shape, dtype=np.float32)
                add(
                    f"pool{i}_or",
                    nir.LIF(
                        tau=dt * ones, r=ones, v_leak=0 * ones, v_threshold=(0.5 / (k * k)) * ones
                    ),
                )
            shape = out_shape
            continue
        r = resolved[i]
        converters.append(
            f"layer {i}: {r.adc_kind}"
            + (f" {r.adc_bits}-bit" if r.adc_kind in ("sar", "flash") else "")
            + f", {r.weight_bits}-bit weights, {r.rows}x{r.cols} arrays"
        )
        w, b = chip_weights(mod)
        if not r.is_readout and neuron.model == "ld_lif":
            b = b - np.float32(neuron.decay_step)
        if layer.kind == "fc":
            if len(shape) == 3:
                add(
                    f"flatten{i}",
                    nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1),
                )
            add(f"fc{i}", nir.Affine(weight=w.reshape(layer.out, -1), bias=b))
        elif layer.kind == "conv":
            add(
                f"conv{i}",
                nir.Conv2d(
                    input_shape=(shape[1], shape[2]),
                    weight=w,
                    stride=layer.stride,
                    padding=layer.pad,
                    dilation=1,
                    groups=1,
                    bias=b,
                ),
            )
        else:
            raise SearchError(
                f"NIR export: layer {i} kind {layer.kind} has no NIR mapping in neuronas yet"
            )
        if not r.is_readout:
            ones = np.ones(out_shape, dtype=np.float32)
            thr = float(neuron.threshold) * ones
            if neuron.model == "lif":
                add(
                    f"lif{i}",
                    nir.LIF(
                        tau=float(neuron.tau) * dt * ones, r=ones, v_leak=0 * ones, v_threshold=thr
                    ),
                )
            else:
                add(f"if{i}", nir.IF(r=ones, v_threshold=thr))
        shape = out_shape
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    if neuron.model == "ld_lif":
        notes.append(
            f"ld_lif exported as IF with the linear decay {neuron.decay_step} folded into the bias; the clamp at rest is not represented"
        )
    if neuron.reset == "soft":
        notes.append(
            "soft reset (subtract threshold) is not representable in NIR; exported with reset to v_reset = 0"
        )
    if any(layer.kind == "pool" and layer.pool == "max" for layer in arch.layers):
        notes.append(
            "max pooling of binary spikes exported as AvgPool2d + memoryless LIF(tau = dt, threshold 0.5/k^2) = OR of the window"
        )
    metadata = {
        "producer": "neuronas",
        "dt_s": dt,
        "timesteps": int(arch.input.timesteps),
        "neuron_model": neuron.model,
        "converters": "; ".join(converters),
        "notes": " | ".join(notes) if notes else "exact",
        "arch_json": arch.to_json(),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(model: Any, arch: Any, path: Path) -> None:
    """Write :func:`to_nir` of ``model`` to ``path`` (HDF5)."""
    nir.write(str(path), to_nir(model, arch))


def nir_notes(arch: Any) -> str:
    """One line: what the NIR graph of ``arch`` approximates (``exact`` when nothing)."""
    notes = []
    if arch.neuron.model == "ld_lif":
        notes.append("LD-LIF exported as IF + bias (clamp at rest not represented)")
    if arch.neuron.reset == "soft":
        notes.append("soft reset exported as reset to 0")
    kinds = {r.adc_kind for r in arch.resolved()}
    if kinds - {"digital"}:
        notes.append(
            f"partial-sum conversion ({', '.join(sorted(kinds - {'digital'}))}) not in NIR (listed in metadata)"
        )
    return "; ".join(notes) or "exact"
