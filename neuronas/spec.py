"""Architecture specs: one spiking candidate, fully determined.

An :class:`ArchSpec` is what the sampler proposes, the cost model prices and the builder turns
into a network.  It is a tree of frozen dataclasses: hashable, validated on construction, and
round-trips exactly through plain dicts, JSON and YAML::

    arch = ArchSpec.from_yaml("experiments/archs/digits-mlp.yaml")
    assert ArchSpec.from_json(arch.to_json()) == arch

Precision (weight / membrane bits) and mapping (ADC, crossbar, dataflow) are global with an
optional per-layer override (FlexSpIM-style operand resolution); :meth:`ArchSpec.resolved`
gives each weighted layer's effective values together with its input/output shapes.

Shapes are ``(C, H, W)`` for frames and ``(F,)`` for flat vectors.  The first ``fc`` after a
spatial layer flattens its input.

Skip connections: a layer may be named (``name: b1``) and a later weighted layer may take a skip
from it (``skip: {from: b1, op: add}``): ``add`` is a residual add of the source's output spikes
into the layer's output current, before its neuron (Zheng et al., AAAI 2021, the tdBN Spiking
ResNet: ``o = SN(conv(x) + shortcut)``), so the crossbars only ever see binary spikes;
``concat`` joins the source's output to the layer's input along channels (U-Net /
Spike-FlowNet decoders, DenseNet), so the layer's fan-in, and its crossbar rows, grow.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast, get_args

from neuronas.errors import SpecError

__all__ = [
    "ADC_KINDS",
    "DATAFLOWS",
    "ENCODINGS",
    "LAYER_KINDS",
    "NEURON_MODELS",
    "ArchSpec",
    "InputSpec",
    "LayerOverride",
    "LayerSpec",
    "MappingSpec",
    "NeuronSpec",
    "PrecisionSpec",
    "ResolvedLayer",
    "SKIP_OPS",
    "SkipSpec",
]

Encoding = Literal["events", "rate", "direct"]
NeuronModel = Literal["lif", "ld_lif", "if"]
ResetMode = Literal["hard", "soft"]
LayerKind = Literal["conv", "fc", "pool", "deconv"]
PoolKind = Literal["max", "avg"]
AdcKind = Literal["sar", "flash", "sa", "digital"]
SignedScheme = Literal["differential", "offset"]
Dataflow = Literal["weight_stationary", "output_stationary"]
SkipOp = Literal["add", "concat"]

ENCODINGS: tuple[str, ...] = get_args(Encoding)
NEURON_MODELS: tuple[str, ...] = get_args(NeuronModel)
LAYER_KINDS: tuple[str, ...] = get_args(LayerKind)
ADC_KINDS: tuple[str, ...] = get_args(AdcKind)
DATAFLOWS: tuple[str, ...] = get_args(Dataflow)
SIGNED_SCHEMES: tuple[str, ...] = get_args(SignedScheme)
RESET_MODES: tuple[str, ...] = get_args(ResetMode)
POOL_KINDS: tuple[str, ...] = get_args(PoolKind)
SKIP_OPS: tuple[str, ...] = get_args(SkipOp)

Shape = tuple[int, ...]


# --------------------------------------------------------------------------------------------
# validation helpers: each names the field, the value and what is allowed


#: the largest height, width or feature count of any layer's input or output: far above any
#: event sensor (DVS Gesture 128 x 128) and small enough that sizes stay exact integers
MAX_SIDE = 1 << 16
#: the largest value of a neuron parameter (tau, decay_step, threshold), in threshold units
MAX_NEURON_PARAM = 1e6
#: the longest architecture name (it names folders and appears in reports)
MAX_NAME = 200
#: the most layers an architecture may have (the deepest published SNNs have a few hundred)
MAX_LAYERS = 1024
#: a layer name: a letter, then letters, digits, ``_`` or ``-`` (it appears in YAML, reports and
#: NIR node names)
_LAYER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _fail(where: str, value: Any, allowed: str) -> SpecError:
    from neuronas.config import preview

    return SpecError(f"{where}: got {preview(value)}, {allowed}")


def _int(where: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, value, "must be an integer")
    if lo is not None and value < lo:
        raise _fail(
            where,
            value,
            f"must be an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""),
        )
    if hi is not None and value > hi:
        raise _fail(
            where,
            value,
            f"must be an integer <= {hi}" + (f" and >= {lo}" if lo is not None else ""),
        )


def _num(
    where: str, value: Any, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, value, "must be a finite number")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise _fail(where, value, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and value > hi:
        raise _fail(where, value, f"must be <= {hi}")


def _choice(where: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise _fail(where, value, f"must be one of {', '.join(allowed)}")


# --------------------------------------------------------------------------------------------
# dict conversion shared by every spec class


class _Spec:
    """Strict dict round trip for the frozen dataclasses below."""

    _where: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _fields_of(type(self)):  # the dataclass fields, in order (cached per class)
            out[name] = _to_plain(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Any:
        where = where or cls._where
        if not isinstance(data, Mapping):
            raise SpecError(
                f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}"
            )
        known = _fields_of(cls)
        unknown = [k for k in data if k not in known]
        if unknown:
            raise SpecError(
                f"{_join(where, str(unknown[0]))}: unknown key; known keys here: {', '.join(sorted(known))}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            kwargs[name] = cls._convert(name, value, _join(where, name))
        try:
            return cls(**kwargs)
        except SpecError as exc:
            msg = str(exc)
            if cls._where and where and where != cls._where and msg.startswith(cls._where + "."):
                msg = where + msg[len(cls._where) :]
            raise SpecError(msg) from None
        except TypeError as exc:  # a required field is missing
            missing = [f.name for f in known.values() if f.name not in data and _required(f)]
            if missing:
                raise SpecError(f"{_join(where, missing[0])}: required field is missing") from None
            raise SpecError(f"{where or cls.__name__}: {exc}") from None

    @classmethod
    def _convert(cls, name: str, value: Any, where: str) -> Any:
        return tuple(value) if isinstance(value, list) else value


_FIELDS: dict[type, dict[str, dataclasses.Field[Any]]] = {}


def _fields_of(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """Field name -> Field, cached per class (from_dict is on the sampler's hot path)."""
    got = _FIELDS.get(cls)
    if got is None:
        got = _FIELDS[cls] = {f.name: f for f in fields(cls)}
    return got


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _to_plain(v: Any) -> Any:
    if isinstance(v, _Spec):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_to_plain(x) for x in v]
    return v


