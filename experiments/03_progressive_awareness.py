"""Progressive hardware-aware training keeps accuracy with 1-bit partial sums (ADC-less IMC).

The ADC-less IMC paper (Apolinario et al.) replaces every column's ADC by a 1-bit sense amplifier
and recovers the accuracy by introducing the hardware progressively during training.  This
script trains the shipped ``digits-mlp`` on digits-events in these settings:

- ``float``: ideal training, float accuracy (the reference);
- ``adc4``: 4-bit SAR ADC per 64-row group partial sum, progressive schedule;
- ``sa-progressive`` / ``sa-abrupt`` / ``sa-none``: a 1-bit sense amplifier per 64-row group
  partial sum (4-bit weights on 1-bit cells: 4 slices, each with its own comparator), with the
  awareness ramped 0 -> 1 over the first 60 % of the steps, at 1 from the start, or never (the
  chip met only at evaluation);

on an ideal device (``--chip`` adds a chip's device noise: programming variation, read noise,
stuck cells) and writes a table and a figure to experiments/results/.  Run:

    .venv/bin/python experiments/03_progressive_awareness.py [--epochs 30] [--seeds 0 1] [--chip NAME]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuronas.config import preset_dir  # noqa: E402
from neuronas.spec import ArchSpec, MappingSpec  # noqa: E402
from neuronas.train import train_candidate  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"

#: name -> (adc_kind, adc_bits, schedule)
SETTINGS = {
    "float": ("digital", 0, "none"),
    "adc4": ("sar", 4, "progressive"),
    "sa-progressive": ("sa", 1, "progressive"),
    "sa-abrupt": ("sa", 1, "abrupt"),
    "sa-none": ("sa", 1, "none"),
}


def variant(base: ArchSpec, kind: str, bits: int, rows: int) -> ArchSpec:
    m = base.mapping
    return base.with_(
        mapping=MappingSpec(
            adc_bits=bits,
            adc_kind=kind,
            rows=rows,
            cols=m.cols,
            bits_per_cell=m.bits_per_cell,
            signed_scheme=m.signed_scheme,
            dataflow=m.dataflow,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="digits-mlp")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument(
        "--chip", default=None, help="chip preset for device noise (default: ideal device)"
    )
    ap.add_argument("--eval-instances", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="a subset of: " + ", ".join(SETTINGS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    base = ArchSpec.from_yaml(preset_dir("arch") / f"{args.arch}.yaml")
    tag = f"03_progressive_awareness_{args.arch}_{args.epochs}ep" + (
        f"_{args.chip}" if args.chip else ""
    )
    rows: list[dict] = []
    histories: dict[str, list[dict]] = {}
    for name, (kind, bits, schedule) in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        arch = variant(base, kind, bits, args.rows)
        for seed in args.seeds:
            t0 = time.time()
            res = train_candidate(
                arch,
                args.chip,
                "digits-events",
                epochs=args.epochs,
                seed=seed,
                lr=args.lr,
                schedule=schedule,
                eval_instances=args.eval_instances,
                num_threads=args.threads,
                test_instances=args.eval_instances,
            )
            # test-split figures: nothing here is selected, so the test split is what to report
            test = res.test_accuracies
            if name == "float":
                acc = res.test_float_accuracy or 0.0
            else:
                acc = sum(test) / len(test) if test else 0.0  # diverged: no test evaluation
            test_sd = (sum((a - acc) ** 2 for a in test) / len(test)) ** 0.5 if test else 0.0
            row = {
                "setting": name,
                "adc": f"{kind} {bits} b",
                "schedule": schedule,
                "seed": seed,
                "accuracy": acc,
                "accuracy_std": 0.0 if name == "float" else test_sd,
                "float_accuracy": res.test_float_accuracy,
                "status": res.status,
                "s_per_epoch": res.train_seconds / max(1, res.epochs_run),
            }
            rows.append(row)
            histories[f"{name} seed {seed}"] = list(res.history)
            print(json.dumps(row), f"({time.time() - t0:.0f} s)", flush=True)

    with open(OUT / f"{tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = []
    for name in dict.fromkeys(r["setting"] for r in rows):
        accs = [r["accuracy"] for r in rows if r["setting"] == name]
        sd = statistics.pstdev(accs) if len(accs) > 1 else 0.0
        summary.append((name, statistics.mean(accs), sd, accs))
    ref = next((m for n, m, _, _ in summary if n == "float"), None)
    lines = [
        f"# {args.arch} on digits-events: accuracy on the chip ({args.rows}-row crossbars, "
        f"{args.epochs} epochs, seeds {args.seeds}, device: {args.chip or 'ideal'})",
        "",
        "| setting | test accuracy (mean over seeds) | spread over seeds | vs float | per seed |",
        "|---|---|---|---|---|",
    ]
    for name, mean, sd, accs in summary:
        delta = "" if ref is None or name == "float" else f"{100 * (mean - ref):+.1f} pt"
        lines.append(
            f"| {name} | {100 * mean:.1f} % | {100 * sd:.1f} | {delta} | "
            + ", ".join(f"{100 * a:.1f}" for a in accs)
            + " |"
        )
    (OUT / f"{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, hist in histories.items():
        if label.startswith(("sa-", "adc4")):
            ax1.plot(
                [h["epoch"] for h in hist], [100 * h["val_accuracy"] for h in hist], label=label
            )
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("validation accuracy at the current awareness (%)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    names = [s[0] for s in summary]
    ax2.bar(
        names, [100 * s[1] for s in summary], yerr=[100 * s[2] for s in summary], color="tab:blue"
    )
    ax2.set_ylabel("test accuracy on the chip (%)")
    ax2.set_ylim(0, 100)
    ax2.tick_params(axis="x", rotation=20)
    fig.suptitle(
        f"{args.arch}: progressive vs abrupt hardware awareness (1-bit SA, {args.rows} rows)"
    )
    fig.tight_layout()
    fig.savefig(OUT / f"{tag}.png", dpi=120)


if __name__ == "__main__":
    main()
