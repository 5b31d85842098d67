"""Chip files: what the silicon is and what one inference may spend.

A chip file (``constraints/*.yaml``) is loaded strictly into the frozen :class:`Chip` model:
unknown keys are rejected with the list of known ones, types and ranges are checked, and every
failure is one line naming the file, the field, the value and what is allowed.

Budgets are written either as a bare number (a hard budget) or as a mapping::

    budgets:
      energy_uj: 2.0                       # hard: a candidate over it is rejected untrained
      latency_us: {limit: 500, hard: false}  # soft: reported to the sampler as a constraint
"""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from neuronas.config import load_model, resolve_preset
from neuronas.errors import ConfigError
from neuronas.hardware.components import CONSTANTS, known_constants, resolve_constants
from neuronas.schema import StrictModel

__all__ = [
    "BUDGET_METRICS",
    "Budget",
    "Budgets",
    "Capacity",
    "Chip",
    "Device",
    "NeuronUnit",
    "Periphery",
    "Schedule",
    "Technology",
    "chip_problems",
    "fit_to_chip",
    "load_chip",
    "require_compatible",
]

BUDGET_METRICS: tuple[str, ...] = ("memory_kb", "area_mm2", "latency_us", "energy_uj")

#: the largest value an override of a component constant may take (pJ, um^2, ns): the largest
#: shipped constant (an H-tree's 433,660 um^2 per tile, SpikeSim) times a thousand and more
MAX_OVERRIDE = 1e9


class _Model(StrictModel):
    """The base of the chip schema (see :mod:`neuronas.schema`)."""


class Device(_Model):
    """The memory cell of the crossbar."""

    kind: Literal["sram", "rram", "fefet"]
    cell_area_um2: float = Field(gt=0, le=100, description="area of one cell (um^2), at most 100")
    read_energy_fj: float = Field(
        ge=0, le=1e5, description="energy of one driven cell per read (fJ), at most 100 pJ"
    )
    read_latency_ns: float = Field(
        gt=0, le=1e6, description="array read (settle) time (ns), at most 1 ms"
    )
    write_energy_pj: float = Field(
        ge=0, le=1e6, description="energy to program one cell (pJ), at most 1 uJ"
    )
    write_latency_ns: float = Field(
        gt=0, le=1e9, description="time to program one row (ns), at most 1 s"
    )
    bits_per_cell_max: int = Field(ge=1, le=8)
    on_off_ratio: float = Field(gt=1, le=1e9, description="G_on / G_off, in (1, 1e9]")
    program_sigma: float = Field(
        ge=0, le=1, description="relative conductance variation per programmed cell"
    )
    read_noise_sigma: float = Field(ge=0, le=1, description="relative noise per read")
    stuck_off_rate: float = Field(ge=0, le=1, description="fraction of cells stuck at G_off")
    stuck_on_rate: float = Field(ge=0, le=1, description="fraction of cells stuck at G_on")
    leaks: bool = Field(
        description="whether the cell array draws static power (SRAM yes, RRAM/FeFET no)"
    )

    @model_validator(mode="after")
    def _rates(self) -> Device:
        if self.stuck_off_rate + self.stuck_on_rate > 1:
            raise ValueError("stuck_off_rate + stuck_on_rate must be <= 1")
        return self


class Technology(_Model):
    node_nm: float = Field(ge=1, le=1000, description="technology node (nm), 1..1000")
    supply_v: float = Field(gt=0, le=5, description="core supply (V), (0, 5]")
    clock_mhz: float = Field(gt=0, le=10000, description="clock (MHz), (0, 10000]")
    device: Device


