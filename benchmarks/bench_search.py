"""Search benchmark: the default sampler against random search, and learning the feasible region.

Part A -- default space (digits-small) on the default chip (rram-adcless-65nm), the default
sampler of ``neuronas search`` (``make_sampler`` for ``--sampler guided``, the cost-guided
sampler, exactly as the CLI builds it) against random search with the same trial budget, several
seeds (``--arms ... tpe`` adds Optuna's TPE as the CLI builds it for ``--sampler tpe``).  Reported per run: the
hypervolume of the feasible front, and the share of trials that trained a candidate over a hard
budget (must be 0: budgets are checked before training).  ``--arms`` adds tuning variants of the
sampler (``VARIANTS``; for tuning on other seeds, never reported as the default).

Part B -- a chip whose budgets reject most of the space (rram-adcless-65nm-tight): the share of
infeasible proposals per window of trials, the default sampler (which prices candidates before
proposing them), TPE (which learns the budgets from rejected trials), random and NSGA-II;
plotted to ``benchmarks/search_infeasible_share.png``.

Hypervolume reference point: accuracy 0 and, for every cost objective, the chip's budget for it
(the value a feasible candidate may reach at most): energy 1.0 uJ (hard), latency 100 us (soft;
a member beyond it adds nothing).  Volumes are in the objectives' own units (accuracy fraction
x uJ x us); only ratios between samplers are compared.

Fidelity.  Part A trains every candidate as ``neuronas search`` does by default (3 epochs on the
full digits-events training split, the search's default learning rate, tested on the full
360-sample test split) but on one chip instance instead of three: accuracies then span chance
(10 %) to ~87 %, so the hypervolume measures what the sampler found, not screening noise.
Part B only counts infeasible proposals, so it uses a cheap fidelity (``CHEAP``).

Evaluation cache (``--cache FILE``): each (architecture, chip, seed, fidelity) is trained once
and its result (with its original timings) reused by every arm of that seed -- the samplers'
random start-up trials are the random arm's first trials, so this saves a quarter of the
trainings.  Training here is *not* bit-reproducible (``--check-determinism`` trains one candidate
twice and records both accuracies: they differ by a few points), so the cache makes the arms
share one draw of each architecture's noisy accuracy (common random numbers): neutral between
the arms, and it takes the re-training noise out of their difference.  Usage::

    # the reported comparison (about 25 minutes on 2 cores)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py --parts A --seeds 0 1 2 3 4 \
        --trials 20 --arms random default --check-determinism --cache /tmp/bench_search_cache.jsonl
    # tuning the sampler: other seeds, variants as extra arms
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py --parts A --seeds 100 101 102 \
        --arms random default gp tpe-ei64 --cache /tmp/bench_search_cache.jsonl --out /tmp/tune.json
    # part B (about 5 minutes)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py --parts B --seeds 0 1 2 \
        --tight-trials 50 --out benchmarks/bench_search_tight.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_search.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: Part A: the search's default training (3 epochs, full splits), one chip instance
FIDELITY = {
    "epochs": 3,
    "max_train_samples": None,
    "max_eval_samples": None,
    "eval_instances": 1,
    "batch_size": 32,
}

#: Part B counts infeasible proposals only: a cheap training is enough
CHEAP = {
    "epochs": 1,
    "max_train_samples": 256,
    "max_eval_samples": 200,
    "eval_instances": 1,
    "batch_size": 32,
}

#: what makes two evaluations of one architecture the same computation
_EVAL_KEYS = (
    "dataset",
    "epochs",
    "seed",
    "batch_size",
    "lr",
    "schedule",
    "eval_instances",
    "max_train_samples",
    "max_eval_samples",
    "activity_prior",
    "min_accuracy_after_first_epoch",
)


class EvalCache:
    """(architecture, chip, evaluation settings) -> evaluate()'s result, in a JSON-lines file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {}
        self.hits = self.misses = 0
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.data[rec["key"]] = rec["result"]

    @staticmethod
    def key(arch_dict: dict[str, Any], chip_ref: Any, settings: dict[str, Any]) -> str:
        from neuronas.spec import ArchSpec

        if hasattr(settings, "to_dict"):  # a TrialSettings (the search passes one)
            settings = settings.to_dict()
        ident = [
            ArchSpec.from_dict(arch_dict).key,
            chip_ref,
            {k: settings.get(k) for k in _EVAL_KEYS},
        ]
        return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()

    @contextlib.contextmanager
    def installed(self) -> Any:
        """Route the search's evaluate() through the cache while the block runs."""
        import neuronas.search.objective as objective

        real = objective.evaluate

        def evaluate(arch_dict: dict[str, Any], chip_ref: Any, settings: dict[str, Any]) -> Any:
            k = self.key(arch_dict, chip_ref, settings)
            if k in self.data:
                self.hits += 1
                return copy.deepcopy(self.data[k])
            self.misses += 1
            result = real(arch_dict, chip_ref, settings)
            if not result.get("traceback"):
                self.data[k] = copy.deepcopy(result)
                if self.path is not None:
                    with open(self.path, "a") as f:
                        f.write(json.dumps({"key": k, "result": result}, default=str) + "\n")
            return result

        objective.evaluate = evaluate
        try:
            yield self
        finally:
            objective.evaluate = real