# --------------------------------------------------------------------------------------------
# the spec classes


@dataclass(frozen=True)
class InputSpec(_Spec):
    """What the network sees: a shape, a number of timesteps and how values become spikes.

    ``encoding``: ``events`` (event frames from a DVS-like sensor, already spikes or counts),
    ``rate`` (Bernoulli rate coding of intensities), ``direct`` (analog values into the first
    layer every timestep).
    """

    shape: Shape
    timesteps: int
    encoding: Encoding = "events"
    _where = "input"

    def __post_init__(self) -> None:
        if not isinstance(self.shape, tuple) or len(self.shape) not in (1, 3):
            raise _fail("input.shape", self.shape, "must be [C, H, W] or [F]")
        for i, s in enumerate(self.shape):
            _int(f"input.shape[{i}]", s, lo=1, hi=MAX_SIDE)
        _int("input.timesteps", self.timesteps, lo=1, hi=1024)
        _choice("input.encoding", self.encoding, ENCODINGS)


@dataclass(frozen=True)
class NeuronSpec(_Spec):
    """The spiking neuron used by every layer.

    ``lif``: v <- v + (x - (v - v_rest)) / tau (SpikingJelly's LIF, decay_input=True).
    ``ld_lif``: v <- max(v - decay_step, v_rest) + x (linear decay by subtraction; LD-LIF).
    ``if``: v <- v + x.
    A spike is emitted when v >= threshold; reset ``hard`` sets v to 0, ``soft`` subtracts
    the threshold.  ``decay_step`` is in the same units as ``threshold``.
    """

    model: NeuronModel = "lif"
    tau: float = 2.0
    decay_step: float = 0.125
    threshold: float = 1.0
    reset: ResetMode = "hard"
    _where = "neuron"

    def __post_init__(self) -> None:
        _choice("neuron.model", self.model, NEURON_MODELS)
        _num("neuron.tau", self.tau, lo=1.0, hi=MAX_NEURON_PARAM)
        _num("neuron.decay_step", self.decay_step, lo=0.0, hi=MAX_NEURON_PARAM)
        _num("neuron.threshold", self.threshold, lo=0.0, hi=MAX_NEURON_PARAM, lo_open=True)
        _choice("neuron.reset", self.reset, RESET_MODES)


