"""``estimate(arch, chip, activity) -> CostReport``: the built-in CIM cost model.

Pure Python (no torch), a few hundred float operations per layer.  Per weighted layer with
fan-in K, fan-out N, P output positions and T timesteps (DESIGN.md §5):

* **arrays** - one read per input vector per timestep (spikes are binary).  Row groups with no
  spike are skipped: expected active groups = Σ_g 1-(1-a)^{R_g} (or the measured row-group
  occupancy).  Energy = active rows x driven columns x cell read energy + wordline + bitline
  (precharge of every column of an active array); a lumped per-array read energy
  (``array_read_energy_pj``, SpikeSim's) is charged per active array or, with
  ``periphery.array_energy: driven_rows``, per driven row (a read costs it x the driven share of
  the array's mapped rows; summed: rate x the dense count of array reads).
* **row phases** - a multi-bit (SAR/flash) ADC resolves the partial sum of only so many driven
  rows: ``periphery.max_active_rows``, by default floor((2^b - 1) / (2^c - 1)) for b ADC bits and
  c-bit cells (31 rows for 5 bits on 1-bit cells), so a row group of R rows is read in
  ceil(R / that) sequential phases, each precharging the bitlines and converting every column
  again (DNN+NeuroSim V1.4's partial parallel mode); a phase with no spike is skipped.  A 1-bit
  SA and a digital adder tree read all rows in one phase.
* **conversion** - every used column of an active PE row group (phase) is converted once per
  read: a 1-bit SA per column, or a SAR/flash ADC shared by ``columns_per_adc`` columns through a
  mux (conversions serialise: t = phases x (t_read + rounds x t_conv), or with
  ``periphery.mux_timing: synchronous`` DNN+NeuroSim's phases x rounds x (t_read + t_conv)); digital
  CIM: adder trees.
* **accumulation** - shift-add of group and phase partial sums (width = ADC bits +
  log2(groups) + log2(phases) + slice shift + sign) and of slices / differential pairs per neuron.
* **neurons / membrane** - one update per neuron per position per timestep (LIF, LD-LIF with
  optional in-memory parallel decay, IF; the readout only integrates).  ``neurons_per_unit``
  neurons share one digital unit, so a layer's neuron pass is ceil(N·P / units) x t_update.
* **buffers / interconnect** - input map read and output map written once per timestep; output
  bits carried half the die's side on average.
* **offchip** - weight-stationary layers whose weights do not fit the chip's arrays reload the
  overflow every timestep; output-stationary layers stream their weights once per inference
  (from on-chip SRAM when it holds them, else DRAM) and time-share the arrays.
* **leakage** - static power of the CMOS area (and of SRAM cells) x latency.
* **skips** (``skip: {from, op}`` in the arch) - the source's output spikes are held in an
  on-chip skip buffer (SRAM, ``activation_bits`` per element) from when they are made until the
  consumer reads them: ``depth`` maps of the source, depth = the consumer's distance in pipeline
  stages (layer index difference, at most T) when pipelined across timesteps, T when layer by
  layer or for an output-stationary consumer (it loops over timesteps innermost).  Each timestep
  a map is written into the buffer and read out once (buffers energy), and carried from the
  source to the consumer (interconnect).  ``concat``: the source's channels are extra fan-in
  rows of the consumer's crossbars (more row groups and arrays; its input buffer holds only the
  main input, the skip part is read from the skip buffer).  ``add``: a membrane-level add in
  the consumer's neuron unit (the tdBN Spiking ResNet's SN(conv(x) + x), Zheng et al.
  AAAI 2021): one ``membrane_bits``-wide ripple add per neuron per timestep in which its source
  element spiked (event-driven: x the source's output rate; ``add_energy_pj_per_bit``), one more
  adder per neuron unit (``fa_area_um2`` per bit) and its carry chain in each update's time.

Latency: within a layer the array phase (reads + conversions of every position) and the neuron
phase (the neuron units' pass) are pipelined, reads of position p+1 overlapping the updates of
position p, so one timestep of a layer (its stage) takes max(array phase, neuron phase) + weight
reloads.  ``timestep`` pipeline (every layer on its own arrays): fill + (T-1) x slowest stage;
``layer`` schedule: a layer starts after its predecessor did ``start_fraction`` of its work.
``LayerCost.array_ns`` is the array (readout) phase alone.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from neuronas.errors import ConfigError
from neuronas.hardware.activity import Activity
from neuronas.hardware.chip import BUDGET_METRICS, Chip
from neuronas.hardware.components import (
    adc_area_um2,
    adc_energy_pj,
    adc_latency_ns,
    log2ceil,
    neuron_unit_area_um2,
    neuron_update_energy_pj,
    neuron_update_ns,
    row_phases,
    rows_per_read,
)
from neuronas.hardware.mapping import map_counts
from neuronas.spec import ArchSpec

__all__ = ["COMPONENTS", "CostReport", "LayerCost", "Violation", "estimate"]

#: energy components, in report order
COMPONENTS: tuple[str, ...] = (
    "arrays",
    "conversion",
    "accumulation",
    "neurons",
    "membrane",
    "buffers",
    "interconnect",
    "pooling",
    "offchip",
    "leakage",
)
#: area components
AREA_COMPONENTS: tuple[str, ...] = (
    "arrays",
    "conversion",
    "accumulation",
    "neurons",
    "membrane",
    "buffers",
    "interconnect",
)


@dataclass(frozen=True)
class Violation:
    metric: str
    value: float
    limit: float
    margin: float  # (value - limit) / limit, > 0 here
    hard: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "limit": self.limit,
            "margin": self.margin,
            "hard": self.hard,
        }


@dataclass(frozen=True)
class LayerCost:
    index: int  # index in arch.layers
    kind: str
    name: str
    energy_uj: float
    latency_us: float  # time this layer is busy over the inference (T x stage + reloads)
    stage_ns: float  # one timestep of this layer: max(array phase, neuron phase) + weight reloads
    area_mm2: float
    memory_kb: float
    arrays: int
    pes: int
    utilisation: float
    sops: float
    conversions: float
    input_rate: float
    output_rate: float
    components: dict[str, float] = field(default_factory=dict)  # energy_uj per component
    array_ns: float = 0.0  # array phase of one timestep: positions x phases x (read + conversions)
    row_phases: int = 1  # sequential row phases per read of a full row group (multi-bit ADC: rows / max_active_rows)
    neuron_ns: float = 0.0  # neuron phase of one timestep: ceil(N·P / units) x t_update

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["components"] = dict(self.components)
        return d


@dataclass(frozen=True)
class CostReport:
    """The price of one inference: totals, per-layer and per-component breakdowns, violations.

    ``components`` and ``LayerCost.components`` are energy in uJ per component (``COMPONENTS``);
    ``area_components`` is mm^2 per component.  ``margins()`` covers every budget the chip sets.
    """

    energy_uj: float
    latency_us: float
    area_mm2: float
    memory_kb: float
    arrays: int
    utilisation: float
    sops: float
    pipelined: bool
    components: dict[str, float]  # energy_uj per component
    activity: Activity
    violations: tuple[Violation, ...]
    ops: float = 0.0  # dense synaptic operations (MACs) per inference
    tiles: int = 0
    area_components: dict[str, float] = field(default_factory=dict)  # mm^2 per component
    chip: str = ""
    arch: str = ""
    budgets: dict[str, tuple[float, bool]] = field(default_factory=dict)  # metric -> (limit, hard)
    notes: tuple[str, ...] = ()
    timesteps: int = 1
    _rows: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    _sched: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    _lazy: tuple[float, ...] = field(default=(0.0,), repr=False, compare=False)

    @classmethod
    def _make(cls, **kw: Any) -> CostReport:
        # the generated frozen __init__ sets each of ~20 fields through object.__setattr__;
        # filling __dict__ at once is several times cheaper and the instance stays frozen
        obj = object.__new__(cls)
        obj.__dict__.update(kw)
        return obj

    @property
    def schedule(self) -> str:
        """How the latency was composed (pipelined or not), in words."""
        if not self._sched:
            return ""
        mode, T, fill, slowest, f, once = self._sched
        if mode == "timestep":
            s = f"pipelined across timesteps: fill {fill / 1000:.3g} us + {T - 1} x slowest stage {slowest / 1000:.3g} us"
        elif f >= 1:
            s = "layer by layer (not pipelined)"
        else:
            s = f"layer by layer, each layer starts when its predecessor is {f:.0%} done"
        if once:
            s += f"; + {once / 1000:.3g} us streaming output-stationary weights"
        return s

    @property
    def layers(self) -> tuple[LayerCost, ...]:
        """Per-layer costs (weighted and pool layers, in ``arch.layers`` order)."""
        cached = self.__dict__.get("_layers")
        if cached is None:
            cached = self.__dict__["_layers"] = _layer_costs(self)
        return cached

    def metric(self, name: str) -> float:
        if name not in BUDGET_METRICS:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(BUDGET_METRICS)}")
        return float(getattr(self, name))

    @property
    def hard_violations(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.hard)

    @property
    def feasible(self) -> bool:
        return not any(v.hard for v in self.violations)

    def margins(self) -> dict[str, float]:
        """For every budget the chip sets: (value - limit) / limit (feasible when <= 0)."""
        return {m: (self.metric(m) - lim) / lim for m, (lim, _hard) in self.budgets.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable values."""
        return {
            "chip": self.chip,
            "arch": self.arch,
            "energy_uj": self.energy_uj,
            "latency_us": self.latency_us,
            "area_mm2": self.area_mm2,
            "memory_kb": self.memory_kb,
            "arrays": self.arrays,
            "tiles": self.tiles,
            "utilisation": self.utilisation,
            "sops": self.sops,
            "ops": self.ops,
            "pipelined": self.pipelined,
            "schedule": self.schedule,
            "timesteps": self.timesteps,
            "components": dict(self.components),
            "area_components": dict(self.area_components),
            "layers": [layer.to_dict() for layer in self.layers],
            "activity": self.activity.to_dict(),
            "budgets": {m: {"limit": lim, "hard": hard} for m, (lim, hard) in self.budgets.items()},
            "margins": self.margins(),
            "violations": [v.to_dict() for v in self.violations],
            "feasible": self.feasible,
            "notes": list(self.notes),
        }


