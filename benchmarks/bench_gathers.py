"""A training batch gathered from a split's frames: advanced indexing against ``index_select``.

The trainer gathers every batch's rows from the split's ``[N, T, ...]`` frames (or their
input-prefix outputs) and hands the network ``[T, B, ...]``, contiguous where the input prefix
ran: ``x[idx].transpose(0, 1).contiguous()`` before, ``x.index_select(0, idx)...`` now (the same
rows, values and layout).  Evaluation batches are runs of samples: a slice (a view) instead of
gathering ``x[arange]``.  Times each form on one torch thread, interleaved, median of
``--repeats`` calls, at the sizes of the default space's candidates (``F`` features per time
step: 512 after a 2 x 2 pool of the 2 x 32 x 32 digits frames, 2048 without one).

    python benchmarks/bench_gathers.py --json benchmarks/results/bench_gathers.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

#: each form of a batch: f(frames [N, T, F], training rows, evaluation batch size) -> [T, B, F]
FORMS: dict[str, Any] = {
    "train, indexing": lambda x, i, e: x[i].transpose(0, 1).contiguous(),
    "train, index_select": lambda x, i, e: x.index_select(0, i).transpose(0, 1).contiguous(),
    "eval, indexing": lambda x, i, e: x[torch.arange(e)].transpose(0, 1).contiguous(),
    "eval, slice": lambda x, i, e: x[0:e].transpose(0, 1).contiguous(),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--samples", type=int, default=1293, help="rows of the split (N)")
    ap.add_argument("--timesteps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--eval-batch", type=int, default=144)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = []
    for feats in (512, 2048):
        x = torch.rand(args.samples, args.timesteps, feats, generator=gen)
        b, e = args.batch, args.eval_batch
        idx = torch.randperm(args.samples, generator=gen)[:b]
        assert torch.equal(
            FORMS["train, indexing"](x, idx, e), FORMS["train, index_select"](x, idx, e)
        )
        assert torch.equal(FORMS["eval, indexing"](x, idx, e), FORMS["eval, slice"](x, idx, e))
        times: dict[str, list[float]] = {k: [] for k in FORMS}
        for r in range(args.repeats):
            idx = torch.randperm(args.samples, generator=gen)[:b]
            for name in list(FORMS) if r % 2 else list(FORMS)[::-1]:
                t0 = time.perf_counter()
                FORMS[name](x, idx, e)
                times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
        rows.append({"features": feats, "median_us": med})
        print(
            f"F {feats}: train batch of {b}: indexing {med['train, indexing']:.0f} us, "
            f"index_select {med['train, index_select']:.0f} us "
            f"({med['train, indexing'] / med['train, index_select']:.2f}x); "
            f"eval batch of {e}: indexing {med['eval, indexing']:.0f} us, "
            f"slice {med['eval, slice']:.0f} us "
            f"({med['eval, indexing'] / med['eval, slice']:.2f}x)"
        )
    if args.json:
        report = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "argv": vars(args),
            "load": os.getloadavg()[0],
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
