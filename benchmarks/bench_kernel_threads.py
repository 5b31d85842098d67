"""Per kernel call: the serial numba kernel against its parallel twin inside real training epochs
on two torch threads (what a search trial on the 2-core machine runs).

A shipped network (bench_train.py's ``bench_network`` and warm start) trains epochs at awareness
0.5 and 1; every other epoch serves all numba kernel calls (the linear convert-sum ``fwd``, the
convolution's ``sconv_fwd`` / ``sconv_bwd``, the neuron scans ``n_forward`` / ``n_backward``)
by the serial kernels, the others by the parallel twins on two threads, whatever their size
(the order alternates).  Prints per call shape the median and mean milliseconds of each and
the ratio of the means, with the kernel's work measure (``neuronas.snn._kernels
.PARALLEL_MIN_WORK``'s units), from which the size thresholds were chosen.

    OMP_NUM_THREADS=1 python benchmarks/bench_kernel_threads.py digits-mlp --rounds 4
    OMP_NUM_THREADS=1 python benchmarks/bench_kernel_threads.py gesture --rounds 2

(``gesture``: dvsgesture-cnn at 2 x 32 x 32, batch 16, as bench_train.py's second command;
other names: a shipped architecture on digits-events at the screening batch of 32.)
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import time
from typing import Any

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arch", help="a shipped architecture, or gesture")
    ap.add_argument("--rounds", type=int, default=4, help="epochs per form and awareness")
    args = ap.parse_args()

    import bench_train as bt
    import numba

    from neuronas.settings import SCREENING
    from neuronas.snn import _kernels, _neuron_kernels, build

    log: dict[tuple[str, tuple[Any, ...], int, str], list[float]] = collections.defaultdict(list)
    serial = {"on": False}

    def timed(name: str, kernel: Any, work: int) -> Any:
        def run(*a: Any) -> Any:
            t = time.perf_counter()
            out = kernel(*a)
            shapes = tuple(x.shape for x in a[:3] if isinstance(x, np.ndarray))
            log[(name, shapes, work, "serial" if serial["on"] else "parallel")].append(
                time.perf_counter() - t
            )
            return out

        return run

    def pick(mod: Any, name: str, label: str, work: int | None) -> Any:
        if serial["on"]:
            return timed(label, getattr(mod, name), work or 0)
        numba.set_num_threads(2)
        return timed(label, getattr(mod, name + "_parallel"), work or 0)

    def fwd_kernel(name: str = "fwd", work: int | None = None) -> Any:
        return pick(_kernels._load(), name, name, work)  # noqa: SLF001 (the kernels measured)

    def tasks(name: str, work: int | None = None) -> tuple[Any, int]:
        return fwd_kernel(name, work), (1 if serial["on"] else 2)

    def neuron_kernel(name: str, work: int) -> Any:
        return pick(_neuron_kernels._load(), name, "n_" + name, work)  # noqa: SLF001

    # every call served by the form this epoch times, whatever its size
    _kernels._fwd_kernel = fwd_kernel  # noqa: SLF001
    _kernels._tasks = tasks  # noqa: SLF001
    _neuron_kernels._kernel = neuron_kernel  # noqa: SLF001
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if args.arch == "gesture":
        arch, x, y = bt.bench_network(
            "dvsgesture-cnn", rows=64, input_shape=[2, 32, 32], drop_input_pool=True, samples=64
        )
        bs = 16
    else:
        arch, x, y = bt.bench_network(args.arch, rows=64, samples=512)
        bs = SCREENING.batch_size
    net = build(arch)
    bt.warm_start(net, x, y, bs, 6, SCREENING.lr)
    for level in (0.5, 1.0):
        net.set_hardware_awareness(level)
        for r in range(args.rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                serial["on"] = on
                bt.epoch_seconds(net, x, y, bs, False)
    print(f"{args.arch}, two torch threads, load average {os.getloadavg()[0]:.2f}")
    print(
        "| call | shapes | work | n | serial ms median / mean | parallel ms median / mean | parallel / serial (means) |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, shapes, work in sorted({k[:3] for k in log}):
        s, p = log[(name, shapes, work, "serial")], log[(name, shapes, work, "parallel")]
        if not s or not p:
            continue
        ms = [1e3 * statistics.median(s), 1e3 * statistics.mean(s)]
        mp = [1e3 * statistics.median(p), 1e3 * statistics.mean(p)]
        print(
            f"| {name} | {' '.join('x'.join(map(str, sh)) for sh in shapes)} | {work:.3g} | {len(s)} "
            f"| {ms[0]:.3f} / {ms[1]:.3f} | {mp[0]:.3f} / {mp[1]:.3f} | {mp[1] / ms[1]:.2f} |"
        )


if __name__ == "__main__":
    main()