@dataclass(frozen=True)
class PrecisionSpec(_Spec):
    """Operand resolution: bits per weight and per stored membrane potential."""

    weight_bits: int = 4
    membrane_bits: int = 8
    _where = "precision"

    def __post_init__(self) -> None:
        _int("precision.weight_bits", self.weight_bits, lo=1, hi=16)
        _int("precision.membrane_bits", self.membrane_bits, lo=2, hi=32)


def _check_adc(where: str, kind: Any, bits: Any) -> None:
    _choice(f"{where}.adc_kind", kind, ADC_KINDS)
    _int(f"{where}.adc_bits", bits, lo=0, hi=16)
    if kind == "sa" and bits != 1:
        raise _fail(
            f"{where}.adc_bits",
            bits,
            "must be 1 when adc_kind is sa (a sense amplifier is a 1-bit comparator)",
        )
    if kind == "digital" and bits != 0:
        raise _fail(
            f"{where}.adc_bits",
            bits,
            "must be 0 when adc_kind is digital (no conversion: partial sums are exact)",
        )
    if kind in ("sar", "flash") and bits < 2:
        raise _fail(
            f"{where}.adc_bits", bits, f"must be >= 2 for a {kind} ADC (use adc_kind sa for 1 bit)"
        )


@dataclass(frozen=True)
class MappingSpec(_Spec):
    """How weights sit on crossbars and how partial sums are read out.

    ``adc_kind``: ``sar`` / ``flash`` (multi-bit, shared by ``columns_per_adc`` columns as set
    by the chip), ``sa`` (1-bit sense amplifier on every column, ADC-less), ``digital``
    (digital CIM: exact adder trees, ``adc_bits`` = 0).  ``signed_scheme``: a signed weight
    as a ``differential`` pair of columns or an ``offset`` (bias) column.  ``dataflow``:
    ``weight_stationary`` keeps weights in the arrays; ``output_stationary`` keeps membrane
    potentials local and streams weights.
    """

    adc_bits: int = 4
    adc_kind: AdcKind = "sar"
    rows: int = 128
    cols: int = 128
    bits_per_cell: int = 1
    signed_scheme: SignedScheme = "differential"
    dataflow: Dataflow = "weight_stationary"
    _where = "mapping"

    def __post_init__(self) -> None:
        _check_adc("mapping", self.adc_kind, self.adc_bits)
        _int("mapping.rows", self.rows, lo=1, hi=4096)
        _int("mapping.cols", self.cols, lo=1, hi=4096)
        _int("mapping.bits_per_cell", self.bits_per_cell, lo=1, hi=8)
        _choice("mapping.signed_scheme", self.signed_scheme, SIGNED_SCHEMES)
        _choice("mapping.dataflow", self.dataflow, DATAFLOWS)


_OVERRIDABLE = (
    "weight_bits",
    "membrane_bits",
    "adc_bits",
    "adc_kind",
    "rows",
    "cols",
    "bits_per_cell",
    "dataflow",
)


@dataclass(frozen=True)
class LayerOverride(_Spec):
    """Per-layer values that replace the global precision / mapping (None = use the global)."""

    weight_bits: int | None = None
    membrane_bits: int | None = None
    adc_bits: int | None = None
    adc_kind: AdcKind | None = None
    rows: int | None = None
    cols: int | None = None
    bits_per_cell: int | None = None
    dataflow: Dataflow | None = None
    _where = "override"

    def is_empty(self) -> bool:
        return all(getattr(self, k) is None for k in _OVERRIDABLE)


@dataclass(frozen=True)
class SkipSpec(_Spec):
    """A skip connection into a weighted layer from a named earlier layer's output.

    Written ``skip: {from: NAME, op: add | concat}`` (``from`` is the source layer's ``name``).
    ``add``: the source's output (spikes of a hidden layer, or a pool's output) is added to this
    layer's output current before its neuron: a membrane-level add in the neuron unit's input
    adder (Zheng et al., "Going Deeper With Directly-Trained Larger Spiking Neural Networks",
    AAAI 2021); shapes must be equal.  ``concat``: the source's output is appended to this
    layer's input along channels (features for flat inputs), so the layer's fan-in K grows by
    the source's channels x k x k; spatial sizes must be equal.
    """

    source: str
    op: SkipOp
    _where = "skip"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not _LAYER_NAME.fullmatch(self.source):
            raise _fail("skip.from", self.source, "must be the name of an earlier layer")
        _choice("skip.op", self.op, SKIP_OPS)

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.source, "op": self.op}

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Any:
        where = where or cls._where
        if not isinstance(data, Mapping):
            raise _fail(where, data, "must be a mapping {from: LAYER_NAME, op: add | concat}")
        unknown = [k for k in data if k not in ("from", "op")]
        if unknown:
            raise SpecError(
                f"{_join(where, str(unknown[0]))}: unknown key; known keys here: from, op"
            )
        for key in ("from", "op"):
            if key not in data:
                raise SpecError(f"{_join(where, key)}: required field is missing")
        try:
            return cls(source=data["from"], op=data["op"])
        except SpecError as exc:
            msg = str(exc)
            raise SpecError(
                where + msg[len(cls._where) :] if msg.startswith("skip.") else msg
            ) from None


