"""MLP trial overheads: the crossbar linear layer's graph and the trainer's Adam, before / after,
as interleaved arms in ONE process (``neuronas.search.objective.evaluate`` as ``bench_trial.py``).

The "before" arm runs the layer's forward as it was (``tests/test_linear_identity.py`` keeps it
verbatim: two weight-step nodes, the converter step's abs / add / reshape, the column weights'
transpose / pad / reshape) and torch's CPU default Adam (the per-tensor loop); the "after" arm
the current code.  Both arms must end on the same training loss (checked: the same numbers).
Each trial's wall and process CPU seconds (one torch thread: the CPU time is the trial's own work,
less sensitive to a shared machine's load than its wall time).

    python benchmarks/bench_mlp_overheads.py [--archs benchmarks/archs/space-mlp-max2.yaml
        digits-mlp] [--repeats 3] [--json OUT]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--archs", nargs="+", default=["benchmarks/archs/space-mlp-max2.yaml", "digits-mlp"]
    )
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    sys.path.insert(0, str(ROOT))
    from neuronas.config import resolve_preset
    from neuronas.search.objective import evaluate
    from neuronas.snn.crossbar import CrossbarLinear
    from neuronas.spec import ArchSpec
    from tests.test_linear_identity import forward_before

    torch.set_num_threads(1)
    after_forward, adam = CrossbarLinear.forward, torch.optim.Adam

    class PerTensorAdam(adam):  # type: ignore[misc, valid-type]
        def __init__(self, params: Any, **kwargs: Any) -> None:
            kwargs.pop("foreach", None)  # torch's CPU default: the per-tensor loop
            super().__init__(params, **kwargs)

    def arm(name: str) -> None:
        before = name == "before"
        CrossbarLinear.forward = forward_before if before else after_forward  # type: ignore[method-assign]
        torch.optim.Adam = PerTensorAdam if before else adam  # type: ignore[misc]

    def trial(arch: dict[str, Any]) -> tuple[float, ...]:
        settings = {
            "dataset": "digits-events",
            "epochs": 3,
            "seed": 1,
            "lr": 3e-2,
            "eval_instances": 3,
            "max_train_samples": None,
        }
        t0, c0 = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            out = evaluate(arch, args.chip, dict(settings, out_dir=tmp))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return (
            wall,
            cpu,
            out["train"]["config"]["phase_seconds"]["train"],
            out["train"]["history"][-1]["train_loss"],
        )

    rows: list[dict[str, Any]] = []
    for name in args.archs:
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch")).to_dict()
        for a in ("before", "after"):  # first use of each arm: kernels, frames (not counted)
            arm(a)
            trial(arch)
        got: dict[str, list[tuple[float, ...]]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for a in ("before", "after"):
                arm(a)
                got[a].append(trial(arch))
        losses = {a: {r[3] for r in v} for a, v in got.items()}
        assert losses["before"] == losses["after"] and len(losses["after"]) == 1, losses

        def ratio(i: int, got: dict[str, list[tuple[float, ...]]] = got) -> float:
            """before / after, medians over the repeats"""
            med = {a: statistics.median(r[i] for r in v) for a, v in got.items()}
            return med["before"] / med["after"]

        paired = statistics.median(
            b[1] / a[1] for b, a in zip(got["before"], got["after"], strict=True)
        )
        rows.append(
            {
                "arch": Path(name).stem,
                "before_wall_s": [r[0] for r in got["before"]],
                "after_wall_s": [r[0] for r in got["after"]],
                "before_cpu_s": [r[1] for r in got["before"]],
                "after_cpu_s": [r[1] for r in got["after"]],
                "wall_ratio": ratio(0),
                "cpu_ratio": ratio(1),
                "cpu_ratio_paired": paired,
                "train_ratio": ratio(2),
                "loss": losses["after"].pop(),
                "load": os.getloadavg()[0],
            }
        )
        r = rows[-1]

        def fmt(xs: list[float]) -> str:
            return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"

        print(
            f"{r['arch']}: wall before {fmt(r['before_wall_s'])} after {fmt(r['after_wall_s'])} "
            f"ratio {r['wall_ratio']:.3f}; CPU before {fmt(r['before_cpu_s'])} after "
            f"{fmt(r['after_cpu_s'])} ratio {r['cpu_ratio']:.3f} (paired {paired:.3f}); "
            f"training wall ratio {r['train_ratio']:.3f}; same loss {r['loss']}; "
            f"load {r['load']:.2f}"
        )
    arm("after")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
