"""Draws ahead on a spare core: whole trials on two threads with the trainer's choice
(``neuronas.train.training_threads``) against all threads with the draws in place, in ONE process.

Each candidate runs ``neuronas.search.objective.evaluate`` (every backend's trial: the CLI's
screening settings, 3 epochs, lr 3e-2, 3 chip instances, the default noisy chip) in three arms,
interleaved (the order reversed every repeat, after one warm-up round):

* ``in place``: ``NEURONAS_DRAWS_AHEAD=0``, torch on ``--threads`` threads, the draws in place
  (the trainer before this choice);
* ``choice``: the trainer's default (``neuronas.train.spare_core_pays``; when this benchmark was
  first run, a draw share of at least ``DRAWS_AHEAD_MIN_SHARE``): one thread fewer and the draws
  taken ahead on the spare one (which now also takes kernel work, ``bench_spare_core.py``); else
  the same as ``in place``;
* ``one thread``: torch on one thread, draws in place (the choice's numbers, for the check).

Prints per candidate the estimated share, what the choice did, the draws' hit / miss counts,
each arm's median wall seconds and the ratio in place / choice, and checks that the choice's
results equal the arm on the same threads (losses, accuracies per instance; a convolutional
candidate the choice sends ahead now sums its conv backward in the two tasks of two threads on
one torch thread, so neither arm has its numbers and the check reads NO).  SHD candidates
(``NAME@shd``) read a generated SHD file in its real layout (``tests/_tonic_files.py``: 64
samples per class of 4,000 spikes) unless ``--data-root`` holds one.

    python benchmarks/bench_draws_ahead.py --repeats 3 digits-mlp \\
        benchmarks/archs/space-mlp-max2.yaml benchmarks/archs/audio-mlp-t10.yaml@shd \\
        benchmarks/archs/audio-mlp-t40.yaml@shd digits-cnn
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def shd_files(root: Path) -> Path:
    """``root/SHD/shd_{train,test}.h5``: 20 classes, 64 / 8 samples each, 4,000 spikes a sample."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from _tonic_files import shd_sample, write_shd_h5

    rng = np.random.default_rng(0)
    for name, k in (("shd_train.h5", 64), ("shd_test.h5", 8)):
        samples = [shd_sample(rng, c, n=4000) for _ in range(k) for c in range(20)]
        write_shd_h5(root / "SHD" / name, samples)
    return root


def trial_settings(dataset: str, data_root: str | None) -> dict[str, Any]:
    """The trial this benchmark and ``bench_spare_core.py`` time: the CLI's screening settings
    with 3 epochs, lr 3e-2, 3 chip instances, seed 1."""
    return {
        "dataset": dataset,
        "epochs": 3,
        "seed": 1,
        "lr": 3e-2,
        "eval_instances": 3,
        "data_root": data_root,
    }


def timed_trial(
    arch: Any, chip: str, settings: dict[str, Any]
) -> tuple[float, dict[str, Any], str]:
    """One trial (``objective.evaluate``, every backend's) in a temporary folder: its wall
    seconds, its ``train`` record and its numbers as one string (losses and accuracies per
    epoch, accuracies per chip instance), for comparing arms."""
    from neuronas.search.objective import evaluate

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = evaluate(arch.to_dict(), chip, dict(settings, out_dir=tmp))
    wall = time.perf_counter() - t0
    train = out["train"]
    keys = ("train_loss", "train_accuracy", "val_accuracy")
    numbers = [[h[k] for k in keys] for h in train["history"]] + [train["accuracies"]]
    return wall, train, json.dumps(numbers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "archs", nargs="+", help="shipped names or YAML paths; NAME@DATASET for another"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from neuronas.config import resolve_preset
    from neuronas.hardware import load_chip
    from neuronas.settings import SCREENING
    from neuronas.snn import _kernels, build
    from neuronas.spec import ArchSpec
    from neuronas.train import draw_share

    ahead = _kernels._AHEAD  # noqa: SLF001 (its hit / miss counters, for the report)
    tmp_root = tempfile.TemporaryDirectory()
    data_root = args.data_root
    if data_root is None and any(a.endswith("@shd") for a in args.archs):
        data_root = str(shd_files(Path(tmp_root.name)))
    arms = {"in place": (args.threads, "0"), "choice": (args.threads, "1"), "one thread": (1, "0")}
    rows: list[dict[str, Any]] = []
    for spec in args.archs:
        name, dataset = spec.split("@") if "@" in spec else (spec, "digits-events")
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch"))
        share = draw_share(build(arch, load_chip(args.chip)), SCREENING.batch_size)
        settings = trial_settings(dataset, data_root)
        times: dict[str, list[float]] = {a: [] for a in arms}
        results: dict[str, set[str]] = {a: set() for a in arms}
        config: dict[str, Any] = {}
        hits = misses = 0
        for rep in range(args.repeats + 1):
            for arm in list(arms) if rep % 2 else list(arms)[::-1]:
                threads, env = arms[arm]
                torch.set_num_threads(threads)
                os.environ["NEURONAS_DRAWS_AHEAD"] = env
                h0, m0 = ahead.hits, ahead.misses
                wall, train, numbers = timed_trial(arch, args.chip, settings)
                results[arm].add(numbers)
                if arm == "choice":
                    config = {k: train["config"][k] for k in ("threads", "draws_ahead")}
                    hits, misses = ahead.hits - h0, ahead.misses - m0
                if rep > 0:
                    times[arm].append(wall)
                print(f"{spec} {arm}: {wall:.2f} s, load {os.getloadavg()[0]:.2f}", flush=True)
        os.environ.pop("NEURONAS_DRAWS_AHEAD", None)
        med = {a: statistics.median(v) for a, v in times.items()}
        same_as = "one thread" if config.get("threads") == 1 else "in place"
        rows.append(
            {
                "arch": spec,
                "draw_share": share,
                **config,
                "hits": hits,
                "misses": misses,
                "seconds": times,
                "median_s": med,
                "in_place_over_choice": med["in place"] / med["choice"],
                "same_numbers": results["choice"] == results[same_as],
                "same_as": same_as,
            }
        )
    print(
        f"\ntorch {args.threads} threads given, chip {args.chip}, {args.repeats} repeats, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "| candidate | est. draw share | choice: threads, ahead | hits / misses (one trial) | "
        "in place s | choice s | one thread s | in place / choice | same numbers as |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median_s"]
        print(
            f"| {r['arch']} | {r['draw_share']:.3f} | {r['threads']}, {r['draws_ahead']} | "
            f"{r['hits']} / {r['misses']} | {m['in place']:.2f} | {m['choice']:.2f} | "
            f"{m['one thread']:.2f} | {r['in_place_over_choice']:.3f} | "
            f"{r['same_as'] + (': yes' if r['same_numbers'] else ': NO')} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
