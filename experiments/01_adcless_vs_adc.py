"""ADC-less (1-bit SA per column) vs a 5-bit flash ADC shared 8:1, 65 nm RRAM, 1 bit/cell.

The ADC-less IMC paper reports 2-7x energy and 8.9-24.6x latency in favour of ADC-less for
4-bit weights, arrays of 32-128 and T = 5-10.  This script prices the same comparison with the
built-in cost model on the shipped chips, on VGG9 / CIFAR-10, the DVS-gesture CNN, the paper's
own gesture network (``adcless-dvsnet``, from the authors' DNN+NeuroSim fork) and the
Spike-FlowNet-like optical-flow network, and writes a table and a figure to experiments/results/.

The whole network is mapped on chip (the paper's setting): both chips get enough arrays that no
weight reloads from DRAM; nothing else is changed.  Two accountings of the same silicon:

* the default (rram-adcless-65nm vs rram-hpadc-65nm): the 8 columns sharing an ADC settle once
  and convert one after another; 8 neurons share a digital LIF unit; layers pipeline across
  timesteps;
* the authors' DNN+NeuroSim accounting (rram-adcless-65nm-sync vs rram-hpadc-65nm-sync): a
  read-and-sense cycle per muxed column, a LIF per output channel, layer by layer.

Between the two it adds the three choices one at a time, and two more of NeuroSim V1.3's: all
rows read at once (no row phases; the 5-bit ADC clips) and every read counted whatever the spikes
(activity-independent).  Run:

    .venv/bin/python experiments/01_adcless_vs_adc.py
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuronas.config import preset_dir  # noqa: E402
from neuronas.hardware import Chip, CostReport, estimate, load_chip  # noqa: E402
from neuronas.spec import ArchSpec, MappingSpec, PrecisionSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
WORKLOADS = ["vgg9-cifar10", "dvsgesture-cnn", "adcless-dvsnet", "spike-flownet"]
ARRAYS = [32, 64, 128]
TIMESTEPS = [5, 10]
RATE = 0.15  # the chips' literature prior
PAPER = (8.9, 24.6)
NEUROSIM_SPEEDUP_DEGREE = 8  # the authors' fork, Param.cpp: speedUpDegree = 8

# the accounting steps from our default to the authors' DNN+NeuroSim fork, applied to both chips:
# (label, chip overrides) -- mux_timing only matters where columns share an ADC
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("default", {}),
    ("+ synchronous mux", {"mux_timing": "synchronous"}),
    ("+ a LIF per channel", {"mux_timing": "synchronous", "neurons_per_unit": 1}),
    (
        "+ layer by layer (the -sync presets)",
        {"mux_timing": "synchronous", "neurons_per_unit": 1, "layer_by_layer": True},
    ),
]


def chip_variant(
    name: str,
    *,
    mux_timing: str | None = None,
    neurons_per_unit: int | None = None,
    layer_by_layer: bool = False,
    all_rows: int | None = None,
) -> Chip:
    """A shipped chip with the whole network on chip and the given accounting choices."""
    d = load_chip(name).model_dump()
    d["capacity"]["arrays"] = 1_000_000
    if mux_timing is not None:
        d["periphery"]["mux_timing"] = mux_timing
    if neurons_per_unit is not None:
        d["periphery"]["neuron_unit"]["neurons_per_unit"] = neurons_per_unit
    if layer_by_layer:
        d["schedule"] = {"pipeline": "layer", "start_fraction": 1.0}
    if all_rows is not None:  # NeuroSim V1.3's parallel read: every row at once, the ADC clips
        d["periphery"]["max_active_rows"] = all_rows
    return Chip.model_validate(d)


def variant(arch: ArchSpec, size: int, T: int, kind: str, bits: int) -> ArchSpec:
    return arch.with_(
        input=arch.input.__class__(arch.input.shape, T, arch.input.encoding),
        precision=PrecisionSpec(weight_bits=4, membrane_bits=arch.precision.membrane_bits),
        mapping=MappingSpec(
            adc_kind=kind,
            adc_bits=bits,
            rows=size,
            cols=size,
            bits_per_cell=1,
            signed_scheme="differential",
            dataflow="weight_stationary",
        ),
    )


def readout_ratio(adc: CostReport, sa: CostReport, skip_first: bool = False) -> float:
    """Array phase (crossbar reads + conversions, before the neuron units) of one timestep, summed."""

    def total(r: CostReport) -> float:
        weighted = [layer for layer in r.layers if layer.arrays]
        return sum(layer.array_ns for layer in weighted[1 if skip_first else 0 :])

    return total(adc) / total(sa)


def neurosim_speedups(arch: ArchSpec) -> dict[int, int]:
    """How many copies DNN+NeuroSim V1.3 would map of each weighted layer (by ArchSpec.layers index).

    NeuroSim's pipeline floorplan (Chip.cpp, ChipDesignInitialize) duplicates the layers with large
    input maps so that no layer idles: bound = ceil(IFM_0 / degree), with degree = min(speedUpDegree,
    IFM_0 // smallest IFM of a k > 1 layer), and a layer of input map IFM gets ceil((IFM / bound)^2)
    copies (fc layers: 1).  The fork's area_latency_digital_LIF.ipynb lists the result for its
    optical-flow network: 64 / 16 / 4 / 1 ... .  This model maps each layer once; the experiment
    applies the copies to its per-layer stages as a what-if (a copy reads and updates 1/s of the
    positions, so a stage takes 1/s of the time; energy is unchanged).  A transposed conv's input
    map is its zero-inserted one (its output size), as the fork's NetWork_SFN.csv lists it.
    """
    res = arch.resolved()
    ifm = {
        r.index: (r.out_shape[1] if r.kind == "deconv" else r.in_shape[1]) if r.kind != "fc" else 1
        for r in res
    }
    first = ifm[res[0].index]
    spatial = [ifm[r.index] for r in res if r.kind != "fc" and r.kernel != 1]
    degree = min(NEUROSIM_SPEEDUP_DEGREE, max(first // min(spatial), 1)) if spatial else 1
    bound = -(-first // degree)
    return {i: max(math.ceil((h / bound) ** 2), 1) for i, h in ifm.items()}


def duplicated_ratio(adc: CostReport, sa: CostReport, copies: dict[int, int]) -> float:
    """Layer by layer, every layer's stage divided by its NeuroSim copies (see neurosim_speedups)."""

    def total(r: CostReport) -> float:
        t, s = 0.0, 1
        for layer in r.layers:
            # a pool counts with the layer whose output it pools (NeuroSim's NetWork.csv puts the
            # pooling flag on that layer), so it shares that layer's copies
            s = copies.get(layer.index, s)
            t += layer.stage_ns / s
        return t

    return total(adc) / total(sa)


def compare(name: str, size: int, T: int) -> dict[str, Any]:
    """Every ratio of one (workload, array size, T) point; ratios are HP-ADC / ADC-less."""
    base = ArchSpec.from_yaml(preset_dir("arch") / f"{name}.yaml")
    a_sa, a_fl, a_sar = (
        variant(base, size, T, "sa", 1),
        variant(base, size, T, "flash", 5),
        variant(base, size, T, "sar", 5),
    )
    sa = estimate(a_sa, chip_variant("rram-adcless-65nm"), RATE)
    fl = estimate(a_fl, chip_variant("rram-hpadc-65nm"), RATE)
    sar = estimate(a_sar, chip_variant("rram-hpadc-65nm"), RATE)
    row: dict[str, Any] = {
        "workload": name,
        "array": size,
        "T": T,
        "row_phases_flash5": max(layer.row_phases for layer in fl.layers),
        "energy_sa_uj": sa.energy_uj,
        "energy_flash5_uj": fl.energy_uj,
        "energy_ratio_flash5": fl.energy_uj / sa.energy_uj,
        "energy_ratio_sar5": sar.energy_uj / sa.energy_uj,
        "latency_sa_us": sa.latency_us,
        "latency_flash5_us": fl.latency_us,
        "latency_ratio_flash5": fl.latency_us / sa.latency_us,
        "latency_ratio_sar5": sar.latency_us / sa.latency_us,
        "readout_ratio_flash5": readout_ratio(fl, sa),
        "readout_ratio_sar5": readout_ratio(sar, sa),
        "hidden_readout_ratio_flash5": readout_ratio(fl, sa, skip_first=True),
        "neuron_bound_stages_sa": sum(
            1 for layer in sa.layers if layer.arrays and layer.neuron_ns > layer.array_ns
        ),
        "weighted_layers": sum(1 for layer in sa.layers if layer.arrays),
        "conversion_share_flash5": fl.components["conversion"] / fl.energy_uj,
        "area_ratio_flash5": fl.area_mm2 / sa.area_mm2,
    }
    # the accounting steps, end to end
    for i, (_label, kw) in enumerate(STEPS):
        s = estimate(a_sa, chip_variant("rram-adcless-65nm", **kw), RATE)
        f = estimate(a_fl, chip_variant("rram-hpadc-65nm", **kw), RATE)
        row[f"latency_ratio_step{i}"] = f.latency_us / s.latency_us
    # the -sync preset pair itself (must equal the last step) and its readout path
    s_sync = estimate(a_sa, chip_variant("rram-adcless-65nm-sync"), RATE)
    f_sync = estimate(a_fl, chip_variant("rram-hpadc-65nm-sync"), RATE)
    row["latency_ratio_sync"] = f_sync.latency_us / s_sync.latency_us
    row["readout_ratio_sync"] = readout_ratio(f_sync, s_sync)
    row["hidden_readout_ratio_sync"] = readout_ratio(f_sync, s_sync, skip_first=True)
    # what-if: NeuroSim's duplication of the large-map layers, applied to the presets' stages
    row["latency_ratio_sync_duplicated"] = duplicated_ratio(f_sync, s_sync, neurosim_speedups(a_fl))
    # NeuroSim V1.3 reads every row at once (no row phases: the 5-bit ADC clips the sum)
    f_clip = estimate(a_fl, chip_variant("rram-hpadc-65nm-sync", all_rows=size), RATE)
    row["latency_ratio_sync_all_rows"] = f_clip.latency_us / s_sync.latency_us
    # and counts every read whatever the spikes: every position and row phase read (rate -> 1)
    s_d = estimate(a_sa, chip_variant("rram-adcless-65nm-sync"), 1.0)
    f_d = estimate(a_fl, chip_variant("rram-hpadc-65nm-sync"), 1.0)
    row["latency_ratio_sync_every_read"] = f_d.latency_us / s_d.latency_us
    row["hidden_readout_ratio_sync_every_read"] = readout_ratio(f_d, s_d, skip_first=True)
    return row


def rng(rows: list[dict[str, Any]], key: str) -> str:
    v = [r[key] for r in rows]
    return f"{min(v):.2f}-{max(v):.2f}x"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = [compare(*p) for p in itertools.product(WORKLOADS, ARRAYS, TIMESTEPS)]
    with (OUT / "01_adcless_vs_adc.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = report(rows)
    (OUT / "01_adcless_vs_adc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _figure(rows)
    print(f"wrote {OUT / '01_adcless_vs_adc.csv'}, .md and .png")


def report(rows: list[dict[str, Any]]) -> list[str]:
    sync_ok = all(abs(r["latency_ratio_sync"] / r["latency_ratio_step3"] - 1) < 1e-9 for r in rows)
    lines = [
        "# ADC-less (1-bit SA per column) vs 5-bit ADC shared 8:1 — 65 nm RRAM, 1 bit/cell, 4-bit weights",
        "",
        f"Spike rate {RATE} (prior); whole network on chip.  Paper: 2-7x energy, 8.9-24.6x latency in favour",
        "of ADC-less.  Every ratio is HP-ADC / ADC-less on the same silicon and the same accounting.",
        "",
        "Row phases: a 5-bit ADC resolves the partial sum of 2^5 - 1 = 31 rows of 1-bit cells, so a",
        "row group of 32 / 64 / 128 rows is read in 2 / 3 / 5 phases (a phase whose rows hold no spike",
        "is skipped); the SA reads every row in one.  *Readout path* = the array phase of a timestep",
        "summed over the layers: crossbar reads + conversions (+ mux), no neuron units.  *End to end* =",
        "the inference latency, where a layer's stage is max(array phase, neuron phase): reads of the",
        "next position overlap the neuron updates of the previous one.",
        "",
        "## Default accounting (rram-adcless-65nm vs rram-hpadc-65nm)",
        "",
        "| workload | array | T | phases (flash5) | energy x (flash5) | energy x (SAR5) | end-to-end x (flash5 / SAR5) "
        "| readout path x (flash5 / SAR5) | readout path x, hidden layers (flash5) "
        "| neuron-bound layers (SA) | conversion share of energy, flash5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['array']} | {r['T']} | {r['row_phases_flash5']} | {r['energy_ratio_flash5']:.2f} | "
            f"{r['energy_ratio_sar5']:.2f} | {r['latency_ratio_flash5']:.2f} / {r['latency_ratio_sar5']:.2f} | "
            f"{r['readout_ratio_flash5']:.2f} / {r['readout_ratio_sar5']:.2f} | {r['hidden_readout_ratio_flash5']:.2f} | "
            f"{r['neuron_bound_stages_sa']} of {r['weighted_layers']} | {r['conversion_share_flash5']:.0%} |"
        )
    lines += [
        "",
        f"Range (flash5): energy {rng(rows, 'energy_ratio_flash5')}, end to end {rng(rows, 'latency_ratio_flash5')}, "
        f"readout path {rng(rows, 'readout_ratio_flash5')} (hidden layers {rng(rows, 'hidden_readout_ratio_flash5')}).  "
        f"SAR5: energy {rng(rows, 'energy_ratio_sar5')}, end to end {rng(rows, 'latency_ratio_sar5')}, "
        f"readout path {rng(rows, 'readout_ratio_sar5')}.",
        "",
        "The default lets the 8 columns sharing an ADC settle once and then convert one after another",
        "(sample-and-hold per column, as in ISAAC): a phase costs t_read + 8 t_conv = 18 ns against the",
        "SA's 11 ns.  Both chips have the same neuron units (8 neurons time-multiplexed per digital LIF",
        "unit, ~5-7 ns per update), and with them most layers are neuron-bound on both chips, so the",
        "end-to-end ratio stays near 1-3x whatever the readout does.",
        "",
        "## From our accounting to the authors' DNN+NeuroSim accounting, one choice at a time",
        "",
        "End-to-end latency ratio.  Steps (each applied to both chips): synchronous mux = a read-and-sense",
        "cycle per muxed column, 8 x (10 + 1) = 88 ns per phase (DNN_NeuroSim_V1.3 SubArray.cpp: "
        "`readLatencyADC = numColMuxed`);",
        "a LIF per channel = one digital LIF unit per output channel (the fork's "
        "notebooks/area_latency_digital_LIF.ipynb);",
        "layer by layer = each layer finishes all T timesteps before the next starts (the fork's",
        "Results/Layer1_ADC*.txt: a layer-by-layer run) -- this column is the `rram-adcless-65nm-sync` / `rram-hpadc-65nm-sync`",
        "preset pair"
        + ("" if sync_ok else " (MISMATCH: the presets differ from the step)")
        + ".  Then two",
        "more of NeuroSim V1.3's choices on top of the presets: *all rows* = every row of an array driven at",
        "once, the 5-bit ADC clipping the sum (V1.3's parallel read has no row phases); *every read* = every",
        "position and phase read whatever the spikes (NeuroSim's counts do not depend on activity).  And a",
        "what-if outside the cost model: *NeuroSim's layer copies* = the -sync presets' per-layer stages",
        "divided by the copies NeuroSim's floorplanner would map of each layer (`neurosim_speedups`).",
        "",
        "| workload | array | T | default | "
        + " | ".join(s[0] for s in STEPS[1:])
        + " | readout path | "
        "readout, hidden layers | all rows (no phases) | every read | every read, hidden-layer readout "
        "| NeuroSim's layer copies (what-if) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = " | ".join(f"{r[f'latency_ratio_step{i}']:.2f}" for i in range(len(STEPS)))
        lines.append(
            f"| {r['workload']} | {r['array']} | {r['T']} | {steps} | {r['readout_ratio_sync']:.2f} | "
            f"{r['hidden_readout_ratio_sync']:.2f} | {r['latency_ratio_sync_all_rows']:.2f} | "
            f"{r['latency_ratio_sync_every_read']:.2f} | {r['hidden_readout_ratio_sync_every_read']:.2f} | "
            f"{r['latency_ratio_sync_duplicated']:.2f} |"
        )
    inside = [r for r in rows if PAPER[0] <= r["latency_ratio_sync"] <= PAPER[1]]
    lines += [
        "",
        f"Ranges: + synchronous mux {rng(rows, 'latency_ratio_step1')}, + a LIF per channel "
        f"{rng(rows, 'latency_ratio_step2')}, + layer by layer (the -sync presets) {rng(rows, 'latency_ratio_sync')} "
        f"end to end, readout path {rng(rows, 'readout_ratio_sync')} (hidden layers "
        f"{rng(rows, 'hidden_readout_ratio_sync')}); all rows at once {rng(rows, 'latency_ratio_sync_all_rows')}; "
        f"every read {rng(rows, 'latency_ratio_sync_every_read')} (hidden-layer readout "
        f"{rng(rows, 'hidden_readout_ratio_sync_every_read')}); with NeuroSim's layer copies "
        f"{rng(rows, 'latency_ratio_sync_duplicated')}.  Paper: {PAPER[0]}-{PAPER[1]}x.  "
        f"{len(inside)} of {len(rows)} points of the -sync presets fall inside the paper's range end to end.",
    ]
    lines += _evidence(rows)
    return lines


def _evidence(rows: list[dict[str, Any]]) -> list[str]:
    at64 = {
        r["workload"]: r["latency_ratio_sync"] for r in rows if r["array"] == 64 and r["T"] == 5
    }
    dup64 = [r["latency_ratio_sync_duplicated"] for r in rows if r["array"] == 64 and r["T"] == 5]
    dvsnet = [
        r["latency_ratio_sync"] for r in rows if r["workload"] == "adcless-dvsnet" and r["T"] == 5
    ]
    return [
        "",
        "## What each choice contributes, and which accounting the paper used",
        "",
        "* **Synchronous mux** is the choice that moves the ratio from ~1-3x towards the paper's decade:",
        "  with a read-and-sense cycle per muxed column, every read of the 8:1-muxed ADC costs 8 cycles where",
        "  an SA on every column costs one, so a layer whose columns fill the mux has a readout ratio of",
        "  8 x its row phases (a layer with fewer used columns than its ADCs' 8:1 share, such as",
        "  Spike-FlowNet's 2-channel flow output, queues fewer).  In DNN+NeuroSim a cycle is the clock set",
        "  by the slowest sensing path: 1.3197 ns with the 5-bit ADC vs 1.2216 ns with the 1-bit one in the",
        "  fork's runs (Results/Layer1_ADC5.txt, Layer1_ADC1.txt), so an SA on every column against the",
        "  8:1 mux at those clocks is about 8 x 1.08 = 8.6x per read (the paper's lower end is 8.9x).",
        "  Our cycle is t_read + t_conv = 11 ns on both chips.",
        "* **Row phases** set the upper end: 8 x 3 phases = 24x for a 64-row layer whose fan-in fills the",
        "  array (the paper's 24.6x; column *every read, hidden-layer readout*), 8 x 5 = 40x at 128 rows.",
        "  NeuroSim V1.3 has no row phases (its parallel read drives every row and the ADC clips): with all",
        f"  rows at once the ratio stays at {rng(rows, 'latency_ratio_sync_all_rows')} (column *all rows*), so the",
        "  paper's upper end is not V1.3's arithmetic alone; it needs each partial sum resolved exactly",
        "  (31 rows per read), as this model does.",
        "* **Neuron units and schedule** decide how much of that reaches the end-to-end number.  With 8",
        "  neurons per shared LIF unit the neuron pass bounds most stages on both chips; with a LIF per",
        "  channel (the fork's) and layer by layer (the fork's) the end-to-end ratio is the readout ratio",
        "  weighted by each layer's ADC-less time.",
        "",
        f"With all of the authors' choices (the -sync presets) the sweep spans {rng(rows, 'latency_ratio_sync')}",
        "end to end, which brackets the paper's 8.9-24.6x.  At the fork's 64 x 64 subarrays: "
        + ", ".join(f"{k} {v:.1f}x" for k, v in at64.items())
        + "; the paper's own gesture network (adcless-dvsnet, the fork's NetWork_DVSNet.csv) gives "
        + " / ".join(f"{v:.1f}x" for v in dvsnet)
        + " at 32 / 64 / 128 rows.  With NeuroSim's layer copies (what-if) at 64 rows: "
        + (
            f"{min(dup64):.1f}-{max(dup64):.1f}x"
            + (", every network inside." if all(PAPER[0] <= v <= PAPER[1] for v in dup64) else ".")
            if dup64
            else "n/a."
        ),
        "",
        "**What our model does not have.**  The whole-network ratio is held below the hidden-layer ratio",
        "by the first layer, whose fan-in (VGG9 27 rows, read as 8 bit planes of the direct-encoded input;",
        "the DVS nets 18 rows; Spike-FlowNet 36) needs one or two phases and which has the most positions.",
        "DNN+NeuroSim's floorplanner duplicates such large-feature-map layers (Chip.cpp",
        "ChipDesignInitialize: `pipelineSpeedUp`; the fork's area_latency_digital_LIF.ipynb lists speed-ups",
        "of 64 / 16 / 4 for its first layers), which shrinks their share and, at 64-128 rows, pulls the",
        "network ratio towards the hidden-layer one; this model maps each layer once (applied as a what-if to our",
        f"stages: {rng(rows, 'latency_ratio_sync_duplicated')}, column *NeuroSim's layer copies*).  NeuroSim's activity-free counting",
        "(column *every read*) adds the phases that sparse spikes skip here.  And the 1.08x clock ratio of",
        "the fork's runs (the 5-bit sensing path sets a slower clock for every stage) is not in our timing.",
        "",
        "The fork's own published NeuroSim numbers do not contain the paper's gap: they apply the same 8:1",
        "mux to the 1-bit design (ADC area 1,731 um^2 for ADC 1 vs 56,794 um^2 for ADC 5, a ratio of 32.8:",
        "31 comparators vs 1 behind each mux), their per-layer read latencies differ by 1.09x (10.85 vs",
        "11.82 ms), and notebooks/latency.ipynb adds its 15-layer optical-flow network up to 1.14x (6.46 vs",
        "7.35 ms), 1.27-1.53x under an area constraint.  In those runs buffer and interconnect time (6.99",
        "and 0.86 of 10.85 ms) is the same on both designs and dilutes every gain.  The paper's 8.9-24.6x therefore",
        "reads as an SA on every column (numColMuxed = 1) against the 8:1-muxed ADC, counted synchronously,",
        "over the crossbar and its periphery: the -sync preset pair.",
        "",
        "**Which accounting is the default, and why.**  The default stays `mux_timing: overlapped` with",
        "shared neuron units and the timestep pipeline (rram-hpadc-65nm vs rram-adcless-65nm).  A column",
        "mux in front of an ADC does not need the array to be re-read for every column: the bitlines settle",
        "once and each column's value is held (sample-and-hold, ISAAC) while the ADC converts them in turn,",
        "so the physical cost of sharing is 8 conversions, not 8 reads; NeuroSim's synchronous count is a",
        "simulator convention (every stage takes whole cycles of one clock), not a property of the circuit.",
        "Likewise a LIF per output channel costs area that a budget-bound search should see, and pipelining",
        "layers across timesteps is what a chip with every layer on its own arrays does.  The -sync pair",
        "is there to reproduce and audit the paper's setting, not to search with.",
    ]


def _figure(rows: list[dict[str, Any]]) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    markers = dict(zip(WORKLOADS, ["o", "s", "^", "D"], strict=True))
    colors = dict(zip(WORKLOADS, ["tab:blue", "tab:orange", "tab:red", "tab:purple"], strict=True))
    T0 = TIMESTEPS[0]
    for name in WORKLOADS:
        for T, ls in zip(TIMESTEPS, ["-", "--"], strict=True):
            sel = [r for r in rows if r["workload"] == name and r["T"] == T]
            axes[0].plot(
                [r["array"] for r in sel],
                [r["energy_ratio_flash5"] for r in sel],
                marker=markers[name],
                color=colors[name],
                ls=ls,
                label=f"{name} T={T}",
            )
        sel = [r for r in rows if r["workload"] == name and r["T"] == T0]
        xs = [r["array"] for r in sel]
        for ax, key, ls, lab in (
            (axes[1], "latency_ratio_step0", "-", "default"),
            (axes[1], "latency_ratio_step1", "--", "+ sync mux"),
            (axes[1], "latency_ratio_sync", "-.", "-sync presets"),
            (axes[2], "readout_ratio_sync", "-", "readout"),
            (axes[2], "hidden_readout_ratio_sync", ":", "readout, hidden layers"),
        ):
            ax.plot(
                xs,
                [r[key] for r in sel],
                marker=markers[name],
                color=colors[name],
                ls=ls,
                label=f"{name}: {lab}",
            )
    for ax, (lo, hi), title in (
        (axes[0], (2, 7), "energy: flash5 8:1 / SA (default)"),
        (axes[1], PAPER, f"end-to-end latency: flash5 8:1 / SA (T={T0})"),
        (axes[2], PAPER, f"readout path, -sync presets (T={T0})"),
    ):
        ax.axhspan(lo, hi, color="tab:green", alpha=0.12, label="paper's range")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ARRAYS, [str(a) for a in ARRAYS])
        ax.set_xlabel("crossbar rows = columns")
        ax.set_ylabel("ratio (higher = ADC-less better)")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5.5)
    fig.tight_layout()
    fig.savefig(OUT / "01_adcless_vs_adc.png", dpi=130)


if __name__ == "__main__":
    main()
