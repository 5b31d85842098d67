"""Search spaces: typed YAML files whose samples are :class:`~neuronas.spec.ArchSpec` candidates.

A space names families of topologies (``mlp``, ``cnn``, ``resnet``: blocks with a searched
skip) with conditional dimensions (depth, per-layer widths, kernels, pooling, skips) and the
hardware dimensions shared by every family
(timesteps, neuron model, weight bits, ADC kind and bits, crossbar size, dataflow, optional
per-layer precision).  It is loaded strictly (unknown keys are errors that list the known
ones) and sampled define-by-run from an Optuna trial::

    space = load_space("digits-small")
    arch = space.sample(trial, chip)          # an ArchSpec the chip can map

Every dimension is written one of three ways: a single value (fixed, not searched), a list
(a categorical choice), or ``{low, high, step, log}`` (an integer range).  Conditional
parameters are named after what they condition on (``mlp.width_1`` exists only when
``mlp.depth >= 2``), so the Optuna dashboard shows them plainly.

The chip restricts the space at sampling time: ADC kinds the periphery lacks and ADC bit
widths outside its range are never proposed (the choices are narrowed, not rejected
afterwards), so no trial is spent on a candidate that cannot be built at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from neuronas.config import (
    load_yaml,
    parse_model,
    resolve_preset,
)
from neuronas.errors import ConfigError, NeuronasError, SearchError
from neuronas.schema import StrictModel
from neuronas.spec import (
    MAX_NAME,
    MAX_NEURON_PARAM,
    MAX_SIDE,
    ArchSpec,
    InputSpec,
    LayerOverride,
    LayerSpec,
    MappingSpec,
    NeuronSpec,
    PrecisionSpec,
    SkipSpec,
)

__all__ = [
    "IntRange",
    "SearchSpace",
    "load_space",
    "space_from_dict",
]


class _Strict(StrictModel):
    """The base of the search-space schema (see :mod:`neuronas.schema`); each dimension also
    has its documented range (see _within and the validators of each class)."""


#: field -> (lowest, highest) value a searched dimension may take; what a chip or the spec
#: allows (crossbars up to 4096, 1-16 weight bits, ...) and, for the topology, what a network
#: trained by neuronas can be (an MLP 64 layers deep, 65536 neurons wide)
RANGES: dict[str, tuple[float, float]] = {
    "timesteps": (1, 1024),
    "downsample": (1, 64),
    "depth": (1, 64),
    "width": (1, MAX_SIDE),
    "blocks": (1, 32),
    "channels": (1, MAX_SIDE),
    "stem": (1, MAX_SIDE),
    "kernel": (1, 64),
    "stride": (1, 64),
    "hidden": (0, MAX_SIDE),
    "bottleneck": (0, MAX_SIDE),
    "tau": (1.0, MAX_NEURON_PARAM),
    "decay_step": (0.0, MAX_NEURON_PARAM),
    "threshold": (1e-9, MAX_NEURON_PARAM),
    "weight_bits": (1, 16),
    "membrane_bits": (2, 32),
    "adc_bits": (2, 16),
    "crossbar": (1, 4096),
    "rows": (1, 4096),
    "cols": (1, 4096),
    "bits_per_cell": (1, 8),
}


def _within(v: Any, info: ValidationInfo) -> Any:
    """Refuse a dimension (value, list or range) with a value outside ``RANGES[field]``."""
    name = info.field_name or ""
    if name not in RANGES or v is None:
        return v
    lo, hi = RANGES[name]
    if isinstance(v, IntRange):
        ends = [v.low, v.high]
    elif isinstance(v, list):
        ends = v
    else:
        ends = [v]
    for x in ends:
        if isinstance(x, (int, float)) and not (lo <= x <= hi):
            what = "numbers" if isinstance(lo, float) else "integers"
            raise ValueError(f"{x} is out of range: values must be {what} in {lo:g}..{hi:g}")
    return v


class IntRange(_Strict):
    """An integer range searched with ``trial.suggest_int`` (ordered, unlike a list)."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low <= high must hold, but got low={self.low}, high={self.high}")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if self.log and self.step != 1:
            raise ValueError(
                "log and step > 1 cannot be combined (Optuna's suggest_int forbids it)"
            )
        if self.log and self.low < 1:
            raise ValueError(f"a log range needs low >= 1, got {self.low}")
        return self

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


def _dim_kind(v: Any) -> str:
    if isinstance(v, (dict, IntRange)):
        return "range"
    if isinstance(v, list):
        return "list"
    return "value"


# a tagged union: a malformed range reports the range's own rule, not "not an integer"
IntDim = Annotated[
    Annotated[int, Tag("value")]
    | Annotated[list[int], Tag("list")]
    | Annotated[IntRange, Tag("range")],
    Discriminator(_dim_kind),
]
FloatDim = Annotated[
    Annotated[float, Tag("value")] | Annotated[list[float], Tag("list")],
    Discriminator(_dim_kind),
]


def _nonempty(v: Any, what: str) -> Any:
    if isinstance(v, list) and not v:
        raise ValueError(f"{what}: an empty list leaves nothing to choose; give at least one value")
    if isinstance(v, list) and len(set(map(str, v))) != len(v):
        raise ValueError(f"{what}: duplicate values {v}")
    return v


