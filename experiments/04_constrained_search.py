"""Constrained vs accuracy-only search under memory, area, latency and energy budgets at once.

NeuroNAS (arXiv 2407.00641) claims that a hardware-aware spiking NAS, given memory, area,
latency and energy budgets together, finds accurate networks that meet every budget, where an
accuracy-only search of the same space does not; with large area / energy savings, and search
time saved because candidates that cannot fit are rejected before they are trained.

This script runs two searches of the default space (digits-small, digits-events) through the
``neuronas`` CLI, same sampler (the default, cost-guided), same trial count, same seeds, same
(screening) training fidelity: 3 epochs, one chip instance:

* **hardware-aware**: ``--objectives accuracy energy_uj latency_us`` on ``rram-adcless-65nm-tight``,
  whose four hard budgets (memory 24 kB, area 0.3 mm^2, latency 20 us, energy 0.1 uJ) all bind;
* **accuracy-only**: ``--objectives accuracy`` on a copy of that chip with no budgets (written by
  this script next to the runs), the same silicon.

Then every network the accuracy-only search trained is priced against the real budgets with
``neuronas.hardware.estimate`` (its measured spike rates), and we report: how many meet every
budget, per budget how many break it, the most accurate network of each search and its costs
(the area / energy savings), and the time saved: the training seconds (the trials' stored
``seconds`` attribute) of the accuracy-only search's trials that a budgets-first search rejects
before training (over a hard budget at the prior spike rate, priced in about a millisecond).
The accuracies the searches select by are on the validation split; each front is then exported
(``neuronas export``, 10 chip instances), the only place the test split is read.
Run (about 20 minutes at one thread on the shared 2-core VM when it is quiet; 59 minutes at a
load average of 11-16, 2026-12-01):

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python experiments/04_constrained_search.py [--trials 16 --seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402

from neuronas.hardware import Activity, Chip, estimate, load_chip  # noqa: E402
from neuronas.spec import ArchSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "results"
RUNS = ROOT / "runs" / "exp04"
CHIP = "rram-adcless-65nm-tight"
METRICS = ("memory_kb", "area_mm2", "latency_us", "energy_uj")
#: screening fidelity shared by both searches
FIDELITY = (
    "--epochs",
    "3",
    "--max-train-samples",
    "0",
    "--eval-instances",
    "1",
)  # all training and test samples


@dataclass
class Trial:
    """One finished trial of a search, priced again against the real budgets."""

    number: int
    arch: str
    trained: bool
    accuracy: float | None
    train_s: float  # training seconds the search spent on it (stored ``seconds.train``)
    prior: dict[str, float]  # costs at the prior spike rate (what a budgets-first search prices)
    measured: dict[str, float]  # costs with the measured spike rates (prior when untrained)
    broken_prior: tuple[str, ...]  # hard budgets broken at the prior: rejected before training
    broken: tuple[str, ...]  # hard budgets broken with the measured rates

    @property
    def feasible(self) -> bool:
        return not self.broken


@dataclass
class Search:
    label: str
    seed: int
    trials: list[Trial] = field(default_factory=list)
    prescreen: dict[str, Any] = field(default_factory=dict)
    #: ``neuronas export``'s re-measurement of the front's members, by trial number (see export_front)
    exported: dict[int, dict[str, float]] = field(default_factory=dict)

    @property
    def trained(self) -> list[Trial]:
        return [t for t in self.trials if t.trained]

    def best(self, feasible_only: bool) -> Trial | None:
        pool = [
            t for t in self.trained if t.accuracy is not None and (t.feasible or not feasible_only)
        ]
        return max(pool, key=lambda t: (t.accuracy, -t.measured["energy_uj"])) if pool else None


def unbudgeted_copy(chip: Chip, path: Path) -> Path:
    """Write ``chip`` with its budgets removed (the same silicon) as a chip YAML file."""
    d = chip.model_dump(mode="json", exclude_none=True)
    d["name"] = f"{chip.name}-nobudgets"
    d["description"] = f"{chip.name} without budgets (accuracy-only baseline of experiments/04)"
    d["budgets"] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    load_chip(path)  # fail here, not in the search, if the copy does not load
    return path


def run_search(
    name: str,
    chip: str | Path,
    objectives: list[str],
    trials: int,
    seed: int,
    fidelity: tuple[str, ...] = FIDELITY,
    runs: Path = RUNS,
) -> Path:
    """``neuronas search`` in a fresh run folder; returns the run's SQLite study file."""
    run_dir = runs / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    runs.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "neuronas",
        "search",
        "--chip",
        str(chip),
        "--objectives",
        *objectives,
        "--trials",
        str(trials),
        "--seed",
        str(seed),
        "--name",
        name,
        "--quiet",
        *fidelity,
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, cwd=runs, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return run_dir / "study.db"


