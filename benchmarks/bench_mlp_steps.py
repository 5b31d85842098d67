"""MLP training steps, before / after the linear layer's leaner graph and the foreach Adam: process
CPU milliseconds per step, the two arms alternating in blocks of 10 steps in ONE process.

Two copies of the network built from the same seed, each with its own Adam (the "before" arm: the
layer's forward as it was, kept verbatim in ``tests/test_linear_identity.py``, and torch's
per-tensor Adam; the "after" arm: the current code), trained on one fixed batch of spikes (32
samples, density 0.15, the arch's input prefix applied once) at awareness 0.5 and 1.

    python benchmarks/bench_mlp_steps.py [--archs benchmarks/archs/space-mlp-max2.yaml digits-mlp]
        [--blocks 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
    ap.add_argument("--blocks", type=int, default=15)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT))
    from neuronas.config import resolve_preset
    from neuronas.hardware import load_chip
    from neuronas.snn.build import build
    from neuronas.snn.crossbar import CrossbarLinear
    from neuronas.spec import ArchSpec
    from tests.test_linear_identity import forward_before

    torch.set_num_threads(1)
    chip = load_chip(args.chip)
    after_forward = CrossbarLinear.forward
    for name in args.archs:
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch"))
        t_steps = arch.input.timesteps

        def make(arm: str, arch: Any = arch, t_steps: int = t_steps) -> tuple[Any, ...]:
            torch.manual_seed(0)
            model = build(arch, chip)
            x = (torch.rand(t_steps, 32, *arch.input.shape) < 0.15).float()
            y = torch.randint(0, 10, (32,))
            model.init_from_data(x)
            opt = torch.optim.Adam(model.parameters(), lr=3e-2, foreach=(arm == "after") or None)
            return model, model.apply_input_prefix(x), y, opt

        arms = {a: make(a) for a in ("before", "after")}

        def block(a: str, n: int, level: float, arms: dict[str, Any] = arms) -> float:
            CrossbarLinear.forward = forward_before if a == "before" else after_forward  # type: ignore[method-assign]
            model, xp, y, opt = arms[a]
            model.set_hardware_awareness(level)
            c0 = time.process_time()
            for _ in range(n):
                loss = F.cross_entropy(model(xp, prefixed=True).mean(0), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return (time.process_time() - c0) / n

        for level in (0.5, 1.0):
            for a in arms:
                block(a, 5, level)
            res: dict[str, list[float]] = {a: [] for a in arms}
            for _ in range(args.blocks):
                for a in arms:
                    res[a].append(block(a, 10, level))
            mb, ma = statistics.median(res["before"]), statistics.median(res["after"])
            paired = statistics.median(
                b / a for b, a in zip(res["before"], res["after"], strict=True)
            )
            print(
                f"{Path(name).stem} awareness {level}: CPU ms/step before {mb * 1e3:.2f} after "
                f"{ma * 1e3:.2f}, ratio of medians {mb / ma:.3f} (median paired ratio "
                f"{paired:.3f}), {args.blocks} blocks of 10 steps per arm"
            )
    CrossbarLinear.forward = after_forward  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