def _activity(
    arch: ArchSpec, chip: Chip, activity: Activity | float | Mapping[str, Any] | None
) -> Activity:
    if activity is None:
        return Activity.uniform(chip.activity.default_rate, arch, "prior")
    if isinstance(activity, Activity):
        activity.check(arch)
        return activity
    if isinstance(activity, Mapping):
        act = Activity.from_dict(activity)
        act.check(arch)
        return act
    if (
        isinstance(activity, bool)
        or not isinstance(activity, (int, float))
        or not 0 <= activity <= 1
    ):
        raise ConfigError(
            f"activity: got {activity!r}, must be a spike rate in [0, 1], an Activity or None"
        )
    if activity == 1.0:
        return Activity.dense(arch)
    return Activity.uniform(float(activity), arch, "prior")


def _phases_active(q: float, m: int, f: int, r: int) -> float:
    """Expected phases holding a spike among f phases of m rows and one of r rows (input rate 1 - q)."""
    e = f * (1.0 - q**m)
    return e + (1.0 - q**r) if r else e


def _dense_array_reads(
    g_full: int, kk: int, m: int, f_full: int, r_full: int, f_last: int, r_last: int
) -> float:
    """Array reads (row phases) of one column group per position with every input spiking: the
    count ``estimate`` charges a bitline precharge to at rate 1 (``g_full`` full row groups and a
    last one, ``kk`` arrays each under kernel-split; ``m`` > 0: row phases of m rows)."""
    groups = g_full + 1
    arrays = float(kk * groups)
    if m:
        phases = g_full * (f_full + (1 if r_full else 0)) + f_last + (1 if r_last else 0)
        arrays *= phases / groups
    return arrays


def _pool_input_rate(rate_out: float, window: int) -> float:
    """The rate in front of the max pools (``window``: the product of their k x k) that emit ``rate_out``.

    A k-element max window spikes when any input does: with independent inputs,
    out = 1 - (1 - in)^k, so in = 1 - (1 - out)^(1/k); chained windows multiply, average pools
    keep the rate (window 1).
    """
    return 1.0 - (1.0 - rate_out) ** (1.0 / window) if window > 1 else rate_out


