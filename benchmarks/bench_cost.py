"""Speed of the cost model: one 6-layer CNN candidate, and 10,000 sampled candidates.

    .venv/bin/python benchmarks/bench_cost.py [--chip rram-adcless-65nm] [--candidates 10000]
    git show HEAD:neuronas/hardware/cost.py > /tmp/cost_head.py
    .venv/bin/python benchmarks/bench_cost.py --baseline /tmp/cost_head.py --candidates 4000

Targets (issue 2): <= 100 us median per estimate for a 6-layer CNN, <= 2 s for 10,000 sampled
candidates, on one core.  Pure Python; runs single-threaded.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from typing import Any

from neuronas.hardware import estimate, fit_to_chip, load_chip
from neuronas.spec import ArchSpec

CNN6 = {
    "name": "cnn6",
    "input": {"shape": [2, 32, 32], "timesteps": 8},
    "layers": [
        {"kind": "conv", "out": 16},
        {"kind": "conv", "out": 16},
        {"kind": "pool", "kernel": 2},
        {"kind": "conv", "out": 32},
        {"kind": "conv", "out": 32},
        {"kind": "pool", "kernel": 2},
        {"kind": "fc", "out": 128},
        {"kind": "fc", "out": 10},
    ],
    "mapping": {"adc_kind": "sa", "adc_bits": 1, "rows": 128, "cols": 128},
}


def sample_candidates(n: int, seed: int = 0) -> list[ArchSpec]:
    """Random MLP / CNN candidates like a digits-events search space proposes."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        layers: list[dict[str, Any]] = [
            {"kind": "pool", "kernel": rng.choice([2, 4]), "pool": "max"}
        ]
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                layers.append({"kind": "fc", "out": rng.choice([32, 64, 128, 256])})
        else:
            for _ in range(rng.randint(1, 3)):
                layers.append(
                    {
                        "kind": "conv",
                        "out": rng.choice([4, 8, 16, 32]),
                        "kernel": rng.choice([3, 5]),
                    }
                )
                if rng.random() < 0.5:
                    layers.append({"kind": "pool", "kernel": 2})
        layers.append({"kind": "fc", "out": 10})
        d = {
            "input": {"shape": [2, 32, 32], "timesteps": rng.choice([4, 6, 8])},
            "layers": layers,
            "neuron": {"model": rng.choice(["lif", "ld_lif", "if"])},
            "precision": {
                "weight_bits": rng.choice([2, 3, 4, 6, 8]),
                "membrane_bits": rng.choice([6, 8, 12]),
            },
            "mapping": {
                "adc_kind": "sa",
                "adc_bits": 1,
                "rows": rng.choice([32, 64, 128, 256]),
                "cols": rng.choice([32, 64, 128, 256]),
                "bits_per_cell": rng.choice([1, 2]),
            },
        }
        try:
            out.append(ArchSpec.from_dict(d))
        except Exception:  # shapes that do not chain (a 5x5 kernel on a 2x2 map): resample
            continue
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds of the 6-layer CNN")
    ap.add_argument(
        "--baseline",
        default=None,
        metavar="COST_PY",
        help="another version of neuronas/hardware/cost.py (e.g. from `git show HEAD:...`) to time "
        "side by side, interleaved in this process, reported as a ratio",
    )
    args = ap.parse_args()
    if args.baseline:
        compare(args.baseline, args.chip, args.candidates, args.repeats)
        return
    chip = load_chip(args.chip)
    arch = fit_to_chip(ArchSpec.from_dict(CNN6), chip)
    estimate(arch, chip)  # warm up (constants resolved once per chip)

    # 1. median per estimate, one 6-layer CNN (each round: 2,000 calls; the median of the rounds).
    # warm: the same candidate object again (its activity-free part is cached per (arch, chip),
    # as when the search re-prices a trained candidate with its measured activity); cold: a fresh,
    # equal ArchSpec object every call, so nothing is reused but the chip's constants.
    n = 2000
    per_call, cold = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            estimate(arch, chip, 0.15)
        per_call.append((time.perf_counter() - t0) / n * 1e6)
        fresh = [ArchSpec.from_dict(arch.to_dict()) for _ in range(n)]
        t0 = time.perf_counter()
        for a in fresh:
            estimate(a, chip)
        cold.append((time.perf_counter() - t0) / n * 1e6)
        del fresh

    # 2. 10,000 sampled candidates (specs built first: the sampler's work, not the model's).
    # Wall time and this process's CPU time: on a shared, oversubscribed machine the CPU time is
    # what one core spends, the wall time what a user waits
    t0 = time.perf_counter()
    c0 = time.process_time()
    cands = sample_candidates(args.candidates)
    t_build, c_build = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    c0 = time.process_time()
    feasible = 0
    for a in cands:
        feasible += estimate(a, chip).feasible
    t_price, c_price = time.perf_counter() - t0, time.process_time() - c0

    # a pure-Python yardstick, so runs on a loaded machine can be compared as ratios
    t0 = time.perf_counter()
    for _ in range(200):
        sum(range(10_000))
    yardstick_us = (time.perf_counter() - t0) / 200 * 1e6

    print(
        f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, one core"
    )
    print(f"chip: {chip.name}; 6-layer CNN ({len(arch.resolved())} weighted + 2 pool layers)")
    print(
        f"  per estimate, warm (same candidate, new activity): median of {args.repeats} rounds x {n} calls = "
        f"{statistics.median(per_call):.1f} us (rounds: {', '.join(f'{x:.1f}' for x in per_call)})"
    )
    print(
        f"  per estimate, cold (a new candidate object each call): {statistics.median(cold):.1f} us "
        f"(rounds: {', '.join(f'{x:.1f}' for x in cold)})"
    )
    print(
        f"  {len(cands):,} sampled candidates priced in {t_price:.2f} s wall, {c_price:.2f} s CPU "
        f"({t_price / len(cands) * 1e6:.1f} us each, {feasible:,} feasible); "
        f"building the specs took {t_build:.2f} s wall, {c_build:.2f} s CPU"
    )
    print(f"  yardstick: sum(range(10_000)) = {yardstick_us:.0f} us")


def compare(path: str, chip_name: str, n: int, repeats: int) -> None:
    """Cold estimates of this tree's model vs another cost.py, interleaved rounds, CPU time."""
    import gc
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("cost_baseline", path)
    assert spec is not None and spec.loader is not None
    base = importlib.util.module_from_spec(spec)
    sys.modules["cost_baseline"] = base
    spec.loader.exec_module(base)
    chip = load_chip(chip_name)
    cands = sample_candidates(n)
    cnn = [fit_to_chip(ArchSpec.from_dict(CNN6), chip) for _ in range(2000)]
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for label, fn in (("this tree", estimate), ("baseline", base.estimate)):
            for what, archs in (("sampled", cands), ("cnn6", cnn)):
                gc.collect()
                c0 = time.process_time()
                for a in archs:
                    fn(a, chip)
                times.setdefault(f"{label} {what}", []).append(
                    (time.process_time() - c0) / len(archs) * 1e6
                )
                for mod in (base, sys.modules["neuronas.hardware.cost"]):
                    mod._STATIC.clear()  # noqa: SLF001 - every round cold again: the cache is the thing measured
    for what in ("sampled", "cnn6"):
        new, old = min(times[f"this tree {what}"]), min(times[f"baseline {what}"])
        print(
            f"  {what}: cold estimate {new:.1f} us CPU vs baseline {old:.1f} us (best of {repeats} interleaved rounds): "
            f"{old / new:.2f}x faster"
        )


if __name__ == "__main__":
    main()
