"""``estimate(arch, chip, activity) -> CostReport``: the built-in CIM cost model.

Pure Python (no torch), a few hundred float operations per layer.  Per weighted layer with
fan-in K, fan-out N, P output positions and T timesteps (DESIGN.md §5):

* **arrays** - one read per input vector per timestep (spikes are binary).  Row groups with no
  spike are skipped: expected active groups = Σ_g 1-(1-a)^{R_g}.  Energy = active rows x driven
  columns x cell read energy + wordline + bitline (precharge of every column of an active array).
* **conversion** - every used column of an active PE row group is converted once per read: a
  1-bit SA per column, or a SAR/flash ADC shared by ``columns_per_adc`` columns through a mux
  (conversions serialise: t = t_read + rounds x t_conv); digital CIM: adder trees, no ADC.
* **accumulation** - shift-add of group partial sums (width = ADC bits + log2(groups) + slice
  shift + sign) and of slices / differential pairs per output neuron.
* **neurons / membrane** - one update per neuron per position per timestep (LIF, LD-LIF with
  optional in-memory parallel decay, IF; the readout only integrates).
* **buffers / interconnect** - input map read and output map written once per timestep; output
  bits carried half the die's side on average.
* **offchip** - weight-stationary layers whose weights do not fit the chip's arrays reload the
  overflow every timestep; output-stationary layers stream their weights once per inference
  (from on-chip SRAM when it holds them, else DRAM) and time-share the arrays.
* **leakage** - static power of the CMOS area (and of SRAM cells) x latency.

Latency: ``timestep`` pipeline (every layer on its own arrays): fill + (T-1) x slowest stage;
``layer`` schedule: a layer starts after its predecessor did ``start_fraction`` of its work.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
)
from neuronas.hardware.mapping import map_layer
from neuronas.spec import ArchSpec

__all__ = ["COMPONENTS", "CostReport", "LayerCost", "Violation", "estimate"]

#: energy components, in report order
COMPONENTS: tuple[str, ...] = (
    "arrays", "conversion", "accumulation", "neurons", "membrane", "buffers", "interconnect",
    "pooling", "offchip", "leakage",
)
#: area components
AREA_COMPONENTS: tuple[str, ...] = (
    "arrays", "conversion", "accumulation", "neurons", "membrane", "buffers", "interconnect",
)


@dataclass(frozen=True)
class Violation:
    metric: str
    value: float
    limit: float
    margin: float  # (value - limit) / limit, > 0 here
    hard: bool

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "limit": self.limit, "margin": self.margin, "hard": self.hard}


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
    array_ns: float = 0.0  # array phase of one timestep: positions x (read + conversions)

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
            T = self.timesteps
            st, dyn = self._rows
            srows, e_wire = st.rows
            (leak_pj,) = self._lazy
            area_sum = st.layer_area_sum
            out = []
            for (li, kind, name, static_e, once, area, mem_bits, arrays, pes, util, noc_bits), d in zip(srows, dyn, strict=True):
                e_mem, e_buf, _z, e_pool, e_off = static_e
                e_arrays, e_conv, e_accum, e_neu, e_buf_pe, e_noc_pe, stage, sops, conv, t_array, a_in, a_out = d
                en = (e_arrays, e_conv, e_accum, e_neu, e_mem, e_buf + e_buf_pe, e_noc_pe + e_wire * noc_bits,
                      e_pool, e_off, leak_pj * area / area_sum if area_sum else 0.0)
                comp = dict(zip(COMPONENTS, [v * 1e-6 for v in en], strict=True))
                out.append(LayerCost(
                    index=li, kind=kind, name=name, energy_uj=sum(en) * 1e-6, latency_us=(T * stage + once) * 1e-3,
                    stage_ns=stage, area_mm2=area * 1e-6, memory_kb=mem_bits / 8192, arrays=arrays, pes=pes,
                    utilisation=util, sops=sops, conversions=conv, input_rate=a_in, output_rate=a_out, components=comp,
                    array_ns=t_array,
                ))
            cached = tuple(out)
            object.__setattr__(self, "_layers", cached)
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


def _activity(arch: ArchSpec, chip: Chip, activity: Activity | float | Mapping[str, Any] | None) -> Activity:
    if activity is None:
        return Activity.uniform(chip.activity.default_rate, arch, "prior")
    if isinstance(activity, Activity):
        activity.check(arch)
        return activity
    if isinstance(activity, Mapping):
        act = Activity.from_dict(activity)
        act.check(arch)
        return act
    if isinstance(activity, bool) or not isinstance(activity, (int, float)) or not 0 <= activity <= 1:
        raise ConfigError(f"activity: got {activity!r}, must be a spike rate in [0, 1], an Activity or None")
    if activity == 1.0:
        return Activity.dense(arch)
    return Activity.uniform(float(activity), arch, "prior")


def estimate(arch: ArchSpec, chip: Chip, activity: Activity | float | None = None) -> CostReport:
    """Price ``arch`` on ``chip`` for one inference (all T timesteps).

    ``activity``: an :class:`Activity`, a uniform spike rate, or None for the chip's prior.
    Everything that does not depend on the activity (mapping, area, static energies, neuron
    times) is computed once per (arch, chip) pair and reused while both objects live.
    """
    st = _static(arch, chip)
    act = st.prior if activity is None else _activity(arch, chip, activity)
    T = st.T
    e_cell, e_wl, e_bl, e_arr, e_acc_bit, pe_acc, pe_neu, pe_buf, pe_noc = st.consts
    t_read = st.t_read
    in_rates = act.input_rates
    out_rates = act.output_rates or tuple(0.0 if i == st.nw - 1 else r for i, r in enumerate(in_rates))

    e_arrays_t = e_conv_t = e_accum_t = e_neu_t = e_mem_t = e_noc_pe_t = 0.0
    stages: list[float] = []
    sops_total = 0.0
    dyn: list[tuple[Any, ...]] = []
    wi = 0
    prev_rate = in_rates[0]
    for rec in st.layers:
        if rec[0] == 0:  # pool
            _tag, kk2, is_max, stage = rec
            stages.append(stage)
            rate_out = 1.0 - (1.0 - prev_rate) ** kk2 if is_max else prev_rate
            dyn.append((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, stage, 0.0, 0.0, 0.0, prev_rate, rate_out))
            prev_rate = rate_out
            continue
        (_tag, K, N, P, NP, R, rg, last, rpg, kk, cg, pe_cols, cols_all, cols_used, w_acc, e_per_conv,
         t_conv, digital, nread, merges, upd_e_logic, upd_e_mem, t_neuron, t_reload, stride2) = rec
        a_in = in_rates[wi]
        a_out = out_rates[wi]
        a = a_in / stride2  # a transposed conv sees a zero-inserted input
        q = 1.0 - a
        g_full = rg - 1
        act_arr = kk * (g_full * (1.0 - q ** rpg) + (1.0 - q ** last))
        act_pe = act_arr if kk == 1 else g_full * (1.0 - q ** (rpg * kk)) + (1.0 - q ** (last * kk))
        p_any = 1.0 - q ** K
        reads = P * nread * T
        e_arrays = (a * K * (cols_all * e_cell + cg * pe_cols * e_wl) + act_arr * cg * (R * pe_cols * e_bl + e_arr)) * reads
        n_conv = act_pe * cols_all
        if digital:
            e_conv = 2.0 * a * K * cols_used * e_per_conv * reads  # popcount trees toggle ~2 adder bits per active input
        else:
            e_conv = n_conv * e_per_conv * reads
        pe_reads = act_pe * cg * reads
        e_accum = (n_conv + merges * p_any) * w_acc * e_acc_bit * reads + pe_reads * pe_acc
        e_neu = upd_e_logic + pe_reads * pe_neu
        e_noc_pe = pe_reads * pe_noc
        e_buf_pe = pe_reads * pe_buf
        t_array = P * nread * p_any * (t_read + t_conv)  # positions serial; groups/columns parallel
        stage = (t_array if t_array > t_neuron else t_neuron) + t_reload
        stages.append(stage)
        e_arrays_t += e_arrays
        e_conv_t += e_conv
        e_accum_t += e_accum
        e_neu_t += e_neu
        e_noc_pe_t += e_noc_pe + e_buf_pe  # split back below
        e_mem_t += upd_e_mem
        sops = a * K * NP * T * nread
        sops_total += sops
        dyn.append((e_arrays, e_conv, e_accum, e_neu, e_buf_pe, e_noc_pe, stage, sops, n_conv * reads, t_array, a_in, a_out))
        prev_rate = a_out
        wi += 1

    # ---- latency -----------------------------------------------------------------------------
    fill = sum(stages)
    slowest = max(stages)
    if st.pipeline == "timestep":
        total_ns = fill + (T - 1) * slowest + st.once_ns
    else:
        total_ns = st.start_fraction * T * (fill - stages[-1]) + T * stages[-1] + st.once_ns
    leak_pj = st.leak_mw * total_ns  # mW x ns = pJ
    e_buf_pe_t = sum(d[4] for d in dyn)
    e_noc_t = st.e_noc_static + (e_noc_pe_t - e_buf_pe_t)
    e_tot = (e_arrays_t, e_conv_t, e_accum_t, e_neu_t, e_mem_t, st.e_buf_static + e_buf_pe_t, e_noc_t,
             st.e_pool_static, st.e_off_static, leak_pj)
    energy_uj = sum(e_tot) * 1e-6
    latency_us = total_ns * 1e-3
    area_mm2 = st.area_mm2
    memory_kb = st.memory_kb
    violations: tuple[Violation, ...] = ()
    if st.budgets:
        values = {"energy_uj": energy_uj, "latency_us": latency_us, "area_mm2": area_mm2, "memory_kb": memory_kb}
        violations = tuple(
            Violation(m_, values[m_], lim, (values[m_] - lim) / lim, hard)
            for m_, (lim, hard) in st.budgets.items()
            if values[m_] > lim
        )
    return CostReport._make(
        energy_uj=energy_uj, latency_us=latency_us, area_mm2=area_mm2, memory_kb=memory_kb,
        arrays=st.arrays, utilisation=st.utilisation, sops=sops_total, pipelined=st.pipeline == "timestep",
        components=dict(zip(COMPONENTS, [v * 1e-6 for v in e_tot], strict=True)), activity=act, violations=violations,
        ops=st.ops, tiles=st.tiles, area_components=st.area_components, chip=chip.name, arch=arch.name,
        budgets=st.budgets, notes=st.notes, timesteps=T, _rows=(st, tuple(dyn)),
        _sched=(st.pipeline, T, fill, slowest, st.start_fraction, st.once_ns), _lazy=(leak_pj,),
    )


class _Static:
    """What estimate() needs that does not depend on the activity, for one (arch, chip) pair."""

    __slots__ = (
        "__weakref__", "k", "T", "nw", "consts", "t_read", "layers", "rows", "prior", "pipeline", "start_fraction",
        "once_ns", "leak_mw", "e_noc_static", "e_buf_static", "e_pool_static", "e_off_static", "area_mm2",
        "memory_kb", "budgets", "arrays", "utilisation", "ops", "tiles", "area_components", "notes", "layer_area_sum",
    )
    k: dict[str, float]
    T: int
    nw: int
    consts: tuple[float, ...]
    t_read: float
    layers: tuple[tuple[Any, ...], ...]
    rows: tuple[Any, ...]
    prior: Activity
    pipeline: str
    start_fraction: float
    once_ns: float
    leak_mw: float
    e_noc_static: float
    e_buf_static: float
    e_pool_static: float
    e_off_static: float
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


#: (id(arch), id(chip)) -> (weakref(arch), weakref(chip), _Static)
_STATIC: dict[tuple[int, int], tuple[Any, Any, _Static]] = {}


def _static(arch: ArchSpec, chip: Chip) -> _Static:
    key = (id(arch), id(chip))
    hit = _STATIC.get(key)
    if hit is not None and hit[0]() is arch and hit[1]() is chip:
        return hit[2]
    import weakref

    st = _prepare(arch, chip)
    drop = lambda _r, key=key: _STATIC.pop(key, None)  # noqa: E731
    _STATIC[key] = (weakref.ref(arch, drop), weakref.ref(chip, drop), st)
    return st


def _chip_scalars(chip: Chip) -> tuple[Any, ...]:
    """The chip's numbers _prepare needs, read once per chip (pydantic attribute reads add up)."""
    memo = chip.memo
    hit = memo.get("_scalars")
    if hit is not None:
        return hit
    k = chip.constants
    tech = chip.technology
    dev = tech.device
    per = chip.periphery
    cap = chip.capacity
    nu = per.neuron_unit
    cpa = per.columns_per_adc
    hit = (
        k, memo, dev, per, cap, nu, 1000.0 / tech.clock_mhz, per.activation_bits, per.input_bits, cpa,
        int(k["offset_columns_per_array"]), nu.units_per_layer, nu.neurons_per_unit, nu.ld_lif_in_memory,
        k["mux_energy_pj"] if cpa > 1 else 0.0, k["add_energy_pj_per_bit"], k["buffer_energy_pj_per_bit"],
        k["sram_bit_area_um2"], dev.cell_area_um2, k["row_driver_area_um2"], k["column_periph_area_um2"],
        k["accum_area_um2_per_bit"], k["fa_area_um2"], k["fa_delay_ns"], dev.write_energy_pj, dev.write_latency_ns,
        cap.dram_energy_pj_per_bit, cap.dram_bandwidth_gbps, k["mux_area_um2"] if cpa > 1 else 0.0,
        k["output_reg_area_um2_per_bit"], k["neuron_area_scale"], int(max(k["pool_lanes"], 1)), per.layout,
        cap.cells, cap.sram_kb * 8192, cap.pes_per_tile, dev.leaks,
    )
    memo["_scalars"] = hit
    return hit


