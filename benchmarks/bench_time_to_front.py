"""Time per trained trial and time to a front: the default search, before and after, same seeds.

Each arm is ``neuronas search --name ... --seed S --trials N --quiet`` (the default space, chip,
sampler and screening training; nothing else set) run as its own process with its own
``PYTHONPATH``: the code under test.  ``--before PATH`` is a checkout of the code before
(e.g. a ``git worktree add --detach`` of the older commit), ``--after PATH`` this one.  For each
seed the two arms run **at the same time**, one process each (one torch thread each on the
2-core machine), so both see the same load; or, with ``--sequential``, one after the other (the
order alternating by seed), each with ``--threads`` torch threads and the machine to itself
(``--threads 2 --sequential`` on the 2-core machine is the default search as ``make run`` runs
it: torch's default is one thread per core).  Extra arguments for one arm only:
``--after-args "--halving-epochs 0"``.

From each run's study (read after it finished) the benchmark reports:

* the median wall time of a trained trial (Optuna's ``datetime_complete - datetime_start``), over
  all trained trials and over the full-fidelity ones (successive halving's stopped trials are
  trained for fewer epochs);
* the hypervolume of the feasible front (``neuronas.search.pareto.front_trials``: status ``ok``
  only, so full-fidelity trials only) after every trial, against the wall time since the
  search process was started (imports, pre-screen and proposals included);
* **time to front**: the wall time at which the after arm's hypervolume first reaches the
  before arm's hypervolume after its ``--target-trials`` trials (30: today's default search),
  and the same for the before arm (where it first reached its own final value).

Hypervolume reference point: accuracy 0 and each cost objective at the chip's budget for it (as
``benchmarks/bench_search.py``); each arm's front is of the values its own study was told (the
quantity that code optimises: test-split accuracy before issue 13's validation split, validation
accuracy after it; the arm's ``selection_split`` says which).  Per arm it also reports the median
trained trial of the convolutional and of the fully connected candidates apart, and the median
time of a trained trial outside ``evaluate()`` (the proposal and the storage: Optuna's duration
minus the trial's ``seconds.wall``).  When both arms trained the same architecture at every
trial number (a change that leaves the numbers alone: the same search), it also compares them
trial by trial: the geometric means of the before / after ratios of the trial's time and of
its ``evaluate()``, and the median time saved outside ``evaluate()``. Over all seeds it also compares
the architectures both arms trained (**like for like**: per architecture the median trial time
before / after, then the median of those ratios, overall and for the conv and the fully
connected ones): when the sampler changed between the arms, their searches propose different
candidates, and each seed's median trained trial compares different architectures.

Usage (the figures in RESULTS.md, "Time to a front"; ``--before-commit`` exports that commit's
tree with ``git archive`` into the work folder and uses it as ``--before``)::

    OMP_NUM_THREADS=1 python benchmarks/bench_time_to_front.py --before-commit 59858b5 --after . \\
        --seeds 0 1 --before-trials 30 --after-trials 40 --json benchmarks/results/time_to_front.json

``--reanalyse JSON``: recompute the figures of an earlier run from its work folder's studies and
that run's JSON (each arm's start time is recovered from its first trial), running nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def launch(
    code: Path, workdir: Path, name: str, seed: int, trials: int, extra: list[str], threads: int
) -> Any:
    env = dict(os.environ, PYTHONPATH=str(code.resolve()), OMP_NUM_THREADS=str(threads))
    cmd = [
        sys.executable,
        "-m",
        "neuronas",
        "search",
        "--name",
        name,
        "--seed",
        str(seed),
        "--trials",
        str(trials),
        "--quiet",
        *extra,
    ]
    log = open(workdir / f"{name}.log", "w")  # noqa: SIM115 - closed by the caller
    started = dt.datetime.now()
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log, started, cmd


def _family(arch: dict[str, Any]) -> str:
    kinds = {str(layer.get("kind")) for layer in arch.get("layers", [])}
    return "conv" if kinds & {"conv", "deconv"} else "fc"


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def analyse(
    run_dir: Path, started: dt.datetime, wall_s: float, target_trials: int
) -> dict[str, Any]:
    import optuna

    from neuronas.search.pareto import hypervolume
    from neuronas.search.run import open_run
    from neuronas.search.study import front_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = open_run(run_dir)
    objectives = list(run.config.objectives)
    budgets = run.chip.budgets.items()
    ref = [0.0 if o == "accuracy" else budgets[o].limit for o in objectives]
    done = [t for t in run.study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    done.sort(key=lambda t: t.datetime_complete)
    curve, secs, secs_full, outside, per_trial = [], [], [], [], []
    by_family: dict[str, list[float]] = {"conv": [], "fc": []}
    splits = set()
    for i, t in enumerate(done):
        front = front_trials(run.study, objectives, done[: i + 1])
        hv = hypervolume([f.values for f in front], ref, objectives)
        curve.append(
            {
                "trial": i + 1,
                "wall_s": (t.datetime_complete - started).total_seconds(),
                "hypervolume": hv,
                "status": t.user_attrs.get("status"),
            }
        )
        if t.user_attrs.get("trained") and "cached_from" not in t.user_attrs:
            s = (t.datetime_complete - t.datetime_start).total_seconds()
            secs.append(s)
            by_family[_family(t.user_attrs.get("arch") or {})].append(s)
            wall = (t.user_attrs.get("seconds") or {}).get("wall")
            if wall is not None:
                outside.append(s - float(wall))
                per_trial.append(
                    {
                        "number": t.number,
                        "arch_key": t.user_attrs.get("arch_key"),
                        "family": _family(t.user_attrs.get("arch") or {}),
                        "trial_s": s,
                        "evaluate_s": float(wall),
                    }
                )
            # before the validation split existed, the study was told the test accuracy
            splits.add(str(t.user_attrs.get("accuracy_split", "test")))
            if (t.user_attrs.get("fidelity") or {}).get("full", True):
                secs_full.append(s)
    at_target = curve[min(target_trials, len(curve)) - 1]["hypervolume"] if curve else 0.0
    return {
        "trials": len(done),
        "trained": len(secs),
        "full_fidelity": len(secs_full),
        "median_trained_trial_s": statistics.median(secs) if secs else None,
        "median_full_trial_s": statistics.median(secs_full) if secs_full else None,
        "sum_trained_trial_s": sum(secs),
        "median_trained_trial_s_by_family": {k: _median(v) for k, v in by_family.items()},
        "trained_by_family": {k: len(v) for k, v in by_family.items()},
        "median_outside_evaluate_s": _median(outside),
        "sum_outside_evaluate_s": sum(outside),
        "selection_split": sorted(splits),
        "started": started.isoformat(),
        "wall_s": wall_s,
        "hv_final": curve[-1]["hypervolume"] if curve else 0.0,
        f"hv_after_{target_trials}": at_target,
        "curve": curve,
        "per_trial": per_trial,
    }


def paired(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """Trial-by-trial ratios (before / after) when both arms trained the same architecture at
    every trial number they share (code that changes no number: the same search), the first
    trial of each process (its warm-up) left out; else None."""
    b = {r["number"]: r for r in before.get("per_trial", []) if r["number"] > 0}
    a = {r["number"]: r for r in after.get("per_trial", []) if r["number"] > 0}
    common = sorted(set(a) & set(b))
    if not common or any(a[n]["arch_key"] != b[n]["arch_key"] for n in common):
        return None

    def geomean(xs: list[float]) -> float:
        return math.exp(statistics.mean(math.log(x) for x in xs))

    return {
        "trials": len(common),
        "trial_ratio_geomean": geomean([b[n]["trial_s"] / a[n]["trial_s"] for n in common]),
        "evaluate_ratio_geomean": geomean(
            [b[n]["evaluate_s"] / a[n]["evaluate_s"] for n in common]
        ),
        "outside_saved_median_s": statistics.median(
            (b[n]["trial_s"] - b[n]["evaluate_s"]) - (a[n]["trial_s"] - a[n]["evaluate_s"])
            for n in common
        ),
    }


def like_for_like(seeds: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Over all seeds, the architectures both arms trained (by ``arch_key``; the two searches
    propose different candidates when the sampler changed between them): per architecture the
    ratio of its median trial time before / after, then the median of those ratios, over all of
    them and per family; None when no architecture is shared."""
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    family: dict[str, str] = {}
    for res in seeds.values():
        for arm in ("before", "after"):
            for r in res[arm].get("per_trial", []):
                times[arm].setdefault(r["arch_key"], []).append(r["trial_s"])
                if "family" in r:
                    family[r["arch_key"]] = r["family"]
    common = sorted(set(times["before"]) & set(times["after"]))
    if not common:
        return None
    ratio = {
        k: statistics.median(times["before"][k]) / statistics.median(times["after"][k])
        for k in common
    }
    out: dict[str, Any] = {
        "architectures": len(common),
        "median_ratio": statistics.median(ratio.values()),
    }
    for f in ("conv", "fc"):
        rs = [r for k, r in ratio.items() if family.get(k) == f]
        out[f"{f}_architectures"] = len(rs)
        out[f"{f}_median_ratio"] = statistics.median(rs) if rs else None
    return out


