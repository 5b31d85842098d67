"""Component constants and per-action models: ADCs, sense amplifier, cells, adders, neurons, wires.

Every constant is a named entry with its unit in the name, the node / supply it was published at,
and its source.  :func:`resolve_constants` scales them to a chip's node with one stated rule:

* energy  ∝ node · V²   (switched capacitance ∝ feature size, E = C·V²)
* area    ∝ node²
* latency ∝ node        (gate delay at constant field; a first-order rule)
* leakage power density ∝ V (kept constant across nodes: a simplification, stated)
* SAR ADC power ∝ node^1.5, whatever the supply ("sar_power"): DNN+NeuroSim fits its SAR power per
  node at that node's nominal (PTM HP) supply and keeps the conversion at (b+1) x 1 ns on every
  node, so its energy falls like its power; node^1.5 (= node · V_nom², V_nom ∝ node^0.25: 1.1 V
  at 65 nm, 0.85 V at 22 nm) meets its 65/45/32/22 nm table within 11 % at 4 and 8 bits
* "none": node-independent (NeuroSim's SAR bit cycle of 1 ns)

A chip file's ``overrides`` replace a constant *after* scaling: an override is the value at the
chip's own node, which is how published models (SpikeSim's ELA, ISAAC) are emulated exactly.

The functions below price one action of one component (one conversion, one neuron update...)
given the resolved constants ``k`` (a plain dict, so the cost model stays a few dict lookups).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONSTANTS",
    "Constant",
    "adc_area_um2",
    "adc_energy_pj",
    "adc_latency_ns",
    "known_constants",
    "neuron_unit_area_um2",
    "neuron_update_energy_pj",
    "neuron_update_ns",
    "resolve_constants",
    "row_phases",
    "rows_per_read",
]

#: Horowitz, "Computing's energy problem", ISSCC 2014: 45 nm, 0.9 V
_H_NODE, _H_V = 45.0, 0.9
#: the 65 nm anchors (NeuroSim, SpikeSim, the ADC-less paper) are at 1.2 V
_N65, _V65 = 65.0, 1.2


@dataclass(frozen=True)
class Constant:
    value: float | None  # None: only used when a chip overrides it
    scale: str  # "energy" | "area" | "time" | "leak" | "sar_power" | "none"
    node_nm: float
    supply_v: float
    source: str


def _c(
    value: float | None, scale: str, source: str, node: float = _N65, v: float = _V65
) -> Constant:
    return Constant(value, scale, node, v, source)


# fmt: off
CONSTANTS: dict[str, Constant] = {
    # -- 1-bit sense amplifier (ADC-less readout), one per column --------------------------
    # DNN+NeuroSim V1.3 MultilevelSenseAmp.cpp, voltage mode, 65 nm HP, levelOutput = 2 (one
    # comparator): P = 13.058 uW x (levels - 1) for 1 ns; area (52 NMOS + 60 PMOS min-size INV
    # footprints) x (levels - 1), each footprint 7.6F x 28F (formula.cpp CalculateGateArea) = 0.899 um^2.
    # NeuroSim's column-current term 0.128 x R_col^-1.008 W is left out: our cell read energy covers it
    "sa_energy_pj": _c(0.013058, "energy", "DNN+NeuroSim V1.3 MultilevelSenseAmp (voltage mode, 65 nm HP): 13.058 uW x 1 ns"),
    "sa_area_um2": _c(100.7, "area", "DNN+NeuroSim V1.3 MultilevelSenseAmp: (52 + 60) x 0.899 um^2 min INV footprint at 65 nm"),
    "sa_latency_ns": _c(1.0, "time", "one comparator decision ~1 clock at ~1 GHz, 65 nm (DESIGN §5)"),
    # -- SAR ADC: E = P(b)·(b+1)·t_bit, P = 2.95·b + 22.0 uW (NeuroSim, 65 nm HP) ----------------
    # power is scaled with NeuroSim's own per-node fits ("sar_power", see the module docstring) and
    # the bit cycle not at all: NeuroSim SarADC.cpp, readLatency = (log2(levels) + 1) x 1 ns
    "sar_power_per_bit_uw": _c(2.9503, "sar_power", "DNN+NeuroSim V1.3/1.4 SarADC.cpp, 65 nm HP: P = (2.9503 b + 22.047) uW"),
    "sar_power_fixed_uw": _c(22.047, "sar_power", "DNN+NeuroSim V1.3/1.4 SarADC.cpp, 65 nm HP: P = (2.9503 b + 22.047) uW"),
    "sar_bit_cycle_ns": _c(1.0, "none", "DNN+NeuroSim SarADC.cpp: (b+1) cycles of 1 ns at every node (4 b -> 5 ns, 169 fJ)"),
    # area linear in bits: NeuroSim SarADC.cpp areaUnit = a_N (269 + 109 (b-1)) + a_P (209 + 73 (b-1)),
    # a_N = a_P = 0.899 um^2 (min-size INV, 7.6F x 28F at 65 nm) -> 266.1 + 163.6 b um^2 (4 b: 921, 8 b: 1,575)
    "sar_area_fixed_um2": _c(266.1, "area", "DNN+NeuroSim SarADC.cpp: 0.899 um^2 x (478 - 182) at 65 nm"),
    "sar_area_per_bit_um2": _c(163.6, "area", "DNN+NeuroSim SarADC.cpp: 0.899 um^2 x (109 + 73) per bit at 65 nm"),
    # -- flash ADC: 2^b - 1 comparators fire in parallel (NeuroSim MultilevelSenseAmp) --------
    "flash_energy_per_comparator_pj": _c(0.013058, "energy", "DNN+NeuroSim V1.3 MultilevelSenseAmp (voltage mode, 65 nm HP): 13.058 uW x (2^b - 1) x 1 ns"),
    "flash_area_per_comparator_um2": _c(100.7, "area", "DNN+NeuroSim V1.3 MultilevelSenseAmp: (52 + 60) x 0.899 um^2 per comparator at 65 nm"),
    "flash_latency_ns": _c(1.0, "time", "NeuroSim flash: one 1 ns comparison regardless of b"),
    # -- a fixed-cost ADC (any kind), only when a chip sets it: emulates published tables --------
    "adc_energy_pj": _c(None, "energy", "override only: energy per conversion, replaces the kind's model"),
    "adc_area_um2": _c(None, "area", "override only: area per ADC, replaces the kind's model"),
    "adc_latency_ns": _c(None, "time", "override only: time per conversion, replaces the kind's model"),
    # -- column multiplexer in front of a shared ADC -----------------------------------------
    "mux_energy_pj": _c(0.094245, "energy", "SpikeSim ELA (65 nm) mux energy per conversion"),
    "mux_area_um2": _c(45.9, "area", "SpikeSim ELA (65 nm) mux area per ADC"),
    # -- crossbar periphery (per array read) ---------------------------------------------------
    # bitline: C_bl per cell ~0.2 fF, read swing ~0.2 V at 1.2 V -> C·V·dV = 0.05 fJ per cell on the column
    "bitline_energy_fj_per_cell": _c(0.05, "energy", "derived: 0.2 fF/cell x 1.2 V x 0.2 V swing (Weste & Harris, CMOS VLSI Design 4e, ch. 12 bitline caps)"),
    # wordline: one driven row charges ~0.2 fF per cell it crosses, full swing -> 0.2 fF·1.2^2
    "wordline_energy_fj_per_cell": _c(0.288, "energy", "derived: 0.2 fF/cell x (1.2 V)^2 full-swing wordline"),
    "array_read_energy_pj": _c(0.0, "energy", "fixed energy per array activation (0 by default: bitline/wordline terms cover it; SpikeSim lumps its crossbar energy here)"),
    # DNN+NeuroSim V1.3 1T1R parallel read (SubArray.cpp): rows are driven by a NewSwitchMatrix
    # (4 transmission gates enlarged to the 28F cell height + a 12-INV scan DFF per row, stacked in
    # columns beside a 4F-pitch array), columns by a COL_MODE SwitchMatrix (a folded TG pair + a DFF
    # per column under a 12F-pitch array); per row / column the same at 64 and 128 (benchmarks/RESULTS.md)
    "row_driver_area_um2": _c(16.44, "area", "DNN+NeuroSim V1.3 NewSwitchMatrix (WL) per row, 65 nm: 1,052 um^2 / 64 rows"),
    "column_periph_area_um2": _c(13.14, "area", "DNN+NeuroSim V1.3 SwitchMatrix COL_MODE (SL) per column, 65 nm: 840.7 um^2 / 64 columns"),
    "offset_columns_per_array": _c(1.0, "none", "offset scheme: one reference column per array (its current is subtracted digitally)"),
    # -- digital logic (Horowitz ISSCC 2014, 45 nm 0.9 V) --------------------------------------
    "add_energy_pj_per_bit": _c(0.03 / 8, "energy", "Horowitz ISSCC'14: 8-bit add 0.03 pJ (45 nm)", _H_NODE, _H_V),
    "mul_energy_pj_per_bit2": _c(0.2 / 64, "energy", "Horowitz ISSCC'14: 8-bit multiply 0.2 pJ, ∝ b^2 (32-bit: 3.1 pJ)", _H_NODE, _H_V),
    "fa_area_um2": _c(10.0, "area", "estimate: full adder ~7 NAND2 eq. x ~1.4 um^2 in a 65 nm library"),
    "reg_area_um2_per_bit": _c(6.0, "area", "estimate: one D flip-flop ~5-7 um^2 in a 65 nm library"),
    "fa_delay_ns": _c(0.1, "time", "estimate: full-adder carry delay ~100 ps at 65 nm"),
    # accumulation (shift-add after the ADC / SA): separate names so a chip can zero or lump them
    "accum_add_energy_pj_per_bit": _c(0.03 / 8, "energy", "Horowitz ISSCC'14: 8-bit add 0.03 pJ (45 nm)", _H_NODE, _H_V),
    "accum_area_um2_per_bit": _c(16.0, "area", "adder bit (10 um^2) + register bit (6 um^2), the two estimates above"),
    "output_reg_area_um2_per_bit": _c(6.0, "area", "readout accumulator registers: a DFF per bit (65 nm estimate)"),
    # -- memories ----------------------------------------------------------------------------
    "sram_access_energy_pj_per_bit": _c(10.0 / 64, "energy", "Horowitz ISSCC'14: 8 kB SRAM, 10 pJ per 64-bit access (45 nm)", _H_NODE, _H_V),
    "sram_bit_area_um2": _c(0.75, "area", "65 nm 6T cell 0.525 um^2 / ~70 % array efficiency"),
    # in-place read-modify-write on a CIM bitline: C_bl ~50 fF (256 cells x 0.2 fF): read at 0.1 V
    # swing C·V·dV ~6 fJ + full-swing write C·V^2 ~72 fJ
    "sram_inplace_rmw_energy_pj_per_bit": _c(0.078, "energy", "derived: C_bl 50 fF; 6 fJ read + 72 fJ write per bit at 65 nm, 1.2 V"),
    "buffer_energy_pj_per_bit": _c(10.0 / 64, "energy", "spike / activation buffer: Horowitz 8 kB SRAM access (45 nm)", _H_NODE, _H_V),
    # -- neuron units --------------------------------------------------------------------------
    "lif_unit_area_um2": _c(1448.0, "area", "digital LIF unit at 65 nm: ~1,448 um^2 (DESIGN §5), taken at 8-bit membrane"),
    "lif_update_ns": _c(5.0, "time", "digital LIF unit at 65 nm: ~5 ns per update (DESIGN §5)"),
    "neuron_update_ns": _c(None, "time", "override only: time of one neuron update, replaces the model"),
    "membrane_access_energy_pj_per_bit": _c(10.0 / 64, "energy", "membrane SRAM: Horowitz 8 kB SRAM access (45 nm)", _H_NODE, _H_V),
    "neuron_energy_scale": _c(1.0, "none", "multiplies every per-update neuron energy (0 turns the model off)"),
    "neuron_area_scale": _c(1.0, "none", "multiplies the neuron-unit area (0 turns it off)"),
    # -- interconnect, leakage, tiles --------------------------------------------------------
    "pool_lanes": _c(32.0, "none", "estimate: a 32-wide digital pooling unit per pool layer"),
    "wire_energy_pj_per_bit_mm": _c(0.2, "energy", "derived: ~0.2 pF/mm on-chip wire x (1.2 V)^2 x 0.5 activity + repeaters at 65 nm"),
    "router_area_um2": _c(20000.0, "area", "estimate: a small mesh router per tile at 65 nm (~0.02 mm^2)"),
    "leakage_mw_per_mm2": _c(1.0, "leak", "estimate: 65 nm SRAM/logic ~0.5 nA/bit at 1.2 V over 0.75 um^2/bit (LP ~0.1, GP ~2 mW/mm^2)"),
    # per PE read (one activation of a PE: one array, or the k^2 arrays of a kernel-split PE):
    # lumped costs some published models charge per PE cycle; 0 by default (our own models apply)
    "pe_read_overhead_pj_buffers": _c(0.0, "none", "override: buffer energy charged per PE read"),
    "pe_read_overhead_pj_interconnect": _c(0.0, "none", "override: interconnect energy charged per PE read"),
    "pe_read_overhead_pj_neuron": _c(0.0, "none", "override: neuron energy charged per PE read"),
    "pe_read_overhead_pj_accumulation": _c(0.0, "none", "override: accumulation energy charged per PE read"),
    # per tile: lumped areas a published model charges per tile (added to our own per-tile router
    # and tile buffer); 0 by default
    "tile_area_um2_buffers": _c(0.0, "none", "override: extra buffer area per tile"),
    "tile_area_um2_interconnect": _c(0.0, "none", "override: extra interconnect area per tile"),
    "tile_area_um2_accumulation": _c(0.0, "none", "override: extra accumulation area per tile"),
}
# fmt: on


def known_constants() -> list[str]:
    return sorted(CONSTANTS)


def resolve_constants(
    node_nm: float, supply_v: float, overrides: dict[str, float]
) -> dict[str, float]:
    """Every constant at the chip's node and supply, then the chip's overrides on top."""
    out: dict[str, float] = {}
    for name, c in CONSTANTS.items():
        if c.value is None:
            continue
        v = c.value
        if c.scale == "energy":
            v *= (node_nm / c.node_nm) * (supply_v / c.supply_v) ** 2
        elif c.scale == "area":
            v *= (node_nm / c.node_nm) ** 2
        elif c.scale == "time":
            v *= node_nm / c.node_nm
        elif c.scale == "leak":
            v *= supply_v / c.supply_v
        elif c.scale == "sar_power":
            v *= (node_nm / c.node_nm) ** 1.5
        out[name] = v
    out.update(overrides)
    return out


# ---------------------------------------------------------------------------------------------
# converters


def adc_energy_pj(kind: str, bits: int, k: dict[str, float]) -> float:
    """Energy of one conversion (excluding the mux)."""
    if kind == "digital":
        return 0.0
    fixed = k.get("adc_energy_pj")
    if fixed is not None and kind != "sa":
        return fixed
    if kind == "sa":
        return k["sa_energy_pj"]
    if kind == "flash":
        return k["flash_energy_per_comparator_pj"] * ((1 << bits) - 1)
    # SAR: power (uW) x conversion time (ns) = fJ -> pJ
    p_uw = k["sar_power_per_bit_uw"] * bits + k["sar_power_fixed_uw"]
    return p_uw * (bits + 1) * k["sar_bit_cycle_ns"] * 1e-3


def adc_area_um2(kind: str, bits: int, k: dict[str, float]) -> float:
    if kind == "digital":
        return 0.0
    fixed = k.get("adc_area_um2")
    if fixed is not None and kind != "sa":
        return fixed
    if kind == "sa":
        return k["sa_area_um2"]
    if kind == "flash":
        return k["flash_area_per_comparator_um2"] * ((1 << bits) - 1)
    return k["sar_area_fixed_um2"] + k["sar_area_per_bit_um2"] * bits


def adc_latency_ns(kind: str, bits: int, k: dict[str, float]) -> float:
    if kind == "digital":
        return 0.0
    fixed = k.get("adc_latency_ns")
    if fixed is not None and kind != "sa":
        return fixed
    if kind == "sa":
        return k["sa_latency_ns"]
    if kind == "flash":
        return k["flash_latency_ns"]
    return (bits + 1) * k["sar_bit_cycle_ns"]


# ---------------------------------------------------------------------------------------------
# row activation


def rows_per_read(kind: str, bits: int, bits_per_cell: int, max_active_rows: int | None) -> int:
    """Rows driven at once into one conversion; 0 means every row of the array.

    With binary input spikes a column's partial sum over r driven rows of c-bit cells lies in
    0..r·(2^c - 1), so a b-bit ADC resolves it without clipping only while
    r <= (2^b - 1) / (2^c - 1) (ISAAC, Shafiee et al. ISCA 2016 §4: the ADC needs log2(R) + v + w - 1
    bits for R rows of w-bit cells and v-bit inputs).  A design that keeps its ADC small therefore
    drives that many rows per read and adds the phases' partial sums digitally (DNN+NeuroSim V1.4's
    "partial parallel mode": numRowParallel rows per read, readLatencyADC = numColMuxed x numAdd with
    numAdd = rows / numRowParallel, and an adder of log2(levels) + ceil(log2(numAdd)) bits).  A chip may
    set ``max_active_rows`` instead (a design that accepts clipping, or an encoding that saves a bit).
    A 1-bit sense amplifier reads all rows at once: its output is a thresholded sum by design (the
    ADC-less IMC paper), as is a digital adder tree's exact sum.
    """
    if kind not in ("sar", "flash"):
        return 0
    if max_active_rows is not None:
        return max_active_rows
    return max(((1 << bits) - 1) // ((1 << bits_per_cell) - 1), 1)


def row_phases(rows: int, per_read: int) -> int:
    """Sequential row phases to read ``rows`` rows, ``per_read`` at a time (0: all at once)."""
    if per_read <= 0 or rows <= per_read:
        return 1
    return -(-rows // per_read)


# ---------------------------------------------------------------------------------------------
# neuron units


def neuron_update_energy_pj(
    model: str, bits: int, readout: bool, in_memory: bool, k: dict[str, float]
) -> tuple[float, float]:
    """One membrane update of one neuron for one timestep: (logic pJ, membrane access pJ).

    LIF: v <- beta·v + x: membrane read + multiply (∝ b^2) + add + compare + write.
    LD-LIF: v <- v - d + x: subtract + add + compare, no multiplier; with ``in_memory`` the
    membrane lives in the CIM SRAM and never crosses a macro port, but it is still written in
    the array twice per timestep: the parallel decay v <- v - d is one in-place read-modify-write
    of every membrane bit (row-parallel, all neurons, whether or not they receive input), and the
    integration v <- v + x (with the threshold compare on the same column adders) a second one.
    IF: add + compare.  A readout only integrates (add + membrane read/write).
    """
    scale = k["neuron_energy_scale"]
    add = k["add_energy_pj_per_bit"] * bits
    rw = 2 * bits * k["membrane_access_energy_pj_per_bit"]
    if readout:
        return add * scale, rw * scale
    if model == "ld_lif" and in_memory:
        return 3 * add * scale, 2 * bits * k["sram_inplace_rmw_energy_pj_per_bit"] * scale
    if model == "lif":
        return (k["mul_energy_pj_per_bit2"] * bits * bits + 2 * add) * scale, rw * scale
    if model == "ld_lif":
        return 3 * add * scale, rw * scale
    return 2 * add * scale, rw * scale


def _logic_bits(model: str, bits: int) -> float:
    """Gate count of a neuron unit in adder-bit equivalents: multiplier ~b^2, adder/comparator ~b."""
    if model == "lif":
        return bits * bits + 2 * bits
    if model == "ld_lif":
        return 3 * bits
    return 2 * bits


def neuron_unit_area_um2(model: str, bits: int, k: dict[str, float]) -> float:
    """Area of one digital neuron unit, the 8-bit LIF anchor apportioned by gate count."""
    return (
        k["lif_unit_area_um2"]
        * _logic_bits(model, bits)
        / _logic_bits("lif", 8)
        * k["neuron_area_scale"]
    )


def neuron_update_ns(model: str, bits: int, k: dict[str, float]) -> float:
    """Time of one update: the 8-bit LIF anchor split into memory access (fixed) + logic depth.

    Logic depth: array multiplier ~2b adder delays, adder b, comparator b.
    """
    if "neuron_update_ns" in k:
        return k["neuron_update_ns"]
    logic_lif8 = (2 * 8 + 8 + 8) * k["fa_delay_ns"]
    mem = max(k["lif_update_ns"] - logic_lif8, 0.0)
    depth = {"lif": 4 * bits, "ld_lif": 3 * bits, "if": 2 * bits}.get(model, 2 * bits)
    return mem + depth * k["fa_delay_ns"]


def log2ceil(x: int) -> int:
    """ceil(log2(x)) for x >= 1 (0 for x <= 1), exact for integers."""
    return (x - 1).bit_length() if x > 1 else 0