@dataclass(frozen=True)
class LayerSpec(_Spec):
    """One layer.

    ``conv``: ``out`` channels, ``kernel`` x ``kernel``, ``stride``, ``padding``.
    ``deconv``: transposed convolution (decoder of an encoder-decoder), output size
    ``(H-1)*stride - 2*padding + kernel``.
    ``pool``: ``pool`` (max/avg) over ``kernel`` x ``kernel`` with ``stride`` (default = kernel).
    ``fc``: ``out`` features; flattens a spatial input.
    Every weighted layer is followed by the arch's spiking neuron except the readout (the last
    weighted layer), whose membrane (or spike count) is the network's output.
    ``name``: optional, unique; what a later layer's ``skip.from`` refers to.
    ``skip``: optional :class:`SkipSpec` into this (weighted) layer.
    """

    kind: LayerKind
    out: int = 0
    kernel: int = 0  # 0: the kind's default (3 for conv/deconv, 2 for pool, 1 for fc)
    stride: int = 0  # 0: the kind's default (kernel for pool, 1 otherwise)
    padding: int = -1  # -1: "same" padding (kernel // 2) for conv, 0 for pool/deconv
    pool: PoolKind = "max"
    override: LayerOverride | None = None
    name: str = ""
    skip: SkipSpec | None = None
    _where = "layer"

    def __post_init__(self) -> None:
        _choice("layer.kind", self.kind, LAYER_KINDS)
        if not isinstance(self.name, str) or (self.name and not _LAYER_NAME.fullmatch(self.name)):
            raise _fail(
                "layer.name",
                self.name,
                "must be a letter then letters, digits, _ or - (at most 64 characters)",
            )
        if self.skip is not None:
            if not isinstance(self.skip, SkipSpec):
                raise _fail(
                    "layer.skip",
                    self.skip,
                    "must be a mapping {from: LAYER_NAME, op: add | concat}",
                )
            if self.kind == "pool":
                raise _fail(
                    "layer.skip",
                    self.skip.to_dict(),
                    "a pool layer takes no skip; put it on a conv, deconv or fc layer",
                )
        if self.kind in ("conv", "fc", "deconv"):
            _int("layer.out", self.out, lo=1, hi=1 << 20)
        elif self.out not in (0,):
            raise _fail("layer.out", self.out, "is not used by a pool layer (leave it out)")
        _int("layer.kernel", self.kernel, lo=0, hi=64)
        _int("layer.stride", self.stride, lo=0, hi=64)
        if self.kind == "fc":
            for name, default in (("kernel", 0), ("stride", 0), ("padding", -1)):
                if getattr(self, name) not in (default, 1 if name != "padding" else 0):
                    raise _fail(
                        f"layer.{name}",
                        getattr(self, name),
                        "is not used by an fc layer (leave it out)",
                    )
            object.__setattr__(self, "kernel", 1)
            object.__setattr__(self, "stride", 1)
            object.__setattr__(self, "padding", 0)
        else:
            if self.kernel == 0:
                object.__setattr__(self, "kernel", 2 if self.kind == "pool" else 3)
            if self.stride == 0:
                object.__setattr__(self, "stride", self.kernel if self.kind == "pool" else 1)
        _int("layer.padding", self.padding, lo=-1, hi=64)
        _choice("layer.pool", self.pool, POOL_KINDS)
        if self.override is not None and not isinstance(self.override, LayerOverride):
            raise _fail("layer.override", self.override, "must be a mapping of per-layer overrides")

    @property
    def weighted(self) -> bool:
        return self.kind != "pool"

    @property
    def pad(self) -> int:
        """Effective padding."""
        if self.padding >= 0:
            return self.padding
        return self.kernel // 2 if self.kind == "conv" else 0

    @classmethod
    def _convert(cls, name: str, value: Any, where: str) -> Any:
        if name == "override" and value is not None:
            return LayerOverride.from_dict(value, where)
        if name == "skip" and value is not None:
            return SkipSpec.from_dict(value, where)
        if name in ("kernel", "stride") and value == 0 and not isinstance(value, bool):
            # 0 stands for "the kind's default" inside the dataclass; written in a file it is a
            # mistake (a stride of 0 never moves), so a file leaves the key out instead
            raise _fail(
                where, value, "must be an integer >= 1 (leave it out for the layer kind's default)"
            )
        return super()._convert(name, value, where)

    def to_dict(self) -> dict[str, Any]:
        # compact: only what differs from the defaults, so YAML stays readable
        out: dict[str, Any] = {"name": self.name} if self.name else {}
        out["kind"] = self.kind
        if self.kind != "pool":
            out["out"] = self.out
        if self.kind != "fc":
            out["kernel"] = self.kernel
            if self.stride != (self.kernel if self.kind == "pool" else 1):
                out["stride"] = self.stride
            if self.padding != -1:
                out["padding"] = self.padding
        if self.kind == "pool":
            out["pool"] = self.pool
        if self.override is not None and not self.override.is_empty():
            out["override"] = {k: v for k, v in self.override.to_dict().items() if v is not None}
        if self.skip is not None:
            out["skip"] = self.skip.to_dict()
        return out

    @staticmethod
    def fc(out: int, **kw: Any) -> LayerSpec:
        return LayerSpec(kind="fc", out=out, **kw)

    @staticmethod
    def conv(out: int, kernel: int = 3, stride: int = 1, padding: int = -1, **kw: Any) -> LayerSpec:
        return LayerSpec(kind="conv", out=out, kernel=kernel, stride=stride, padding=padding, **kw)

    @staticmethod
    def maxpool(kernel: int = 2, stride: int | None = None) -> LayerSpec:
        return LayerSpec(kind="pool", kernel=kernel, stride=stride or 0, pool="max")

    @staticmethod
    def avgpool(kernel: int = 2, stride: int | None = None) -> LayerSpec:
        return LayerSpec(kind="pool", kernel=kernel, stride=stride or 0, pool="avg")


