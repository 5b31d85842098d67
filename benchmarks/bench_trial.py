"""Where one trial's wall time goes: pricing, data, model build, training, validation, evaluation
on K chip instances, re-pricing, saving.

Runs ``neuronas.search.objective.evaluate`` (the function every backend runs for a trial) on
shipped architectures at the CLI's screening settings (3 epochs, lr 3e-2, 3 chip instances, the
default chip) and prints each phase's seconds from the trainer's ``phase_seconds`` and the
objective's own timings.  The first trial of a process also pays the frame building / loading
and the kernels' first use; later trials share them (both are listed).

    python benchmarks/bench_trial.py [--archs digits-mlp digits-cnn] [--chip rram-adcless-65nm]
        [--epochs 3] [--eval-instances 3] [--trials 2] [--max-train-samples N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES = ("price", "data", "build", "train", "validation", "evaluate", "reprice", "save", "other")


def one_trial(arch: dict[str, Any], chip: str, settings: dict[str, Any]) -> dict[str, float]:
    from neuronas.search.objective import evaluate

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = evaluate(arch, chip, dict(settings, out_dir=tmp))
    wall = time.perf_counter() - t0
    if not out["trained"]:
        raise SystemExit(f"{arch.get('name')}: not trained ({out['status']}: {out['reason']})")
    sec = dict(out["train"]["config"]["phase_seconds"])
    sec["price"] = out["seconds"]["price"]
    # the objective's training time holds the trainer's phases; the rest of it is the trainer's
    # set-up (checks, splits) and the measured re-pricing follows it
    inside = sum(sec[k] for k in ("data", "build", "train", "validation", "evaluate", "save"))
    sec["reprice"] = out["seconds"]["total"] - out["seconds"]["train"] - out["seconds"]["price"]
    sec["other"] = max(0.0, wall - inside - sec["price"] - sec["reprice"])
    sec["total"] = wall
    return sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["digits-mlp", "digits-cnn"])
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--dataset", default="digits-events")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--eval-instances", type=int, default=3)
    ap.add_argument(
        "--trials", type=int, default=2, help="trials per arch (seeds 0..n-1) in this one process"
    )
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from neuronas.config import resolve_preset
    from neuronas.spec import ArchSpec

    torch.set_num_threads(args.threads)
    rows: list[tuple[str, int, dict[str, float]]] = []
    for name in args.archs:
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch")).to_dict()
        for seed in range(args.trials):
            settings = {
                "dataset": args.dataset,
                "epochs": args.epochs,
                "seed": seed,
                "lr": 3e-2,
                "eval_instances": args.eval_instances,
                "max_train_samples": args.max_train_samples,
            }
            rows.append((name, seed, one_trial(arch, args.chip, settings)))
    print(
        f"chip {args.chip}, {args.dataset}, {args.epochs} epochs, {args.eval_instances} chip instances, "
        f"threads {args.threads}, load average {os.getloadavg()[0]:.2f}"
    )
    print("| arch | trial | " + " | ".join(PHASES) + " | total s |")
    print("|---|---|" + "---|" * (len(PHASES) + 1))
    for name, seed, sec in rows:
        cells = " | ".join(f"{sec[p]:.2f}" for p in PHASES)
        print(f"| {name} | {seed} | {cells} | {sec['total']:.2f} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps([{"arch": n, "seed": s, **sec} for n, s, sec in rows], indent=2)
        )


if __name__ == "__main__":
    main()