def _seed(run: Any, workers: int, worker_index: int, n_existing: int) -> int:
    return run.config.seed + 7919 * n_existing + 104729 * worker_index  # as make_sampler


def _tpe_variant(**overrides: Any) -> Any:
    """A make_sampler replacement: the default TPE with some settings changed (tuning only)."""

    def make(run: Any, *, workers: int = 1, worker_index: int = 0, n_existing: int = 0) -> Any:
        import optuna

        from neuronas.search.study import tpe_settings

        kw = {**tpe_settings(run.config, workers=workers), **overrides}
        return optuna.samplers.TPESampler(seed=_seed(run, workers, worker_index, n_existing), **kw)

    return make


def _gp(run: Any, *, workers: int = 1, worker_index: int = 0, n_existing: int = 0) -> Any:
    import optuna

    from neuronas.search import study

    return optuna.samplers.GPSampler(
        seed=_seed(run, workers, worker_index, n_existing),
        n_startup_trials=study.tpe_settings(run.config)["n_startup_trials"],
        warn_independent_sampling=False,
    )


#: tuning arms: name -> (sampler name in the run config, make_sampler replacement or None)
VARIANTS: dict[str, tuple[str, Any]] = {
    "default": ("guided", None),
    "random": ("random", None),
    "tpe": ("tpe", None),
    "nsga2": ("nsga2", None),
    "gp": ("tpe", _gp),
    "tpe-ei64": ("tpe", _tpe_variant(n_ei_candidates=64)),
    "tpe-prior05": ("tpe", _tpe_variant(prior_weight=0.5)),
}


def run_one(
    root: Path,
    name: str,
    *,
    arm: str,
    seed: int,
    trials: int,
    chip: str,
    fidelity: dict[str, Any],
    space: str = "digits-small",
) -> dict[str, Any]:
    from neuronas.search import samplers, study

    sampler, factory = VARIANTS[arm]
    opts = {
        "name": name,
        "space": space,
        "chip": chip,
        "sampler": sampler,
        "seed": seed,
        "trials": trials,
        **fidelity,
    }
    t0 = time.perf_counter()
    run = study.create_or_resume(opts, root=root)
    real = samplers.make_sampler
    if factory is not None:
        samplers.make_sampler = factory
    try:
        study.run_search(run, progress=False)
    finally:
        samplers.make_sampler = real
    wall = time.perf_counter() - t0
    trials_ = sorted(run.study.get_trials(deepcopy=False), key=lambda t: t.number)
    return {"run": run, "trials": trials_, "wall_s": wall}


def front_of(run: Any, trials: list[Any]) -> list[Any]:
    from neuronas.search.study import front_trials

    return front_trials(run.study, list(run.config.objectives), trials)