def _prepare(arch: ArchSpec, chip: Chip) -> _Static:
    (k, memo, dev, per, cap, nu, clk, act_bits, input_bits, cpa, offset_cols, units_fixed, npu, inmem, e_mux,
     e_add_bit, e_buf, bit_area, cell_area, row_drv, col_per, acc_bit_area, fa_area, fa_delay, write_e, write_t,
     dram_e, dram_bw, mux_area, out_reg_area, neuron_area_scale, pool_lanes, layout, cap_cells, sram_bits,
     pes_per_tile, leaks) = _chip_scalars(chip)
    T = arch.input.timesteps
    model = arch.neuron.model
    direct = arch.input.encoding == "direct"
    ld_inmem = model == "ld_lif" and inmem

    resolved = arch.resolved()
    maps = [map_layer(layer, layout, offset_cols) for layer in resolved]
    # weights that do not fit: weight-stationary layers own their arrays; output-stationary
    # layers time-share one set (the largest)
    alloc_ws = alloc_os_max = os_bits_total = 0
    for layer, m in zip(resolved, maps, strict=True):
        if layer.dataflow == "weight_stationary":
            alloc_ws += m.allocated_cells
        else:
            alloc_os_max = max(alloc_os_max, m.allocated_cells)
            os_bits_total += m.used_cells * layer.bits_per_cell
    cap_ws = max(cap_cells - alloc_os_max, 0)
    overflow = 1.0 - cap_ws / alloc_ws if alloc_ws > cap_ws else 0.0
    os_from_sram = os_bits_total <= sram_bits
    os_counted = False

    a_arrays = a_conv_t = a_accum = a_neur = a_membrane = a_buffers = 0.0
    e_buf_static = e_pool_static = e_off_static = 0.0
    noc_bits_total = 0
    once_ns = ops = 0.0
    total_pes = arrays_total = used_total = alloc_total = 0
    cell_alloc_area = 0.0
    mem_bits_total = 0
    layers: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []  # per layer: (index, kind, name, static energies, once, area, memory bits, arrays, pes, util, noc bits)
    shapes = arch.shapes()
    wi = 0
    for li, spec_layer in enumerate(arch.layers):
        if spec_layer.kind == "pool":
            in_shape = arch.input.shape if li == 0 else shapes[li - 1]
            c_out, oh, ow = shapes[li]
            p_out = oh * ow
            kk = spec_layer.kernel * spec_layer.kernel
            width = 1 if spec_layer.pool == "max" else log2ceil(kk) + act_bits
            e_pool = c_out * p_out * (kk - 1) * width * e_add_bit * T
            e_b = (in_shape[0] * in_shape[1] * in_shape[2] + c_out * p_out) * act_bits * e_buf * T
            stage = -(-(c_out * p_out) // pool_lanes) * clk
            e_buf_static += e_b
            e_pool_static += e_pool
            layers.append((0, kk, spec_layer.pool == "max", stage))
            rows.append((li, "pool", f"pool{li}", (0.0, e_b, 0.0, e_pool, 0.0), 0.0, 0.0, 0, 0, 0, 0.0, 0))
            continue

        layer = resolved[wi]
        m = maps[wi]
        R, C = layer.rows, layer.cols
        N, P, K = layer.fan_out, layer.positions, layer.fan_in
        b = layer.membrane_bits
        bpc = layer.bits_per_cell
        readout = layer.is_readout
        kind, bits = layer.adc_kind, layer.adc_bits
        slices, col_factor, cols_used, ref_cols, rpg, _rows_total, rg, last, cg, kk, pes, n_arrays, used, alloc = m
        pe_cols = C + offset_cols if col_factor == 1 else C
        os_layer = layer.dataflow == "output_stationary"
        # component results that depend on a few integers only: memoised per chip
        adc = memo.get((kind, bits))
        if adc is None:
            adc = memo[(kind, bits)] = (adc_energy_pj(kind, bits, k), adc_area_um2(kind, bits, k), adc_latency_ns(kind, bits, k))
        nkey = (model, b, readout)
        neu = memo.get(nkey)
        if neu is None:
            unit_model = "if" if readout else model
            neu = memo[nkey] = (
                neuron_unit_area_um2(unit_model, b, k),
                *neuron_update_energy_pj(model, b, readout, nu.ld_lif_in_memory, k),
                neuron_update_ns(unit_model, b, k),
            )
        unit_area, e_logic, e_mem, t_update = neu

        # ---- area -------------------------------------------------------------------------
        ar_arr = n_arrays * (R * pe_cols * cell_area + R * row_drv + pe_cols * col_per)
        cols_all = cols_used + ref_cols
        if kind == "sa":
            conv_units = pe_cols
            ar_conv = pes * pe_cols * adc[1]
            w_conv = 1
            e_per_conv = adc[0]
            t_conv = adc[2]
        elif kind == "digital":
            conv_units = pe_cols
            ar_conv = pes * pe_cols * R * fa_area  # an R-input popcount tree ~R full adders
            w_conv = log2ceil(R + 1)
            e_per_conv = e_add_bit
            t_conv = (log2ceil(R) + 1) * fa_delay
        else:
            conv_units = -(-pe_cols // cpa)
            ar_conv = pes * conv_units * (adc[1] + mux_area)
            w_conv = bits
            e_per_conv = adc[0] + e_mux
            rounds = -(-min(pe_cols, cols_all) // conv_units)  # columns queue on their shared ADC
            t_conv = min(rounds, cpa) * adc[2]
        w_acc = w_conv + log2ceil(rg) + (slices - 1) * bpc + 1
        ar_acc = cg * conv_units * w_acc * acc_bit_area  # group partial sums meet per column group
        units = units_fixed or -(-N // npu)
        NP = N * P
        if readout:
            ar_acc += NP * b * out_reg_area
            ar_neu = unit_area * units
            ar_mem = 0.0
        else:
            ar_mem = NP * b * bit_area
            if ld_inmem:
                ar_neu = -(-(NP * b) // (R * C)) * C * fa_area * neuron_area_scale  # near-memory column adders
            else:
                ar_neu = unit_area * units
        ins = layer.in_shape
        in_elems = ins[0] * ins[1] * ins[2] if len(ins) == 3 else ins[0]
        nread = input_bits if (direct and wi == 0) else 1
        in_bits = in_elems * (input_bits if nread > 1 else act_bits)
        buf_bits = in_bits * T if os_layer else in_bits  # OS: the timestep loop runs innermost
        ar_buf = buf_bits * bit_area
        if os_layer:
            if os_counted or alloc < alloc_os_max:
                ar_arr = ar_conv = 0.0
            else:
                os_counted = True
        la = ar_arr + ar_conv + ar_acc + ar_neu + ar_mem + ar_buf
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

        # ---- activity-free energies ---------------------------------------------------------
        upd = NP * T
        out_bits = 0 if readout else NP * act_bits
        e_buffers = (in_bits + out_bits) * e_buf * T
        noc_bits = (NP * b if readout else out_bits) * T
        e_off = t_reload = once = 0.0
        wbits = used * bpc
        if not os_layer:
            if overflow > 0:
                ob = overflow * wbits
                e_off = (ob * dram_e + overflow * used * write_e) * T
                t_reload = ob / dram_bw + R * write_t
        else:
            e_off = wbits * (e_buf if os_from_sram else dram_e) + used * write_e
            once = R * write_t + (0.0 if os_from_sram else wbits / dram_bw)
        if ld_inmem and not readout:
            t_neuron = min(-(-NP // max(C // b, 1)), R) * clk  # row-parallel in-place update
        else:
            t_neuron = -(-NP // units) * t_update
        e_buf_static += e_buffers
        e_off_static += e_off
        once_ns += once
        noc_bits_total += noc_bits
        ops += K * NP * T
        mem_bits = wbits + (0 if readout else NP * b) + buf_bits
        mem_bits_total += mem_bits
        stride2 = layer.stride * layer.stride if layer.kind == "deconv" else 1
        layers.append((1, K, N, P, NP, R, rg, last, rpg, kk, cg, pe_cols, cols_all, cols_used, w_acc, e_per_conv,
                       t_conv, kind == "digital", nread, N * (slices * col_factor - 1), e_logic * upd, e_mem * upd,
                       t_neuron, t_reload, stride2))
        rows.append((li, layer.kind, f"{layer.kind}{li}", (e_mem * upd, e_buffers, 0.0, 0.0, e_off), once, la,
                     mem_bits, n_arrays, pes, used / alloc if alloc else 0.0, noc_bits))
        wi += 1

    st = _Static()
    tiles = -(-total_pes // pes_per_tile)
    a_buffers += tiles * (per.tile_buffer_kb * 8192 * bit_area + k["tile_area_um2_buffers"])
    a_noc = tiles * (k["router_area_um2"] + k["tile_area_um2_interconnect"])
    a_accum += tiles * k["tile_area_um2_accumulation"]
    area_um2 = a_arrays + a_conv_t + a_accum + a_neur + a_membrane + a_buffers + a_noc
    st.area_mm2 = area_mm2 = area_um2 * 1e-6
    e_wire = k["wire_energy_pj_per_bit_mm"] * 0.5 * math.sqrt(area_mm2)  # half the die's side on average
    st.e_noc_static = e_wire * noc_bits_total
    leak_area_mm2 = max(area_um2 - (0.0 if leaks else cell_alloc_area), 0.0) * 1e-6
    st.leak_mw = leak_area_mm2 * k["leakage_mw_per_mm2"]
    st.k = k
    st.T = T
    st.nw = len(resolved)
    st.consts = (dev.read_energy_fj * 1e-3, k["wordline_energy_fj_per_cell"] * 1e-3, k["bitline_energy_fj_per_cell"] * 1e-3,
                 k["array_read_energy_pj"], k["accum_add_energy_pj_per_bit"], k["pe_read_overhead_pj_accumulation"],
                 k["pe_read_overhead_pj_neuron"], k["pe_read_overhead_pj_buffers"], k["pe_read_overhead_pj_interconnect"])
    st.t_read = dev.read_latency_ns
    st.layers = tuple(layers)
    st.rows = (tuple(rows), e_wire)
    st.prior = Activity.uniform(chip.activity.default_rate, arch, "prior")
    st.pipeline = chip.schedule.pipeline
    st.start_fraction = chip.schedule.start_fraction
    st.once_ns = once_ns
    st.e_buf_static = e_buf_static
    st.e_pool_static = e_pool_static
    st.e_off_static = e_off_static
    st.memory_kb = mem_bits_total / 8192
    st.budgets = chip_budgets(chip)
    st.arrays = arrays_total
    st.utilisation = used_total / alloc_total if alloc_total else 0.0
    st.ops = ops
    st.tiles = tiles
    st.area_components = {
        "arrays": a_arrays * 1e-6, "conversion": a_conv_t * 1e-6, "accumulation": a_accum * 1e-6,
        "neurons": a_neur * 1e-6, "membrane": a_membrane * 1e-6, "buffers": a_buffers * 1e-6,
        "interconnect": a_noc * 1e-6,
    }
    st.layer_area_sum = sum(r[5] for r in rows)
    st.notes = ()
    if overflow > 0:
        st.notes = (
            f"weights need {alloc_ws + alloc_os_max:,} cells but the chip has {cap.cells:,}: {overflow:.0%} "
            "of the weight-stationary weights reload from DRAM every timestep",
        )
    return st


_BUDGETS: dict[int, tuple[Any, dict[str, tuple[float, bool]]]] = {}


def chip_budgets(chip: Chip) -> dict[str, tuple[float, bool]]:
    """metric -> (limit, hard) for the budgets the chip sets (cached per chip object)."""
    hit = _BUDGETS.get(id(chip))
    if hit is not None and hit[0]() is chip:
        return hit[1]
    import weakref

    out = {m: (b.limit, b.hard) for m, b in chip.budgets.items().items()}
    _BUDGETS[id(chip)] = (weakref.ref(chip), out)
    return out
