"""ADC-less (1-bit SA per column) vs a 5-bit flash ADC shared 8:1, 65 nm RRAM, 1 bit/cell.

The ADC-less IMC paper reports 2-7x energy and 8.9-24.6x latency in favour of ADC-less for
4-bit weights, arrays of 32-128 and T = 5-10.  This script prices the same comparison with the
built-in cost model on the two shipped chips (rram-adcless-65nm vs rram-hpadc-65nm), on VGG9 /
CIFAR-10 and the DVS-gesture CNN, and writes a table and a figure to experiments/results/.

The whole network is mapped on chip (the paper's setting): both chips get enough arrays that no
weight reloads from DRAM; nothing else is changed.  It reports the end-to-end latency ratio and
the readout-path (crossbar + periphery) ratio, and the end-to-end ratio again with one neuron
unit per neuron on both chips (the neuron pass never the bottleneck).  Run:

    .venv/bin/python experiments/01_adcless_vs_adc.py
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuronas.config import preset_dir  # noqa: E402
from neuronas.hardware import Chip, estimate, load_chip  # noqa: E402
from neuronas.spec import ArchSpec, MappingSpec, PrecisionSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
WORKLOADS = ["vgg9-cifar10", "dvsgesture-cnn"]
ARRAYS = [32, 64, 128]
TIMESTEPS = [5, 10]
RATE = 0.15  # the chips' literature prior


def whole_network_on_chip(chip: Chip, neurons_per_unit: int | None = None) -> Chip:
    d = chip.model_dump()
    d["capacity"]["arrays"] = 1_000_000
    if neurons_per_unit is not None:
        d["periphery"]["neuron_unit"]["neurons_per_unit"] = neurons_per_unit
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


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sa_chip = whole_network_on_chip(load_chip("rram-adcless-65nm"))
    adc_chip = whole_network_on_chip(load_chip("rram-hpadc-65nm"))
    # sensitivity: one neuron unit per neuron on both chips, so the (identical) neuron pass
    # is never the slowest part of a stage and the end-to-end latency follows the readout
    sa_fast = whole_network_on_chip(load_chip("rram-adcless-65nm"), neurons_per_unit=1)
    adc_fast = whole_network_on_chip(load_chip("rram-hpadc-65nm"), neurons_per_unit=1)
    # DNN+NeuroSim's synchronous accounting: a read-and-sense cycle per muxed column and phase
    sync_chip = whole_network_on_chip(load_chip("rram-hpadc-65nm-sync"))
    sync_fast = whole_network_on_chip(load_chip("rram-hpadc-65nm-sync"), neurons_per_unit=1)
    rows = []
    for name, size, T in itertools.product(WORKLOADS, ARRAYS, TIMESTEPS):
        base = ArchSpec.from_yaml(preset_dir("arch") / f"{name}.yaml")
        a_sa, a_fl, a_sar = (
            variant(base, size, T, "sa", 1),
            variant(base, size, T, "flash", 5),
            variant(base, size, T, "sar", 5),
        )
        sa = estimate(a_sa, sa_chip, RATE)
        fl = estimate(a_fl, adc_chip, RATE)
        sar = estimate(a_sar, adc_chip, RATE)
        sa_f, fl_f = estimate(a_sa, sa_fast, RATE), estimate(a_fl, adc_fast, RATE)
        sy, sy_f = estimate(a_fl, sync_chip, RATE), estimate(a_fl, sync_fast, RATE)
        rows.append(
            {
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
                "readout_time_ratio_flash5": _readout_ratio(fl, sa),
                "readout_time_ratio_sar5": _readout_ratio(sar, sa),
                "hidden_readout_ratio_flash5": _readout_ratio(fl, sa, skip_first=True),
                "latency_ratio_flash5_fast_neurons": fl_f.latency_us / sa_f.latency_us,
                "latency_ratio_sync": sy.latency_us / sa.latency_us,
                "readout_time_ratio_sync": _readout_ratio(sy, sa),
                "hidden_readout_ratio_sync": _readout_ratio(sy, sa, skip_first=True),
                "latency_ratio_sync_fast_neurons": sy_f.latency_us / sa_f.latency_us,
                "neuron_bound_stages_sa": sum(
                    1 for layer in sa.layers if layer.arrays and layer.neuron_ns > layer.array_ns
                ),
                "weighted_layers": sum(1 for layer in sa.layers if layer.arrays),
                "conversion_share_flash5": fl.components["conversion"] / fl.energy_uj,
                "conversion_share_sa": sa.components["conversion"] / sa.energy_uj,
                "area_ratio_flash5": fl.area_mm2 / sa.area_mm2,
            }
        )
    with (OUT / "01_adcless_vs_adc.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# ADC-less (1-bit SA per column) vs 5-bit ADC shared 8:1 — 65 nm RRAM, 1 bit/cell, 4-bit weights",
        "",
        f"Spike rate {RATE} (prior); whole network on chip; chips rram-adcless-65nm / rram-hpadc-65nm.",
        "Paper: 2-7x energy, 8.9-24.6x latency in favour of ADC-less.",
        "",
        "Row phases: a 5-bit ADC resolves the partial sum of 2^5 - 1 = 31 rows of 1-bit cells, so a",
        "row group of 32 / 64 / 128 rows is read in 2 / 3 / 5 phases (a phase whose rows hold no spike",
        "is skipped); the SA reads every row in one.  *Readout path* = the array phase of a timestep",
        "summed over the layers: crossbar reads + conversions (+ mux), no neuron units.  *End to end* =",
        "the pipelined inference latency, where a layer's stage is max(array phase, neuron phase): reads",
        "of the next position overlap the neuron updates of the previous one.",
        "",
        "| workload | array | T | phases (flash5) | energy x (flash5) | energy x (SAR5) | end-to-end latency x (flash5 / SAR5) "
        "| readout path x (flash5 / SAR5) | readout path x, hidden layers (flash5) | end-to-end x, neurons 1 per unit (flash5) "
        "| neuron-bound layers (SA) | conversion share of energy, flash5 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['array']} | {r['T']} | {r['row_phases_flash5']} | {r['energy_ratio_flash5']:.2f} | "
            f"{r['energy_ratio_sar5']:.2f} | {r['latency_ratio_flash5']:.2f} / {r['latency_ratio_sar5']:.2f} | "
            f"{r['readout_time_ratio_flash5']:.2f} / {r['readout_time_ratio_sar5']:.2f} | {r['hidden_readout_ratio_flash5']:.2f} | "
            f"{r['latency_ratio_flash5_fast_neurons']:.2f} | {r['neuron_bound_stages_sa']} of {r['weighted_layers']} | "
            f"{r['conversion_share_flash5']:.0%} |"
        )

    def rng(key: str) -> str:
        v = [r[key] for r in rows]
        return f"{min(v):.2f}-{max(v):.2f}x"

    sync_lines = [
        "",
        "## The same comparison with DNN+NeuroSim's synchronous column-mux accounting (rram-hpadc-65nm-sync)",
        "",
        "Every one of the 8 columns sharing the flash ADC gets its own read-and-sense cycle, per row phase:",
        "a phase costs 8 x (10 + 1) = 88 ns against the overlapped 18 ns (energy unchanged, leakage runs longer).",
        "",
        "| workload | array | T | end-to-end x | readout path x | readout path x, hidden layers | end-to-end x, neurons 1 per unit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sync_lines.append(
            f"| {r['workload']} | {r['array']} | {r['T']} | {r['latency_ratio_sync']:.2f} | {r['readout_time_ratio_sync']:.2f} | "
            f"{r['hidden_readout_ratio_sync']:.2f} | {r['latency_ratio_sync_fast_neurons']:.2f} |"
        )
    sync_lines += [
        "",
        f"Range (synchronous): end-to-end {rng('latency_ratio_sync')}, readout path {rng('readout_time_ratio_sync')} "
        f"(hidden layers {rng('hidden_readout_ratio_sync')}), end-to-end with one neuron unit per neuron "
        f"{rng('latency_ratio_sync_fast_neurons')}.  Paper: 8.9-24.6x.",
    ]

    lines += [
        "",
        f"Range over the sweep (flash5): energy {rng('energy_ratio_flash5')}, end-to-end latency {rng('latency_ratio_flash5')}, "
        f"readout path {rng('readout_time_ratio_flash5')} (hidden layers {rng('hidden_readout_ratio_flash5')}), end-to-end with "
        f"one neuron unit per neuron {rng('latency_ratio_flash5_fast_neurons')}.  SAR5: energy {rng('energy_ratio_sar5')}, "
        f"end-to-end {rng('latency_ratio_sar5')}, readout path {rng('readout_time_ratio_sar5')}.",
        "",
        "Which ratio the paper's figure is: the readout path.  Both designs have the same neuron units",
        "(8 neurons time-multiplexed per digital LIF unit, ~5-7 ns per update), and with them most layers",
        "are neuron-bound on both chips (column 'neuron-bound layers'), so the end-to-end ratio stays near 1-2x",
        "whatever the readout does; an 8.9-24.6x latency gain can only be a gain of the crossbar + periphery.",
        "With one neuron unit per neuron the end-to-end ratio becomes the readout ratio of the slowest stage,",
        "which on both workloads is the first layer (the most positions): its fan-in (VGG9 3x3x3 = 27 rows, read",
        "as 8 bit planes of the direct-encoded input; DVS 2x3x3 = 18 rows) fits one phase, so there the",
        "ADC costs little more than its 8:1 mux.  The same first layer pulls the whole-network readout ratio",
        "down, hence the hidden-layer column (3.7x at 64 rows, 7.3x at 128).",
        "",
        "The default accounting (rram-hpadc-65nm, `mux_timing: overlapped`) lets the 8 columns sharing an ADC",
        "settle once and then convert one after another (sample-and-hold per column, as in ISAAC): a phase",
        "costs t_read + 8 t_conv = 18 ns against the SA's 11 ns.",
        *sync_lines,
        "",
        "## Which accounting the paper used, and the evidence",
        "",
        "The ADC-less authors evaluated with their fork of DNN+NeuroSim V1.3 (github.com/mapolinario94/DNN_NeuroSim_V1.3).",
        "Its Param.cpp sets `synchronous = true` (the clock is set by the sensing delay and every stage is counted",
        "in cycles), `numColMuxed = 8`, `currentMode = true` and the MultilevelSenseAmp (flash-like) readout.",
        "NeuroSim V1.3 SubArray.cpp (RRAM, parallel read) then counts `readLatencyADC = numColMuxed` cycles per",
        "read, a cycle being row drive / mux + column settle (colDelay) + sensing (its CalculateclkFreq pass);",
        "asynchronous it charges (sensing + colDelay) x numColMuxed: either way a column settle and a sensing per",
        "muxed column -- the synchronous accounting above.  But the fork applies the",
        "same 8:1 mux to the 1-bit design too: its ADC area is 1,731 um^2 for ADC 1 vs 56,794 um^2 for ADC 5",
        "(Results/Layer1_ADC1.txt, Layer1_ADC5.txt: a ratio of 32.8, i.e. 31 comparators vs 1 behind each 8:1",
        "mux), and its per-layer read latencies differ by only 1.08x (1.26e6 vs 1.36e6 ns of ADC time, 10.85 vs",
        "11.82 ms per layer).  Its notebooks/latency.ipynb, which adds up the per-layer NeuroSim results of the",
        "paper's 15-layer network, gives 5-bit / 1-bit = 1.13-1.28x per layer and 1.14x (6.46 vs 7.35 ms) for",
        "the network, 1.53x under an area constraint.  So the fork's own NeuroSim numbers do not contain an",
        "8.9-24.6x latency gap; that range needs an SA on every column against an 8:1-muxed ADC timed",
        "synchronously (this model's rram-adcless-65nm vs rram-hpadc-65nm-sync), which we take to be the",
        "paper's design point.  The default stays `overlapped`: it is what a design with per-column",
        "sample-and-hold achieves, and nothing in the fork argues that a real 8:1 ADC must re-read the array",
        "for every column; the synchronous preset is there to reproduce the paper's setting.",
    ]
    (OUT / "01_adcless_vs_adc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, marker in zip(WORKLOADS, ["o", "s"], strict=True):
        for T, ls in zip(TIMESTEPS, ["-", "--"], strict=True):
            sel = [r for r in rows if r["workload"] == name and r["T"] == T]
            axes[0].plot(
                [r["array"] for r in sel],
                [r["energy_ratio_flash5"] for r in sel],
                marker=marker,
                ls=ls,
                label=f"{name} T={T}",
            )
        sel = [r for r in rows if r["workload"] == name and r["T"] == TIMESTEPS[0]]
        xs = [r["array"] for r in sel]
        axes[1].plot(
            xs,
            [r["latency_ratio_flash5"] for r in sel],
            marker=marker,
            ls="-",
            label=f"{name}: end to end",
        )
        axes[1].plot(
            xs,
            [r["readout_time_ratio_flash5"] for r in sel],
            marker=marker,
            ls="--",
            label=f"{name}: readout path",
        )
        axes[1].plot(
            xs,
            [r["hidden_readout_ratio_flash5"] for r in sel],
            marker=marker,
            ls=":",
            label=f"{name}: readout, hidden layers",
        )
        axes[1].plot(
            xs,
            [r["latency_ratio_flash5_fast_neurons"] for r in sel],
            marker=marker,
            ls="-.",
            alpha=0.7,
            label=f"{name}: end to end, 1 neuron/unit",
        )
    for ax, (lo, hi), title in (
        (axes[0], (2, 7), "energy: flash5 8:1 / SA"),
        (axes[1], (8.9, 24.6), f"latency: flash5 8:1 / SA (T={TIMESTEPS[0]})"),
    ):
        ax.axhspan(lo, hi, color="tab:green", alpha=0.12, label="paper's range")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ARRAYS, [str(a) for a in ARRAYS])
        ax.set_xlabel("crossbar rows = columns")
        ax.set_ylabel("ratio (higher = ADC-less better)")
        ax.set_title(title)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "01_adcless_vs_adc.png", dpi=130)
    print(f"wrote {OUT / '01_adcless_vs_adc.csv'}, .md and .png")


def _readout_ratio(adc, sa, skip_first: bool = False) -> float:
    """Array phase (crossbar reads + conversions, before the neuron units) of one timestep, summed."""

    def total(r) -> float:
        weighted = [layer for layer in r.layers if layer.arrays]
        return sum(layer.array_ns for layer in weighted[1 if skip_first else 0 :])

    return total(adc) / total(sa)


if __name__ == "__main__":
    main()