def first_time(curve: list[dict[str, Any]], level: float) -> float | None:
    for p in curve:
        if p["hypervolume"] >= level - 1e-12:
            return float(p["wall_s"])
    return None


def compare(res: dict[str, Any], target_trials: int) -> str:
    """Fill ``res`` (one seed: its ``before`` and ``after`` analyses) with the ratios; a line."""
    target = res["before"][f"hv_after_{target_trials}"]
    res["target_hv"] = target
    tb = first_time(res["before"]["curve"], target)
    ta = first_time(res["after"]["curve"], target)
    res["time_to_front_s"] = {"before": tb, "after": ta}
    res["time_to_front_ratio"] = (tb / ta) if (tb and ta) else None
    mb, ma = res["before"]["median_trained_trial_s"], res["after"]["median_trained_trial_s"]
    res["median_trained_trial_ratio"] = mb / ma if mb and ma else None
    fam = {
        f: (
            res["before"]["median_trained_trial_s_by_family"][f],
            res["after"]["median_trained_trial_s_by_family"][f],
        )
        for f in ("conv", "fc")
    }
    fams = "; ".join(
        f"{f} {b:.2f} -> {a:.2f} s ({res['before']['trained_by_family'][f]} / {res['after']['trained_by_family'][f]} trials)"
        for f, (b, a) in fam.items()
        if b is not None and a is not None
    )
    ob, oa = res["before"]["median_outside_evaluate_s"], res["after"]["median_outside_evaluate_s"]
    pair = res["paired"] = paired(res["before"], res["after"])
    same = (
        f"; the same trials, paired ({pair['trials']}): trial {pair['trial_ratio_geomean']:.3f}x, "
        f"evaluate() {pair['evaluate_ratio_geomean']:.3f}x, outside it "
        f"{pair['outside_saved_median_s'] * 1e3:.0f} ms less (medians, geometric means)"
        if pair
        else ""
    )
    return (
        f"median trained trial {mb:.2f} s -> {ma:.2f} s ({res['median_trained_trial_ratio']:.2f}x; "
        f"{fams}; outside evaluate() {ob:.2f} -> {oa:.2f} s); target HV {target:.3f} "
        f"(selection split {res['before']['selection_split']} -> {res['after']['selection_split']}); "
        f"time to it {tb} s -> {ta} s; final HV before {res['before']['hv_final']:.3f} "
        f"({res['before']['trials']} trials, {res['before']['wall_s']:.0f} s), after "
        f"{res['after']['hv_final']:.3f} ({res['after']['trials']} trials, "
        f"{res['after']['full_fidelity']} full, {res['after']['wall_s']:.0f} s){same}"
    )