def hypervolume_of(run: Any, trials: list[Any]) -> float:
    from neuronas.search.pareto import hypervolume

    objectives = list(run.config.objectives)
    budgets = run.chip.budgets.items()
    ref = [0.0 if o == "accuracy" else budgets[o].limit for o in objectives]
    return hypervolume([t.values for t in front_of(run, trials)], ref, objectives)


def summarise_a(res: dict[str, Any]) -> dict[str, Any]:
    from neuronas.search.study import count_trials

    every = res["trials"]
    counts = count_trials(res["run"].study, every)
    # the budget's trials; free re-proposals (copies of an earlier trial) are listed apart
    trials = [t for t in every if not t.user_attrs.get("uncounted")]
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
        "trials": counts.finished,
        "free_reproposals": counts.duplicates,
        "hypervolume": hypervolume_of(res["run"], every),
        "trained": len(trained),
        "rejected_untrained": st.count("infeasible") + st.count("incompatible"),
        "trained_over_budget_at_prior": len(trained_infeasible),
        "over_budget_after_training": st.count("infeasible_measured"),
        "failed": st.count("failed"),
        "best_accuracy": max((t.user_attrs.get("accuracy") or 0.0 for t in trials), default=0.0),
        "front_size": len(front_of(res["run"], every)),
        # what the trainings would have cost without the evaluation cache (the original timings)
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
    colors = {"default": "#c0392b", "tpe": "#e67e22", "random": "#7f8c8d", "nsga2": "#2e86c1"}
    names = {
        "default": "default (cost-guided)",
        "tpe": "TPE",
        "random": "random",
        "nsga2": "NSGA-II",
    }
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
            label=f"{names.get(sampler, sampler)} (mean of {len(runs)} seeds)",
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