class InputDims(_Strict):
    """What the network sees; the shape comes from the dataset unless fixed here."""

    timesteps: IntDim = 8
    encoding: Literal["events", "rate", "direct"] = "events"
    #: downsampling factor of the input (1 = full resolution).  [C, H, W] frames: a first
    #: max-pool layer of this kernel (max pooling keeps binary events binary, so the first
    #: crossbar still sees spikes).  [F] (audio) inputs: F // downsample channels, binned by the
    #: data loader (events of channels u*d .. u*d+d-1 land on channel u; binarised, this is the
    #: same max over each bin); the network and its first crossbar are that much narrower.
    downsample: IntDim = 1
    shape: list[int] | None = None

    @field_validator("timesteps", "downsample")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if len(v) not in (1, 3) or not all(1 <= x <= MAX_SIDE for x in v):
            raise ValueError(f"must be [C, H, W] or [F] with every size in 1..{MAX_SIDE}")
        return v


class MlpFamily(_Strict):
    """Fully connected hidden layers (each followed by the spiking neuron), then the readout."""

    depth: IntDim = Field(default_factory=lambda: IntRange(low=1, high=2))
    width: IntDim = Field(default_factory=lambda: [64, 128])
    #: one width for every hidden layer (True) or one per layer (False, conditional on depth)
    shared_width: bool = False

    @field_validator("depth", "width")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)


class CnnFamily(_Strict):
    """Conv blocks (conv + neuron [+ pool]), optional fc hidden layer, then the readout."""

    blocks: IntDim = Field(default_factory=lambda: IntRange(low=1, high=2))
    channels: IntDim = Field(default_factory=lambda: [8, 16])
    kernel: IntDim = Field(default_factory=lambda: [3])
    #: pooling after each block; "none" keeps the resolution
    pool: list[Literal["max", "avg", "none"]] = Field(default_factory=lambda: ["max"])  # type: ignore[arg-type]
    stride: IntDim = 1
    #: width of an fc hidden layer before the readout (0 = straight to the readout)
    hidden: IntDim = Field(default_factory=lambda: [0])

    @field_validator("blocks", "channels", "kernel", "stride", "hidden", "pool")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)


def _odd_kernels(v: Any, why: str) -> Any:
    """``v`` (a kernel dimension) when every kernel it offers is odd, else a ValueError saying
    which is even and ``why`` odd ones are needed."""
    even = [k for k in (v.values() if isinstance(v, IntRange) else _as_list(v)) if k % 2 == 0]
    if even:
        raise ValueError(f"{even[0]} is even: {why}")
    return v


class ResnetFamily(_Strict):
    """Residual spiking CNNs: a stem conv, then blocks whose skip the sampler picks
    (SNASNet / NeuroNAS-style cells), an optional fc hidden layer, then the readout.

    The stem sets the trunk's channels; each block keeps them: conv ``b<i>a`` (``width_<i>``
    channels) then conv ``b<i>b`` (trunk channels), both with kernel ``kernel_<i>`` and "same"
    padding, and ``skip_<i>`` from the block's input: ``add`` (a residual: the input's spikes
    join ``b<i>b``'s output current, tdBN Spiking ResNet), ``concat`` (``b<i>b`` reads the input's
    channels beside ``b<i>a``'s, DenseNet-style: more crossbar rows) or ``none``; then
    ``pool_<i>`` (max / avg halves the map, none keeps it).
    """

    stem: IntDim = Field(default_factory=lambda: [8, 16])
    blocks: IntDim = Field(default_factory=lambda: IntRange(low=1, high=2))
    width: IntDim = Field(default_factory=lambda: [8, 16])
    kernel: IntDim = Field(default_factory=lambda: [3])
    skip: list[Literal["add", "concat", "none"]] = Field(
        default_factory=lambda: ["add", "concat", "none"]  # type: ignore[arg-type]
    )
    pool: list[Literal["max", "avg", "none"]] = Field(default_factory=lambda: ["max", "none"])  # type: ignore[arg-type]
    #: width of an fc hidden layer before the readout (0 = straight to the readout)
    hidden: IntDim = Field(default_factory=lambda: [0])

    @field_validator("stem", "blocks", "width", "kernel", "skip", "pool", "hidden")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: Any) -> Any:
        return _odd_kernels(
            v, "a residual block keeps its map size, which needs odd kernels with 'same' padding"
        )


class FlowFamily(_Strict):
    """A Spike-FlowNet-like encoder-decoder for dense optical flow (``task: dense``):
    ``blocks`` strided conv stages (stride 2, each halving the resolution), an optional stride-1
    bottleneck conv, then one transposed conv (kernel 4, stride 2, padding 1: doubling the
    resolution) per stage back to the input's resolution, the last of them the 2-channel flow
    readout (no neuron).  Every hidden layer is followed by the spiking neuron; the decoder
    stages mirror the encoder's channels.

    ``skip`` (one choice per candidate, for every scale; only sampled with two or more stages):
    the encoder-decoder skips of Spike-FlowNet and U-Net, from encoder stage ``e<i>`` to the
    decoder at the same resolution.  ``concat``: the deconv that reads ``e<i>``'s resolution
    reads ``e<i>``'s spikes beside the decoder's (Spike-FlowNet's ``concat``; more crossbar
    rows, and the readout sees the finest encoder features); ``add``: ``e<i>``'s spikes join the
    output current of the deconv that returns to ``e<i>``'s resolution (same channels: the
    decoder mirrors the encoder); ``none``: a plain encoder-decoder."""

    blocks: IntDim = Field(default_factory=lambda: IntRange(low=1, high=2))
    channels: IntDim = Field(default_factory=lambda: [8, 16])
    kernel: IntDim = Field(default_factory=lambda: [3])
    #: channels of a stride-1 conv between encoder and decoder (0: none)
    bottleneck: IntDim = Field(default_factory=lambda: [0])
    skip: list[Literal["concat", "add", "none"]] = Field(
        default_factory=lambda: ["concat", "add", "none"]  # type: ignore[arg-type]
    )

    @field_validator("blocks", "channels", "kernel", "bottleneck", "skip")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: Any) -> Any:
        return _odd_kernels(
            v,
            "the flow encoder's kernels must be odd: a stride-2 conv with 'same' padding halves "
            "the resolution exactly only then",
        )