def reanalyse(path: Path, work: Path, target_trials: int) -> dict[str, Any]:
    """An earlier run's JSON recomputed from the studies in ``work`` (nothing is run)."""
    old = json.loads(path.read_text())
    for seed, res in old["seeds"].items():
        for arm in ("before", "after"):
            import optuna

            from neuronas.search.run import open_run

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            first = min(
                (
                    t.datetime_complete
                    for t in open_run(work / "runs" / f"{arm}-s{seed}").study.get_trials(
                        deepcopy=False
                    )
                    if t.datetime_complete
                ),
            )
            started = first - dt.timedelta(seconds=res[arm]["curve"][0]["wall_s"])
            command = res[arm].get("command")
            res[arm] = analyse(
                work / "runs" / f"{arm}-s{seed}", started, res[arm]["wall_s"], target_trials
            )
            res[arm]["command"] = command
        print(f"seed {seed}: {compare(res, target_trials)}", flush=True)
    old["reanalysed_utc"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return old


def export_commit(commit: str, work: Path) -> Path:
    """``commit``'s tree (``git archive``) in ``work/before-COMMIT``: the code before."""
    dest = work / f"before-{commit}"
    if not dest.is_dir():
        dest.mkdir(parents=True)
        here = Path(__file__).resolve().parent
        root = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            check=True,
            capture_output=True,
            text=True,
            cwd=here,
        ).stdout.strip()
        # from the repository's root: run in a subfolder, git archive exports only that folder
        archive = subprocess.run(
            ["git", "archive", commit], check=True, capture_output=True, cwd=root
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def finish(work: Path, seed: int, arm: str, launched: Any, target_trials: int) -> dict[str, Any]:
    """Wait for an arm's search (``launch``'s result and its start time) and analyse its run."""
    proc, log, started, cmd, t0 = launched
    rc = proc.wait()
    log.close()
    if rc != 0:
        raise SystemExit(f"{arm} seed {seed}: exit {rc}; see {work / f'{arm}-s{seed}.log'}")
    out = analyse(work / "runs" / f"{arm}-s{seed}", started, time.time() - t0, target_trials)
    out["command"] = " ".join(cmd)
    out["load_end"] = os.getloadavg()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, default=None, help="checkout of the code before")
    p.add_argument(
        "--before-commit", default=None, help="or: a commit of this repository, exported"
    )
    p.add_argument("--after", type=Path, default=Path("."), help="checkout of the code after")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--before-trials", type=int, default=30)
    p.add_argument("--after-trials", type=int, default=60)
    p.add_argument("--target-trials", type=int, default=30)
    p.add_argument("--before-args", default="")
    p.add_argument("--after-args", default="")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--reanalyse", type=Path, default=None, help="an earlier run's JSON")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads per arm (OMP_NUM_THREADS; default 1)"
    )
    p.add_argument(
        "--sequential",
        action="store_true",
        help="run the two arms one after the other (the order alternating by seed) instead of "
        "at the same time: each arm then has the machine to itself (with --threads 2 on the "
        "2-core machine: the default search as `make run` runs it)",
    )
    args = p.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ttf_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.reanalyse is not None:
        out = reanalyse(args.reanalyse, work, args.target_trials)
    else:
        if (args.before is None) == (args.before_commit is None):
            p.error("give one of --before PATH and --before-commit COMMIT")
        before = args.before or export_commit(args.before_commit, work)
        out = {
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "load_before": os.getloadavg(),
            "argv": sys.argv,
            "threads": args.threads,
            "sequential": args.sequential,
            "seeds": {},
        }
        for k, seed in enumerate(args.seeds):
            arms = {
                "before": (before, args.before_trials, shlex.split(args.before_args)),
                "after": (args.after, args.after_trials, shlex.split(args.after_args)),
            }
            order = list(arms)
            if args.sequential and k % 2:
                order.reverse()
            res: dict[str, Any] = {"load_start": os.getloadavg(), "order": order}
            procs = {}
            for arm in order:
                code, trials, extra = arms[arm]
                procs[arm] = (
                    *launch(code, work, f"{arm}-s{seed}", seed, trials, extra, args.threads),
                    time.time(),
                )
                if args.sequential:
                    res[arm] = finish(work, seed, arm, procs[arm], args.target_trials)
            if not args.sequential:
                for arm, launched in procs.items():
                    res[arm] = finish(work, seed, arm, launched, args.target_trials)
            res["load_end"] = os.getloadavg()
            line = compare(res, args.target_trials)
            out["seeds"][str(seed)] = res
            print(
                f"seed {seed}: {line}; load {res['load_start'][0]:.1f} -> {res['load_end'][0]:.1f}",
                flush=True,
            )
    same = like_for_like(out["seeds"])
    out["like_for_like"] = same
    if same is not None:
        fams = ", ".join(
            f"{f} {same[f + '_median_ratio']:.2f}x ({same[f + '_architectures']})"
            for f in ("conv", "fc")
            if same[f + "_median_ratio"] is not None
        )
        print(
            f"like for like: {same['architectures']} architectures trained by both arms, median "
            f"before / after {same['median_ratio']:.2f}x ({fams})",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
