"""LD-LIF vs LIF (and IF) accuracy: the same networks trained with each neuron, on the same chip.

The LD-LIF paper reports that its linear-decay neuron (the membrane loses a fixed step per
timestep, ``h = max(v - decay_step, 0) + x``, instead of LIF's multiplicative leak) costs about
one point of accuracy against LIF.  This script trains the same architectures three times, once
per neuron model (``lif``, ``ld_lif``, and ``if`` as the no-leak reference), with everything else
fixed: chip ``sram-ldlif-65nm`` (the paper's SRAM macro: exact stored bits, 1 % read noise),
epochs, learning rate, progressive hardware-aware schedule, and the seeds (each seed fixes the
data split, initialisation, batch order and chip instances, so a seed's three runs differ only
in the neuron).  Each neuron keeps the library's default parameters (LIF tau 2, LD-LIF
decay_step 0.125 of a threshold, threshold 1, the architecture's reset).

Configurations (built-in data only, nothing downloaded):

* ``digits-mlp``, ``digits-cnn``: the shipped architectures on ``digits-events`` (1-bit sense
  amplifiers, 128-row arrays), accuracy;
* ``flow``: a two-stage spiking encoder-decoder (c16-c32-deconv16-deconv2, 4-bit SAR) on
  ``flow-events``, dense optical flow, average endpoint error in px (lower is better).  The SAR
  converter because with 1-bit sense amplifiers flow networks stay at the mean-flow baseline
  (benchmarks/RESULTS.md, "Issue 12: flow").

Every run reports its validation-split figure (held out of the training data; 5 chip instances)
and its test-split figure (5 chip instances, read only for this report).  The claim's figure is
the paired difference LD-LIF - LIF per seed, then its mean and 95 % Student-t interval over the
seeds, validation and test separately.  Runs are appended to
``experiments/results/06_ldlif_accuracy.csv`` as they finish (a rerun skips those done), then
the table ``06_ldlif_accuracy.md`` and the figure ``06_ldlif_accuracy.png`` are rebuilt.
Run (one thread on the shared 2-core VM at a load average of 5-16, 2026-12-01: training
digits-mlp 57-123 s, digits-cnn 219-331 s, flow 168-254 s per run, plus evaluation; 9 runs per
configuration, 27 in all, about 1.5 hours in one process; the table lists each run's seconds):

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python experiments/06_ldlif_accuracy.py \\
        [--configs digits-mlp digits-cnn flow] [--seeds 0 1 2] [--report-only]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuronas.config import preset_dir  # noqa: E402
from neuronas.spec import ArchSpec, NeuronSpec  # noqa: E402
from neuronas.train import confidence_interval, train_candidate  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"
CHIP = "sram-ldlif-65nm"
NEURONS = ("lif", "ld_lif", "if")
CONFIDENCE = 0.95
INSTANCES = 5
#: the claim: LD-LIF costs about this many accuracy points against LIF
CLAIMED_COST_POINTS = 1.0

#: a small flow network of the shipped flow space's family (two stride-2 stages, SAR 4 bit)
FLOW_ARCH: dict[str, Any] = {
    "name": "flow-c16-c32",
    "task": "dense",
    "input": {"shape": [2, 32, 32], "timesteps": 5, "encoding": "events"},
    "layers": [
        {"kind": "conv", "out": 16, "kernel": 3, "stride": 2},
        {"kind": "conv", "out": 32, "kernel": 3, "stride": 2},
        {"kind": "deconv", "out": 16, "kernel": 4, "stride": 2, "padding": 1},
        {"kind": "deconv", "out": 2, "kernel": 4, "stride": 2, "padding": 1},
    ],
    "neuron": {"model": "lif", "threshold": 1.0, "reset": "soft"},
    "precision": {"weight_bits": 4, "membrane_bits": 8},
    "mapping": {
        "adc_bits": 4,
        "adc_kind": "sar",
        "rows": 128,
        "cols": 128,
        "bits_per_cell": 1,
        "signed_scheme": "differential",
        "dataflow": "weight_stationary",
    },
}


@dataclass(frozen=True)
class Config:
    """One architecture on one dataset, trained the same way for every neuron."""

    name: str
    dataset: str
    metric: str  # "accuracy" (higher is better, reported in %) or "aee" (px, lower is better)
    epochs: int
    lr: float

    def arch(self, neuron: str) -> ArchSpec:
        base = (
            ArchSpec.from_dict(FLOW_ARCH)
            if self.name == "flow"
            else ArchSpec.from_yaml(preset_dir("arch") / f"{self.name}.yaml")
        )
        n = base.neuron
        return base.with_(neuron=NeuronSpec(model=neuron, threshold=n.threshold, reset=n.reset))


CONFIGS = {
    c.name: c
    for c in (
        Config("digits-mlp", "digits-events", "accuracy", epochs=10, lr=1e-2),
        Config("digits-cnn", "digits-events", "accuracy", epochs=6, lr=1e-2),
        Config("flow", "flow-events", "aee", epochs=20, lr=3e-2),
    )
}

FIELDS = (
    "config",
    "dataset",
    "metric",
    "neuron",
    "seed",
    "epochs",
    "lr",
    "max_train_samples",
    "status",
    "val",
    "val_per_instance",
    "val_float",
    "test",
    "test_per_instance",
    "train_s",
)


def run_one(
    cfg: Config,
    neuron: str,
    seed: int,
    *,
    epochs: int | None = None,
    instances: int = INSTANCES,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> dict[str, Any]:
    """Train ``cfg``'s architecture with ``neuron`` for one seed; its CSV row (accuracy in %,
    AEE in px; validation and test each the mean over ``instances`` chip instances)."""
    ep = epochs or cfg.epochs
    r = train_candidate(
        cfg.arch(neuron),
        CHIP,
        cfg.dataset,
        epochs=ep,
        seed=seed,
        lr=cfg.lr,
        eval_instances=instances,
        test_instances=instances,
        max_train_samples=max_train_samples,
        max_eval_samples=max_eval_samples,
    )
    scale = 100.0 if cfg.metric == "accuracy" else 1.0
    if cfg.metric == "accuracy":
        val_per = [a * scale for a in r.accuracies]
        val_float = None if r.float_accuracy is None else r.float_accuracy * scale
    else:
        val_per = list(r.aees)
        val_float = r.float_aee
    test_per = [a * scale for a in r.test_accuracies]
    mean = lambda v: sum(v) / len(v) if v else math.nan  # noqa: E731
    return {
        "config": cfg.name,
        "dataset": cfg.dataset,
        "metric": cfg.metric,
        "neuron": neuron,
        "seed": seed,
        "epochs": ep,
        "lr": cfg.lr,
        "max_train_samples": max_train_samples or "",
        "status": r.status,
        "val": mean(val_per),
        "val_per_instance": " ".join(f"{v:.4g}" for v in val_per),
        "val_float": "" if val_float is None else val_float,
        "test": mean(test_per),
        "test_per_instance": " ".join(f"{v:.4g}" for v in test_per),
        "train_s": round(r.train_seconds, 1),
    }


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["seed"], r["epochs"] = int(r["seed"]), int(r["epochs"])
        r["val"], r["test"] = float(r["val"]), float(r["test"])
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row[k] for k in FIELDS})


def paired(
    rows: list[dict[str, Any]], config: str, neuron: str, split: str, reference: str = "lif"
) -> dict[str, Any] | None:
    """``neuron`` - ``reference`` on ``split`` ("val" or "test"), paired by seed (same data split,
    initialisation and chip instances): per-seed differences, their mean and the half-width of
    the 95 % Student-t interval over the seeds (NaN with one seed).  None when no seed has both."""
    by = {
        (r["neuron"], r["seed"]): r[split]
        for r in rows
        if r["config"] == config and r["status"] == "ok"
    }
    seeds = sorted(s for (n, s) in by if n == neuron and (reference, s) in by)
    if not seeds:
        return None
    diffs = [by[(neuron, s)] - by[(reference, s)] for s in seeds]
    mean, half = confidence_interval(diffs, CONFIDENCE)
    return {"seeds": seeds, "diffs": diffs, "mean": mean, "half": half}


def _ci(d: dict[str, Any] | None, unit: str) -> str:
    if d is None:
        return "-"
    half = "n/a" if math.isnan(d["half"]) else f"{d['half']:.2f}"
    return f"{d['mean']:+.2f} {unit} [±{half}]"


def _per_seed(rs: list[dict[str, Any]], split: str) -> str:
    return " / ".join(f"{r[split]:.2f}" if r["status"] == "ok" else r["status"] for r in rs)


def _mean(rs: list[dict[str, Any]], split: str) -> float:
    return sum(r[split] for r in rs) / len(rs) if rs else math.nan


def flow_test_baseline_aee() -> float:
    """AEE (px) of predicting the training split's mean flow field on every test sample of
    flow-events: the figure a flow network must beat (neuronas.tasks.mean_flow_baseline)."""
    from neuronas.tasks import mean_flow_baseline
    from neuronas.train import dataset_tensors

    t = CONFIGS["flow"].arch("lif").input.timesteps
    _, y_train = dataset_tensors("flow-events", "train", t)
    _, y_test = dataset_tensors("flow-events", "test", t)
    return mean_flow_baseline(y_train, y_test)["aee"]


def write_table(
    rows: list[dict[str, Any]],
    path: Path,
    flow_baseline_aee: float | None = None,
    command: str = "experiments/06_ldlif_accuracy.py",
) -> str:
    configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
    lines = [
        "# LD-LIF's accuracy cost: the same networks trained with LIF, LD-LIF and IF",
        "",
        f"Chip `{CHIP}`; per configuration the same epochs, learning rate and progressive schedule for every",
        "neuron; a seed fixes the data split, initialisation, batch order and chip instances, so a seed's runs",
        "differ only in the neuron.  Validation: held out of the training data; test: read only for this report;",
        f"each the mean over {INSTANCES} chip instances.  Accuracy in %, flow in AEE px (lower is better).",
        f"Command: `PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python {command}`.",
        "",
        "| config | dataset | epochs | neuron | seeds | validation, per seed | mean | test, per seed | mean |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in configs:
        for n in NEURONS:
            rs = sorted(
                (r for r in rows if r["config"] == c and r["neuron"] == n), key=lambda r: r["seed"]
            )
            if not rs:
                continue
            ok = [r for r in rs if r["status"] == "ok"]
            lines.append(
                f"| {c} | {rs[0]['dataset']} | {rs[0]['epochs']} | {n} | {len(ok)} of {len(rs)} | "
                f"{_per_seed(rs, 'val')} | {_mean(ok, 'val'):.2f} | {_per_seed(rs, 'test')} | {_mean(ok, 'test'):.2f} |"
            )
    lines += [
        "",
        "Paired differences, mean over seeds [95 % Student-t half-width over the seeds; chip instances",
        "averaged within each run].  For accuracy a negative LD-LIF - LIF is a cost (the paper: about -1 point);",
        "for AEE a positive one is.",
        "",
        "| config | LD-LIF - LIF, validation | LD-LIF - LIF, test | IF - LIF, validation | IF - LIF, test |",
        "|---|---|---|---|---|",
    ]
    after = [
        "Training seconds per run (one thread, shared machine): "
        + ", ".join(
            f"{c} {min(float(r['train_s']) for r in rows if r['config'] == c):.0f}-"
            f"{max(float(r['train_s']) for r in rows if r['config'] == c):.0f} s"
            for c in configs
        )
        + "."
    ]
    if flow_baseline_aee is not None and "flow" in configs:
        after.append(
            f"Flow: predicting the training split's mean flow field gives {flow_baseline_aee:.3f} px on the test split "
            "(the figure to beat); the validation split is 26 samples (10 % of 256), so its AEE moves by tenths of a "
            "pixel from seed to seed."
        )
    for c in configs:
        unit = "points" if CONFIGS[c].metric == "accuracy" else "px"
        cells = [
            _ci(paired(rows, c, n, split), unit)
            for n in ("ld_lif", "if")
            for split in ("val", "test")
        ]
        lines.append(f"| {c} | {' | '.join(cells)} |")
    if after:
        lines += ["", *after]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot(rows: list[dict[str, Any]], path: Path, flow_baseline_aee: float | None = None) -> None:
    configs = [c for c in CONFIGS if any(r["config"] == c for r in rows)]
    if not configs:
        return
    fig, axes = plt.subplots(1, len(configs), figsize=(4.2 * len(configs), 3.8), squeeze=False)
    for ax, c in zip(axes[0], configs, strict=True):
        for k, n in enumerate(NEURONS):
            for j, (split, marker) in enumerate((("val", "o"), ("test", "s"))):
                vals = [r[split] for r in rows if r["config"] == c and r["neuron"] == n]
                if not vals:
                    continue
                x = k + (j - 0.5) * 0.3
                ax.scatter(
                    [x] * len(vals),
                    vals,
                    marker=marker,
                    color=f"C{j}",
                    alpha=0.7,
                    label=("validation" if split == "val" else "test") if k == 0 else None,
                )
                ax.hlines(sum(vals) / len(vals), x - 0.12, x + 0.12, color=f"C{j}")
        if c == "flow" and flow_baseline_aee is not None:
            ax.axhline(flow_baseline_aee, color="k", ls=":", lw=1, label="mean-flow baseline, test")
        ax.set_xticks(range(len(NEURONS)), NEURONS)
        ax.set_ylabel(
            "accuracy (%)" if CONFIGS[c].metric == "accuracy" else "AEE (px, lower is better)"
        )
        eps = sorted({r["epochs"] for r in rows if r["config"] == c})
        ax.set_title(f"{c} ({'/'.join(map(str, eps))} epochs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"same networks, neuron swapped, on {CHIP}: each seed's run (mean over chip instances)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--neurons", nargs="+", default=list(NEURONS), choices=list(NEURONS))
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train every configuration this long instead of its own epochs; results go to "
        "06_ldlif_accuracy_<configs>_<N>ep.* (a separate table: runs of different lengths never pair)",
    )
    ap.add_argument("--report-only", action="store_true", help="rebuild the table and figure")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "06_ldlif_accuracy"
    if args.epochs is not None:
        stem += f"_{'-'.join(args.configs)}_{args.epochs}ep"
    csv_path = args.out / f"{stem}.csv"
    if not args.report_only:
        for name in args.configs:
            cfg = CONFIGS[name]
            for seed in args.seeds:
                for neuron in args.neurons:
                    done = {
                        (r["config"], r["neuron"], r["seed"], r["epochs"])
                        for r in read_rows(csv_path)
                    }
                    if (name, neuron, seed, args.epochs or cfg.epochs) in done:
                        continue
                    t0 = time.perf_counter()
                    row = run_one(cfg, neuron, seed, epochs=args.epochs)
                    append_row(csv_path, row)
                    print(
                        f"{name} {neuron} seed {seed}: val {row['val']:.2f} test {row['test']:.2f} "
                        f"({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    rows = read_rows(csv_path)
    base = flow_test_baseline_aee() if any(r["config"] == "flow" for r in rows) else None
    command = "experiments/06_ldlif_accuracy.py"
    if args.epochs is not None:
        command += (
            f" --configs {' '.join(args.configs)} --seeds {' '.join(map(str, args.seeds))}"
            f" --neurons {' '.join(args.neurons)} --epochs {args.epochs}"
        )
    print(write_table(rows, args.out / f"{stem}.md", base, command))
    plot(rows, args.out / f"{stem}.png", base)


if __name__ == "__main__":
    main()
