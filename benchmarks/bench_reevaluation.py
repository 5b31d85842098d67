"""Re-evaluating a trained network on the same chip instances: does it give the same numbers?

Trains one architecture once (screening-like: a few epochs, RRAM chip with programming and read
noise), then evaluates the checkpoint ``--repeats`` times on the test split over the same
``--instances`` chip instances (seeds 0..N-1 of the training seed), and prints each repeat's
per-instance accuracies, the largest difference between repeats for one instance, and the mean
with its 95 % Student-t interval over the instances.  Only APIs that neuronas had before chip
instances were made reproducible are used, so the same script measures an older checkout
(``PYTHONPATH=OLD_CHECKOUT python benchmarks/bench_reevaluation.py``).

    python benchmarks/bench_reevaluation.py --arch digits-mlp --epochs 3 --instances 10
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch


def _interval(values: list[float]) -> tuple[float, float]:
    from scipy.stats import t as student_t

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="digits-mlp")
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-train-samples", type=int, default=None)
    args = ap.parse_args()

    import neuronas
    from neuronas.config import resolve_preset
    from neuronas.hardware import load_chip
    from neuronas.spec import ArchSpec
    from neuronas.train import dataset_tensors, evaluate_on_chip, load_model, train_candidate

    torch.set_num_threads(1)
    arch = ArchSpec.from_yaml(resolve_preset(args.arch, "arch"))
    chip = load_chip(args.chip)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = train_candidate(
            arch,
            chip,
            "digits-events",
            epochs=args.epochs,
            seed=args.seed,
            lr=3e-2,
            batch_size=32,
            out_dir=Path(tmp),
            max_train_samples=args.max_train_samples,
            num_threads=1,
        )
        assert res.checkpoint is not None
        model = load_model(arch, chip, res.checkpoint)
    train_s = time.perf_counter() - t0
    x, y = dataset_tensors("digits-events", "test", arch.input.timesteps, shape=arch.input.shape)
    repeats = []
    for _ in range(args.repeats):
        per, _, _ = evaluate_on_chip(model, x, y, eval_instances=args.instances, seed=args.seed)
        repeats.append(per)
    diff = max(max(r[k] for r in repeats) - min(r[k] for r in repeats) for k in range(len(per)))
    out = {
        "neuronas": str(Path(neuronas.__file__).parent),
        "arch": arch.name,
        "chip": chip.name,
        "epochs": args.epochs,
        "train_seconds": round(train_s, 1),
        "test_samples": len(y),
        "repeats": [[round(100 * a, 2) for a in r] for r in repeats],
        "max_instance_difference_points": round(100 * diff, 2),
        "mean_and_95ci_per_repeat": [[round(100 * v, 2) for v in _interval(r)] for r in repeats],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
