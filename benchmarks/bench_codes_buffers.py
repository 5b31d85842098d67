"""A crossbar convolution's forward at awareness 1 with its sense amplifiers' codes written into
the buffers its last backward read (what the layer does) against new tensors every call (what
it did before: ``layer._codes_spare = None``), interleaved in one process, order alternating.

A new tensor of the codes' size costs a page fault per page at its first touch whenever the C
library hands the memory back to the system between calls (glibc does for blocks over its mmap
threshold, at most 32 MiB); this shows what that costs per layer.  Each forward is followed by
its backward (untimed), which hands the buffers back.  Random input spikes at ``--spikes``;
64-row arrays, 1-bit sense amplifiers (differential), 4-bit weights on 1-bit cells, as
``bench_train.py``; one torch thread; process time.

    python benchmarks/bench_codes_buffers.py [--spikes 0.1] [--repeats 5] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

# (name, in channels, out channels, height = width, frames per call): the convolutions of
# digits-cnn (batch 64 x T 8) and of the gesture CNN at 32 x 32 input (batch 16 x T 16)
LAYERS = [
    ("digits-cnn conv1", 2, 16, 16, 512),
    ("digits-cnn conv2", 16, 32, 8, 512),
    ("gesture conv1", 2, 64, 32, 256),
    ("gesture conv2", 64, 128, 16, 256),
    ("gesture conv3", 128, 128, 8, 256),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spikes", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from neuronas.snn.crossbar import CrossbarConfig, CrossbarConv2d

    torch.set_num_threads(1)
    cfg = CrossbarConfig(weight_bits=4, adc_bits=1, adc_kind="sa", rows=64, bits_per_cell=1)
    rows = []
    load_before = os.getloadavg()[0]
    print("| layer | forward ms, new codes tensors | into reused buffers | ratio |")
    print("|---|---|---|---|")
    for name, c_in, c_out, hw, frames in LAYERS:
        torch.manual_seed(0)
        layer = CrossbarConv2d(c_in, c_out, 3, padding=1, config=cfg)
        layer.hardware_awareness = 1.0
        x = (torch.rand(frames, c_in, hw, hw) < args.spikes).float()
        layer(x).sum().backward()  # calibration, compilation
        reused = layer._codes_spare  # noqa: SLF001 (the internal this measures)
        times: dict[str, list[float]] = {"new": [], "reused": []}
        for r in range(args.repeats):
            for arm in ("new", "reused") if r % 2 == 0 else ("reused", "new"):
                layer._codes_spare = reused if arm == "reused" else None  # noqa: SLF001
                t0 = time.process_time()
                y = layer(x)
                times[arm].append(time.process_time() - t0)
                y.sum().backward()
                del y
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"layer": name, "frames": frames, "times_s": times, "median_s": med})
        print(
            f"| {name} ({frames} frames) | {1e3 * med['new']:.1f} | {1e3 * med['reused']:.1f} | "
            f"{med['reused'] / med['new']:.2f} |",
            flush=True,
        )
    load_after = os.getloadavg()[0]
    print(f"load average {load_before:.2f} -> {load_after:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "layers": rows,
                    "spikes": args.spikes,
                    "machine": platform.platform(),
                    "load_average": [load_before, load_after],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