#: families whose networks classify (an fc readout of one value per class) and those that
#: predict dense flow (their own readout, ``task: dense``)
CLASSIFIER_FAMILIES = ("mlp", "cnn", "resnet")
DENSE_FAMILIES = ("flow",)


class Families(_Strict):
    mlp: MlpFamily | None = None
    cnn: CnnFamily | None = None
    resnet: ResnetFamily | None = None
    flow: FlowFamily | None = None

    @model_validator(mode="after")
    def _some(self) -> Families:
        if not self.names():
            raise ValueError("give at least one family (mlp, cnn, resnet, flow)")
        return self

    def names(self) -> list[str]:
        return [n for n in ("mlp", "cnn", "resnet", "flow") if getattr(self, n) is not None]


class NeuronDims(_Strict):
    model: list[Literal["lif", "ld_lif", "if"]] | Literal["lif", "ld_lif", "if"] = "lif"
    tau: FloatDim = 2.0
    decay_step: FloatDim = 0.125
    threshold: FloatDim = 1.0
    reset: list[Literal["hard", "soft"]] | Literal["hard", "soft"] = "hard"

    @field_validator("model", "tau", "decay_step", "threshold", "reset")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)


class PrecisionDims(_Strict):
    weight_bits: IntDim = Field(default_factory=lambda: [2, 4, 8])
    membrane_bits: IntDim = 8

    @field_validator("weight_bits", "membrane_bits")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)


AdcKindName = Literal["sar", "flash", "sa", "digital"]


class MappingDims(_Strict):
    #: ADC kinds to search; narrowed to the chip's ``periphery.adc_kinds`` when sampling
    adc_kind: list[AdcKindName] | AdcKindName = Field(default_factory=lambda: ["sa", "sar"])  # type: ignore[arg-type]
    #: bits for sar / flash (sa is always 1, digital 0); clipped to the chip's range
    adc_bits: IntDim = Field(default_factory=lambda: IntRange(low=3, high=6))
    #: square crossbars rows = cols (or give rows and cols separately)
    crossbar: IntDim | None = None  # [64, 128] when neither crossbar nor rows/cols is given
    rows: IntDim | None = None
    cols: IntDim | None = None
    bits_per_cell: IntDim = 1
    signed_scheme: list[Literal["differential", "offset"]] | Literal["differential", "offset"] = (
        "differential"
    )
    dataflow: (
        list[Literal["weight_stationary", "output_stationary"]]
        | Literal["weight_stationary", "output_stationary"]
    ) = "weight_stationary"

    @field_validator(
        "adc_kind",
        "adc_bits",
        "crossbar",
        "rows",
        "cols",
        "bits_per_cell",
        "signed_scheme",
        "dataflow",
    )
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)

    @model_validator(mode="before")
    @classmethod
    def _default_geometry(cls, data: Any) -> Any:
        if isinstance(data, dict) and all(
            data.get(k) is None for k in ("crossbar", "rows", "cols")
        ):
            data = {**data, "crossbar": [64, 128]}
        return data

    @model_validator(mode="after")
    def _geometry(self) -> MappingDims:
        if self.crossbar is not None and (self.rows is not None or self.cols is not None):
            raise ValueError("give either crossbar (square arrays) or rows and cols, not both")
        if self.crossbar is None and (self.rows is None or self.cols is None):
            raise ValueError("give crossbar (square arrays) or both rows and cols")
        return self


class PerLayerDims(_Strict):
    """FlexSpIM-style per-layer operand resolution: when the sampler turns it on, every weighted
    layer picks its own weight bits (and ADC bits for sar/flash layers) from these choices."""

    weight_bits: IntDim | None = None
    adc_bits: IntDim | None = None

    @field_validator("weight_bits", "adc_bits")
    @classmethod
    def _lists(cls, v: Any, info: ValidationInfo) -> Any:
        return _within(_nonempty(v, "value"), info)

    @model_validator(mode="after")
    def _some(self) -> PerLayerDims:
        if self.weight_bits is None and self.adc_bits is None:
            raise ValueError("per_layer needs weight_bits and/or adc_bits")
        return self


