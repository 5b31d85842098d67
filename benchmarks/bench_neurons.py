"""Training epochs with SpikingJelly's neurons (before) against the fused neuron scans (after).

The networks of ``bench_train.py`` (plain torch layers, crossbar layers at awareness 0 and 1;
64-row arrays, 1-bit sense amplifiers) are each trained for one epoch on digits-events with the
neurons on SpikingJelly's CPU path (``NEURONAS_REFERENCE_NEURONS=1``: what main ran before the
fused scans) and on the fused numba scans (:mod:`neuronas.snn._neuron_kernels`), interleaved
and repeated so that the machine's load hits both alike.

    python benchmarks/bench_neurons.py [--arch digits-mlp] [--neuron lif|if|ld_lif] [--repeats 3]
        [--samples N] [--batch-size 64] [--input-shape 2 32 32 --drop-input-pool] [--profile] [--json OUT]

``--profile`` adds one profiled epoch per network and path (``torch.profiler``) and prints the
seconds spent in the neurons (SpikingJelly's LIF / IF operators, or the fused scans; LD-LIF on
SpikingJelly's path is generic autograd ops and is not attributed) and in the pooling layers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import bench_network, epoch_seconds, plain_copy  # noqa: E402

PATHS = ("before", "after")  # SpikingJelly's neurons, the fused scans
NEURON_EVENTS = (
    "sj_lif::forward",
    "sj_lif::backward",
    "sj_if::forward",
    "sj_if::backward",
    "neuronas::neuron_scan",
    "neuronas::neuron_scan_backward",
)
POOL_EVENTS = (
    "aten::max_pool2d_with_indices",
    "aten::max_pool2d_with_indices_backward",
    "aten::avg_pool2d",
    "aten::avg_pool2d_backward",
)


def timed(path: str, fn: Any) -> Any:
    """Run ``fn`` with the neurons of ``path``."""
    if path == "before":
        os.environ["NEURONAS_REFERENCE_NEURONS"] = "1"
    try:
        return fn()
    finally:
        os.environ.pop("NEURONAS_REFERENCE_NEURONS", None)


def profile_epoch(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = epoch_seconds(net, x, y, batch_size)
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    return {
        "epoch_s": wall,
        "neurons_s": sum(totals.get(k, 0.0) for k in NEURON_EVENTS),
        "pool_s": sum(totals.get(k, 0.0) for k in POOL_EVENTS),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="digits-mlp")
    ap.add_argument("--neuron", choices=("lif", "if", "ld_lif"), default=None)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--input-shape", type=int, nargs="+", default=None)
    ap.add_argument("--drop-input-pool", action="store_true")
    ap.add_argument("--nets", nargs="+", default=["plain", "aware0", "aware1"])
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from neuronas.snn import build

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch, x, y = bench_network(
        args.arch,
        rows=args.rows,
        input_shape=args.input_shape,
        drop_input_pool=args.drop_input_pool,
        neuron=args.neuron,
        samples=args.samples,
    )

    aware = build(arch)
    aware1 = build(arch)
    aware1.load_state_dict(aware.state_dict())
    aware1.set_hardware_awareness(1.0)
    all_nets = {"plain": plain_copy(aware), "aware0": aware, "aware1": aware1}
    nets = {k: all_nets[k] for k in args.nets}
    warm = (x[: 2 * args.batch_size], y[: 2 * args.batch_size], args.batch_size)
    for net in nets.values():  # compilation, the converters' calibration
        for path in PATHS:
            timed(path, lambda net=net: epoch_seconds(net, *warm))
    times: dict[str, list[float]] = {f"{n}/{p}": [] for n in nets for p in PATHS}
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for r in range(args.repeats):
        for name, net in nets.items():
            order = PATHS if r % 2 == 0 else PATHS[::-1]
            for path in order:
                times[f"{name}/{path}"].append(
                    timed(path, lambda net=net: epoch_seconds(net, x, y, args.batch_size))
                )
    med = {k: statistics.median(v) for k, v in times.items()}
    load_after = os.getloadavg()[0]
    prof: dict[str, dict[str, float]] = {}
    if args.profile:
        for name, net in nets.items():
            for path in PATHS:
                prof[f"{name}/{path}"] = timed(
                    path, lambda net=net: profile_epoch(net, x, y, args.batch_size)
                )
    print(
        f"{arch.name}, neuron {arch.neuron.model} ({arch.neuron.reset} reset): {len(y)} samples/epoch, "
        f"T={arch.input.timesteps}, input {list(arch.input.shape)}, batch {args.batch_size}, "
        f"rows {args.rows}, 1-bit SA, threads {args.threads}, {started}, "
        f"load average {load_before:.2f} -> {load_after:.2f}"
    )
    print(
        f"| network | before: s / epoch (median of {args.repeats}) | after | speed-up "
        "| before: ratio to plain | after: ratio to plain |"
    )
    print("|---|---|---|---|---|---|")
    for name in nets:
        b, a = med[f"{name}/before"], med[f"{name}/after"]
        rb = b / med["plain/before"] if "plain" in nets else float("nan")
        ra = a / med["plain/after"] if "plain" in nets else float("nan")
        print(f"| {name} | {b:.3f} | {a:.3f} | {b / a:.2f}x | {rb:.2f} | {ra:.2f} |")
    if prof:
        print("\n| profiled epoch | wall s | neurons s (share) | pooling s (share) |")
        print("|---|---|---|---|")
        for key, p in prof.items():
            e = p["epoch_s"]
            neurons = (
                "n/a (generic autograd ops)"
                if key.endswith("before") and arch.neuron.model == "ld_lif"
                else f"{p['neurons_s']:.3f} ({p['neurons_s'] / e:.0%})"
            )
            print(f"| {key} | {e:.3f} | {neurons} | {p['pool_s']:.3f} ({p['pool_s'] / e:.0%}) |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "arch": arch.to_dict(),
                    "times_s": times,
                    "median_s": med,
                    "profile": prof,
                    "machine": platform.platform(),
                    "threads": args.threads,
                    "started": started,
                    "load_average": [load_before, load_after],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
