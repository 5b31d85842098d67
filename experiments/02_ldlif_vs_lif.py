"""LD-LIF with in-memory parallel decay vs LIF: energy per neuron update (and per network).

The LD-LIF paper reports ~5.2x neuron-update energy efficiency: linear decay turns the decay
multiply into a subtraction, and the in-memory parallel update decays every membrane in place
inside the SRAM array instead of reading it out to a digital neuron unit and writing it back.
This script prices both on the shipped sram-ldlif-65nm chip with the built-in cost model:
per update over membrane widths 6-16 bits, and per network (neurons + membrane components) on
the digits CNN and the DVS-gesture CNN.  Writes a table and a figure to experiments/results/.

    .venv/bin/python experiments/02_ldlif_vs_lif.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuronas.config import preset_dir  # noqa: E402
from neuronas.hardware import Chip, estimate, load_chip  # noqa: E402
from neuronas.hardware.components import neuron_update_energy_pj, neuron_update_ns  # noqa: E402
from neuronas.spec import ArchSpec, NeuronSpec, PrecisionSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
BITS = [6, 8, 10, 12, 16]
WORKLOADS = ["digits-cnn", "dvsgesture-cnn"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    # the whole network on chip (as in the paper's evaluation): enough arrays that no weight reloads
    d = load_chip("sram-ldlif-65nm").model_dump()
    d["capacity"]["arrays"] = 1_000_000
    chip = Chip.model_validate(d)
    k = chip.constants
    per_update = []
    for b in BITS:
        lif = sum(neuron_update_energy_pj("lif", b, False, False, k))
        ld_digital = sum(neuron_update_energy_pj("ld_lif", b, False, False, k))
        ld_mem = sum(neuron_update_energy_pj("ld_lif", b, False, True, k))
        per_update.append(
            {
                "membrane_bits": b,
                "lif_pj": lif,
                "ld_lif_digital_pj": ld_digital,
                "ld_lif_in_memory_pj": ld_mem,
                "ratio_in_memory": lif / ld_mem,
                "ratio_digital": lif / ld_digital,
                "lif_update_ns": neuron_update_ns("lif", b, k),
                "ld_lif_update_ns": neuron_update_ns("ld_lif", b, k),
            }
        )
    nets = []
    for name in WORKLOADS:
        base = ArchSpec.from_yaml(preset_dir("arch") / f"{name}.yaml")
        base = base.with_(
            mapping=base.mapping.__class__(
                **{**base.mapping.to_dict(), "adc_kind": "sa", "adc_bits": 1}
            )
        )
        for b in (8, 12):

            def price(model: str, base: ArchSpec = base, b: int = b):
                a = base.with_(
                    neuron=NeuronSpec(model=model),
                    precision=PrecisionSpec(base.precision.weight_bits, b),
                )
                return estimate(a, chip)

            lif, ld = price("lif"), price("ld_lif")
            neu = lambda r: r.components["neurons"] + r.components["membrane"]  # noqa: E731
            nets.append(
                {
                    "workload": name,
                    "membrane_bits": b,
                    "lif_neuron_uj": neu(lif),
                    "ld_lif_neuron_uj": neu(ld),
                    "neuron_ratio": neu(lif) / neu(ld),
                    "total_ratio": lif.energy_uj / ld.energy_uj,
                    "latency_ratio": lif.latency_us / ld.latency_us,
                    "neuron_share_lif": neu(lif) / lif.energy_uj,
                }
            )
    with (OUT / "02_ldlif_vs_lif.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(per_update[0]))
        w.writeheader()
        w.writerows(per_update)
    with (OUT / "02_ldlif_vs_lif_networks.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(nets[0]))
        w.writeheader()
        w.writerows(nets)
    lines = [
        "# LD-LIF (in-memory parallel decay) vs LIF — neuron-update energy, sram-ldlif-65nm",
        "",
        "Paper: ~5.2x neuron-update energy efficiency (~1 % accuracy cost).",
        "",
        "What one update costs (65 nm, 1.2 V; Horowitz ISSCC'14 numbers scaled by node x V^2):",
        "LIF = membrane read + write through the membrane SRAM's port (2b x 0.40 pJ/bit) + a b x b multiply",
        "for beta·v (0.008 pJ x b^2) + add and compare (2b x 0.0096 pJ).  LD-LIF on a digital unit = the same",
        "membrane traffic with subtract + add + compare instead of the multiply; the multiplier is only ~5-14 %",
        "of a LIF update, so linear decay alone buys 1.05-1.14x.  LD-LIF in memory = no port traffic, but the",
        "array is written twice per update: the parallel decay (v - d, every neuron, every timestep) and the",
        "integration (v + x, compare on the same column adders), each an in-place bitline read-modify-write",
        "of every membrane bit (2b x 0.078 pJ: 50 fF bitline, 6 fJ read + 72 fJ write) + subtract/add/compare.",
        "(Before, one read-modify-write covered both and the ratio was 8.1-8.9x: the decay's own array write",
        "was not charged.)  Latency: the in-memory update takes two row-parallel passes (decay, integrate).",
        "",
        "| membrane bits | LIF pJ/update | LD-LIF digital pJ | LD-LIF in-memory pJ | LIF / LD-LIF in-memory | LIF / LD-LIF digital |",
        "|---|---|---|---|---|---|",
    ]
    for r in per_update:
        lines.append(
            f"| {r['membrane_bits']} | {r['lif_pj']:.3f} | {r['ld_lif_digital_pj']:.3f} | {r['ld_lif_in_memory_pj']:.3f} | "
            f"{r['ratio_in_memory']:.2f}x | {r['ratio_digital']:.2f}x |"
        )
    lines += [
        "",
        "Per network (neurons + membrane components; spike rate = chip prior 0.15; whole network on chip):",
        "",
        "| workload | membrane bits | LIF uJ | LD-LIF uJ | neuron-update ratio | whole-inference energy ratio | latency ratio | neuron share of LIF energy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in nets:
        lines.append(
            f"| {r['workload']} | {r['membrane_bits']} | {r['lif_neuron_uj']:.4g} | {r['ld_lif_neuron_uj']:.4g} | "
            f"{r['neuron_ratio']:.2f}x | {r['total_ratio']:.2f}x | {r['latency_ratio']:.2f}x | {r['neuron_share_lif']:.0%} |"
        )
    (OUT / "02_ldlif_vs_lif.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    bits = [r["membrane_bits"] for r in per_update]
    axes[0].plot(
        bits, [r["lif_pj"] for r in per_update], "o-", label="LIF (digital unit, membrane SRAM)"
    )
    axes[0].plot(
        bits, [r["ld_lif_digital_pj"] for r in per_update], "s--", label="LD-LIF (digital unit)"
    )
    axes[0].plot(
        bits,
        [r["ld_lif_in_memory_pj"] for r in per_update],
        "^-",
        label="LD-LIF (in-memory parallel decay)",
    )
    axes[0].set_xlabel("membrane bits")
    axes[0].set_ylabel("energy per neuron update (pJ)")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    axes[1].plot(
        bits, [r["ratio_in_memory"] for r in per_update], "^-", label="LIF / LD-LIF in-memory"
    )
    axes[1].axhline(5.2, color="tab:green", ls=":", label="paper: ~5.2x")
    axes[1].set_xlabel("membrane bits")
    axes[1].set_ylabel("neuron-update efficiency (x)")
    axes[1].set_ylim(0, None)
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "02_ldlif_vs_lif.png", dpi=130)
    print(f"wrote {OUT / '02_ldlif_vs_lif.csv'}, _networks.csv, .md and .png")


if __name__ == "__main__":
    main()
