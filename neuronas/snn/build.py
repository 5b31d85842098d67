"""ArchSpec (+ chip) -> a spiking ``nn.Module`` whose weighted layers are crossbar layers.

The network runs multi-step: input ``[T, B, *input.shape]``, output ``[T, B, num_outputs]`` (the
readout's per-timestep output current; a classifier averages it over T), or the readout's map
``[T, B, C, H, W]`` for dense tasks.  Timesteps are folded into the batch for every stateless
layer (crossbars, pooling); only the neurons step through time.

Spike-rate probes: while ``probing`` is on, every weighted layer accumulates the sum of its input
and of its neuron's output spikes (running sums on tensors the forward computes anyway), which
:meth:`SpikingNetwork.activity_rates` turns into the per-layer rates of the cost model's
``Activity`` (one per weighted layer, in ``arch.resolved()`` order).  The same probes count every
weighted layer's row-group occupancy (:mod:`neuronas.snn.occupancy`: the fraction of array reads
whose row group holds at least one input spike, row groups as the chip's layout cuts them):
:meth:`SpikingNetwork.row_group_occupancy`.  Nothing is counted while ``probing`` is off.

Skip connections (:class:`neuronas.spec.SkipSpec`): the forward pass keeps the output of every
layer a skip reads (spikes, ``[T, B, ...]``) until its consumer runs.  ``add`` adds them to the
consumer's output current before its neuron (the tdBN Spiking ResNet's ``SN(conv(x) + x)``:
the crossbars only ever see binary spikes); ``concat`` joins them to the consumer's input along
channels, so the consumer's crossbar has the extra rows and its row groups (and per-group
conversion) span the joined input as the chip's mapping lays it out.

Input prefix: the parameter-free pools in front of the first weighted layer (read by no skip)
give the same output on every pass when the encoding is deterministic (``events``, ``direct``;
``rate`` draws fresh spikes before them), so a trainer can run them once over a dataset split
(:meth:`SpikingNetwork.apply_input_prefix`) and feed the result with ``forward(x,
prefixed=True)``: bit-identical to the full forward on the raw frames, probes included (they sit
on the weighted layers' inputs, after the pools).
"""

from __future__ import annotations

from typing import Any

import torch
from spikingjelly.activation_based import functional
from torch import nn

from neuronas.snn.crossbar import (
    CrossbarConfig,
    CrossbarConv2d,
    CrossbarConvTranspose2d,
    CrossbarLayer,
    CrossbarLinear,
    DeviceModel,
)
from neuronas.snn.neurons import make_neuron
from neuronas.snn.occupancy import occupied_reads, row_group_indicator
from neuronas.spec import ArchSpec

__all__ = ["SpikingNetwork", "build", "crossbar_layers"]


def crossbar_layers(model: nn.Module) -> list[CrossbarLayer]:
    return [m for m in model.modules() if isinstance(m, CrossbarLayer)]


