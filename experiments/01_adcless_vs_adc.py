"""ADC-less (1-bit SA per column) vs a 5-bit flash ADC shared 8:1, 65 nm RRAM, 1 bit/cell.

The ADC-less IMC paper reports 2-7x energy and 8.9-24.6x latency in favour of ADC-less for
4-bit weights, arrays of 32-128 and T = 5-10.  This script prices the same comparison with the
built-in cost model on the two shipped chips (rram-adcless-65nm vs rram-hpadc-65nm), on VGG9 /
CIFAR-10 and the DVS-gesture CNN, and writes a table and a figure to experiments/results/.

The whole network is mapped on chip (the paper's setting): both chips get enough arrays that no
weight reloads from DRAM; nothing else is changed.  Run:

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


def whole_network_on_chip(chip: Chip) -> Chip:
    d = chip.model_dump()
    d["capacity"]["arrays"] = 1_000_000
    return Chip.model_validate(d)


def variant(arch: ArchSpec, size: int, T: int, kind: str, bits: int) -> ArchSpec:
    return arch.with_(
        input=arch.input.__class__(arch.input.shape, T, arch.input.encoding),
        precision=PrecisionSpec(weight_bits=4, membrane_bits=arch.precision.membrane_bits),
        mapping=MappingSpec(adc_kind=kind, adc_bits=bits, rows=size, cols=size, bits_per_cell=1,
                            signed_scheme="differential", dataflow="weight_stationary"),
    )


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    sa_chip = whole_network_on_chip(load_chip("rram-adcless-65nm"))
    adc_chip = whole_network_on_chip(load_chip("rram-hpadc-65nm"))
    rows = []
    for name, size, T in itertools.product(WORKLOADS, ARRAYS, TIMESTEPS):
        base = ArchSpec.from_yaml(preset_dir("arch") / f"{name}.yaml")
        sa = estimate(variant(base, size, T, "sa", 1), sa_chip, RATE)
        fl = estimate(variant(base, size, T, "flash", 5), adc_chip, RATE)
        sar = estimate(variant(base, size, T, "sar", 5), adc_chip, RATE)
        rows.append({
            "workload": name, "array": size, "T": T,
            "energy_sa_uj": sa.energy_uj, "energy_flash5_uj": fl.energy_uj,
            "energy_ratio_flash5": fl.energy_uj / sa.energy_uj, "energy_ratio_sar5": sar.energy_uj / sa.energy_uj,
            "latency_sa_us": sa.latency_us, "latency_flash5_us": fl.latency_us,
            "latency_ratio_flash5": fl.latency_us / sa.latency_us, "latency_ratio_sar5": sar.latency_us / sa.latency_us,
            "conversion_share_flash5": fl.components["conversion"] / fl.energy_uj,
            "conversion_share_sa": sa.components["conversion"] / sa.energy_uj,
            "readout_time_ratio_flash5": _readout_ratio(fl, sa), "readout_time_ratio_sar5": _readout_ratio(sar, sa),
            "area_ratio_flash5": fl.area_mm2 / sa.area_mm2,
        })
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
        "| workload | array | T | energy x (flash5) | energy x (SAR5) | latency x (flash5) | latency x (SAR5) | readout-path time x (flash5 / SAR5) | conversion share of energy, flash5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['array']} | {r['T']} | {r['energy_ratio_flash5']:.2f} | {r['energy_ratio_sar5']:.2f} | "
            f"{r['latency_ratio_flash5']:.2f} | {r['latency_ratio_sar5']:.2f} | "
            f"{r['readout_time_ratio_flash5']:.2f} / {r['readout_time_ratio_sar5']:.2f} | {r['conversion_share_flash5']:.0%} |"
        )
    e = [r["energy_ratio_flash5"] for r in rows]
    lat = [r["latency_ratio_flash5"] for r in rows]
    rd = [r["readout_time_ratio_flash5"] for r in rows] + [r["readout_time_ratio_sar5"] for r in rows]
    lines += ["", f"Range over the sweep: energy {min(e):.2f}-{max(e):.2f}x, end-to-end latency {min(lat):.2f}-{max(lat):.2f}x, "
              f"readout-path time (array read + conversions per position) {min(rd):.2f}-{max(rd):.2f}x."]
    (OUT / "01_adcless_vs_adc.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, marker in zip(WORKLOADS, ["o", "s"], strict=True):
        for T, ls in zip(TIMESTEPS, ["-", "--"], strict=True):
            sel = [r for r in rows if r["workload"] == name and r["T"] == T]
            axes[0].plot([r["array"] for r in sel], [r["energy_ratio_flash5"] for r in sel], marker=marker, ls=ls, label=f"{name} T={T}")
            axes[1].plot([r["array"] for r in sel], [r["latency_ratio_flash5"] for r in sel], marker=marker, ls=ls, label=f"{name} T={T} (end to end)")
            axes[1].plot([r["array"] for r in sel], [r["readout_time_ratio_flash5"] for r in sel], marker=marker, ls=":", alpha=0.6,
                         label=f"{name} T={T} (readout path)")
    for ax, (lo, hi), title in ((axes[0], (2, 7), "energy: flash5 8:1 / SA"), (axes[1], (8.9, 24.6), "latency: flash5 8:1 / SA")):
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


def _readout_ratio(adc, sa) -> float:
    """Array phase (crossbar reads + conversions, before the neuron units) of one timestep."""
    return sum(layer.array_ns for layer in adc.layers) / sum(layer.array_ns for layer in sa.layers)


if __name__ == "__main__":
    main()