class SearchSpace(_Strict):
    """A typed search space (see the module docstring for the file format)."""

    name: str = Field(default="", max_length=MAX_NAME)
    description: str = ""
    #: dataset the space is designed for (the default of ``neuronas search --dataset``)
    dataset: str = Field(default="digits-events", min_length=1, max_length=MAX_NAME)
    #: spike-rate prior used to price candidates before training (None: the chip's prior)
    activity_prior: float | None = Field(default=None, gt=0.0, le=1.0)
    #: classes of the readout; when given it must be the dataset's number of classes
    outputs: int | None = Field(default=None, ge=2, le=MAX_SIDE)
    input: InputDims = Field(default_factory=InputDims)
    families: Families
    neuron: NeuronDims = Field(default_factory=NeuronDims)
    precision: PrecisionDims = Field(default_factory=PrecisionDims)
    mapping: MappingDims = Field(default_factory=MappingDims)
    per_layer: PerLayerDims | None = None

    # -- sampling -------------------------------------------------------------------------

    def sample(
        self,
        trial: Any,
        chip: Any = None,
        *,
        input_shape: Sequence[int] | None = None,
        num_outputs: int | None = None,
    ) -> ArchSpec:
        """One candidate, define-by-run from an Optuna trial (or anything with ``suggest_*``).

        ``chip`` (a :class:`~neuronas.hardware.Chip`) narrows the ADC choices to what its
        periphery offers.  ``input_shape`` / ``num_outputs`` default to the space's
        ``input.shape`` / ``outputs``, else to the space's dataset.
        """
        shape, outputs = self._io(input_shape, num_outputs)
        s = _Suggester(trial)
        timesteps = s.int("timesteps", self.input.timesteps)
        downsample = s.int("downsample", self.input.downsample)
        layers: list[LayerSpec] = []
        cur = shape
        if downsample > 1 and len(shape) == 3:
            if downsample > min(shape[1], shape[2]):
                downsample = 1
            else:
                layers.append(LayerSpec(kind="pool", kernel=downsample, pool="max"))
                cur = (shape[0], shape[1] // downsample, shape[2] // downsample)
        elif downsample > 1 and len(shape) == 1:
            # a 1-D (audio) input has no pooling layer: its channels are binned by the data
            # loader (tonic's Downsample: channel u -> int(u * f / F) for f = F // downsample,
            # then binarised: the max over each bin, as the 2-D pool takes), so the network's
            # input is f wide and its first crossbar has that many rows
            from neuronas.data import downsampled_shape

            shape = cur = downsampled_shape(shape, downsample)
        family = s.cat("family", self.families.names())
        if family in ("cnn", "resnet") and len(shape) != 3:
            raise SearchError(
                f"search space {self.name!r}: the {family} family needs a [C, H, W] input, the dataset gives {list(shape)}"
            )
        if family == "flow":
            layers += flow_layers(s, self.families.flow, cur, name=self.name)  # type: ignore[arg-type]
        else:
            if family == "mlp":
                layers += self._mlp(s, self.families.mlp)  # type: ignore[arg-type]
            elif family == "resnet":
                layers += self._resnet(s, self.families.resnet, cur)  # type: ignore[arg-type]
            else:
                layers += self._cnn(s, self.families.cnn, cur)  # type: ignore[arg-type]
            layers.append(LayerSpec(kind="fc", out=outputs))

        r = self.restricted(chip)
        neuron = NeuronSpec(
            model=s.cat("neuron", r["neuron"]),
            tau=s.float_cat("tau", self.neuron.tau),
            decay_step=s.float_cat("decay_step", self.neuron.decay_step),
            threshold=s.float_cat("threshold", self.neuron.threshold),
            reset=s.cat("reset", _as_list(self.neuron.reset)),
        )
        precision = PrecisionSpec(
            weight_bits=s.int("weight_bits", self.precision.weight_bits),
            membrane_bits=s.int("membrane_bits", self.precision.membrane_bits),
        )
        bits_dim = r["adc_bits"]
        adc_kind = s.cat("adc_kind", r["adc_kind"])
        adc_bits = (
            _fixed_bits(adc_kind) if adc_kind in ("sa", "digital") else s.int("adc_bits", bits_dim)
        )
        m = self.mapping
        if r["crossbar"] is not None:
            rows = cols = s.int("crossbar", r["crossbar"])
        else:
            rows = s.int("rows", r["rows"])
            cols = s.int("cols", r["cols"])
        mapping = MappingSpec(
            adc_bits=adc_bits,
            adc_kind=adc_kind,
            rows=rows,
            cols=cols,
            bits_per_cell=s.int("bits_per_cell", r["bits_per_cell"]),
            signed_scheme=s.cat("signed_scheme", _as_list(m.signed_scheme)),
            dataflow=s.cat("dataflow", _as_list(m.dataflow)),
        )
        if self.per_layer is not None and s.cat("per_layer", [False, True]):
            layers = self._per_layer(s, layers, adc_kind, bits_dim)
        return ArchSpec(
            input=InputSpec(shape=tuple(shape), timesteps=timesteps, encoding=self.input.encoding),
            layers=tuple(layers),
            neuron=neuron,
            precision=precision,
            mapping=mapping,
            name=f"{self.name}-{family}" if self.name else family,
            task="dense" if family in DENSE_FAMILIES else "classification",
        )

    def _mlp(self, s: _Suggester, fam: MlpFamily) -> list[LayerSpec]:
        depth = s.int("mlp.depth", fam.depth)
        if fam.shared_width:
            w = s.int("mlp.width", fam.width)
            return [LayerSpec(kind="fc", out=w) for _ in range(depth)]
        return [LayerSpec(kind="fc", out=s.int(f"mlp.width_{i}", fam.width)) for i in range(depth)]

    def _cnn(self, s: _Suggester, fam: CnnFamily, shape: tuple[int, ...]) -> list[LayerSpec]:
        blocks = s.int("cnn.blocks", fam.blocks)
        layers: list[LayerSpec] = []
        _, h, w = shape
        for i in range(blocks):
            out = s.int(f"cnn.channels_{i}", fam.channels)
            k = s.int(f"cnn.kernel_{i}", fam.kernel)
            stride = s.int(f"cnn.stride_{i}", fam.stride)
            k = min(k, h, w) if min(h, w) >= 1 else k
            k = max(k, 1)
            layers.append(LayerSpec(kind="conv", out=out, kernel=k, stride=stride))
            p = k // 2
            h, w = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
            pool = s.cat(f"cnn.pool_{i}", list(fam.pool))
            # a 1x1 map cannot be pooled further; keep the block unpooled rather than fail
            if pool != "none" and h >= 2 and w >= 2:
                layers.append(LayerSpec(kind="pool", kernel=2, pool=pool))
                h, w = h // 2, w // 2
        hidden = s.int("cnn.hidden", fam.hidden)
        if hidden > 0:
            layers.append(LayerSpec(kind="fc", out=hidden))
        return layers

    def _resnet(self, s: _Suggester, fam: ResnetFamily, shape: tuple[int, ...]) -> list[LayerSpec]:
        trunk = s.int("resnet.stem", fam.stem)
        blocks = s.int("resnet.blocks", fam.blocks)
        _, h, w = shape
        # an odd kernel no larger than the map keeps "same" padding size-preserving
        fit = lambda k: max(1, min(k, h, w) - (0 if min(k, h, w) % 2 else 1))  # noqa: E731
        layers = [LayerSpec(kind="conv", out=trunk, kernel=fit(3), name="stem")]
        block_in = "stem"
        for i in range(blocks):
            width = s.int(f"resnet.width_{i}", fam.width)
            k = fit(s.int(f"resnet.kernel_{i}", fam.kernel))
            op = s.cat(f"resnet.skip_{i}", list(fam.skip))
            layers.append(LayerSpec(kind="conv", out=width, kernel=k, name=f"b{i}a"))
            skip = None if op == "none" else SkipSpec(source=block_in, op=op)
            layers.append(LayerSpec(kind="conv", out=trunk, kernel=k, name=f"b{i}b", skip=skip))
            block_in = f"b{i}b"
            pool = s.cat(f"resnet.pool_{i}", list(fam.pool))
            # a 1x1 map cannot be pooled further; keep the block unpooled rather than fail
            if pool != "none" and h >= 2 and w >= 2:
                layers.append(LayerSpec(kind="pool", kernel=2, pool=pool, name=f"b{i}p"))
                h, w = h // 2, w // 2
                block_in = f"b{i}p"
        hidden = s.int("resnet.hidden", fam.hidden)
        if hidden > 0:
            layers.append(LayerSpec(kind="fc", out=hidden))
        return layers

    def _per_layer(
        self, s: _Suggester, layers: list[LayerSpec], adc_kind: str, bits_dim: IntDim
    ) -> list[LayerSpec]:
        pl = self.per_layer
        assert pl is not None
        out: list[LayerSpec] = []
        j = 0
        for layer in layers:
            if not layer.weighted:
                out.append(layer)
                continue
            wb = (
                s.int(f"layer{j}.weight_bits", pl.weight_bits)
                if pl.weight_bits is not None
                else None
            )
            ab = None
            per_bits = (
                _clip_dim(pl.adc_bits, _range_of(bits_dim)) if pl.adc_bits is not None else None
            )
            if per_bits is not None and adc_kind in ("sar", "flash"):
                # per-layer ADC bits stay within what the chip (and the global choice) allows
                ab = s.int(f"layer{j}.adc_bits", per_bits)
            override = LayerOverride(weight_bits=wb, adc_bits=ab)
            out.append(
                dataclasses.replace(layer, override=None if override.is_empty() else override)
            )
            j += 1
        return out

    # -- the chip's restrictions -----------------------------------------------------------

    def adc_choices(self, chip: Any = None) -> tuple[list[str], IntDim]:
        """ADC kinds (and the sar/flash bit dimension) this space may propose on ``chip``.

        Raises a :class:`SearchError` when nothing is left: the space and the chip share no
        ADC kind, or the space's bit range misses the chip's entirely.
        """
        kinds = list(_as_list(self.mapping.adc_kind))
        bits_dim: IntDim = self.mapping.adc_bits
        if chip is None:
            return kinds, bits_dim
        per = chip.periphery
        allowed = set(per.adc_kinds)
        narrowed = _clip_dim(bits_dim, (max(2, int(per.adc_bits_min)), int(per.adc_bits_max)))
        keep = [
            k for k in kinds if k in allowed and not (k in ("sar", "flash") and narrowed is None)
        ]
        if not keep:
            raise SearchError(
                f"search space {self.name or '(file)'}: ADC kinds {kinds} with adc_bits {_describe(bits_dim)} "
                f"leave nothing chip {chip.name} can build (it offers {', '.join(per.adc_kinds)} with "
                f"{per.adc_bits_min}..{per.adc_bits_max} bits); widen mapping.adc_kind / mapping.adc_bits"
            )
        return keep, narrowed if narrowed is not None else bits_dim

    def restricted(self, chip: Any = None) -> dict[str, Any]:
        """Every dimension the chip narrows, narrowed: ADC kinds and bits, neuron models (the
        chip's neuron units), crossbar sizes (its largest arrays) and bits per cell (its cell).
        A :class:`SearchError` names the dimension when the chip leaves no value of it."""
        kinds, bits = self.adc_choices(chip)
        out: dict[str, Any] = {
            "adc_kind": kinds,
            "adc_bits": bits,
            "neuron": _as_list(self.neuron.model),
        }
        m = self.mapping
        out.update(crossbar=m.crossbar, rows=m.rows, cols=m.cols, bits_per_cell=m.bits_per_cell)
        if chip is None:
            return out
        name = self.name or "(file)"
        models = [x for x in out["neuron"] if x in chip.periphery.neuron_unit.models]
        if not models:
            raise SearchError(
                f"search space {name}: neuron models {out['neuron']} -- chip {chip.name} has neuron units only for {', '.join(chip.periphery.neuron_unit.models)}; widen neuron.model"
            )
        out["neuron"] = models
        cap = chip.capacity
        for key, hi in (
            ("crossbar", min(cap.array_rows_max, cap.array_cols_max)),
            ("rows", cap.array_rows_max),
            ("cols", cap.array_cols_max),
        ):
            if out[key] is None:
                continue
            clipped = _clip_dim(out[key], (1, hi))
            if clipped is None:
                raise SearchError(
                    f"search space {name}: mapping.{key} {_describe(out[key])} -- chip {chip.name}'s arrays are at most {cap.array_rows_max} x {cap.array_cols_max}"
                )
            out[key] = clipped
        bpc = _clip_dim(m.bits_per_cell, (1, chip.technology.device.bits_per_cell_max))
        if bpc is None:
            raise SearchError(
                f"search space {name}: mapping.bits_per_cell {_describe(m.bits_per_cell)} -- chip {chip.name}'s {chip.technology.device.kind} cell holds at most {chip.technology.device.bits_per_cell_max}"
            )
        out["bits_per_cell"] = bpc
        return out

    # -- the checks a search makes before it starts ------------------------------------------

    def check(
        self,
        chip: Any = None,
        *,
        dataset: str | None = None,
        samples: int = 64,
        seed: int = 0,
    ) -> None:
        """Raise a one-line :class:`NeuronasError` naming the field when a search on this space
        could not run: ``outputs`` / ``input.shape`` that the dataset cannot serve, a cnn family
        on a flat input, a downsampling factor larger than the input, a dimension the chip
        leaves empty, or no buildable candidate among ``samples`` seeded random draws.

        ``dataset`` defaults to the space's own; ``chip`` (a Chip) adds the chip's limits.
        """
        from neuronas.data import check_input_shape, dataset_info
        from neuronas.errors import DataError
        from neuronas.hardware.chip import chip_problems

        name = dataset or self.dataset
        try:
            info = dataset_info(name)
        except DataError as exc:
            raise ConfigError(f"dataset: {exc}") from None
        shape = tuple(info.input_shape)
        if self.input.shape:
            shape = check_input_shape(info, self.input.shape, what="input.shape")
        if self.outputs is not None and self.outputs != info.num_classes:
            raise ConfigError(
                f"outputs: got {self.outputs}, dataset {name} has {info.num_classes} classes "
                "(leave it out: the readout takes the dataset's classes)"
            )
        down = _values_of(self.input.downsample)
        if len(shape) != 3:
            if self.families.cnn is not None:
                raise ConfigError(
                    f"families.cnn: a cnn needs a [C, H, W] input, dataset {name} gives {list(shape)}; "
                    "remove families.cnn"
                )
            if self.families.resnet is not None:
                raise ConfigError(
                    f"families.resnet: a resnet needs a [C, H, W] input, dataset {name} gives "
                    f"{list(shape)}; remove families.resnet"
                )
            if max(down) > shape[0]:
                raise ConfigError(
                    f"input.downsample: got {max(down)}, more than the input's {shape[0]} channels "
                    f"(dataset {name}); use at most {shape[0]}"
                )
        elif max(down) > min(shape[1], shape[2]):
            raise ConfigError(
                f"input.downsample: got {max(down)}, larger than the input's {shape[1]}x{shape[2]} "
                f"(dataset {name}); use at most {min(shape[1], shape[2])}"
            )
        check_flow_family(self, info, shape)
        self.restricted(chip)
        rng = random.Random(seed)
        first: str | None = None
        for _ in range(samples):
            try:
                arch = self.sample(
                    _SeededTrial(rng), chip, input_shape=shape, num_outputs=info.num_classes
                )
            except NeuronasError as exc:
                first = first or str(exc)
                continue
            problems = chip_problems(arch, chip) if chip is not None else []
            if not problems:
                return
            first = first or f"{problems[0]} (chip {chip.name})"
        raise ConfigError(f"none of {samples} sampled candidates can be built: {first}")

    def input_shapes(self, input_shape: Sequence[int] | None = None) -> list[tuple[int, ...]]:
        """Every input shape (per timestep) a candidate of this space is fed, in the order of
        ``input.downsample``'s values: the dataset's (or ``input.shape``), and for a 1-D input
        each channel-binned width (a [C, H, W] input is pooled inside the network)."""
        from neuronas.data import downsampled_shape

        shape, _ = self._io(input_shape, 0)
        if len(shape) != 1:
            return [shape]
        dim = self.input.downsample
        factors = dim.values() if isinstance(dim, IntRange) else _as_list(dim)
        out: list[tuple[int, ...]] = []
        for d in factors:
            s = downsampled_shape(shape, int(d)) if d > 1 else shape
            if s not in out:
                out.append(s)
        return out

    # -- helpers for the samplers ----------------------------------------------------------

    def grid(
        self,
        chip: Any = None,
        *,
        input_shape: Sequence[int] | None = None,
        num_outputs: int | None = None,
    ) -> dict[str, list[Any]]:
        """Every parameter the space can suggest with all its values (for Optuna's GridSampler).

        Conditional parameters are included with all their values; the grid sampler then walks
        combinations some of which differ only in parameters a candidate does not use.
        """
        rec = _Recorder()
        shape, outputs = self._io(input_shape, num_outputs)
        # walk the structural maxima so that every conditional parameter is seen once per value
        for values in _branch_values(self, chip):
            rec.fixed = values
            # a branch that cannot be built adds no parameters
            with contextlib.suppress(Exception):
                self.sample(rec, chip, input_shape=shape, num_outputs=outputs)
        return {k: list(v) for k, v in rec.choices.items()}

    def _io(
        self, input_shape: Sequence[int] | None, num_outputs: int | None
    ) -> tuple[tuple[int, ...], int]:
        # the space's own input.shape is the more specific statement: it wins over the dataset's
        # shape the search passes (check() has made sure the dataset can be served at it)
        shape = (
            tuple(self.input.shape)
            if self.input.shape
            else (tuple(input_shape) if input_shape is not None else None)
        )
        outputs = num_outputs if num_outputs is not None else self.outputs
        if shape is None or outputs is None:
            from neuronas.data import dataset_info

            info = dataset_info(self.dataset)
            shape = shape or tuple(info.input_shape)
            outputs = outputs or int(info.num_classes)
        return shape, outputs


# --------------------------------------------------------------------------------------------


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, list) else [v]


