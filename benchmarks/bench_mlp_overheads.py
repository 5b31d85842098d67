"""MLP trial overheads: the crossbar linear layer's graph and the trainer's Adam, before / after,
as interleaved arms in ONE process (``neuronas.search.objective.evaluate`` as ``bench_trial.py``).

The "before" arm runs the layer's forward as it was (``tests/test_linear_identity.py`` keeps it
verbatim: two weight-step nodes, the converter step's abs / add / reshape, the column weights'
transpose / pad / reshape) and torch's CPU default Adam (the per-tensor loop); the "after" arm
the current code.  Both arms must end on the same training loss (checked: the same numbers).

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

    def trial(arch: dict[str, Any]) -> tuple[float, float, float]:
        settings = {
            "dataset": "digits-events",
            "epochs": 3,
            "seed": 1,
            "lr": 3e-2,
            "eval_instances": 3,
            "max_train_samples": None,
        }
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = evaluate(arch, args.chip, dict(settings, out_dir=tmp))
        wall = time.perf_counter() - t0
        return (
            wall,
            out["train"]["config"]["phase_seconds"]["train"],
            out["train"]["history"][-1]["train_loss"],
        )

    rows: list[dict[str, Any]] = []
    for name in args.archs:
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch")).to_dict()
        for a in ("before", "after"):  # first use of each arm: kernels, frames (not counted)
            arm(a)
            trial(arch)
        got: dict[str, list[tuple[float, float, float]]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for a in ("before", "after"):
                arm(a)
                got[a].append(trial(arch))
        losses = {a: {r[2] for r in v} for a, v in got.items()}
        assert losses["before"] == losses["after"] and len(losses["after"]) == 1, losses
        med = {a: statistics.median(r[0] for r in v) for a, v in got.items()}
        med_train = {a: statistics.median(r[1] for r in v) for a, v in got.items()}
        rows.append(
            {
                "arch": Path(name).stem,
                "before_s": [r[0] for r in got["before"]],
                "after_s": [r[0] for r in got["after"]],
                "ratio": med["before"] / med["after"],
                "train_ratio": med_train["before"] / med_train["after"],
                "loss": losses["after"].pop(),
                "load": os.getloadavg()[0],
            }
        )
        r = rows[-1]
        print(
            f"{r['arch']}: before {[round(x, 2) for x in r['before_s']]} after "
            f"{[round(x, 2) for x in r['after_s']]} ratio of medians {r['ratio']:.3f} "
            f"(training {r['train_ratio']:.3f}), same loss {r['loss']}, load {r['load']:.2f}"
        )
    arm("after")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