class NeuronUnit(_Model):
    """The neuron circuits: which models exist and how they are laid out."""

    models: tuple[Literal["lif", "ld_lif", "if"], ...] = ("lif", "ld_lif", "if")
    ld_lif_in_memory: bool = Field(
        default=False, description="LD-LIF decay done in place in the SRAM array, in parallel"
    )
    neurons_per_unit: int = Field(
        default=8,
        ge=1,
        le=1 << 20,
        description="neurons time-multiplexed on one digital unit, 1..2^20",
    )
    units_per_layer: int | None = Field(
        default=None,
        ge=1,
        le=1 << 20,
        description="fixed number of units per layer (overrides neurons_per_unit), 1..2^20",
    )

    @field_validator("models")
    @classmethod
    def _nonempty(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must list at least one neuron model (lif, ld_lif, if)")
        return v


class Periphery(_Model):
    adc_kinds: tuple[Literal["sar", "flash", "sa", "digital"], ...]
    adc_bits_min: int = Field(ge=0, le=16)
    adc_bits_max: int = Field(ge=0, le=16)
    columns_per_adc: int = Field(
        ge=1, le=1024, description="columns sharing one multi-bit ADC through a mux"
    )
    layout: Literal["im2col", "kernel_split"] = Field(
        default="im2col",
        description="im2col: fan-in C*k*k unrolled on the rows; kernel_split: one crossbar per kernel "
        "position, the k*k crossbars of a PE share column readout (SpikeSim)",
    )
    neuron_unit: NeuronUnit = NeuronUnit()
    activation_bits: int = Field(
        default=1, ge=1, le=32, description="bits stored per activation in buffers (1: spikes)"
    )
    input_bits: int = Field(
        default=8, ge=1, le=16, description="bit planes of a direct-encoded (analog) input"
    )
    tile_buffer_kb: float = Field(
        default=4.0, ge=0, le=1e6, description="SRAM buffer per tile (kB), at most 1 GB"
    )
    max_active_rows: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="rows driven at once into a multi-bit (sar/flash) ADC; an array is then read in "
        "ceil(rows / max_active_rows) sequential row phases, each with its own conversions. None: the most "
        "rows whose binary-input partial sum the ADC resolves without clipping, floor((2^b - 1) / (2^c - 1)) "
        "for b ADC bits and c bits per cell. A sense amplifier and a digital adder tree read every row at once.",
    )
    mux_timing: Literal["overlapped", "synchronous"] = Field(
        default="overlapped",
        description="how the columns sharing a multi-bit ADC are read. overlapped: the array settles once per "
        "row phase and the muxed columns convert one after another (sample-and-hold per column, ISAAC): "
        "t_read + mux x t_conv. synchronous: DNN+NeuroSim's accounting, one read-and-sense cycle per muxed "
        "column (SubArray readLatency over numColMuxed): mux x (t_read + t_conv)",
    )
    array_energy: Literal["active_array", "driven_rows"] = Field(
        default="active_array",
        description="how the lumped per-array read energy (constant array_read_energy_pj) is charged. "
        "active_array: in full to every array read (row phase) whose rows hold at least one spike, as "
        "a bitline precharge is. driven_rows: it is the energy of a read with all of the array's "
        "mapped rows driven, and a read costs it in proportion to the share of those rows that carry "
        "a spike (the cell current flows only in driven rows): SpikingJelly 2.0's SpikeSim estimator, "
        "event mode. Both charge the same with every input spiking",
    )

    @field_validator("adc_kinds")
    @classmethod
    def _kinds(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("must list at least one of sar, flash, sa, digital")
        return v

    @model_validator(mode="after")
    def _range(self) -> Periphery:
        if self.adc_bits_min > self.adc_bits_max:
            raise ValueError(
                f"adc_bits_min ({self.adc_bits_min}) must be <= adc_bits_max ({self.adc_bits_max})"
            )
        return self


class Capacity(_Model):
    # capacity is counted in cells: arrays x array_rows_max x array_cols_max, whatever crossbar
    # size a candidate picks (smaller arrays simply come more to the die)
    arrays: int = Field(
        gt=0,
        le=1 << 24,
        description="crossbar arrays on chip, each array_rows_max x array_cols_max cells; 1..2^24",
    )
    array_rows_max: int = Field(
        gt=0, le=4096, description="largest crossbar height the chip offers"
    )
    array_cols_max: int = Field(gt=0, le=4096, description="largest crossbar width the chip offers")
    pes_per_tile: int = Field(
        default=8,
        gt=0,
        le=4096,
        description="processing elements (arrays or kernel-split groups) per tile, 1..4096",
    )
    sram_kb: float = Field(
        ge=0,
        le=1e7,
        description="global on-chip SRAM (kB) for activations and streamed weights, at most 10 GB",
    )
    dram_energy_pj_per_bit: float = Field(
        gt=0, le=1e4, description="off-chip DRAM access energy (pJ/bit), at most 10 nJ"
    )
    dram_bandwidth_gbps: float = Field(
        gt=0, le=1e6, description="off-chip bandwidth (Gbit/s), at most 1 Pbit/s"
    )

    @property
    def cells(self) -> int:
        return self.arrays * self.array_rows_max * self.array_cols_max


class Schedule(_Model):
    """How layers overlap in time.

    ``timestep``: every layer has its own arrays and the layers pipeline across timesteps:
    latency = fill (one timestep through every layer) + (T - 1) x the slowest stage.
    ``layer``: a layer starts once its predecessor has done ``start_fraction`` of its whole
    work (all T timesteps); 1.0 is strictly layer-by-layer, SpikeSim uses 0.75.
    """

    pipeline: Literal["timestep", "layer"] = "timestep"
    start_fraction: float = Field(default=1.0, gt=0, le=1)


class ActivityPrior(_Model):
    default_rate: float = Field(
        gt=0, le=1, description="spike probability per element per timestep"
    )
    source: str = ""


class Budget(_Model):
    limit: float = Field(
        gt=0, le=1e12, description="per inference, in the metric's unit; (0, 1e12]"
    )
    hard: bool = True


def _budget_form(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return {"limit": v}
    return v


class Budgets(_Model):
    """Per-inference limits; any subset.  A bare number is a hard budget."""

    memory_kb: Budget | None = None
    area_mm2: Budget | None = None
    latency_us: Budget | None = None
    energy_uj: Budget | None = None

    @field_validator("memory_kb", "area_mm2", "latency_us", "energy_uj", mode="before")
    @classmethod
    def _norm(cls, v: Any) -> Any:
        return _budget_form(v)

    def items(self) -> dict[str, Budget]:
        """The budgets that are set, by metric name."""
        return {m: b for m in BUDGET_METRICS if (b := getattr(self, m)) is not None}

    @property
    def hard_metrics(self) -> tuple[str, ...]:
        return tuple(m for m, b in self.items().items() if b.hard)

    @property
    def soft_metrics(self) -> tuple[str, ...]:
        return tuple(m for m, b in self.items().items() if not b.hard)


class Chip(_Model):
    """A CIM chip: technology, periphery, capacity, schedule, activity prior, budgets, overrides."""

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    technology: Technology
    periphery: Periphery
    capacity: Capacity
    schedule: Schedule = Schedule()
    activity: ActivityPrior = ActivityPrior(default_rate=0.15, source="literature prior 0.1-0.2")
    budgets: Budgets = Budgets()
    overrides: dict[str, float] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        for name, value in v.items():
            if name not in CONSTANTS:
                raise ValueError(
                    f"unknown constant {name!r}; known constants: {', '.join(known_constants())}"
                )
            if not math.isfinite(value) or not 0 <= value <= MAX_OVERRIDE:
                raise ValueError(
                    f"constant {name!r} must be a finite number in [0, {MAX_OVERRIDE:g}] (got {value:g})"
                )
        return v

    def __hash__(self) -> int:  # overrides is a dict: hash by identity of content
        return hash((self.name, self.model_dump_json()))

    @property
    def constants(self) -> dict[str, float]:
        """Every component constant at this chip's node, with its overrides applied (cached)."""
        return _derived(self)[0]

    @property
    def memo(self) -> dict[Any, Any]:
        """A per-chip cache for component results that depend only on a few integers."""
        return _derived(self)[1]

    @property
    def clock_ns(self) -> float:
        return 1000.0 / self.technology.clock_mhz


#: id(chip) -> (weak reference, resolved constants, memo); a pydantic private attribute costs
#: ~5 us a read, too slow for a model priced tens of thousands of times
_CONSTS: dict[int, tuple[Any, dict[str, float], dict[Any, Any]]] = {}


def _derived(chip: Chip) -> tuple[dict[str, float], dict[Any, Any]]:
    hit = _CONSTS.get(id(chip))
    if hit is not None and hit[0]() is chip:
        return hit[1], hit[2]
    k = resolve_constants(chip.technology.node_nm, chip.technology.supply_v, chip.overrides)
    memo: dict[Any, Any] = {}
    key = id(chip)
    _CONSTS[key] = (weakref.ref(chip, lambda _r: _CONSTS.pop(key, None)), k, memo)
    return k, memo


def load_chip(name_or_path: str | Path | Chip) -> Chip:
    """A chip from a preset name (``rram-adcless-65nm``) or a YAML path."""
    if isinstance(name_or_path, Chip):
        return name_or_path
    path = resolve_preset(name_or_path, "chip")
    return _load(str(path))


_CACHE: dict[tuple[str, float], Chip] = {}


def _load(path: str) -> Chip:
    try:
        mtime = Path(path).stat().st_mtime
    except OSError:
        mtime = -1.0
    key = (path, mtime)
    chip = _CACHE.get(key)
    if chip is None:
        chip = load_model(Chip, path)
        _CACHE[key] = chip
    return chip


def chip_problems(arch: Any, chip: Chip) -> list[str]:
    """Why ``arch`` cannot be mapped on ``chip`` at all; empty when compatible."""
    out: list[str] = []
    p = chip.periphery
    cap = chip.capacity
    dev = chip.technology.device
    if arch.neuron.model not in p.neuron_unit.models:
        out.append(
            f"neuron.model: {arch.neuron.model} has no neuron unit on chip {chip.name} "
            f"(available: {', '.join(p.neuron_unit.models)})"
        )
    seen: set[str] = set()
    for layer in arch.resolved():
        where = f"layers[{layer.index}]"
        msgs = []
        if layer.adc_kind not in p.adc_kinds:
            msgs.append(
                f"{where}.adc_kind: {layer.adc_kind} is not available on chip {chip.name} (available: {', '.join(p.adc_kinds)})"
            )
        elif layer.adc_kind in ("sar", "flash") and not (
            p.adc_bits_min <= layer.adc_bits <= p.adc_bits_max
        ):
            msgs.append(
                f"{where}.adc_bits: {layer.adc_bits} is outside chip {chip.name}'s range {p.adc_bits_min}..{p.adc_bits_max}"
            )
        if layer.rows > cap.array_rows_max:
            msgs.append(
                f"{where}.rows: {layer.rows} exceeds chip {chip.name}'s array_rows_max {cap.array_rows_max}"
            )
        if layer.cols > cap.array_cols_max:
            msgs.append(
                f"{where}.cols: {layer.cols} exceeds chip {chip.name}'s array_cols_max {cap.array_cols_max}"
            )
        if layer.bits_per_cell > dev.bits_per_cell_max:
            msgs.append(
                f"{where}.bits_per_cell: {layer.bits_per_cell} exceeds the {dev.kind} cell's bits_per_cell_max {dev.bits_per_cell_max}"
            )
        for m in msgs:
            key = m.split(": ", 1)[1]
            if key not in seen:  # one message per distinct problem, not per layer
                seen.add(key)
                out.append(m)
    return out


def require_compatible(arch: Any, chip: Chip, source: str = "") -> None:
    """Raise a ConfigError naming the first incompatibility."""
    problems = chip_problems(arch, chip)
    if problems:
        prefix = f"{source}: " if source else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(prefix + problems[0] + more)


def fit_to_chip(arch: Any, chip: Chip) -> Any:
    """``arch`` with its mapping moved onto what ``chip`` offers, or ``arch`` itself if it fits.

    Used to compare a workload across chips: an ADC kind the chip lacks becomes the chip's first
    kind (at its highest allowed resolution), crossbars and bits per cell are clipped to the
    chip's, and a neuron model without a unit becomes the chip's first model.  Per-layer
    overrides of those fields are dropped.
    """
    from neuronas.spec import ArchSpec

    if not chip_problems(arch, chip):
        return arch
    p, cap, dev = chip.periphery, chip.capacity, chip.technology.device
    d = arch.to_dict()
    m = dict(d.get("mapping", {}))
    kind = m.get("adc_kind", "sar")
    bits = m.get("adc_bits", 4)
    if kind not in p.adc_kinds:
        kind = p.adc_kinds[0]
        # a flash ADC needs 2^b - 1 comparators: default to the ADC-less paper's 5-bit baseline
        bits = {"sa": 1, "digital": 0, "flash": min(p.adc_bits_max, 5)}.get(kind, p.adc_bits_max)
    if kind in ("sar", "flash"):
        bits = min(max(bits, p.adc_bits_min, 2), p.adc_bits_max)
    m.update(
        adc_kind=kind,
        adc_bits=bits,
        rows=min(m.get("rows", 128), cap.array_rows_max),
        cols=min(m.get("cols", 128), cap.array_cols_max),
        bits_per_cell=min(m.get("bits_per_cell", 1), dev.bits_per_cell_max),
    )
    d["mapping"] = m
    neuron = dict(d.get("neuron", {}))
    if neuron.get("model", "lif") not in p.neuron_unit.models:
        neuron["model"] = p.neuron_unit.models[0]
        d["neuron"] = neuron
    for layer in d["layers"]:
        o = layer.get("override")
        if o:
            for key in ("adc_kind", "adc_bits", "rows", "cols", "bits_per_cell"):
                o.pop(key, None)
            if not o:
                layer.pop("override")
    return ArchSpec.from_dict(d)