class SpikingNetwork(nn.Module):
    """A feed-forward SNN built from an :class:`ArchSpec` (see the module docstring)."""

    _in_sum: torch.Tensor
    _in_count: torch.Tensor
    _out_sum: torch.Tensor
    _out_count: torch.Tensor
    _occ_sum: torch.Tensor
    _occ_count: torch.Tensor

    def __init__(self, arch: ArchSpec, chip: Any | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.chip_name = getattr(chip, "name", None) if chip is not None else None
        # row groups as the chip's mapping cuts them (the cost model's default chip: im2col)
        periphery = getattr(chip, "periphery", None)
        self.layout = str(getattr(periphery, "layout", "im2col"))
        self._indicators: dict[int, torch.Tensor] = {}  # weighted index -> group kernel (lazy)
        device_model = DeviceModel.from_chip(chip)
        self.device_model = device_model
        resolved = {r.index: r for r in arch.resolved()}
        self.layers = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self._plan: list[tuple[str, int, int]] = []  # (kind, index into layers, index into neurons)
        # per arch layer: (index of the layer its skip reads or -1, op), and the layers to keep
        self._skips: list[tuple[int, str]] = []
        self._keep = arch.skip_sources
        self._weighted_index: list[int] = []
        for i, layer in enumerate(arch.layers):
            self._skips.append(
                (resolved[i].skip_from, resolved[i].skip_op) if i in resolved else (-1, "")
            )
            if layer.kind == "pool":
                pool: nn.Module = (
                    nn.MaxPool2d(layer.kernel, layer.stride, layer.pad)
                    if layer.pool == "max"
                    else nn.AvgPool2d(layer.kernel, layer.stride, layer.pad)
                )
                self.layers.append(pool)
                self._plan.append(("pool", len(self.layers) - 1, -1))
                continue
            r = resolved[i]
            cfg = CrossbarConfig.from_resolved(r)
            mod: nn.Module
            c_in = r.in_shape[0]  # with a concat skip: the main input's and the source's channels
            if layer.kind == "fc":
                flatten = len(r.in_shape) == 3
                mod = CrossbarLinear(r.fan_in, r.fan_out, cfg, device_model)
                kind = "fc_flat" if flatten else "fc"
            elif layer.kind == "conv":
                mod = CrossbarConv2d(
                    c_in, layer.out, layer.kernel, layer.stride, layer.pad, cfg, device_model
                )
                kind = "conv"
            else:
                mod = CrossbarConvTranspose2d(
                    c_in, layer.out, layer.kernel, layer.stride, layer.pad, cfg, device_model
                )
                kind = "conv"
            self.layers.append(mod)
            neuron_idx = -1
            if not r.is_readout:
                self.neurons.append(make_neuron(arch.neuron))
                neuron_idx = len(self.neurons) - 1
            self._plan.append((kind, len(self.layers) - 1, neuron_idx))
            self._weighted_index.append(len(self.layers) - 1)
        n = len(self._weighted_index)
        #: how many leading plan entries form the input prefix (see the module docstring)
        self.input_prefix_length = 0
        if arch.input.encoding != "rate":
            for i, (kind, _li, _ni) in enumerate(self._plan):
                if kind != "pool" or i in self._keep:
                    break
                self.input_prefix_length = i + 1
        self.probing = False
        self.register_buffer("_in_sum", torch.zeros(n, dtype=torch.float64), persistent=False)
        self.register_buffer("_in_count", torch.zeros(n, dtype=torch.float64), persistent=False)
        self.register_buffer("_out_sum", torch.zeros(n, dtype=torch.float64), persistent=False)
        self.register_buffer("_out_count", torch.zeros(n, dtype=torch.float64), persistent=False)
        self.register_buffer("_occ_sum", torch.zeros(n, dtype=torch.float64), persistent=False)
        self.register_buffer("_occ_count", torch.zeros(n, dtype=torch.float64), persistent=False)

    # -- running -------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Input encoding: ``rate`` draws Bernoulli spikes from intensities in [0, 1] every
        timestep; ``events`` and ``direct`` pass the frames through."""
        if self.arch.input.encoding == "rate":
            return (torch.rand_like(x) < x.clamp(0, 1)).to(x.dtype)
        return x

    @property
    def input_prefix_key(self) -> tuple[str, ...]:
        """What the input prefix computes (its pools' reprs: kind, kernel, stride, padding):
        networks with equal keys give equal prefix outputs, so a trainer can share them."""
        return tuple(repr(self.layers[li]) for _k, li, _n in self._plan[: self.input_prefix_length])

    @torch.no_grad()
    def apply_input_prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The input prefix's output ``[T, B, ...]`` for raw frames ``x`` ``[T, B, *input.shape]``
        (``x`` itself when there is no prefix, e.g. under rate encoding, whose draws stay in the
        forward): what ``forward(..., prefixed=True)`` takes."""
        self._check_input(x)
        if self.input_prefix_length == 0:
            return x
        t, b = x.shape[:2]
        h = self.encode(x)
        for _kind, li, _ni in self._plan[: self.input_prefix_length]:
            y = self.layers[li](h.flatten(0, 1))
            h = y.view(t, b, *y.shape[1:])
        return h

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != len(self.arch.input.shape) + 2:
            raise ValueError(
                f"expected input [T, B, {', '.join(map(str, self.arch.input.shape))}], got {list(x.shape)}"
            )

    def forward(self, x: torch.Tensor, prefixed: bool = False) -> torch.Tensor:
        """``x``: the raw frames ``[T, B, *input.shape]``, or with ``prefixed`` the output of
        :meth:`apply_input_prefix` on them (the run starts after the prefix)."""
        start = self.input_prefix_length if prefixed else 0
        if start == 0:
            self._check_input(x)
        functional.reset_net(self)
        t, b = x.shape[:2]
        h = x if start > 0 else self.encode(x)
        w = 0
        keep = self._keep
        saved: dict[int, torch.Tensor] = {}  # outputs that a later layer's skip reads
        for i, (kind, li, ni) in enumerate(self._plan):
            if i < start:
                continue
            mod = self.layers[li]
            if kind == "pool":
                y = mod(h.flatten(0, 1))
                h = y.view(t, b, *y.shape[1:])
                if i in keep:
                    saved[i] = h
                continue
            src, op = self._skips[i]
            if op == "concat":  # channels (features) of the source after the main input's
                h = torch.cat((h, saved[src]), dim=2)
            if kind == "fc_flat":
                h = h.flatten(2)
            if self.probing:
                self._in_sum[w] += h.detach().sum().double()
                self._in_count[w] += h.numel()
                self._count_occupancy(w, mod, h.flatten(0, 1))
            y = mod(h.flatten(0, 1))
            y = y.view(t, b, *y.shape[1:])
            if op == "add":  # residual: the source's spikes join the output current
                y = y + saved[src]
            if ni >= 0:
                h = self.neurons[ni](y)
                if self.probing:
                    self._out_sum[w] += h.detach().sum().double()
                    self._out_count[w] += h.numel()
            else:
                h = y
            if i in keep:
                saved[i] = h
            w += 1
        return h

    # -- hardware controls ---------------------------------------------------------------------

    def set_hardware_awareness(self, level: float) -> None:
        """Interpolate every crossbar between ideal (0) and the full chip model (1)."""
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"hardware awareness must be in [0, 1], got {level}")
        for m in crossbar_layers(self):
            m.hardware_awareness = float(level)

    @property
    def hardware_awareness(self) -> float:
        layers = crossbar_layers(self)
        return layers[0].hardware_awareness if layers else 0.0

    def training_draws(self) -> int:
        """Random numbers one training batch draws for the crossbars' noise (every crossbar
        layer's :meth:`~neuronas.snn.crossbar.CrossbarLayer.training_draws`; a batch reads each
        layer's cells once, whatever its size)."""
        return sum(m.training_draws() for m in crossbar_layers(self))

    def macs_per_timestep(self) -> int:
        """Multiply-accumulates of one sample's timestep through the weighted layers, dense
        (fan-in x fan-out x output positions, as the cost model counts them)."""
        return sum(lay.weights * lay.positions for lay in self.arch.resolved())

    def resample_chip_instance(self, seed: int) -> None:
        """One manufactured chip: fixed programming variation and stuck cells in every array,
        and every array's own read-noise stream (evaluation reads reproducible per instance)."""
        for i, m in enumerate(crossbar_layers(self)):
            m.resample_chip_instance(int(seed) * 1009 + i)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Set the converter ranges from a batch (only layers not yet calibrated)."""
        level = self.hardware_awareness
        was_training = self.training
        self.set_hardware_awareness(1.0)
        self.eval()
        self.forward(x)
        self.set_hardware_awareness(level)
        self.train(was_training)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, target: float = 1.0) -> list[float]:
        """Data-driven initialisation: scale each hidden layer so that its output current on the
        batch ``x`` has a standard deviation of ``target`` x threshold (layer by layer, ideal
        crossbars).  PyTorch's default init leaves sparse event inputs far below threshold, so a
        fresh network is silent and learns slowly through the surrogate alone (LSUV, Mishkin &
        Matas 2016, applied to spiking thresholds).  Returns the scale factor of every layer.
        """
        level = self.hardware_awareness
        was_training = self.training
        self.set_hardware_awareness(0.0)
        self.eval()
        captured: dict[int, torch.Tensor] = {}
        factors: list[float] = []
        weighted = [(li, ni) for kind, li, ni in self._plan if kind != "pool"]
        for li, ni in weighted:
            if ni < 0:  # the readout keeps its init: its scale is the logits' and Adam adapts it
                factors.append(1.0)
                continue
            mod = self.layers[li]
            assert isinstance(mod, CrossbarLayer)
            handle = mod.register_forward_hook(
                lambda _m, _i, out, li=li: captured.__setitem__(li, out)
            )
            self.forward(x)
            handle.remove()
            std = float(captured[li].std())
            factor = self.arch.neuron.threshold * target / std if std > 0 else 1.0
            factor = min(max(factor, 1.0), 100.0)  # only ever louder, and not absurdly
            mod.weight.mul_(factor)
            if mod.bias is not None:
                mod.bias.mul_(factor)
            factors.append(factor)
        self.set_hardware_awareness(level)
        self.train(was_training)
        return factors

    # -- probes --------------------------------------------------------------------------------

    def reset_probes(self) -> None:
        for buf in (
            self._in_sum,
            self._in_count,
            self._out_sum,
            self._out_count,
            self._occ_sum,
            self._occ_count,
        ):
            buf.zero_()

    def _count_occupancy(self, w: int, mod: nn.Module, x: torch.Tensor) -> None:
        assert isinstance(mod, CrossbarLayer)
        ind = self._indicators.get(w)
        if ind is None or ind.device != x.device:
            ind = self._indicators[w] = row_group_indicator(mod, self.layout).to(x.device)
        occupied, reads = occupied_reads(mod, x, ind)
        self._occ_sum[w] += occupied
        self._occ_count[w] += reads

    def row_group_occupancy(self) -> tuple[float, ...] | None:
        """Per weighted layer, the fraction of its array reads (output position x timestep x row
        group) whose row group held at least one input spike while probing; None when nothing
        was probed."""
        if not bool((self._occ_count > 0).all()):
            return None
        return tuple(float(v) for v in (self._occ_sum / self._occ_count).tolist())

    def activity_rates(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(input_rates, output_rates) per weighted layer; the readout's output rate is 0."""
        inp = (self._in_sum / self._in_count.clamp(min=1)).tolist()
        out = (self._out_sum / self._out_count.clamp(min=1)).tolist()
        return tuple(float(v) for v in inp), tuple(float(v) for v in out)


def build(arch: ArchSpec, chip: Any | None = None) -> SpikingNetwork:
    """The spiking network of ``arch`` on ``chip`` (None: an ideal device: no noise, but the
    arch's quantization and converters still apply when hardware awareness is raised)."""
    return SpikingNetwork(arch, chip)
