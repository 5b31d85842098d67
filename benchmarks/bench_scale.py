"""Trials per minute of a Ray search with 1 and with 2 concurrent trials, measured in one run.

Both arms do the same work: a fixed set of distinct candidates that fit the chip's hard
budgets (drawn once, seeded, from the default space on the default chip) is enqueued into a
fresh run per arm, and the arm runs the real thing -- ``run_ray_search`` on one local Ray
runtime, each trial a Ray task with 1 CPU and 1 torch thread, results into the run's SQLite
storage.  Arms alternate (1, 2, 1, 2, ...) so that load from other processes on a shared
machine falls on both alike; the ratio is taken over the summed times.  Before each round a
yardstick measures how much a second process gains on this machine at that moment (pure
Python, no Ray): on a shared machine whose cores are already busy that is the ceiling.

    .venv/bin/python benchmarks/bench_scale.py                 # 8 candidates, 2 rounds
    .venv/bin/python benchmarks/bench_scale.py --candidates 6 --rounds 1 --address HOST:PORT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def feasible_candidates(
    space_name: str, chip_name: str, n: int, seed: int
) -> list[tuple[dict, dict]]:
    """``n`` distinct candidates within every hard budget: (Optuna parameters, ArchSpec dict)."""
    import optuna

    from neuronas.data import dataset_info
    from neuronas.hardware import load_chip
    from neuronas.search.objective import price
    from neuronas.search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, chip = load_space(space_name), load_chip(chip_name)
    info = dataset_info(space.dataset)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out, keys = [], set()
    for _ in range(50 * n):
        trial = study.ask()
        arch = space.sample(trial, chip, input_shape=info.input_shape, num_outputs=info.num_classes)
        priced = price(arch.to_dict(), chip)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        if priced["compatible"] and priced["feasible"] and arch.key not in keys:
            keys.add(arch.key)
            out.append((dict(trial.params), arch.to_dict()))
            if len(out) == n:
                return out
    raise SystemExit(f"only {len(out)} feasible candidates in {50 * n} draws")


def _spin(seconds: float) -> int:
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10_000):
            n += 1
    return n


def machine_parallelism(seconds: float = 3.0) -> float:
    """Yardstick: pure-Python work done by 2 processes at once over 1 process, right now.

    About 2 on an idle 2-core machine; near 1 when other programs already keep both cores
    busy -- then no search can gain from a second concurrent trial either.
    """
    import multiprocessing as mp

    rates = {}
    for k in (1, 2):
        with mp.get_context("spawn").Pool(k) as pool:  # no fork of a process running Ray
            rates[k] = sum(pool.map(_spin, [seconds] * k)) / seconds
    return rates[2] / rates[1]


def _plain_init(arch_dict: dict, chip: str, dataset: str) -> None:
    import torch

    from neuronas.search.objective import evaluate

    os.environ["NEURONAS_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    evaluate(
        arch_dict,
        chip,
        {"dataset": dataset, "epochs": 1, "max_train_samples": 32, "eval_instances": 1},
    )


def _plain_trial(job: tuple) -> float:
    from neuronas.search.objective import evaluate

    arch_dict, chip, settings = job
    t0 = time.perf_counter()
    result = evaluate(arch_dict, chip, settings)
    assert result["trained"], result["reason"]
    return time.perf_counter() - t0


def run_plain(archs: list[dict], concurrent: int, args: argparse.Namespace, dataset: str) -> dict:
    """Control arm without Ray: the same candidates through ``evaluate`` in plain processes."""
    import multiprocessing as mp

    settings = {
        "dataset": dataset,
        "epochs": args.epochs,
        "max_train_samples": args.max_train_samples,
        "eval_instances": 1,
        "seed": 0,
    }
    ctx = mp.get_context("spawn")
    with ctx.Pool(
        concurrent, initializer=_plain_init, initargs=(archs[0], args.chip, dataset)
    ) as pool:
        pool.map(_spin, [0.1] * concurrent)  # wait until every process has run its initializer
        t0 = time.perf_counter()
        pool.map(_plain_trial, [(a, args.chip, settings) for a in archs], chunksize=1)
        wall = time.perf_counter() - t0
    return {
        "concurrent": concurrent,
        "trials": len(archs),
        "wall_s": wall,
        "trials_per_min": 60 * len(archs) / wall,
    }


def run_arm(
    root: Path, name: str, params: list[dict], concurrent: int, args: argparse.Namespace
) -> dict:
    from neuronas.search.ray_backend import RayOptions, run_ray_search
    from neuronas.search.study import count_trials, create_or_resume

    run = create_or_resume(
        {
            "name": name,
            "space": args.space,
            "chip": args.chip,
            "trials": len(params),
            "sampler": "random",
            "epochs": args.epochs,
            "max_train_samples": args.max_train_samples,
            "eval_instances": 1,
            "seed": 0,
        },
        root=root,
    )
    for p in params:
        run.study.enqueue_trial(p)
    options = RayOptions(
        address=args.address, cpus_per_trial=1, max_concurrent=concurrent, max_retries=0
    )
    t0 = time.perf_counter()
    summary = run_ray_search(run, options, progress=False)
    wall = time.perf_counter() - t0
    c = count_trials(run.study)
    trials = run.study.get_trials(deepcopy=False)
    assert c.finished == len(params) and c.trained == len(params), (
        f"every candidate must train: {c}"
    )
    train_s = [t.user_attrs["train"]["train_seconds"] for t in trials]
    return {
        "concurrent": concurrent,
        "trials": len(params),
        "wall_s": wall,
        "trials_per_min": 60 * len(params) / wall,
        "mean_train_s": sum(train_s) / len(train_s),
        "summary": summary["ray"],
    }


def warm_workers(n: int, arch_dict: dict, chip: str, dataset: str) -> None:
    """Run one tiny real trial on each of ``n`` Ray workers at once, so that imports and the
    dataset cache are warm in both workers before either arm is timed."""
    import ray

    from neuronas.search.ray_backend import evaluate_on_worker

    settings = {"dataset": dataset, "epochs": 1, "max_train_samples": 32, "eval_instances": 1}
    remote = ray.remote(evaluate_on_worker).options(num_cpus=1)
    payloads = ray.get([remote.remote(arch_dict, chip, settings, 1) for _ in range(n)])
    pids = {p["worker"]["pid"] for p in payloads}
    print(f"warm-up: {len(pids)} worker processes ready", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="digits-small")
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    # a trial of ~10 s (full digits-events training split, 3 epochs): long against the
    # per-trial cost of the driver (asking, pricing, SQLite) and of Ray (a task round trip)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument(
        "--address",
        default=None,
        help="an existing Ray cluster (default: a local runtime with 2 CPUs)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument(
        "--control",
        action="store_true",
        help="also run each round's arms without Ray (plain processes calling evaluate): "
        "what this machine gives the same work at that moment",
    )
    args = ap.parse_args()

    import ray

    candidates = feasible_candidates(args.space, args.chip, args.candidates, args.seed)
    params = [p for p, _ in candidates]
    from neuronas.search.space import load_space

    dataset = load_space(args.space).dataset
    load_before = os.getloadavg()
    if args.address is None:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    else:
        ray.init(address=args.address, log_to_driver=False, logging_level="ERROR")
    warm_workers(2, candidates[0][1], args.chip, dataset)
    results: dict[int, list[dict]] = {1: [], 2: []}
    plain: dict[int, list[dict]] = {1: [], 2: []}
    yardsticks = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for r in range(args.rounds):
            yardsticks.append(machine_parallelism())
            print(
                f"round {r} | machine yardstick: 2 processes do {yardsticks[-1]:.2f}x the work of 1",
                flush=True,
            )
            for k in (1, 2):
                res = run_arm(Path(tmp), f"c{k}-r{r}", params, k, args)
                results[k].append(res)
                print(
                    f"round {r} | {k} concurrent: {res['trials']} trials in {res['wall_s']:.1f} s = "
                    f"{res['trials_per_min']:.2f} trials/min (mean training {res['mean_train_s']:.1f} s/trial)",
                    flush=True,
                )
                if args.control:
                    ctl = run_plain([a for _, a in candidates], k, args, dataset)
                    plain[k].append(ctl)
                    print(
                        f"round {r} | {k} plain processes, no Ray: {ctl['trials']} trials in {ctl['wall_s']:.1f} s = "
                        f"{ctl['trials_per_min']:.2f} trials/min",
                        flush=True,
                    )
    load_after = os.getloadavg()
    ray.shutdown()
    per_min = {
        k: 60 * sum(x["trials"] for x in v) / sum(x["wall_s"] for x in v)
        for k, v in results.items()
    }
    ratio = per_min[2] / per_min[1]
    plain_ratio = None
    if args.control:
        plain_min = {
            k: 60 * sum(x["trials"] for x in v) / sum(x["wall_s"] for x in v)
            for k, v in plain.items()
        }
        plain_ratio = plain_min[2] / plain_min[1]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "candidates": args.candidates,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "max_train_samples": args.max_train_samples,
        "trials_per_min": {str(k): round(v, 3) for k, v in per_min.items()},
        "speedup_2_vs_1": round(ratio, 3),
        "machine_parallelism_yardstick": [round(y, 3) for y in yardsticks],
        "plain_processes_speedup_2_vs_1": None if plain_ratio is None else round(plain_ratio, 3),
        "plain_arms": plain,
        "arms": results,
    }
    print(
        f"trials/min: 1 concurrent {per_min[1]:.2f}, 2 concurrent {per_min[2]:.2f} -> {ratio:.2f}x "
        f"(target >= 1.6x) | machine yardstick {min(yardsticks):.2f}-{max(yardsticks):.2f}x | "
        f"load avg before {load_before[0]:.2f}, after {load_after[0]:.2f}"
        + (f" | without Ray: {plain_ratio:.2f}x" if plain_ratio is not None else "")
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
