"""A trained spiking network as a NIR graph (https://neuroir.org): the network the chip holds.

NIR mapping (``nir`` 1.0 primitives; simulation time step ``dt = 1e-4 s`` per timestep, the
convention snnTorch's importer assumes):

* fc on a flat input -> ``Affine``; fc on a feature map [C, H, W] -> ``Conv2d`` with an H x W
  kernel (output [N, 1, 1]; later fc layers are 1 x 1 ``Conv2d``): NIR's ``Flatten`` is
  batch-free, and snnTorch, Norse and nirtorch all map it to a ``torch.nn.Flatten`` that
  flattens the batch too.  conv -> ``Conv2d``.  The weights are the **quantized** weights the
  crossbar stores, de-quantized (integer level x the learned step), i.e. what a digital or
  ideal array computes.  The per-row-group ADC / sense amplifier conversion of partial sums has
  no NIR primitive; each layer's converter is listed in the graph's metadata instead (the
  exact converters are in the member's ``chip/`` package).
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
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
import torch.nn.functional as F

from neuronas.errors import SearchError

__all__ = ["NIR_DT_S", "chip_weights", "nir_notes", "run_graph", "to_nir", "write_nir"]

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


def to_nir(model: Any, arch: Any) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (a :class:`neuronas.snn.SpikingNetwork` of ``arch``)."""
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
    converters: list[str] = []
    resolved = {r.index: r for r in arch.resolved()}

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
                # a convolution over the whole map instead of Flatten + Affine: the stock
                # importers turn NIR's batch-free Flatten(start_dim=0) into one that also
                # flattens the batch; the output is [out, 1, 1] from here on
                kernel = w.reshape(layer.out, *shape)
                add(f"fc{i}", _conv(kernel, b, (shape[1], shape[2]), 1, 0))
                shape = (layer.out, 1, 1)
            else:
                add(f"fc{i}", nir.Affine(weight=w.reshape(layer.out, -1), bias=b))
                shape = (layer.out,)
        elif layer.kind == "conv":
            add(f"conv{i}", _conv(w, b, (shape[1], shape[2]), layer.stride, layer.pad))
            shape = tuple(shapes[i])
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
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
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


def _chain(graph: Any) -> list[str]:
    nxt = dict(graph.edges)
    if len(nxt) != len(graph.edges) or "input" not in graph.nodes:
        raise SearchError(
            "NIR graph: run_graph reads chains from 'input' to 'output' (as to_nir writes)"
        )
    order, name = [], "input"
    while name in nxt:
        name = nxt[name]
        order.append(name)
    return order[:-1]


@torch.no_grad()
def run_graph(graph: Any, x: torch.Tensor, dt: float = NIR_DT_S) -> torch.Tensor:
    """Run a chain-shaped NIR graph (as :func:`to_nir` writes) on ``x [T, B, *input]`` by NIR's
    own definitions (forward Euler with step ``dt``; a neuron fires when v > v_threshold and
    resets to v_reset): outputs ``[T, B, *output]``.  What a faithful importer computes: the
    graph's accuracy beside the chip's.  An ``IF`` node whose metadata says ``neuronas_model:
    ld_lif`` runs as LD-LIF, ``v <- max(v - d, 0) + x`` (the decay folded into the preceding bias
    is added back), which stock importers cannot express."""
    t_steps, batch = x.shape[:2]
    h = x.reshape(t_steps * batch, *x.shape[2:]).float()
    for name in _chain(graph):
        node = graph.nodes[name]
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
            h = h.flatten(
                node.start_dim + 1, node.end_dim if node.end_dim < 0 else node.end_dim + 1
            )
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
    return h.reshape(t_steps, batch, *h.shape[1:])


def nir_notes(arch: Any) -> str:
    """One line: what the NIR graph of ``arch`` approximates (``exact`` when nothing)."""
    notes = []
    if arch.neuron.model == "ld_lif":
        notes.append(
            "LD-LIF exported as IF + bias: stock importers lose the clamp at rest, run_graph is exact"
        )
    if arch.neuron.reset == "soft":
        notes.append("soft reset exported as reset to 0")
    kinds = {r.adc_kind for r in arch.resolved()}
    if kinds - {"digital"}:
        notes.append(
            f"partial-sum conversion ({', '.join(sorted(kinds - {'digital'}))}) not in NIR (listed in metadata)"
        )
    return "; ".join(notes) or "exact"