def _derived_outputs(in_rates: tuple[float, ...], windows: tuple[int, ...]) -> tuple[float, ...]:
    """Each weighted layer's output rate when only input rates are known: the next weighted
    layer's input rate, through the max pools between them (the readout's output: 0)."""
    n = len(in_rates)
    return tuple(_pool_input_rate(in_rates[i + 1], windows[i + 1]) for i in range(n - 1)) + (0.0,)


def estimate(arch: ArchSpec, chip: Chip, activity: Activity | float | None = None) -> CostReport:
    """Price ``arch`` on ``chip`` for one inference (all T timesteps).

    ``activity``: an :class:`Activity`, a uniform spike rate, or None for the chip's prior.
    Everything that does not depend on the activity (mapping, area, static energies, neuron
    times, the per-layer coefficients of every rate-dependent term) is computed once per
    (arch, chip) pair and reused while both objects live.
    """
    st = _static(arch, chip)
    if activity is None:
        act = st.prior
    elif type(activity) is float and 0.0 <= activity < 1.0:
        # the same Activity.uniform builds, without re-validating a number checked here
        n = st.nw
        act = Activity.from_checked((activity,) * n, (activity,) * (n - 1) + (0.0,), "prior")
    else:
        act = _activity(arch, chip, activity)
    in_rates = act.input_rates
    occupancy = act.row_group_occupancy
    out_rates = act.output_rates
    if out_rates is None:
        out_rates = _derived_outputs(in_rates, st.pool_windows)

    e_arr = e_conv = e_acc = e_pe = sops = e_skip_add = 0.0
    stages: list[float] = []
    dyn: list[tuple[float, ...]] = []
    wi = 0
    # the network input's rate: a pool in front of the first weighted layer is undone (the trainer
    # measures every weighted layer's input, i.e. after its pools)
    w0 = st.pool_windows[0]
    prev_rate = 1.0 - (1.0 - in_rates[0]) ** (1.0 / w0) if w0 > 1 else in_rates[0]
    for rec in st.layers:
        if rec[0] == 0:  # pool
            stage = rec[3]
            stages.append(stage)
            if rec[
                4
            ]:  # the pool feeds weighted layer wi: its output is that layer's (measured) input
                rate_out = in_rates[wi]
            else:  # a pool before another pool, or at the end: independent spikes in a max window
                rate_out = 1.0 - (1.0 - prev_rate) ** rec[1] if rec[2] else prev_rate
            dyn.append((0.0, prev_rate, rate_out, 0.0, 0.0, 0.0, 0.0, stage))
            prev_rate = rate_out
            continue
        (
            _t,
            K,
            n_full,
            n_last,
            g_full,
            kk,
            m,
            f_full,
            r_full,
            f_last,
            r_last,
            cA,
            cB,
            cCa,
            cCp,
            cAcc,
            cMerge,
            cPe,
            t_arr,
            t_neuron,
            t_reload,
            stride2,
            cSops,
            _cConv,
            _cNeuPe,
            _cBufPe,
            _cNocPe,
        ) = rec
        a_in = in_rates[wi]
        a = a_in / stride2  # a transposed conv sees a zero-inserted input
        q = 1.0 - a
        p_full = 1.0 - q**n_full
        act_pe = act_grp = g_full * p_full + (1.0 - q**n_last)
        if kk == 1:
            act_arr = act_pe
        else:  # kernel-split: k*k arrays per PE; an array is read when its own rows hold a spike
            rpg = n_full // kk
            act_arr = kk * (g_full * (1.0 - q**rpg) + (1.0 - q ** (n_last // kk)))
        p_any = 1.0 - q**K
        t_array = t_arr * p_any
        if m:  # multi-bit ADC on more rows than it resolves: sequential row phases
            ph_full = _phases_active(q, m, f_full, r_full)
            act_ph = g_full * ph_full + _phases_active(q, m, f_last, r_last)
            if act_pe > 0.0:
                act_arr *= act_ph / act_pe
            act_pe = act_ph
            if p_full > 0.0:  # the busiest row group's expected phases, given the position is read
                t_array *= ph_full / p_full
        if occupancy is not None and act_grp > 0.0:
            # measured: the row groups that really hold a spike; arrays and phases follow in proportion
            f_occ = occupancy[wi] * (g_full + 1) / act_grp
            act_pe *= f_occ
            act_arr *= f_occ
        e_arr += a * cA + act_arr * cB
        e_conv += a * cCa + act_pe * cCp
        e_acc += act_pe * cAcc + p_any * cMerge
        e_pe += act_pe * cPe
        sops += a * cSops
        stage = (t_array if t_array > t_neuron else t_neuron) + t_reload
        stages.append(stage)
        a_out = out_rates[wi]
        dyn.append((a, a_in, a_out, act_arr, act_pe, p_any, t_array, stage))
        prev_rate = a_out
        wi += 1

    if st.skip_add:  # residual adds in the neuron units: event-driven on the source's spikes
        for src, coef in st.skip_add.values():
            e_skip_add += coef * dyn[src][2]

    # ---- latency -----------------------------------------------------------------------------
    fill = sum(stages)
    slowest = max(stages)
    T = st.T
    if st.pipeline == "timestep":
        total_ns = fill + (T - 1) * slowest + st.once_ns
    else:
        total_ns = st.start_fraction * T * (fill - stages[-1]) + T * stages[-1] + st.once_ns
    leak_pj = st.leak_mw * total_ns  # mW x ns = pJ
    e_neu, e_mem, e_buf, e_noc, e_pool, e_off = st.e_static
    e_neu += e_skip_add
    if e_pe:  # lumped per-PE-read overheads (published models emulated by chip overrides)
        e_neu_pe, e_buf_pe, e_noc_pe = _pe_split(st, dyn)
        e_neu += e_neu_pe
        e_buf += e_buf_pe
        e_noc += e_noc_pe
    energy_uj = (
        e_arr + e_conv + e_acc + e_neu + e_mem + e_buf + e_noc + e_pool + e_off + leak_pj
    ) * 1e-6
    latency_us = total_ns * 1e-3
    violations: tuple[Violation, ...] = ()
    budgets = st.budgets
    if budgets:
        values = {
            "energy_uj": energy_uj,
            "latency_us": latency_us,
            "area_mm2": st.area_mm2,
            "memory_kb": st.memory_kb,
        }
        broken = [
            Violation(m_, values[m_], lim, (values[m_] - lim) / lim, hard)
            for m_, (lim, hard) in budgets.items()
            if values[m_] > lim
        ]
        if broken:
            violations = tuple(broken)
    obj = object.__new__(CostReport)  # CostReport._make, inlined: filling __dict__ at once
    obj.__dict__.update(
        energy_uj=energy_uj,
        latency_us=latency_us,
        area_mm2=st.area_mm2,
        memory_kb=st.memory_kb,
        arrays=st.arrays,
        utilisation=st.utilisation,
        sops=sops,
        pipelined=st.pipeline == "timestep",
        components={
            "arrays": e_arr * 1e-6,
            "conversion": e_conv * 1e-6,
            "accumulation": e_acc * 1e-6,
            "neurons": e_neu * 1e-6,
            "membrane": e_mem * 1e-6,
            "buffers": e_buf * 1e-6,
            "interconnect": e_noc * 1e-6,
            "pooling": e_pool * 1e-6,
            "offchip": e_off * 1e-6,
            "leakage": leak_pj * 1e-6,
        },
        activity=act,
        violations=violations,
        ops=st.ops,
        tiles=st.tiles,
        area_components=st.area_components,
        chip=st.chip_name,
        arch=arch.name,
        budgets=budgets,
        notes=st.notes,
        timesteps=T,
        _rows=(st, dyn),
        _sched=(st.pipeline, T, fill, slowest, st.start_fraction, st.once_ns),
        _lazy=(leak_pj,),
    )
    return obj


def _pe_split(st: _Static, dyn: list[tuple[float, ...]]) -> tuple[float, float, float]:
    """(neurons, buffers, interconnect) pJ of the lumped per-PE-read overheads."""
    e_neu = e_buf = e_noc = 0.0
    for rec, d in zip(st.layers, dyn, strict=True):
        if rec[0]:
            act_pe = d[4]
            e_neu += act_pe * rec[24]
            e_buf += act_pe * rec[25]
            e_noc += act_pe * rec[26]
    return e_neu, e_buf, e_noc


def _layer_costs(r: CostReport) -> tuple[LayerCost, ...]:
    """The per-layer breakdown of a report, built on first access from the cached coefficients."""
    T = r.timesteps
    st, dyn = r._rows  # noqa: SLF001 - CostReport is defined in this module
    (leak_pj,) = r._lazy  # noqa: SLF001 - as above
    area_sum = st.layer_area_sum
    e_wire = st.e_wire
    out = []
    for rec, row, d in zip(st.layers, st.rows, dyn, strict=True):
        (
            li,
            kind,
            name,
            static_e,
            once,
            area,
            mem_bits,
            arrays,
            pes,
            util,
            noc_bits,
            phases,
            t_neuron,
        ) = row
        e_mem, e_buf, e_pool, e_off, e_neu0 = static_e
        a, a_in, a_out, act_arr, act_pe, p_any, t_array, stage = d
        if rec[0]:
            cA, cB, cCa, cCp, cAcc, cMerge = rec[11:17]
            cSops, cConv, cNeuPe, cBufPe, cNocPe = rec[22:27]
            skip = st.skip_add.get(li)
            e_skip = skip[1] * dyn[skip[0]][2] if skip is not None else 0.0
            en = (
                a * cA + act_arr * cB,
                a * cCa + act_pe * cCp,
                act_pe * cAcc + p_any * cMerge,
                e_neu0 + act_pe * cNeuPe + e_skip,
                e_mem,
                e_buf + act_pe * cBufPe,
                act_pe * cNocPe + e_wire * noc_bits,
                e_pool,
                e_off,
            )
            sops, conv = a * cSops, act_pe * cConv
        else:
            en = (0.0, 0.0, 0.0, 0.0, e_mem, e_buf, e_wire * noc_bits, e_pool, e_off)
            sops = conv = 0.0
        en_all = (*en, leak_pj * area / area_sum if area_sum else 0.0)
        out.append(
            LayerCost(
                index=li,
                kind=kind,
                name=name,
                energy_uj=sum(en_all) * 1e-6,
                latency_us=(T * stage + once) * 1e-3,
                stage_ns=stage,
                area_mm2=area * 1e-6,
                memory_kb=mem_bits / 8192,
                arrays=arrays,
                pes=pes,
                utilisation=util,
                sops=sops,
                conversions=conv,
                input_rate=a_in,
                output_rate=a_out,
                components=dict(zip(COMPONENTS, [v * 1e-6 for v in en_all], strict=True)),
                array_ns=t_array,
                row_phases=phases,
                neuron_ns=t_neuron,
            )
        )
    return tuple(out)


class _Static:
    """What estimate() needs that does not depend on the activity, for one (arch, chip) pair."""

    __slots__ = (
        "__weakref__",
        "T",
        "nw",
        "layers",
        "rows",
        "prior",
        "pipeline",
        "start_fraction",
        "once_ns",
        "leak_mw",
        "e_static",
        "e_wire",
        "area_mm2",
        "memory_kb",
        "budgets",
        "arrays",
        "utilisation",
        "ops",
        "tiles",
        "area_components",
        "notes",
        "layer_area_sum",
        "chip_name",
        "pool_windows",
        "skip_add",
    )
    T: int
    nw: int
    layers: tuple[tuple[Any, ...], ...]  # per layer: the coefficients of its rate-dependent terms
    rows: tuple[tuple[Any, ...], ...]  # per layer: what LayerCost reports that no rate changes
    prior: Activity
    pipeline: str
    start_fraction: float
    once_ns: float
    leak_mw: float
    e_static: tuple[
        float, ...
    ]  # pJ: neurons (logic), membrane, buffers, interconnect, pooling, offchip
    e_wire: float
    area_mm2: float
    memory_kb: float
    budgets: dict[str, tuple[float, bool]]
    arrays: int
    utilisation: float
    ops: float
    tiles: int
    area_components: dict[str, float]
    notes: tuple[str, ...]
    layer_area_sum: float
    chip_name: str
    pool_windows: tuple[
        int, ...
    ]  # per weighted layer: product of the max-pool windows in front of it
    #: consumer layer index -> (source layer index, pJ of its residual adds per unit source rate)
    skip_add: dict[int, tuple[int, float]]


#: (id(arch), id(chip)) -> (arch, chip, _Static), the most recent _STATIC_SIZE pairs.  Strong
#: references in a bounded table rather than weak ones in an unbounded one: a weakref and its
#: callback per candidate cost more than the lookup saves, and a table that grows with every
#: candidate priced makes Python's cyclic GC rescan it (measured: ~30 % of a cold estimate)
_STATIC: dict[tuple[int, int], tuple[Any, Any, _Static]] = {}
_STATIC_SIZE = 256


def _static(arch: ArchSpec, chip: Chip) -> _Static:
    key = (id(arch), id(chip))
    hit = _STATIC.get(key)
    if hit is not None and hit[0] is arch and hit[1] is chip:
        return hit[2]
    st = _prepare(arch, chip)
    if len(_STATIC) >= _STATIC_SIZE:
        del _STATIC[next(iter(_STATIC))]  # the oldest entry (dicts keep insertion order)
    _STATIC[key] = (arch, chip, st)
    return st


class _ChipScalars:
    """A chip's numbers as plain attributes, read once per chip (pydantic attribute reads add up)."""

    __slots__ = (
        "k",
        "memo",
        "name",
        "clk",
        "act_bits",
        "input_bits",
        "cpa",
        "offset_cols",
        "units_fixed",
        "npu",
        "inmem",
        "e_mux",
        "e_add_bit",
        "e_buf",
        "bit_area",
        "cell_area",
        "row_drv",
        "col_per",
        "acc_bit_area",
        "fa_area",
        "fa_delay",
        "write_e",
        "write_t",
        "dram_e",
        "dram_bw",
        "mux_area",
        "out_reg_area",
        "neuron_area_scale",
        "pool_lanes",
        "kernel_split",
        "cap_cells",
        "sram_bits",
        "pes_per_tile",
        "leaks",
        "max_rows",
        "e_cell",
        "e_wl",
        "e_bl",
        "e_arr",
        "e_acc_bit",
        "pe_acc",
        "pe_neu",
        "pe_buf",
        "pe_noc",
        "t_read",
        "tile_a_buf",
        "tile_a_noc",
        "tile_a_acc",
        "e_wire_mm",
        "leak_mw_mm2",
        "pipeline",
        "start_fraction",
        "rate",
        "budgets",
        "priors",
        "cells_text",
        "sync_mux",
        "arr_rows",
    )

    if TYPE_CHECKING:  # the slots are filled in _chip_scalars; to mypy each is Any

        def __getattr__(self, name: str) -> Any: ...

        def __setattr__(self, name: str, value: Any) -> None: ...


#: id(chip) -> (chip, its scalars); chips are few and long-lived, so strong references are fine
_SCALARS: dict[int, tuple[Chip, _ChipScalars]] = {}


def _chip_scalars(chip: Chip) -> _ChipScalars:
    hit = _SCALARS.get(id(chip))
    if hit is not None and hit[0] is chip:
        return hit[1]
    memo = chip.memo
    k = chip.constants
    tech = chip.technology
    dev = tech.device
    per = chip.periphery
    cap = chip.capacity
    nu = per.neuron_unit
    c = _ChipScalars()
    c.k, c.memo, c.name = k, memo, chip.name
    c.clk = 1000.0 / tech.clock_mhz
    c.act_bits, c.input_bits, c.cpa = per.activation_bits, per.input_bits, per.columns_per_adc
    c.offset_cols = int(k["offset_columns_per_array"])
    c.units_fixed, c.npu, c.inmem = nu.units_per_layer, nu.neurons_per_unit, nu.ld_lif_in_memory
    c.e_mux = k["mux_energy_pj"] if c.cpa > 1 else 0.0
    c.mux_area = k["mux_area_um2"] if c.cpa > 1 else 0.0
    c.e_add_bit, c.e_buf, c.bit_area = (
        k["add_energy_pj_per_bit"],
        k["buffer_energy_pj_per_bit"],
        k["sram_bit_area_um2"],
    )
    c.cell_area, c.row_drv, c.col_per = (
        dev.cell_area_um2,
        k["row_driver_area_um2"],
        k["column_periph_area_um2"],
    )
    c.acc_bit_area, c.fa_area, c.fa_delay = (
        k["accum_area_um2_per_bit"],
        k["fa_area_um2"],
        k["fa_delay_ns"],
    )
    c.write_e, c.write_t = dev.write_energy_pj, dev.write_latency_ns
    c.dram_e, c.dram_bw = cap.dram_energy_pj_per_bit, cap.dram_bandwidth_gbps
    c.out_reg_area, c.neuron_area_scale = k["output_reg_area_um2_per_bit"], k["neuron_area_scale"]
    c.pool_lanes = int(max(k["pool_lanes"], 1))
    c.kernel_split = per.layout == "kernel_split"
    c.cap_cells, c.sram_bits, c.pes_per_tile, c.leaks = (
        cap.cells,
        cap.sram_kb * 8192,
        cap.pes_per_tile,
        dev.leaks,
    )
    c.max_rows = per.max_active_rows
    c.sync_mux = per.mux_timing == "synchronous"
    c.arr_rows = per.array_energy == "driven_rows"
    c.e_cell, c.e_wl, c.e_bl = (
        dev.read_energy_fj * 1e-3,
        k["wordline_energy_fj_per_cell"] * 1e-3,
        k["bitline_energy_fj_per_cell"] * 1e-3,
    )
    c.e_arr, c.e_acc_bit = k["array_read_energy_pj"], k["accum_add_energy_pj_per_bit"]
    c.pe_acc, c.pe_neu = k["pe_read_overhead_pj_accumulation"], k["pe_read_overhead_pj_neuron"]
    c.pe_buf, c.pe_noc = k["pe_read_overhead_pj_buffers"], k["pe_read_overhead_pj_interconnect"]
    c.t_read = dev.read_latency_ns
    c.tile_a_buf = per.tile_buffer_kb * 8192 * c.bit_area + k["tile_area_um2_buffers"]
    c.tile_a_noc = k["router_area_um2"] + k["tile_area_um2_interconnect"]
    c.tile_a_acc = k["tile_area_um2_accumulation"]
    c.e_wire_mm, c.leak_mw_mm2 = k["wire_energy_pj_per_bit_mm"], k["leakage_mw_per_mm2"]
    c.pipeline, c.start_fraction = chip.schedule.pipeline, chip.schedule.start_fraction
    c.rate = float(chip.activity.default_rate)
    c.budgets = chip_budgets(chip)
    c.priors = {}  # number of weighted layers -> the prior Activity (immutable, shared)
    c.cells_text = f"{cap.cells:,}"
    if len(_SCALARS) > 64:  # chips built on the fly (experiments): forget the oldest
        del _SCALARS[next(iter(_SCALARS))]
    _SCALARS[id(chip)] = (chip, c)
    return c


def _array_type(
    c: _ChipScalars, kind: str, bits: int, R: int, C: int, col_factor: int, bpc: int
) -> tuple[Any, ...]:
    """What one R x C array with its readout costs, whatever layer it holds (memoised per chip)."""
    k = c.k
    adc_e, adc_a, adc_t = (
        adc_energy_pj(kind, bits, k),
        adc_area_um2(kind, bits, k),
        adc_latency_ns(kind, bits, k),
    )
    pe_cols = C + c.offset_cols if col_factor == 1 else C
    queue = False
    if kind == "sa":
        conv_units, ar_conv, w_conv, e_conv, t_conv = pe_cols, pe_cols * adc_a, 1, adc_e, adc_t
    elif kind == "digital":  # an R-input popcount tree per column, ~R full adders
        conv_units, ar_conv, w_conv = pe_cols, pe_cols * R * c.fa_area, log2ceil(R + 1)
        e_conv, t_conv = c.e_add_bit, (log2ceil(R) + 1) * c.fa_delay
    else:
        conv_units = -(-pe_cols // c.cpa)
        ar_conv, w_conv, e_conv, t_conv, queue = (
            conv_units * (adc_a + c.mux_area),
            bits,
            adc_e + c.e_mux,
            adc_t,
            True,
        )
    return (
        pe_cols,
        rows_per_read(kind, bits, bpc, c.max_rows),
        R * pe_cols * c.cell_area + R * c.row_drv + pe_cols * c.col_per,  # area of one array
        conv_units,
        ar_conv,
        w_conv,
        e_conv,
        t_conv,
        # bitline precharge of one array read (+ the lumped read energy, unless charged per driven row)
        R * pe_cols * c.e_bl + (0.0 if c.arr_rows else c.e_arr),
        pe_cols * c.e_wl,  # one driven wordline
        queue,
    )


def _prepare(arch: ArchSpec, chip: Chip) -> _Static:
    c = _chip_scalars(chip)
    k, memo = c.k, c.memo
    clk, act_bits, input_bits, cpa, offset_cols = (
        c.clk,
        c.act_bits,
        c.input_bits,
        c.cpa,
        c.offset_cols,
    )
    e_add_bit, e_buf, bit_area, cell_area, fa_area = (
        c.e_add_bit,
        c.e_buf,
        c.bit_area,
        c.cell_area,
        c.fa_area,
    )
    e_cell, e_acc_bit = c.e_cell, c.e_acc_bit
    pe_acc, pe_neu, pe_buf, pe_noc = c.pe_acc, c.pe_neu, c.pe_buf, c.pe_noc
    t_read, kernel_split = c.t_read, c.kernel_split
    inp = arch.input
    T = inp.timesteps
    model = arch.neuron.model
    direct = inp.encoding == "direct"
    ld_inmem = model == "ld_lif" and c.inmem

    resolved = arch.resolved()
    nw = len(resolved)
    maps = []
    # weights that do not fit: weight-stationary layers own their arrays; output-stationary
    # layers time-share one set (the largest)
    alloc_ws = alloc_os_max = os_bits_total = 0
    for layer in resolved:
        kk = layer.kernel * layer.kernel if kernel_split and layer.kind != "fc" else 1
        m = map_counts(
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
        maps.append(m)
        alloc = m[13]
        if layer.dataflow == "weight_stationary":
            alloc_ws += alloc
        else:
            if alloc > alloc_os_max:
                alloc_os_max = alloc
            os_bits_total += m[12] * layer.bits_per_cell
    cap_ws = c.cap_cells - alloc_os_max
    if cap_ws < 0:
        cap_ws = 0
    overflow = 1.0 - cap_ws / alloc_ws if alloc_ws > cap_ws else 0.0
    os_from_sram = os_bits_total <= c.sram_bits
    os_counted = False

    a_arrays = a_conv_t = a_accum = a_neur = a_membrane = a_buffers = 0.0
    e_neu_static = e_mem_static = e_buf_static = e_pool_static = e_off_static = 0.0
    noc_bits_total = 0
    once_ns = ops = 0.0
    total_pes = arrays_total = used_total = alloc_total = 0
    cell_alloc_area = layer_area_sum = 0.0
    mem_bits_total = 0
    layers: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    shapes = arch.shapes()
    # per weighted layer: the product of the max-pool windows right in front of it (1: none)
    windows: list[int] = []
    window = 1
    n_spec = len(arch.layers)
    skip_add: dict[int, tuple[int, float]] = {}
    skip_notes: list[str] = []
    wi = 0
    for li, spec_layer in enumerate(arch.layers):
        if spec_layer.kind == "pool":
            in_shape = inp.shape if li == 0 else shapes[li - 1]
            c_out, oh, ow = shapes[li]
            p_out = oh * ow
            kk = spec_layer.kernel * spec_layer.kernel
            is_max = spec_layer.pool == "max"
            width = 1 if is_max else log2ceil(kk) + act_bits
            e_pool = c_out * p_out * (kk - 1) * width * e_add_bit * T
            e_b = (in_shape[0] * in_shape[1] * in_shape[2] + c_out * p_out) * act_bits * e_buf * T
            stage = -(-(c_out * p_out) // c.pool_lanes) * clk
            e_buf_static += e_b
            e_pool_static += e_pool
            feeds = li + 1 < n_spec and arch.layers[li + 1].kind != "pool"
            layers.append((0, kk, is_max, stage, feeds))
            if is_max:
                window *= kk
            rows.append(
                (
                    li,
                    "pool",
                    f"pool{li}",
                    (0.0, e_b, e_pool, 0.0, 0.0),
                    0.0,
                    0.0,
                    0,
                    0,
                    0,
                    0.0,
                    0,
                    1,
                    0.0,
                )
            )
            continue

        layer = resolved[wi]
        windows.append(window)
        window = 1
        R, C = layer.rows, layer.cols
        N, P, K = layer.fan_out, layer.positions, layer.fan_in
        b = layer.membrane_bits
        bpc = layer.bits_per_cell
        readout = layer.is_readout
        kind, bits = layer.adc_kind, layer.adc_bits
        (
            slices,
            col_factor,
            cols_used,
            ref_cols,
            rpg,
            _rows_total,
            rg,
            last,
            cg,
            kk,
            pes,
            n_arrays,
            used,
            alloc,
        ) = maps[wi]
        os_layer = layer.dataflow == "output_stationary"
        # component results that depend on a few integers only: memoised per chip
        akey = (kind, bits, R, C, col_factor, bpc)
        arr = memo.get(akey)
        if arr is None:
            arr = memo[akey] = _array_type(c, kind, bits, R, C, col_factor, bpc)
        (
            pe_cols,
            per_read,
            ar_arr_unit,
            conv_units,
            ar_conv_unit,
            w_conv,
            e_per_conv,
            t_conv,
            cB_unit,
            e_wl_unit,
            adc_queue,
        ) = arr
        nkey = (model, b, readout)
        neu = memo.get(nkey)
        if neu is None:
            unit_model = "if" if readout else model
            neu = memo[nkey] = (
                neuron_unit_area_um2(unit_model, b, k),
                *neuron_update_energy_pj(model, b, readout, c.inmem, k),
                neuron_update_ns(unit_model, b, k),
            )
        unit_area, e_logic, e_mem, t_update = neu

        # ---- row phases: rows driven into one conversion (k*k arrays' currents meet in a kernel-split PE)
        n_full, n_last = rpg * kk, last * kk
        phases = row_phases(n_full, per_read) if per_read else 1
        if phases > 1:
            mr = per_read
            f_full, r_full = divmod(n_full, mr)
            f_last, r_last = divmod(n_last, mr)
        else:
            mr = f_full = r_full = f_last = r_last = 0

        # ---- area -------------------------------------------------------------------------
        ar_arr = n_arrays * ar_arr_unit
        cols_all = cols_used + ref_cols
        ar_conv = pes * ar_conv_unit
        t_phase = t_read + t_conv
        if adc_queue:  # columns queue on their shared ADC
            rounds = min(-(-min(pe_cols, cols_all) // conv_units), cpa)
            # overlapped: the columns settle once, then convert one after another (sample-and-hold per
            # column); synchronous (DNN+NeuroSim): a read-and-sense cycle per muxed column
            t_phase = rounds * t_phase if c.sync_mux else t_read + rounds * t_conv
        w_acc = (
            w_conv + (rg - 1).bit_length() + (phases - 1).bit_length() + (slices - 1) * bpc + 1
        )  # + log2ceil(groups, phases)
        ar_acc = (
            cg * conv_units * w_acc * c.acc_bit_area
        )  # group / phase partial sums meet per column group
        units = c.units_fixed or -(-N // c.npu)
        NP = N * P
        if readout:
            ar_acc += NP * b * c.out_reg_area
            ar_neu = unit_area * units
            ar_mem = 0.0
        else:
            ar_mem = NP * b * bit_area
            if ld_inmem:
                ar_neu = (
                    -(-(NP * b) // (R * C)) * C * fa_area * c.neuron_area_scale
                )  # near-memory column adders
            else:
                ar_neu = unit_area * units
        ins = layer.in_shape
        in_elems = ins[0] * ins[1] * ins[2] if len(ins) == 3 else ins[0]
        nread = input_bits if (direct and wi == 0) else 1
        skip_from = layer.skip_from
        if skip_from < 0:
            add_skip = False
            skip_bits = skip_map_bits = 0
        else:
            skip_elems = math.prod(layer.skip_shape)
            skip_map_bits = skip_elems * act_bits
            # maps in flight between source and consumer (see the module docstring)
            depth = min(li - skip_from, T) if c.pipeline == "timestep" and not os_layer else T
            skip_bits = depth * skip_map_bits
            skip_notes.append(
                f"layers[{li}] {layer.skip_op}s layers[{skip_from}]: {depth} x {skip_map_bits:,}"
            )
            add_skip = layer.skip_op == "add"
            if add_skip:
                skip_add[li] = (skip_from, skip_elems * T * b * e_add_bit)
                ar_neu += units * b * fa_area  # the residual operand's adder, per neuron unit
            else:  # concat: read from the skip buffer, not the input buffer
                in_elems -= skip_elems
        in_bits = in_elems * (input_bits if nread > 1 else act_bits)
        buf_bits = (in_bits * T if os_layer else in_bits) + skip_bits  # OS: T loops innermost
        ar_buf = buf_bits * bit_area
        if os_layer:
            if os_counted or alloc < alloc_os_max:
                ar_arr = ar_conv = 0.0
            else:
                os_counted = True
        la = ar_arr + ar_conv + ar_acc + ar_neu + ar_mem + ar_buf
        layer_area_sum += la
        a_arrays += ar_arr
        a_conv_t += ar_conv
        a_accum += ar_acc
        a_neur += ar_neu
        a_membrane += ar_mem
        a_buffers += ar_buf
        total_pes += pes
        arrays_total += n_arrays
        used_total += used
        alloc_total += alloc
        cell_alloc_area += alloc * cell_area

        # ---- activity-free energies and times -------------------------------------------------
        upd = NP * T
        out_bits = 0 if readout else NP * act_bits
        # the skip map: written into the skip buffer and read out once per timestep, and carried
        e_buffers = (in_bits + out_bits + 2 * skip_map_bits) * e_buf * T
        noc_bits = ((NP * b if readout else out_bits) + skip_map_bits) * T
        e_off = t_reload = once = 0.0
        wbits = used * bpc
        if not os_layer:
            if overflow > 0:
                ob = overflow * wbits
                e_off = (ob * c.dram_e + overflow * used * c.write_e) * T
                t_reload = ob / c.dram_bw + R * c.write_t
        else:
            e_off = wbits * (e_buf if os_from_sram else c.dram_e) + used * c.write_e
            once = R * c.write_t + (0.0 if os_from_sram else wbits / c.dram_bw)
        if ld_inmem and not readout:
            # row-parallel in-place update: one row of C // b membranes per clock, and two passes
            # (the parallel decay, then the integration of the array's output), a third for a
            # residual operand
            t_neuron = (3 if add_skip else 2) * min(-(-NP // max(C // b, 1)), R) * clk
        else:
            t_neuron = -(-NP // units) * t_update
            if add_skip:  # the residual add's carry chain
                t_neuron += -(-NP // units) * b * c.fa_delay
        e_n0 = e_logic * upd
        e_m0 = e_mem * upd
        e_neu_static += e_n0
        e_mem_static += e_m0
        e_buf_static += e_buffers
        e_off_static += e_off
        once_ns += once
        noc_bits_total += noc_bits
        ops += K * NP * T
        mem_bits = wbits + (0 if readout else NP * b) + buf_bits
        mem_bits_total += mem_bits
        stride2 = layer.stride * layer.stride if layer.kind == "deconv" else 1

        # coefficients of the rate-dependent terms (pJ per unit of rate / active group)
        reads = P * nread * T
        # periphery.array_energy: driven_rows: each array read costs array_read_energy_pj x the
        # driven share of its mapped rows; summed over a position's reads that is the rate a times
        # the dense (every row spiking) count of array reads: linear in a, whatever the clustering
        e_arr_rows = (
            cg * c.e_arr * _dense_array_reads(rg - 1, kk, mr, f_full, r_full, f_last, r_last)
            if c.arr_rows
            else 0.0
        )
        merges = N * (slices * col_factor - 1)
        pe_r = cg * reads
        if kind == "digital":  # popcount trees toggle ~2 adder bits per active input
            cCa, cCp = 2.0 * K * cols_used * e_per_conv * reads, 0.0
        else:
            cCa, cCp = 0.0, cols_all * e_per_conv * reads
        layers.append(
            (
                1,
                K,
                n_full,
                n_last,
                rg - 1,
                kk,
                mr,
                f_full,
                r_full,
                f_last,
                r_last,
                (K * (cols_all * e_cell + cg * e_wl_unit) + e_arr_rows)
                * reads,  # cA: driven cells + wordlines (+ lumped array energy per driven row), x rate
                cg * cB_unit * reads,  # cB: bitline precharge per active array (phase)
                cCa,
                cCp,
                cols_all * w_acc * e_acc_bit * reads + pe_r * pe_acc,  # cAcc: per conversion
                merges
                * w_acc
                * e_acc_bit
                * reads,  # cMerge: slice / pair merges, per position read
                pe_r * (pe_neu + pe_buf + pe_noc),  # cPe: lumped per-PE-read overheads
                P * nread * t_phase,
                t_neuron,
                t_reload,
                stride2,
                K * NP * T * nread,
                cols_all * reads,
                pe_r * pe_neu,
                pe_r * pe_buf,
                pe_r * pe_noc,
            )
        )
        rows.append(
            (
                li,
                layer.kind,
                f"{layer.kind}{li}",
                (e_m0, e_buffers, 0.0, e_off, e_n0),
                once,
                la,
                mem_bits,
                n_arrays,
                pes,
                used / alloc if alloc else 0.0,
                noc_bits,
                phases,
                t_neuron,
            )
        )
        wi += 1

    st = _Static()
    tiles = -(-total_pes // c.pes_per_tile)
    a_buffers += tiles * c.tile_a_buf
    a_noc = tiles * c.tile_a_noc
    a_accum += tiles * c.tile_a_acc
    area_um2 = a_arrays + a_conv_t + a_accum + a_neur + a_membrane + a_buffers + a_noc
    st.area_mm2 = area_mm2 = area_um2 * 1e-6
    st.e_wire = e_wire = c.e_wire_mm * 0.5 * math.sqrt(area_mm2)  # half the die's side on average
    leak_area_mm2 = area_um2 - (0.0 if c.leaks else cell_alloc_area)
    st.leak_mw = (leak_area_mm2 if leak_area_mm2 > 0.0 else 0.0) * 1e-6 * c.leak_mw_mm2
    st.e_static = (
        e_neu_static,
        e_mem_static,
        e_buf_static,
        e_wire * noc_bits_total,
        e_pool_static,
        e_off_static,
    )
    st.T = T
    st.nw = nw
    st.layers = tuple(layers)
    st.rows = tuple(rows)
    st.pool_windows = tuple(windows)
    st.skip_add = skip_add
    prior = c.priors.get(nw)
    if prior is None:
        r = c.rate
        prior = c.priors[nw] = Activity.from_checked((r,) * nw, (r,) * (nw - 1) + (0.0,), "prior")
    st.prior = prior
    st.pipeline = c.pipeline
    st.start_fraction = c.start_fraction
    st.once_ns = once_ns
    st.memory_kb = mem_bits_total / 8192
    st.budgets = c.budgets
    st.arrays = arrays_total
    st.utilisation = used_total / alloc_total if alloc_total else 0.0
    st.ops = ops
    st.tiles = tiles
    st.area_components = {
        "arrays": a_arrays * 1e-6,
        "conversion": a_conv_t * 1e-6,
        "accumulation": a_accum * 1e-6,
        "neurons": a_neur * 1e-6,
        "membrane": a_membrane * 1e-6,
        "buffers": a_buffers * 1e-6,
        "interconnect": a_noc * 1e-6,
    }
    st.layer_area_sum = layer_area_sum
    st.chip_name = c.name
    st.notes = ()
    if overflow > 0:
        st.notes = (
            f"weights need {alloc_ws + alloc_os_max:,} cells but the chip has {c.cells_text}: {overflow:.0%} "
            "of the weight-stationary weights reload from DRAM every timestep",
        )
    if skip_notes:
        st.notes += (f"skip buffers (maps held x bits per map): {'; '.join(skip_notes)}",)
    return st


_BUDGETS: dict[int, tuple[Any, dict[str, tuple[float, bool]]]] = {}


def chip_budgets(chip: Chip) -> dict[str, tuple[float, bool]]:
    """metric -> (limit, hard) for the budgets the chip sets (cached per chip object)."""
    hit = _BUDGETS.get(id(chip))
    if hit is not None and hit[0]() is chip:
        return hit[1]
    out = {m: (b.limit, b.hard) for m, b in chip.budgets.items().items()}
    _BUDGETS[id(chip)] = (weakref.ref(chip), out)
    return out