def export_front(run_dir: Path, instances: int = 10) -> dict[int, dict[str, float]]:
    """``neuronas export`` of the run in ``run_dir`` (its front, chosen on the validation split):
    every member's validation and test accuracy over ``instances`` chip instances with 95 %
    Student-t bounds, read back from ``pareto.csv`` and keyed by trial number.  The test split is
    read here for the first time, after the searches chose everything."""
    out_dir = run_dir / "export"
    cmd = [
        sys.executable,
        "-m",
        "neuronas",
        "export",
        str(run_dir),
        "--out",
        str(out_dir),
        "--overwrite",
        "--no-nir",
        "--no-chip-package",
        "--instances",
        str(instances),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, cwd=run_dir.parent, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return read_export(out_dir / "pareto.csv")


def read_export(path: Path) -> dict[int, dict[str, float]]:
    """``pareto.csv`` of an export: trial number -> validation / test accuracy mean, low, high."""
    out: dict[int, dict[str, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            keys = [f"{s}_accuracy{k}" for s in ("val", "test") for k in ("", "_low", "_high")]
            if all(row.get(k) for k in keys):
                out[int(row["trial"])] = {k: float(row[k]) for k in keys}
    return out


def hard_broken(values: dict[str, float], chip: Chip) -> tuple[str, ...]:
    return tuple(m for m, b in chip.budgets.items().items() if b.hard and values[m] > b.limit)


def read_search(db: Path, chip: Chip, label: str, seed: int) -> Search:
    """Every finished trial of the study in ``db``, its costs priced on ``chip`` (budgets included)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{db}")
    out = Search(label, seed, prescreen=dict(study.user_attrs.get("prescreen") or {}))
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        ua = t.user_attrs
        if ua.get("cached_from") is not None:  # a re-proposal: its result is the earlier trial's
            continue
        arch = ArchSpec.from_dict(ua["arch"])
        trained = bool(ua.get("trained"))
        prior = {m: float(v) for m, v in ua["prior_metrics"].items()}
        if trained:
            act = Activity.from_dict(ua["train"]["activity"])
            rep = estimate(arch, chip, act)
        else:
            rep = estimate(arch, chip)
        measured = {m: float(rep.metric(m)) for m in METRICS}
        out.trials.append(
            Trial(
                number=t.number,
                arch=_short(arch),
                trained=trained,
                accuracy=float(ua["accuracy"])
                if trained and ua.get("accuracy") is not None
                else None,
                train_s=float((ua.get("seconds") or {}).get("train", 0.0)),
                prior=prior,
                measured=measured,
                broken_prior=hard_broken(prior, chip),
                broken=hard_broken(measured, chip),
            )
        )
    return out


def _short(arch: ArchSpec) -> str:
    parts = []
    for layer in arch.layers:
        if layer.kind == "pool":
            parts.append(f"mp{layer.kernel}")
        elif layer.kind == "conv":
            parts.append(f"c{layer.out}k{layer.kernel}")
        else:
            parts.append(f"fc{layer.out}")
    m = arch.mapping
    df = " OS" if m.dataflow == "output_stationary" else ""
    adc = "SA" if m.adc_kind == "sa" else f"{m.adc_kind}{m.adc_bits}"
    return (
        f"{'-'.join(parts)} T{arch.input.timesteps} {arch.neuron.model} w{arch.precision.weight_bits} "
        f"{adc} {m.rows}x{m.cols}{df}"
    )


def summarise(hw: Search, acc: Search, chip: Chip) -> dict[str, Any]:
    """The claim's figures for one seed: feasibility of each search, the best networks, savings, time."""
    hw_best = hw.best(feasible_only=True)
    acc_best = acc.best(feasible_only=False)
    acc_best_feasible = acc.best(feasible_only=True)
    acc_trained = acc.trained
    # a budgets-first search prices each candidate at the prior and never trains those over a hard budget
    skipped = [t for t in acc_trained if t.broken_prior]
    acc_train_s = sum(t.train_s for t in acc_trained)
    per_budget = {
        m: sum(1 for t in acc_trained if m in t.broken) for m in chip.budgets.hard_metrics
    }
    s: dict[str, Any] = {
        "seed": hw.seed,
        "hw_trials": len(hw.trials),
        "hw_trained": len(hw.trained),
        "hw_trained_feasible": sum(1 for t in hw.trained if t.feasible),
        "hw_rejected_untrained": sum(1 for t in hw.trials if not t.trained),
        "acc_trials": len(acc.trials),
        "acc_trained": len(acc_trained),
        "acc_trained_feasible": sum(1 for t in acc_trained if t.feasible),
        "acc_broken_per_budget": per_budget,
        "hw_best": hw_best,
        "acc_best": acc_best,
        "acc_best_feasible": acc_best_feasible,
        "acc_train_s": acc_train_s,
        "skipped": len(skipped),
        "saved_s": sum(t.train_s for t in skipped),
        "hw_train_s": sum(t.train_s for t in hw.trained),
        "prescreen": hw.prescreen,
        "hw_best_export": hw.exported.get(hw_best.number) if hw_best else None,
        "acc_best_export": acc.exported.get(acc_best.number) if acc_best else None,
    }
    if hw_best and acc_best:
        s["energy_saving"] = acc_best.measured["energy_uj"] / hw_best.measured["energy_uj"]
        s["area_saving"] = acc_best.measured["area_mm2"] / hw_best.measured["area_mm2"]
        s["latency_saving"] = acc_best.measured["latency_us"] / hw_best.measured["latency_us"]
        s["memory_saving"] = acc_best.measured["memory_kb"] / hw_best.measured["memory_kb"]
    return s


def _fmt_best(t: Trial | None) -> str:
    if t is None:
        return "none"
    return f"{t.accuracy:.1%} — {t.arch}"


def _costs(t: Trial | None) -> str:
    if t is None:
        return "-"
    m = t.measured
    return (
        f"{m['memory_kb']:.1f} / {m['area_mm2']:.3f} / {m['latency_us']:.1f} / {m['energy_uj']:.3f}"
    )


def _fmt_export(e: dict[str, float] | None) -> str:
    if not e:
        return "-"
    return (
        f"{e['val_accuracy']:.1%} [{e['val_accuracy_low']:.1%}, {e['val_accuracy_high']:.1%}] / "
        f"{e['test_accuracy']:.1%} [{e['test_accuracy_low']:.1%}, {e['test_accuracy_high']:.1%}]"
    )


def write_table(
    summaries: list[dict[str, Any]],
    chip: Chip,
    trials: int,
    path: Path,
    fidelity: tuple[str, ...] = FIDELITY,
) -> str:
    lim = {m: b.limit for m, b in chip.budgets.items().items()}
    lines = [
        "# NeuroNAS's claim: a search under four budgets at once vs an accuracy-only search",
        "",
        f"Space digits-small, dataset digits-events, chip `{chip.name}` (hard budgets: memory {lim['memory_kb']:g} kB, "
        f"area {lim['area_mm2']:g} mm², latency {lim['latency_us']:g} µs, energy {lim['energy_uj']:g} µJ per inference).",
        f"Both searches: default (cost-guided) sampler, {trials} trials, fidelity `{' '.join(fidelity)}`.",
        "Hardware-aware: `--objectives accuracy energy_uj latency_us` on the budgeted chip; accuracy-only:",
        "`--objectives accuracy` on the same chip without budgets, its networks then priced against the budgets",
        "with their measured spike rates (`neuronas.hardware.estimate`).  Selection accuracy: as the search",
        "stores it and chooses by, on the validation split (10 % held out of the training data, 144 samples),",
        "one chip instance, 3 epochs of screening: a ranking signal, not a final accuracy.  Then `neuronas export`",
        "re-measures each search's front on 10 chip instances, on the validation and, for the first time, the",
        "test split (360 samples): mean [95 % Student-t interval over the instances; chip-to-chip only, the",
        "validation split's own sampling error is about ±7 points].",
        "",
        "| seed | search | trained | meet all 4 budgets | most accurate network (val acc, search — arch) | its memory kB / area mm² / latency µs / energy µJ | meets all? | export, 10 instances: val / test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        hb, ab = s["hw_best"], s["acc_best"]
        lines.append(
            f"| {s['seed']} | hardware-aware | {s['hw_trained']} of {s['hw_trials']} | {s['hw_trained_feasible']} of "
            f"{s['hw_trained']} | {_fmt_best(hb)} | {_costs(hb)} | {'yes' if hb and hb.feasible else 'no'} | "
            f"{_fmt_export(s.get('hw_best_export'))} |"
        )
        lines.append(
            f"| {s['seed']} | accuracy-only | {s['acc_trained']} of {s['acc_trials']} | {s['acc_trained_feasible']} of "
            f"{s['acc_trained']} | {_fmt_best(ab)} | {_costs(ab)} | {'yes' if ab and ab.feasible else 'no'} | "
            f"{_fmt_export(s.get('acc_best_export'))} |"
        )
    lines += [
        "",
        "Budgets the accuracy-only search's trained networks break (count per budget), the savings of the",
        "hardware-aware search's most accurate feasible network over the accuracy-only search's most accurate",
        "network (ratio accuracy-only / hardware-aware; the gap in the search's validation accuracy), and the search time a budgets-first search saves:",
        "training seconds of the accuracy-only trials that are over a hard budget at the prior spike rate",
        "(rejected in about a millisecond by a budgets-first search, never trained).",
        "",
        "| seed | broken: memory / area / latency / energy | accuracy gap (acc-only best − hw best) | area x | energy x | latency x | memory x "
        "| acc-only trials over a budget at the prior | training time saved |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        pb = s["acc_broken_per_budget"]
        hb, ab = s["hw_best"], s["acc_best"]
        gap = f"{(ab.accuracy - hb.accuracy) * 100:+.1f} points" if hb and ab else "-"
        ratios = " | ".join(
            f"{s[k]:.3g}" if k in s else "-"
            for k in ("area_saving", "energy_saving", "latency_saving", "memory_saving")
        )
        frac = s["saved_s"] / s["acc_train_s"] if s["acc_train_s"] else 0.0
        lines.append(
            f"| {s['seed']} | {' / '.join(str(pb.get(m, 0)) for m in METRICS)} | {gap} | {ratios} | "
            f"{s['skipped']} of {s['acc_trained']} | {s['saved_s']:.0f} s of {s['acc_train_s']:.0f} s ({frac:.0%}) |"
        )
    if summaries:
        n_hw = sum(s["hw_trained"] for s in summaries)
        ok_hw = sum(s["hw_trained_feasible"] for s in summaries)
        n_acc = sum(s["acc_trained"] for s in summaries)
        ok_acc = sum(s["acc_trained_feasible"] for s in summaries)
        saved = sum(s["saved_s"] for s in summaries)
        spent = sum(s["acc_train_s"] for s in summaries)
        best_ok = sum(1 for s in summaries if s["acc_best"] is not None and s["acc_best"].feasible)
        feas = ", ".join(
            f"seed {s['seed']}: "
            + (f"{s['acc_best_feasible'].accuracy:.1%}" if s["acc_best_feasible"] else "none")
            + f" (hardware-aware {s['hw_best'].accuracy:.1%})"
            if s["hw_best"]
            else ""
            for s in summaries
        )
        lines += [
            "",
            f"Over {len(summaries)} seeds: the hardware-aware search trained {n_hw} networks, {ok_hw} meeting every budget; "
            f"the accuracy-only search trained {n_acc}, {ok_acc} meeting every budget, and its most accurate network "
            f"met every budget in {best_ok} of {len(summaries)} seeds.  Training time a budgets-first search would not "
            f"have spent on the accuracy-only search's candidates: {saved:.0f} s of {spent:.0f} s "
            f"({saved / spent if spent else 0.0:.0%}); with the same number of trainings it trains feasible candidates "
            "instead (the default sampler proposes only candidates within every hard budget, so the hardware-aware "
            "search rejected none).  The accuracy-only search's most accurate network that does meet every budget: "
            + feas
            + ".",
        ]
    pre = summaries[0]["prescreen"] if summaries else {}
    if pre.get("sampled"):
        broken = pre.get("broken", {})
        lines += [
            "",
            f"The four budgets all bind: of {pre['sampled']} random candidates of the space priced before the first trial "
            f"(seed {summaries[0]['seed']}), {pre.get('feasible_share', 0):.0%} meet all four; "
            + ", ".join(f"{m} breaks {broken.get(m, 0)}" for m in METRICS)
            + ".",
        ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot(searches: list[tuple[Search, Search]], chip: Chip, path: Path) -> None:
    lim = {m: b.limit for m, b in chip.budgets.items().items()}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, unit in (
        (axes[0], "energy_uj", "energy per inference (µJ)"),
        (axes[1], "area_mm2", "area (mm²)"),
    ):
        for i, (hw, acc) in enumerate(searches):
            for srch, color in ((hw, "tab:green"), (acc, "tab:red")):
                for t in srch.trained:
                    ax.scatter(
                        t.measured[metric],
                        t.accuracy * 100,
                        color=color,
                        marker="o" if t.feasible else "x",
                        alpha=0.8,
                        label=f"{srch.label}" if (i == 0 and t is srch.trained[0]) else None,
                    )
        ax.axvline(lim[metric], color="k", ls="--", lw=1, label="budget")
        ax.set_xscale("log")
        ax.set_xlabel(unit)
        ax.set_ylabel("validation accuracy (%), as the search selected")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"trained networks on {chip.name}: o meets all four budgets, x breaks one or more")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--export-instances",
        type=int,
        default=10,
        help="chip instances of the export's validation / test re-measurement of each front",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the table and figure from the runs already under runs/exp04 (no search)",
    )
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    chip = load_chip(CHIP)
    free = unbudgeted_copy(chip, RUNS / f"{CHIP}-nobudgets.yaml")
    summaries, pairs = [], []
    for seed in args.seeds:
        if args.report_only:
            db_hw, db_acc = (RUNS / "runs" / f"{k}-s{seed}" / "study.db" for k in ("hw", "acc"))
        else:
            db_hw = run_search(
                f"hw-s{seed}", CHIP, ["accuracy", "energy_uj", "latency_us"], args.trials, seed
            )
            db_acc = run_search(f"acc-s{seed}", free, ["accuracy"], args.trials, seed)
        hw = read_search(db_hw, chip, "hardware-aware", seed)
        acc = read_search(db_acc, chip, "accuracy-only", seed)
        for srch, db in ((hw, db_hw), (acc, db_acc)):
            pareto = db.parent / "export" / "pareto.csv"
            srch.exported = (
                read_export(pareto)
                if args.report_only and pareto.exists()
                else export_front(db.parent, args.export_instances)
            )
        pairs.append((hw, acc))
        summaries.append(summarise(hw, acc, chip))
        print(f"seed {seed}: done", flush=True)
    print(write_table(summaries, chip, args.trials, OUT / "04_constrained_search.md"))
    plot(pairs, chip, OUT / "04_constrained_search.png")


if __name__ == "__main__":
    main()
