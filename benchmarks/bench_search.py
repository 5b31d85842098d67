"""Search benchmark: the default sampler against random search, and learning the feasible region.

Part A -- default space (digits-small) on the default chip (rram-adcless-65nm), the default
sampler (TPE, multivariate, constraints from ``trial.set_constraint``) against random search
with the same trial budget, several seeds.  Reported per run: the hypervolume of the feasible
front, and the share of trials that trained a candidate over a hard budget (must be 0: budgets
are checked before training).

Part B -- a chip whose budgets reject most of the space (rram-adcless-65nm-tight): the share of
infeasible proposals per window of trials, TPE against random (and NSGA-II), several seeds;
plotted to ``benchmarks/search_infeasible_share.png``.

Hypervolume reference point: accuracy 0 and, for every cost objective, the chip's budget for it
(the value a feasible candidate may reach at most): energy 1.0 uJ (hard), latency 100 us (soft;
a member beyond it adds nothing).  Volumes are in the objectives' own units (accuracy fraction
x uJ x us); only ratios between samplers are compared.

Training is the expensive part; the benchmark uses cheap fidelity (1 epoch, at most 256
training and 200 evaluation samples, one chip instance), so its accuracies are screening
values, far below what a full training reaches.  Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py            # full (tens of minutes)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CHEAP = {
    "epochs": 1,
    "max_train_samples": 256,
    "max_eval_samples": 200,
    "eval_instances": 1,
    "batch_size": 32,
}


def run_one(
    root: Path,
    name: str,
    *,
    sampler: str,
    seed: int,
    trials: int,
    chip: str,
    space: str = "digits-small",
) -> dict[str, Any]:
    from neuronas.search.study import create_or_resume, run_search

    opts = {
        "name": name,
        "space": space,
        "chip": chip,
        "sampler": sampler,
        "seed": seed,
        "trials": trials,
        **CHEAP,
    }
    t0 = time.perf_counter()
    run = create_or_resume(opts, root=root)
    run_search(run, progress=False)
    wall = time.perf_counter() - t0
    trials_ = sorted(run.study.get_trials(deepcopy=False), key=lambda t: t.number)
    return {"run": run, "trials": trials_, "wall_s": wall}


def hypervolume_of(run: Any, trials: list[Any]) -> float:
    from neuronas.search.pareto import hypervolume
    from neuronas.search.study import front_trials

    objectives = list(run.config.objectives)
    budgets = run.chip.budgets.items()
    ref = [0.0 if o == "accuracy" else budgets[o].limit for o in objectives]
    front = front_trials(run.study, objectives, trials)
    return hypervolume([t.values for t in front], ref, objectives)


def summarise_a(res: dict[str, Any]) -> dict[str, Any]:
    trials = res["trials"]
    st = [t.user_attrs.get("status") for t in trials]
    trained = [t for t in trials if t.user_attrs.get("trained")]
    # trained although the prior pricing broke a hard budget: must never happen
    hard = set(res["run"].chip.budgets.hard_metrics)
    trained_infeasible = [
        t
        for t in trained
        if any(v > 0 for k, v in (t.user_attrs.get("prior_margins") or {}).items() if k in hard)
    ]
    return {
        "trials": len(trials),
        "hypervolume": hypervolume_of(res["run"], trials),
        "trained": len(trained),
        "rejected_untrained": st.count("infeasible") + st.count("incompatible"),
        "trained_over_budget_at_prior": len(trained_infeasible),
        "over_budget_after_training": st.count("infeasible_measured"),
        "failed": st.count("failed"),
        "best_accuracy": max((t.user_attrs.get("accuracy") or 0.0 for t in trials), default=0.0),
        "train_s": sum(
            float((t.user_attrs.get("seconds") or {}).get("train", 0.0) or 0.0) for t in trials
        ),
        "wall_s": res["wall_s"],
    }


def window_shares(trials: list[Any], window: int) -> list[float]:
    out = []
    for i in range(0, len(trials) - window + 1, window):
        w = trials[i : i + window]
        out.append(
            sum(t.user_attrs.get("status") in ("infeasible", "incompatible") for t in w) / len(w)
        )
    return out


def plot_b(results: dict[str, list[list[float]]], window: int, path: Path, chip: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = {"tpe": "#c0392b", "random": "#7f8c8d", "nsga2": "#2e86c1"}
    for sampler, runs in results.items():
        n = min(len(r) for r in runs)
        xs = [(i + 1) * window for i in range(n)]
        for r in runs:
            ax.plot(xs, [100 * v for v in r[:n]], color=colors.get(sampler, "k"), alpha=0.25, lw=1)
        mean = [100 * statistics.mean(r[i] for r in runs) for i in range(n)]
        ax.plot(
            xs,
            mean,
            "-o",
            color=colors.get(sampler, "k"),
            lw=2,
            label=f"{sampler} (mean of {len(runs)} seeds)",
        )
    ax.set_xlabel(f"trials (windows of {window})")
    ax.set_ylabel("infeasible proposals in the window (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"digits-small on {chip}: share of proposals over a hard budget", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (few trials, one seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=24, help="trials per run, part A")
    p.add_argument("--tight-trials", type=int, default=60, help="trials per run, part B")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--parts", default="AB")
    p.add_argument("--out", type=Path, default=HERE / "bench_search.json")
    p.add_argument("--epochs", type=int, default=None, help="override the cheap fidelity's epochs")
    p.add_argument(
        "--max-train-samples",
        type=int,
        default=None,
        help="override the cheap fidelity's training samples",
    )
    a = p.parse_args()
    if a.epochs is not None:
        CHEAP["epochs"] = a.epochs
    if a.max_train_samples is not None:
        CHEAP["max_train_samples"] = a.max_train_samples
    if a.quick:
        a.seeds, a.trials, a.tight_trials, a.window = [0], 6, 12, 4
    from neuronas.search.study import quiet_optuna

    quiet_optuna()
    root = Path(tempfile.mkdtemp(prefix="bench_search_"))
    report: dict[str, Any] = {"fidelity": CHEAP, "seeds": a.seeds, "root": str(root)}
    if "A" in a.parts:
        rows: dict[str, list[dict[str, Any]]] = {"tpe": [], "random": []}
        for seed in a.seeds:
            for sampler in ("tpe", "random"):
                res = run_one(
                    root,
                    f"A-{sampler}-{seed}",
                    sampler=sampler,
                    seed=seed,
                    trials=a.trials,
                    chip="rram-adcless-65nm",
                )
                s = summarise_a(res)
                rows[sampler].append(s)
                print(
                    f"A {sampler:6s} seed {seed}: HV {s['hypervolume']:.4g}  trained {s['trained']}  rejected {s['rejected_untrained']}  "
                    f"trained-over-budget {s['trained_over_budget_at_prior']}  after-training-over {s['over_budget_after_training']}  "
                    f"best acc {s['best_accuracy']:.3f}  train {s['train_s']:.0f}s  wall {s['wall_s']:.0f}s",
                    flush=True,
                )
        report["A"] = rows
        hv = {k: [r["hypervolume"] for r in v] for k, v in rows.items()}
        ratio = [
            t / r if r > 0 else float("inf") for t, r in zip(hv["tpe"], hv["random"], strict=False)
        ]
        report["A_summary"] = {
            "hv_mean": {k: statistics.mean(v) for k, v in hv.items()},
            "hv_ratio_tpe_over_random_per_seed": ratio,
            "tpe_wins": sum(x > 1 for x in ratio),
            "share_trained_over_budget": {
                k: sum(r["trained_over_budget_at_prior"] for r in v)
                / max(1, sum(r["trials"] for r in v))
                for k, v in rows.items()
            },
        }
        print("A summary:", json.dumps(report["A_summary"]), flush=True)
    if "B" in a.parts:
        shares: dict[str, list[list[float]]] = {"tpe": [], "random": [], "nsga2": []}
        chip = "rram-adcless-65nm-tight"
        for seed in a.seeds:
            for sampler in shares:
                res = run_one(
                    root,
                    f"B-{sampler}-{seed}",
                    sampler=sampler,
                    seed=seed,
                    trials=a.tight_trials,
                    chip=chip,
                )
                w = window_shares(res["trials"], a.window)
                shares[sampler].append(w)
                print(
                    f"B {sampler:6s} seed {seed}: infeasible share per window of {a.window}: "
                    + " ".join(f"{100 * v:.0f}%" for v in w)
                    + f"  (wall {res['wall_s']:.0f}s)",
                    flush=True,
                )
        report["B"] = {
            "chip": chip,
            "window": a.window,
            "shares": shares,
            "mean_first_window": {k: statistics.mean(r[0] for r in v) for k, v in shares.items()},
            "mean_last_window": {k: statistics.mean(r[-1] for r in v) for k, v in shares.items()},
        }
        png = HERE / (
            "search_infeasible_share.png" if not a.quick else "search_infeasible_share_quick.png"
        )
        plot_b(shares, a.window, png, chip)
        report["B"]["png"] = str(png)
        print(
            "B summary:",
            json.dumps({k: report["B"][k] for k in ("mean_first_window", "mean_last_window")}),
            flush=True,
        )
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
