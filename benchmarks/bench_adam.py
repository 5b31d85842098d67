"""The trainer's Adam against torch's ``Adam(foreach=True)``: microseconds per ``step()`` on the
parameters of shipped networks, the two optimizers alternating in ONE process.

For each architecture the network is built (the default chip), and two copies of its parameters
get an optimizer each -- torch's ``Adam(foreach=True)`` (what the trainer used before) and
``neuronas.snn.optim.Adam`` -- under the trainer's cosine schedule.  Every step both get the same
gradients (random, over several decades, a few parameters without a gradient now and then);
the arms take turns in blocks of ``--block`` steps, and each step's ``step()`` plus
``zero_grad()`` is timed (process CPU time).  At the end the two copies' parameters and moments
are compared bit for bit (the run fails if they differ).

    python benchmarks/bench_adam.py [--archs benchmarks/archs/space-mlp-max2.yaml digits-mlp digits-cnn]
        [--blocks 20] [--block 10] [--json OUT]

With ``--trials N``: whole trials instead (``neuronas.search.objective.evaluate`` at the CLI's
screening settings, as ``bench_trial.py``), the trainer's optimizer alternating between torch's
``Adam(foreach=True)`` and this one trial by trial (the order flipping every round) in one
process, on ``--threads`` threads (2: ``make run``'s default here); per architecture the median
training phase and trial of each arm, the median of the paired ratios, and whether both arms
trained the same weights (they must: the same updates).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--archs",
        nargs="+",
        default=["benchmarks/archs/space-mlp-max2.yaml", "digits-mlp", "digits-cnn"],
    )
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--block", type=int, default=10, help="steps per arm before the other's turn")
    ap.add_argument("--json", default=None)
    ap.add_argument("--trials", type=int, default=0, help="whole trials per arm instead")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for --trials")
    args = ap.parse_args()
    if args.trials:
        trials(args)
        return

    import torch

    from neuronas.config import resolve_preset
    from neuronas.hardware import load_chip
    from neuronas.snn import optim
    from neuronas.snn.build import build
    from neuronas.spec import ArchSpec

    if not optim.available():
        raise SystemExit("the numba kernels are not usable here: nothing to compare")
    torch.set_num_threads(1)
    chip = load_chip(args.chip)
    rows: list[dict[str, Any]] = []
    for name in args.archs:
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch"))
        torch.manual_seed(0)
        model = build(arch, chip)
        base = [p.detach().clone() for p in model.parameters()]
        params = {
            arm: [torch.nn.Parameter(b.clone()) for b in base] for arm in ("torch", "neuronas")
        }
        total = 2 * args.blocks * args.block
        opts: dict[str, torch.optim.Optimizer] = {
            "torch": torch.optim.Adam(params["torch"], lr=3e-2, foreach=True),
            "neuronas": optim.Adam(params["neuronas"], lr=3e-2),
        }
        scheds = {
            arm: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total)
            for arm, o in opts.items()
        }
        gen = torch.Generator().manual_seed(1)
        times: dict[str, list[float]] = {"torch": [], "neuronas": []}
        for block in range(2 * args.blocks):
            # the arms' turns alternate block by block; each block, both take the same steps
            order = ("torch", "neuronas") if block % 2 == 0 else ("neuronas", "torch")
            grads = []
            for _ in range(args.block):
                step_grads = []
                for i, b in enumerate(base):
                    if torch.randint(0, 25, (), generator=gen) == 0 and i:
                        step_grads.append(None)
                        continue
                    scale = 10.0 ** float(torch.randint(-5, 1, (), generator=gen))
                    step_grads.append(torch.randn(b.shape, generator=gen) * scale)
                grads.append(step_grads)
            for arm in order:
                for step_grads in grads:
                    for p, g in zip(params[arm], step_grads, strict=True):
                        p.grad = None if g is None else g.clone()
                    t0 = time.process_time()
                    opts[arm].step()
                    opts[arm].zero_grad(set_to_none=True)
                    times[arm].append(time.process_time() - t0)
                    scheds[arm].step()
        same = all(
            torch.equal(a, b) for a, b in zip(params["torch"], params["neuronas"], strict=True)
        ) and all(
            torch.equal(opts["torch"].state[a][k], opts["neuronas"].state[b][k])
            for a, b in zip(params["torch"], params["neuronas"], strict=True)
            for k in ("exp_avg", "exp_avg_sq")
            if a in opts["torch"].state
        )
        if not same:
            raise SystemExit(f"{name}: the two optimizers' parameters differ")
        n_params = sum(b.numel() for b in base)
        # the first block of each arm holds the state's allocation and the kernels' first call
        med = {arm: statistics.median(t[args.block :]) * 1e6 for arm, t in times.items()}
        rows.append(
            {
                "arch": name,
                "tensors": len(base),
                "parameters": n_params,
                "torch_us": med["torch"],
                "neuronas_us": med["neuronas"],
                "ratio": med["torch"] / med["neuronas"],
                "steps_per_arm": total,
            }
        )
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, one thread, "
        f"load average {os.getloadavg()[0]:.2f}; median process-CPU us per step() + zero_grad()"
    )
    print("| network | tensors | parameters | torch Adam(foreach) | neuronas Adam | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arch']} | {r['tensors']} | {r['parameters']} | {r['torch_us']:.0f} | "
            f"{r['neuronas_us']:.0f} | {r['ratio']:.2f}x |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def trials(args: argparse.Namespace) -> None:
    import hashlib
    import tempfile

    import torch

    from neuronas.config import resolve_preset
    from neuronas.search.objective import evaluate
    from neuronas.snn import optim
    from neuronas.spec import ArchSpec

    # the trainer takes its threads from $OMP_NUM_THREADS when set (neuronas.train.set_threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    ours = optim.adam

    def theirs(params: Any, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, foreach=True)

    how: set[tuple[int, bool]] = set()  # the trainer's (threads, draws ahead) in the trials

    def one(arch: dict[str, Any], arm: str) -> tuple[float, float, str]:
        optim.adam = ours if arm == "neuronas" else theirs  # what the trainer calls
        settings = {"dataset": "digits-events", "epochs": 3, "seed": 1, "lr": 3e-2}
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = evaluate(arch, args.chip, dict(settings, eval_instances=3, out_dir=tmp))
            wall = time.perf_counter() - t0
            state = torch.load(Path(tmp) / "model.pt", weights_only=False)
        digest = hashlib.sha256()
        for k in sorted(state):
            if torch.is_tensor(state[k]):
                digest.update(state[k].detach().contiguous().numpy().tobytes())
        cfg = out["train"]["config"]
        how.add((cfg["threads"], cfg["draws_ahead"]))
        return wall, cfg["phase_seconds"]["train"], digest.hexdigest()

    rows = []
    try:
        for name in args.archs:
            arch = ArchSpec.from_yaml(resolve_preset(name, "arch")).to_dict()
            one(arch, "neuronas")  # warm-up: data, kernels
            res: dict[str, list[tuple[float, float, str]]] = {"torch": [], "neuronas": []}
            how.clear()
            for r in range(args.trials):
                for arm in ("torch", "neuronas") if r % 2 == 0 else ("neuronas", "torch"):
                    res[arm].append(one(arch, arm))
            same = len({x[2] for xs in res.values() for x in xs}) == 1
            pairs = [a[1] / b[1] for a, b in zip(res["torch"], res["neuronas"], strict=True)]
            rows.append(
                {
                    "arch": name,
                    "train_s": {k: statistics.median(x[1] for x in v) for k, v in res.items()},
                    "trial_s": {k: statistics.median(x[0] for x in v) for k, v in res.items()},
                    "train_ratio_paired": statistics.median(pairs),
                    "same_weights": same,
                    "trainer_threads_draws_ahead": sorted(how),
                    "train_s_all": {k: [x[1] for x in v] for k, v in res.items()},
                }
            )
    finally:
        optim.adam = ours
    print(
        f"{args.threads} threads given, load average {os.getloadavg()[0]:.2f}; {args.trials} "
        "trials per arm, alternating; median s; the trainer's (threads, draws ahead): "
        + ", ".join(f"{r['arch']} {r['trainer_threads_draws_ahead']}" for r in rows)
    )
    print(
        "| network | train, torch Adam | train, neuronas Adam | paired ratio | trial, torch | "
        "trial, neuronas | same weights |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arch']} | {r['train_s']['torch']:.3f} | {r['train_s']['neuronas']:.3f} | "
            f"{r['train_ratio_paired']:.3f} | {r['trial_s']['torch']:.3f} | "
            f"{r['trial_s']['neuronas']:.3f} | {r['same_weights']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