def _concat_shape(where: str, source: str, main: Shape, skip: Shape) -> Shape:
    """The input of a layer whose ``main`` input is joined with a ``skip`` source along channels
    (features when flat): ranks, and heights x widths when spatial, must agree."""
    if len(main) != len(skip):
        raise _fail(
            f"{where}.skip.from",
            source,
            f"its output {list(skip)} and this layer's input {list(main)} are not both [C, H, W] "
            "or both flat; a concat joins channels (or features) of like inputs",
        )
    if main[1:] != skip[1:]:
        raise _fail(
            f"{where}.skip.from",
            source,
            f"its output {list(skip)} is {'x'.join(map(str, skip[1:]))} but this layer's input "
            f"{list(main)} is {'x'.join(map(str, main[1:]))}; a concat needs the same height x width",
        )
    return (main[0] + skip[0], *main[1:])


@dataclass(frozen=True)
class ResolvedLayer:
    """A weighted layer with everything the cost model and the builder need, made concrete.

    ``fan_in`` K = C_in*k*k (conv/deconv) or F_in (fc); ``fan_out`` N = C_out or F_out;
    ``positions`` P = output H*W (1 for fc).  With a skip into the layer, ``skip_from`` is the
    source's index in ArchSpec.layers (-1: none), ``skip_op`` its op and ``skip_shape`` the
    source's output shape; for ``concat`` the source's channels are already in ``in_shape`` and
    ``fan_in`` (after the main input's channels).
    """

    index: int  # index in ArchSpec.layers
    kind: str
    in_shape: Shape
    out_shape: Shape
    fan_in: int
    fan_out: int
    positions: int
    kernel: int
    stride: int
    padding: int
    is_readout: bool
    weight_bits: int
    membrane_bits: int
    adc_bits: int
    adc_kind: str
    rows: int
    cols: int
    bits_per_cell: int
    signed_scheme: str
    dataflow: str
    skip_from: int = -1
    skip_op: str = ""
    skip_shape: Shape = ()

    @property
    def weights(self) -> int:
        return self.fan_in * self.fan_out


