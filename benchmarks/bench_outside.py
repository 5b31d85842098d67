"""Per-trial time of a search spent outside ``objective.evaluate`` (the proposal, the storage,
the progress line, the lifecycle), measured in the search process itself.

Runs ``neuronas search`` in this process (the CLI's own ``main``) with the given arguments and
times every call of ``lifecycle.evaluate_here``; the time of a trial outside ``evaluate()`` is
the loop's wall time from the end of one evaluation to the end of the next minus the evaluation,
i.e. recording the previous result, the progress line, asking, proposing, sampling and settling
(untrained trials recorded on the way included).  Optionally also times a few named functions
(``--detail``: the proposal's parts).  Prints one JSON line.

    PYTHONPATH=ROOT python benchmarks/bench_outside.py --workdir DIR -- search --name x --seed 0 \
        --trials 30 --max-train-samples 128 --max-eval-samples 128 --epochs 1 --quiet
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import statistics
import sys
import time
from typing import Any

DETAIL = {
    "neuronas.search.guided": [
        "CostGuidedSampler.propose",
        "CostGuidedSampler.candidates",
        "AccuracyModel.fit",
        "AccuracyModel.predict",
        "expected_hvi",
    ],
    "neuronas.search.pool": ["arch_features", "candidate_pool"],
    "neuronas.search.trials": ["ask_next", "record_result", "reuse_duplicate", "take_trial"],
    "neuronas.search.objective": ["price"],
    "optuna.study.study": ["Study.tell", "Study.get_trials"],
    "neuronas.search.progress": ["progress_line"],
    "neuronas.search.lifecycle": ["begin", "finish", "_settle"],
}


def _wrap(owner: Any, name: str, sink: dict[str, float]) -> None:
    fn = getattr(owner, name)
    label = f"{getattr(owner, '__name__', '')}.{name}"

    @functools.wraps(fn)
    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            sink[label] = sink.get(label, 0.0) + time.perf_counter() - t0

    setattr(owner, name, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--detail", action="store_true")
    ap.add_argument("cli", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    os.makedirs(args.workdir, exist_ok=True)
    os.chdir(args.workdir)

    import importlib

    from neuronas import cli as neuronas_cli
    from neuronas.search import lifecycle

    detail: dict[str, float] = {}
    if args.detail:
        for mod_name, names in DETAIL.items():
            mod = importlib.import_module(mod_name)
            for n in names:
                owner: Any = mod
                *path, attr = n.split(".")
                for p in path:
                    owner = getattr(owner, p)
                if hasattr(owner, attr):
                    _wrap(owner, attr, detail)
    spans: list[tuple[float, float]] = []
    inner = lifecycle.evaluate_here

    def evaluate_here(run: Any, pending: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(run, pending)
        finally:
            spans.append((t0, time.perf_counter()))

    lifecycle.evaluate_here = evaluate_here
    t_start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = neuronas_cli.main(cli)
    t_end = time.perf_counter()
    outside = [b0 - a1 for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False)]
    whole = [b1 - a1 for (_, a1), (_, b1) in zip(spans, spans[1:], strict=False)]
    evals = [b - a for a, b in spans]
    print(
        json.dumps(
            {
                "label": args.label,
                "rc": rc,
                "trained": len(spans),
                "median_outside_s": statistics.median(outside) if outside else None,
                "mean_outside_s": statistics.mean(outside) if outside else None,
                "median_evaluate_s": statistics.median(evals) if evals else None,
                "median_trial_s": statistics.median(whole) if whole else None,
                "loop_s": spans[-1][1] - spans[0][0] if spans else None,
                "process_s": t_end - t_start,
                "detail_s": {k: round(v, 4) for k, v in sorted(detail.items())},
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