def _values_of(dim: IntDim) -> list[int]:
    if isinstance(dim, IntRange):
        return [dim.low, dim.high]
    return [int(v) for v in _as_list(dim)]


class _SeededTrial:
    """A trial stand-in drawing uniformly with a seeded ``random.Random`` (for :meth:`check`)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            v = round(math.exp(self.rng.uniform(math.log(low), math.log(high))))
            return min(max(v, low), high)
        return low + step * self.rng.randrange((high - low) // step + 1)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.rng.choice(list(choices))


def _fixed_bits(kind: str) -> int:
    return 1 if kind == "sa" else 0


def _range_of(dim: IntDim) -> tuple[int, int]:
    if isinstance(dim, IntRange):
        return dim.low, dim.high
    vals = _as_list(dim)
    return min(vals), max(vals)


def _clip_dim(dim: IntDim, bounds: tuple[int, int]) -> IntDim | None:
    """``dim`` restricted to ``[lo, hi]``; None when nothing is left."""
    lo, hi = bounds
    if isinstance(dim, IntRange):
        new_lo, new_hi = max(dim.low, lo), min(dim.high, hi)
        if dim.step > 1:
            # stay on the original step grid
            start = dim.low + ((new_lo - dim.low + dim.step - 1) // dim.step) * dim.step
            new_lo = start
        if new_lo > new_hi:
            return None
        if new_lo == new_hi:
            return new_lo
        return IntRange(low=new_lo, high=new_hi, step=dim.step, log=dim.log)
    vals = [v for v in _as_list(dim) if lo <= v <= hi]
    if not vals:
        return None
    return vals[0] if len(vals) == 1 else vals


def _describe(dim: Any) -> str:
    if isinstance(dim, IntRange):
        return f"{dim.low}..{dim.high}"
    return str(dim)


class _Suggester:
    """Wraps an Optuna trial: fixed values are not suggested (they are not search dimensions)."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def int(self, name: str, dim: IntDim) -> int:
        if isinstance(dim, IntRange):
            if dim.low == dim.high:
                return dim.low
            return int(self.trial.suggest_int(name, dim.low, dim.high, step=dim.step, log=dim.log))
        if isinstance(dim, list):
            if len(dim) == 1:
                return int(dim[0])
            return int(self.trial.suggest_categorical(name, list(dim)))
        return int(dim)

    def cat(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        if len(choices) == 1:
            return choices[0]
        return self.trial.suggest_categorical(name, choices)

    def float_cat(self, name: str, dim: FloatDim) -> float:
        if isinstance(dim, list):
            return float(self.cat(name, dim))
        return float(dim)


class _Recorder:
    """A stand-in trial that records every parameter's possible values (for :meth:`grid`)."""

    def __init__(self) -> None:
        # each parameter's values in the order first seen (a dict as an ordered set: a wide
        # integer range has tens of thousands of values, and a list's `in` made this quadratic:
        # 29 s for 1..65536)
        self.choices: dict[str, dict[Any, None]] = {}
        self.fixed: dict[str, Any] = {}

    def _add(self, name: str, values: list[Any]) -> Any:
        cur = self.choices.setdefault(name, {})
        for v in values:
            cur.setdefault(v, None)
        if name in self.fixed:
            return self.fixed[name]
        # the largest value opens every conditional branch (deepest network, all widths)
        return (
            max(values)
            if all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            else values[-1]
        )

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return int(self._add(name, list(range(low, high + 1, step))))

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._add(name, list(choices))


def _branch_values(space: SearchSpace, chip: Any) -> Iterator[dict[str, Any]]:
    """Assignments of the structural (branching) parameters covering every conditional branch."""
    fams = space.families.names()
    kinds, _ = space.adc_choices(chip)
    per_layer = [False, True] if space.per_layer is not None else [False]
    for fam, kind, pl in itertools.product(fams, kinds, per_layer):
        yield {"family": fam, "adc_kind": kind, "per_layer": pl}


# --------------------------------------------------------------------------------------------
# the dense (optical flow) family


def flow_layers(
    s: _Suggester, fam: FlowFamily, shape: tuple[int, ...], *, name: str = ""
) -> list[LayerSpec]:
    """The layers of one encoder-decoder of ``fam`` on input ``shape`` (see :class:`FlowFamily`),
    ending with the 2-channel flow readout at the input's resolution."""
    blocks = s.int("flow.blocks", fam.blocks)
    if len(shape) != 3:
        raise SearchError(
            f"search space {name!r}: the flow family needs a [C, H, W] input, got {list(shape)}"
        )
    _, h, w = shape
    if h % 2**blocks or w % 2**blocks:
        raise SearchError(
            f"search space {name!r}: flow.blocks {blocks} halves the input {h}x{w} {blocks} times; "
            f"its sides must be multiples of {2**blocks} for the decoder to return to it"
        )
    layers: list[LayerSpec] = []
    widths: list[int] = []
    for i in range(blocks):
        out = s.int(f"flow.channels_{i}", fam.channels)
        k = s.int(f"flow.kernel_{i}", fam.kernel)
        # "same" padding k // 2 with stride 2 halves an even side for any odd kernel
        layers.append(LayerSpec(kind="conv", out=out, kernel=k, stride=2, name=f"e{i}"))
        widths.append(out)
    mid = s.int("flow.bottleneck", fam.bottleneck)
    if mid > 0:
        layers.append(LayerSpec(kind="conv", out=mid, kernel=3))
    # a skip needs a decoder stage below the first: one stage has none
    op = s.cat("flow.skip", list(fam.skip)) if blocks > 1 else "none"
    for i in reversed(range(blocks)):
        # deconv i reads e<i>'s resolution and returns to e<i-1>'s (the input's for i = 0)
        out = widths[i - 1] if i > 0 else 2
        skip = None
        if op == "concat" and i < blocks - 1:
            skip = SkipSpec(source=f"e{i}", op="concat")
        elif op == "add" and i > 0:
            skip = SkipSpec(source=f"e{i - 1}", op="add")
        layers.append(
            LayerSpec(
                kind="deconv", out=out, kernel=4, stride=2, padding=1, name=f"d{i}", skip=skip
            )
        )
    return layers


def check_flow_family(space: SearchSpace, info: Any, shape: tuple[int, ...]) -> None:
    """A dense family needs a flow dataset with a [C, H, W] input and no input pooling (the
    flow target is at the input's resolution: downsample with ``input.shape`` instead), and a
    flow dataset can train nothing but a dense family."""
    dense = [n for n in space.families.names() if n in DENSE_FAMILIES]
    classify = [n for n in space.families.names() if n in CLASSIFIER_FAMILIES]
    if info.task == "flow" and classify:
        raise ConfigError(
            f"families.{classify[0]}: dataset {info.name} is an optical-flow dataset, a "
            f"{classify[0]} classifier cannot learn it; use families.flow only"
        )
    if not dense:
        return
    if info.task != "flow":
        raise ConfigError(
            f"families.{dense[0]}: predicts optical flow, dataset {info.name} is a "
            f"{info.task} dataset; use a flow dataset (flow-events) or remove families.{dense[0]}"
        )
    if len(shape) != 3:
        raise ConfigError(
            f"families.flow: needs a [C, H, W] input, dataset {info.name} gives {list(shape)}"
        )
    if max(_values_of(space.input.downsample)) > 1:
        raise ConfigError(
            "input.downsample: the flow family predicts flow at the input's resolution; set it "
            "to 1 and give a smaller input.shape to downsample the events and the flow together"
        )


def space_from_dict(data: Any, source: str = "search space") -> SearchSpace:
    """Validate a mapping (e.g. parsed YAML) into a :class:`SearchSpace`."""
    return parse_model(SearchSpace, data, source)


def load_space(name_or_path: str | Path, *, dataset: str | None = None) -> SearchSpace:
    """A shipped space by name (``digits-small``) or a YAML file; strict, one-line errors.

    The space is checked against ``dataset`` (default: the space's own) with
    :meth:`SearchSpace.check`, without a chip; a search also checks it against its chip.
    """
    path = resolve_preset(name_or_path, kind="space")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    space = space_from_dict(data, str(path))
    if not space.name:
        space = space.model_copy(update={"name": path.stem})
    try:
        space.check(dataset=dataset)
    except NeuronasError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return space