@dataclass(frozen=True)
class ArchSpec(_Spec):
    """One candidate network, fully determined (see the module docstring)."""

    input: InputSpec
    layers: tuple[LayerSpec, ...]
    neuron: NeuronSpec = field(default_factory=NeuronSpec)
    precision: PrecisionSpec = field(default_factory=PrecisionSpec)
    mapping: MappingSpec = field(default_factory=MappingSpec)
    name: str = ""
    task: Literal["classification", "dense"] = "classification"

    def __post_init__(self) -> None:
        if not isinstance(self.layers, tuple) or not self.layers:
            raise _fail("layers", self.layers, "must be a non-empty list of layers")
        if len(self.layers) > MAX_LAYERS:
            raise _fail(
                "layers", f"{len(self.layers)} layers", f"must have at most {MAX_LAYERS} layers"
            )
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerSpec):
                raise _fail(f"layers[{i}]", layer, "must be a layer mapping")
        _choice("task", self.task, ("classification", "dense"))
        if not isinstance(self.name, str) or len(self.name) > MAX_NAME:
            raise _fail(
                "name", self.name, f"must be text of at most {MAX_NAME} characters (quote it)"
            )
        if not any(layer.weighted for layer in self.layers):
            raise SpecError(
                "layers: no conv, deconv or fc layer; the network needs at least one weighted layer (the readout)"
            )
        if not self.layers[-1].weighted:
            raise SpecError(
                f'layers[{len(self.layers) - 1}].kind: got "pool", the last layer must be the readout (fc, conv or deconv)'
            )
        # chaining and per-layer overrides are checked by resolving once
        object.__setattr__(self, "_resolved", self._resolve())

    # -- dict / JSON / YAML ------------------------------------------------------------------

    @classmethod
    def _convert(cls, name: str, value: Any, where: str) -> Any:
        if name == "input":
            return InputSpec.from_dict(value, where)
        if name == "neuron":
            return NeuronSpec.from_dict(value, where)
        if name == "precision":
            return PrecisionSpec.from_dict(value, where)
        if name == "mapping":
            return MappingSpec.from_dict(value, where)
        if name == "layers":
            if not isinstance(value, list) or not value:
                raise _fail(where, value, "must be a non-empty list of layers")
            return tuple(LayerSpec.from_dict(v, f"{where}[{i}]") for i, v in enumerate(value))
        return super()._convert(name, value, where)

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> ArchSpec:
        return super().from_dict(data, where)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ArchSpec:
        """Load an architecture file; every problem is a SpecError/ConfigError naming the file."""
        from neuronas.config import load_yaml

        data = load_yaml(path)
        try:
            return cls.from_dict(data)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None

    def with_(self, **changes: Any) -> ArchSpec:
        """A copy with top-level fields replaced (re-validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def key(self) -> str:
        """A short stable identifier (hash of the canonical JSON); computed once per spec."""
        cached = self.__dict__.get("_key")
        if cached is None:
            import hashlib

            cached = hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[
                :12
            ]
            object.__setattr__(self, "_key", cached)
        return cached

    def describe(self) -> str:
        """A compact one-line description for tables, e.g. ``mp2-c16k3-fc10 T8 lif w4 SA 128x128``:
        a 1-D input's width (``in175-fc32-fc20``), layers (with per-layer overrides in brackets
        and skips in parentheses), timesteps, neuron, weight bits, converter
        (``SA`` sense amplifier, ``dig`` digital, ``sar4`` 4-bit SAR), crossbar, ``OS`` when
        output-stationary."""
        parts = []
        for layer in self.layers:
            if layer.kind == "fc":
                text = f"fc{layer.out}"
            elif layer.kind == "pool":
                text = f"{layer.pool[0]}p{layer.kernel}"
            elif layer.kind == "conv":
                text = f"c{layer.out}k{layer.kernel}"
            else:
                text = f"{layer.kind}{layer.out}"
            if layer.skip is not None:
                text += f"({'+' if layer.skip.op == 'add' else 'cat:'}{layer.skip.source})"
            o = layer.override
            if o is not None and not o.is_empty():
                set_ = [(k, getattr(o, k)) for k in _OVERRIDABLE if getattr(o, k) is not None]
                text += (
                    "["
                    + ",".join(f"{'w' if k == 'weight_bits' else k[:1]}{v}" for k, v in set_)
                    + "]"
                )
            parts.append(text)
        if len(self.input.shape) == 1:
            parts.insert(0, f"in{self.input.shape[0]}")  # a 1-D input's width (channel-binned)
        m = self.mapping
        adc = {"sa": "SA", "digital": "dig"}.get(m.adc_kind, f"{m.adc_kind}{m.adc_bits}")
        return (
            f"{'-'.join(parts)} T{self.input.timesteps} {self.neuron.model} w{self.precision.weight_bits} "
            f"{adc} {m.rows}x{m.cols}" + (" OS" if m.dataflow == "output_stationary" else "")
        )

    # -- shapes ------------------------------------------------------------------------------

    def resolved(self) -> tuple[ResolvedLayer, ...]:
        """The weighted layers, made concrete (shapes, fan-in/out, effective precision/mapping)."""
        return self._resolved  # type: ignore[attr-defined]

    def shapes(self) -> tuple[Shape, ...]:
        """Output shape of every layer (same length as ``layers``)."""
        return self._shapes  # type: ignore[attr-defined]

    @property
    def output_shape(self) -> Shape:
        return self.shapes()[-1]

    @property
    def num_outputs(self) -> int:
        return self.output_shape[0]

    def _resolve(self) -> tuple[ResolvedLayer, ...]:
        shape: Shape = self.input.shape
        out_layers: list[ResolvedLayer] = []
        shapes: list[Shape] = []
        last_weighted = max(i for i, layer in enumerate(self.layers) if layer.weighted)
        names: dict[str, int] = {}
        for i, layer in enumerate(self.layers):
            where = f"layers[{i}]"
            if layer.name:
                if layer.name in names:
                    raise _fail(
                        f"{where}.name",
                        layer.name,
                        f"already the name of layers[{names[layer.name]}]; layer names must be unique",
                    )
                names[layer.name] = i
        for i, layer in enumerate(self.layers):
            where = f"layers[{i}]"
            skip_from, skip_shape = -1, cast(Shape, ())
            if layer.skip is not None:
                skip_from = self._skip_source(i, layer.skip, names)
                skip_shape = shapes[skip_from]
                if layer.skip.op == "concat":
                    shape = _concat_shape(where, self.layers[skip_from].name, shape, skip_shape)
            if layer.kind == "fc":
                fan_in = math.prod(shape)
                new_shape: Shape = (layer.out,)
                positions = 1
            else:
                if len(shape) != 3:
                    raise SpecError(
                        f'{where}.kind: got "{layer.kind}" on a flat input of shape {list(shape)}; '
                        f"{layer.kind} layers need a [C, H, W] input (put them before the first fc)"
                    )
                c, h, w = shape
                k, s, p = layer.kernel, layer.stride, layer.pad
                if layer.kind == "deconv":
                    oh, ow = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k
                else:
                    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
                if (
                    oh < 1
                    or ow < 1
                    or (layer.kind != "deconv" and (k > h + 2 * p or k > w + 2 * p))
                ):
                    raise SpecError(
                        f"{where}.kernel: got {k}, larger than its padded input {h + 2 * p}x{w + 2 * p} "
                        f"(input shape {list(shape)}); the layer shapes do not chain"
                    )
                if oh > MAX_SIDE or ow > MAX_SIDE:
                    raise SpecError(
                        f"{where}.stride: got {s}, the {layer.kind} output would be {oh}x{ow}, "
                        f"larger than {MAX_SIDE} on a side"
                    )
                new_shape = (layer.out if layer.weighted else c, oh, ow)
                fan_in = c * k * k
                positions = oh * ow
            if layer.skip is not None and layer.skip.op == "add" and skip_shape != new_shape:
                raise _fail(
                    f"{where}.skip.from",
                    layer.skip.source,
                    f"its output {list(skip_shape)} differs from this layer's output "
                    f"{list(new_shape)}; an add needs equal shapes (or use op: concat)",
                )
            if layer.weighted:
                r = self._resolve_layer(
                    i, layer, shape, new_shape, fan_in, positions, i == last_weighted
                )
                if layer.skip is not None:
                    r = dataclasses.replace(
                        r, skip_from=skip_from, skip_op=layer.skip.op, skip_shape=skip_shape
                    )
                out_layers.append(r)
            shape = new_shape
            shapes.append(shape)
        object.__setattr__(self, "_shapes", tuple(shapes))
        return tuple(out_layers)

    def _skip_source(self, i: int, skip: SkipSpec, names: dict[str, int]) -> int:
        """The index of the layer ``skip`` (on layers[i]) comes from; a SpecError when it is not
        a named layer before layers[i]."""
        where = f"layers[{i}].skip.from"
        j = names.get(skip.source)
        if j is None:
            earlier = [n for n, k in names.items() if k < i]
            near = difflib.get_close_matches(skip.source, earlier, n=1, cutoff=0.6)
            allowed = (
                f"no layer has that name; named layers before it: {', '.join(earlier)}"
                if earlier
                else "no layer has that name (name the source layer: name: NAME)"
            )
            raise _fail(
                where, skip.source, allowed + (f"; did you mean {near[0]}?" if near else "")
            )
        if j >= i:
            what = "this layer itself" if j == i else f"layers[{j}], after this one"
            raise _fail(
                where,
                skip.source,
                f"that is {what}; a skip must come from an earlier layer (the graph is feed-forward)",
            )
        return j

    def layer_index(self, name: str) -> int:
        """The index in ``layers`` of the layer called ``name`` (KeyError when none is)."""
        for i, layer in enumerate(self.layers):
            if layer.name and layer.name == name:
                return i
        raise KeyError(name)

    @property
    def skip_sources(self) -> frozenset[int]:
        """Indices of the layers some skip reads (their outputs are held until consumed)."""
        return frozenset(r.skip_from for r in self.resolved() if r.skip_from >= 0)

    def _resolve_layer(
        self,
        i: int,
        layer: LayerSpec,
        in_shape: Shape,
        out_shape: Shape,
        fan_in: int,
        positions: int,
        readout: bool,
    ) -> ResolvedLayer:
        o = layer.override
        if o is None or o.is_empty():
            p, m = self.precision, self.mapping
            return ResolvedLayer(
                index=i,
                kind=layer.kind,
                in_shape=in_shape,
                out_shape=out_shape,
                fan_in=fan_in,
                fan_out=layer.out,
                positions=positions,
                kernel=layer.kernel,
                stride=layer.stride,
                padding=layer.pad,
                is_readout=readout,
                weight_bits=p.weight_bits,
                membrane_bits=p.membrane_bits,
                adc_bits=m.adc_bits,
                adc_kind=m.adc_kind,
                rows=m.rows,
                cols=m.cols,
                bits_per_cell=m.bits_per_cell,
                signed_scheme=m.signed_scheme,
                dataflow=m.dataflow,
            )
        pick = lambda name, default: default if getattr(o, name) is None else getattr(o, name)  # noqa: E731
        values = {
            "weight_bits": pick("weight_bits", self.precision.weight_bits),
            "membrane_bits": pick("membrane_bits", self.precision.membrane_bits),
            "adc_bits": pick("adc_bits", self.mapping.adc_bits),
            "adc_kind": pick("adc_kind", self.mapping.adc_kind),
            "rows": pick("rows", self.mapping.rows),
            "cols": pick("cols", self.mapping.cols),
            "bits_per_cell": pick("bits_per_cell", self.mapping.bits_per_cell),
            "dataflow": pick("dataflow", self.mapping.dataflow),
        }
        if not o.is_empty():
            # validate the combination through the same checks as the global specs
            where = f"layers[{i}].override"
            try:
                PrecisionSpec(values["weight_bits"], values["membrane_bits"])
                MappingSpec(
                    adc_bits=values["adc_bits"],
                    adc_kind=values["adc_kind"],
                    rows=values["rows"],
                    cols=values["cols"],
                    bits_per_cell=values["bits_per_cell"],
                    signed_scheme=self.mapping.signed_scheme,
                    dataflow=values["dataflow"],
                )
            except SpecError as exc:
                msg = str(exc)
                for prefix in ("precision.", "mapping."):
                    msg = msg.replace(prefix, f"{where}.", 1) if msg.startswith(prefix) else msg
                raise SpecError(msg) from None
        return ResolvedLayer(
            index=i,
            kind=layer.kind,
            in_shape=in_shape,
            out_shape=out_shape,
            fan_in=fan_in,
            fan_out=layer.out,
            positions=positions,
            kernel=layer.kernel if layer.kind != "fc" else 1,
            stride=layer.stride if layer.kind != "fc" else 1,
            padding=layer.pad if layer.kind != "fc" else 0,
            is_readout=readout,
            signed_scheme=self.mapping.signed_scheme,
            **values,
        )
