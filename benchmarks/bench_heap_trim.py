"""What returning the freed heap after a trial costs (neuronas.search.heap.release_freed_memory).

Trains the shipped ``digits-mlp`` and ``digits-cnn`` in turn (the search's screening settings,
a few hundred samples) in one process, as a search does, and after each training times the
call the trial lifecycle makes and reads the resident set before and after it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_heap_trim.py --trainings 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from neuronas.search.heap import release_freed_memory
from neuronas.search.objective import evaluate
from neuronas.settings import SCREENING
from neuronas.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainings", type=int, default=6)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    archs = [
        ArchSpec.from_yaml(ROOT / "experiments" / "archs" / f"{n}.yaml").to_dict()
        for n in ("digits-mlp", "digits-cnn")
    ]
    settings = SCREENING.replace(
        epochs=1, max_train_samples=args.samples, max_eval_samples=args.samples, seed=0
    )
    rows = []
    for i in range(args.trainings):
        arch = archs[i % len(archs)]
        t0 = time.perf_counter()
        out = evaluate(arch, "rram-adcless-65nm", settings)
        train_s = time.perf_counter() - t0
        before = rss_mib()
        c0, t0 = time.process_time(), time.perf_counter()
        release_freed_memory()
        trim_cpu_ms = (time.process_time() - c0) * 1e3
        trim_ms = (time.perf_counter() - t0) * 1e3
        after = rss_mib()
        rows.append(
            {
                "arch": arch["name"],
                "status": out["status"],
                "trial_s": round(train_s, 2),
                "trim_ms": round(trim_ms, 2),
                "trim_cpu_ms": round(trim_cpu_ms, 2),
                "rss_before_mib": round(before, 1),
                "rss_after_mib": round(after, 1),
            }
        )
        print(rows[-1], flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
