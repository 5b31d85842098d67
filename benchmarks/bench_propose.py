"""The cost-guided sampler's proposals, replayed on a finished search's trials.

Opens a finished run's study (``runs/NAME``), builds the sampler as the run did (its space, chip,
objectives, activity prior, start-up trials and seed) and proposes trial ``n`` from the run's
first ``n`` trials for every ``n`` from ``--first`` to the last trial, timing each proposal.
Prints the total and per-proposal time and a hash of every proposal (parameters, predictions,
scores): run it with each tree on ``PYTHONPATH`` to compare two versions of the sampler on the
same history (the same hash: the same proposals).  The proposals are made in this process (a
sampler that draws pools ahead has its helper stopped) unless ``--train-s S`` is given: then
the helper draws each next pool while the script sleeps ``S`` seconds between proposals (a
trial training), and only the proposals are timed.

    PYTHONPATH=. python benchmarks/bench_propose.py runs/default --repeats 3 [--train-s 1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a finished run's folder (runs/NAME)")
    ap.add_argument("--first", type=int, default=None, help="default: the start-up trials")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--train-s",
        type=float,
        default=None,
        help="keep the helper that draws pools ahead and sleep this long between proposals",
    )
    args = ap.parse_args()

    import optuna

    from neuronas.search.guided import CostGuidedSampler
    from neuronas.search.run import open_run
    from neuronas.search.samplers import make_sampler, startup_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = open_run(Path(args.run_dir))
    sampler = make_sampler(run, workers=1, worker_index=0, n_existing=0)
    if not isinstance(sampler, CostGuidedSampler):
        raise SystemExit(f"{args.run_dir}: the run's sampler is not the cost-guided one")
    if args.train_s is None and hasattr(sampler, "close"):  # trees before the helper lack it
        sampler.close()
    trials = run.study.get_trials(deepcopy=False)
    first = startup_trials(run.config) if args.first is None else args.first
    totals: list[float] = []
    digest = ""
    for _ in range(args.repeats + 1):  # the first pass warms imports and caches
        out: list[str] = []
        spent = 0.0
        for n in range(first, len(trials) + 1):
            if args.train_s is not None:
                time.sleep(args.train_s)
            t0 = time.perf_counter()
            out.append(json.dumps(sampler.propose(trials[:n], n), sort_keys=True, default=str))
            spent += time.perf_counter() - t0
        totals.append(spent)
        digest = hashlib.sha1("".join(out).encode()).hexdigest()[:12]
    n_props = len(trials) + 1 - first
    med = statistics.median(totals[1:])
    print(
        f"{n_props} proposals (trial {first} .. {len(trials)}): median {med:.3f} s "
        f"({med / n_props * 1e3:.1f} ms each) over {args.repeats} repeats; proposals {digest}; "
        f"pools drawn ahead {getattr(sampler, 'pools_drawn_ahead', 0)}; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                    "argv": vars(args),
                    "proposals": n_props,
                    "seconds": totals[1:],
                    "digest": digest,
                    "pools_drawn_ahead": getattr(sampler, "pools_drawn_ahead", 0),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