def check_determinism(fidelity: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Train one feasible candidate twice with the same settings; are the results identical?"""
    import numpy as np

    from neuronas.hardware import estimate, load_chip
    from neuronas.search.draw import RandomTrial
    from neuronas.search.objective import evaluate
    from neuronas.search.space import load_space
    from neuronas.settings import SCREENING

    space, chip = load_space("digits-small"), load_chip("rram-adcless-65nm")
    rng = np.random.default_rng(seed)
    while True:
        arch = space.sample(RandomTrial(rng), chip, input_shape=(2, 32, 32), num_outputs=10)
        if estimate(arch, chip).feasible and arch.layers[0].kind == "pool":
            break
    settings = {"dataset": "digits-events", "seed": seed, "lr": SCREENING.lr, **fidelity}
    a, b = (evaluate(arch.to_dict(), "rram-adcless-65nm", settings) for _ in range(2))
    keys = ("accuracy_mean", "status")
    same = all(a[k] == b[k] for k in keys) and a["measured"]["metrics"] == b["measured"]["metrics"]
    return {
        "arch": arch.key,
        "accuracy": [a["accuracy_mean"], b["accuracy_mean"]],
        "identical": same,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run (few trials, one seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--trials", type=int, default=20, help="trials per run, part A")
    p.add_argument(
        "--arms",
        nargs="+",
        default=["random", "default"],
        choices=sorted(VARIANTS),
        help="part A arms (the first is the baseline of the ratios)",
    )
    p.add_argument("--tight-trials", type=int, default=50, help="trials per run, part B")
    p.add_argument("--window", type=int, default=10)
    p.add_argument("--parts", default="AB")
    p.add_argument("--out", type=Path, default=HERE / "bench_search.json")
    p.add_argument("--cache", type=Path, default=None, help="evaluation cache (JSON lines)")
    p.add_argument("--check-determinism", action="store_true")
    p.add_argument("--epochs", type=int, default=None, help="override part A's epochs")
    p.add_argument(
        "--max-train-samples", type=int, default=None, help="cap part A's training samples"
    )
    p.add_argument(
        "--eval-instances",
        type=int,
        default=None,
        help="chip instances each candidate is tested on, part A (the CLI's default is 3)",
    )
    a = p.parse_args()
    if a.eval_instances is not None:
        FIDELITY["eval_instances"] = a.eval_instances
    if a.epochs is not None:
        FIDELITY["epochs"] = a.epochs
    if a.max_train_samples is not None:
        FIDELITY["max_train_samples"] = a.max_train_samples
    if a.quick:
        a.seeds, a.trials, a.tight_trials, a.window = [0], 6, 12, 4
        FIDELITY.update(CHEAP)
    from neuronas.search.study import quiet_optuna, tpe_settings
    from neuronas.settings import SCREENING

    quiet_optuna()
    root = Path(tempfile.mkdtemp(prefix="bench_search_"))
    cache = EvalCache(a.cache)
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "fidelity_A": {**FIDELITY, "lr": SCREENING.lr},
        "fidelity_B": CHEAP,
        "seeds": a.seeds,
        "trials_A": a.trials,
        "arms": a.arms,
        "root": str(root),
    }
    if a.check_determinism:
        report["determinism"] = check_determinism(FIDELITY)
        print("determinism:", json.dumps(report["determinism"]), flush=True)
    if "A" in a.parts:
        rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in a.arms}
        with cache.installed():
            for seed in a.seeds:
                for arm in a.arms:
                    res = run_one(
                        root,
                        f"A-{arm}-{seed}",
                        arm=arm,
                        seed=seed,
                        trials=a.trials,
                        chip="rram-adcless-65nm",
                        fidelity=FIDELITY,
                    )
                    s = summarise_a(res)
                    s["seed"] = seed
                    rows[arm].append(s)
                    print(
                        f"A {arm:8s} seed {seed}: HV {s['hypervolume']:.4g}  front {s['front_size']}  "
                        f"trained {s['trained']}  rejected {s['rejected_untrained']}  "
                        f"free re-proposals {s['free_reproposals']}  trained-over-budget "
                        f"{s['trained_over_budget_at_prior']}  best acc {s['best_accuracy']:.3f}  "
                        f"train {s['train_s']:.0f}s  wall {s['wall_s']:.0f}s  "
                        f"(cache {cache.hits} hits / {cache.misses} trainings)",
                        flush=True,
                    )
        report["A"] = rows
        report["A_default_sampler"] = {
            k: v
            for k, v in tpe_settings(res["run"].config).items()  # the reported default's settings
        }
        hv = {k: [r["hypervolume"] for r in v] for k, v in rows.items()}
        base = a.arms[0]
        summary: dict[str, Any] = {
            "hv_mean": {k: statistics.mean(v) for k, v in hv.items()},
            "share_trained_over_budget": {
                k: sum(r["trained_over_budget_at_prior"] for r in v)
                / max(1, sum(r["trials"] for r in v))
                for k, v in rows.items()
            },
        }
        for arm in a.arms[1:]:
            ratio = [
                t / r if r > 0 else float("inf") for t, r in zip(hv[arm], hv[base], strict=True)
            ]
            summary[f"{arm}_over_{base}"] = {
                "per_seed": ratio,
                "mean_ratio": statistics.mean(ratio),
                "ratio_of_means": statistics.mean(hv[arm]) / statistics.mean(hv[base]),
                "wins": sum(x > 1 for x in ratio),
            }
        report["A_summary"] = summary
        report["cache"] = {"hits": cache.hits, "trainings": cache.misses}
        print("A summary:", json.dumps(summary), flush=True)
    if "B" in a.parts:
        shares: dict[str, list[list[float]]] = {"default": [], "tpe": [], "random": [], "nsga2": []}
        chip = "rram-adcless-65nm-tight"
        for seed in a.seeds:
            for arm in shares:
                res = run_one(
                    root,
                    f"B-{arm}-{seed}",
                    arm=arm,
                    seed=seed,
                    trials=a.tight_trials,
                    chip=chip,
                    fidelity=CHEAP,
                )
                w = window_shares(res["trials"], a.window)
                shares[arm].append(w)
                print(
                    f"B {arm:8s} seed {seed}: infeasible share per window of {a.window}: "
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
