"""What drawing the next proposal's pool ahead costs the trial it overlaps, and what it saves.

The cost-guided sampler's helper process (:class:`neuronas.search.pool.PoolAhead`) draws and
prices trial ``n + 1``'s ~300 candidates at ``nice 19`` while trial ``n`` trains.  It saves the
proposal that time; it may cost the training some, on a core the training's draws' thread also
uses.  In one process, on a finished run's trained candidates (its settings: epochs, chip
instances, dataset), interleaved with the order alternating:

* a trial's ``evaluate()`` alone, and the same with the helper asked for a pool at its start
  (the pool is taken after it: the helper had the whole trial to draw it);
* the pool drawn in this process (what a proposal spends without the helper) and taken from
  the helper (with it).

    python benchmarks/bench_pool_ahead.py runs/default [--trials 3 12 20] [--repeats 6]
        [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a finished run's folder (runs/NAME)")
    ap.add_argument(
        "--trials",
        type=int,
        nargs="+",
        default=None,
        help="trial numbers whose candidates are trained (default: the trained trials at the "
        "25, 50 and 75 %% quantiles of the run's trial time)",
    )
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (make run: 2)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import optuna
    import torch

    from neuronas.search.guided import CostGuidedSampler
    from neuronas.search.objective import evaluate
    from neuronas.search.pool import PoolAhead, candidate_pool
    from neuronas.search.run import open_run
    from neuronas.search.samplers import make_sampler
    from neuronas.spec import ArchSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    run = open_run(Path(args.run_dir))
    cfg = run.config
    trained = [
        t
        for t in run.study.get_trials(deepcopy=False)
        if t.user_attrs.get("trained") and "cached_from" not in t.user_attrs
    ]
    trained.sort(key=lambda t: (t.datetime_complete - t.datetime_start).total_seconds())
    if args.trials is None:
        picks = [trained[int(q * (len(trained) - 1))] for q in (0.25, 0.5, 0.75)]
    else:
        by_number = {t.number: t for t in trained}
        picks = [by_number[n] for n in args.trials]
    sampler = make_sampler(run, workers=1, worker_index=0, n_existing=0)
    if not isinstance(sampler, CostGuidedSampler):
        raise SystemExit(f"{args.run_dir}: the run's sampler is not the cost-guided one")
    sampler.close()  # this script starts its own helper
    pool_settings = sampler.pool_settings()
    helper = PoolAhead(pool_settings)
    number = 1000  # trial numbers of pools nobody proposes from: any will do

    def one(arch: dict[str, Any], ahead: bool) -> tuple[float, float | None]:
        nonlocal number
        number += 1
        if ahead:
            helper.ask(number)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            evaluate(arch, cfg.chip_ref(), cfg.trial_settings().replace(out_dir=tmp))
            spent = time.perf_counter() - t0
        if not ahead:
            return spent, None
        # the pool the proposal would take: the helper had the whole trial to draw it
        assert helper.ready(60), "the helper did not answer within a minute"
        t1 = time.perf_counter()
        got = helper.take(number)
        taken = time.perf_counter() - t1
        assert got is not None, "the helper's pool was not the one asked for"
        return spent, taken

    rows: list[dict[str, Any]] = []
    for t in picks:
        arch = t.user_attrs["arch"]
        one(arch, False)  # warm: frames, kernels, the first use of every buffer
        plain: list[float] = []
        with_helper: list[float] = []
        takes: list[float] = []
        for r in range(args.repeats):
            for ahead in (False, True) if r % 2 == 0 else (True, False):
                spent, taken = one(arch, ahead)
                (with_helper if ahead else plain).append(spent)
                if taken is not None:
                    takes.append(taken)
        inline = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            candidate_pool(**pool_settings, number=2000 + r)
            inline.append(time.perf_counter() - t0)
        ratios = [a / b for a, b in zip(with_helper, plain, strict=True)]
        row = {
            "trial": t.number,
            "arch": t.user_attrs.get("arch_key"),
            "describe": ArchSpec.from_dict(arch).describe(),
            "evaluate_s": statistics.median(plain),
            "evaluate_with_helper_s": statistics.median(with_helper),
            "helper_cost_ratio_geomean": math.exp(statistics.mean(math.log(x) for x in ratios)),
            "pool_inline_ms": statistics.median(inline) * 1e3,
            "pool_taken_ms": statistics.median(takes) * 1e3,
        }
        row["net_saving_ms"] = (
            row["pool_inline_ms"]
            - row["pool_taken_ms"]
            - (row["evaluate_with_helper_s"] - row["evaluate_s"]) * 1e3
        )
        rows.append(row)
        print(
            f"trial {t.number:>3} {row['describe']}: evaluate "
            f"{row['evaluate_s']:.3f} s alone, {row['evaluate_with_helper_s']:.3f} s with the "
            f"helper drawing (x{row['helper_cost_ratio_geomean']:.3f}, geometric mean of "
            f"{args.repeats} pairs); pool in this process {row['pool_inline_ms']:.1f} ms, "
            f"taken {row['pool_taken_ms']:.2f} ms; net {row['net_saving_ms']:+.0f} ms a trial; "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    helper.close()
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                    "argv": vars(args),
                    "torch_threads": args.threads,
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
