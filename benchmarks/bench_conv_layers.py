"""One crossbar convolution's forward and backward at awareness 1, against the plain ``nn.Conv2d``,
at chosen input-spike and output-gradient densities.

``bench_train.py`` times whole networks, whose deeper layers may be silent or receive no gradient
at all early in training; this times the layers the convolutional benchmarks are made of at the
densities a firing network gives them (spikes at ``--spikes``, an output gradient non-zero at
each of ``--grads``: a 2 x 2 max-pool passes at most 1/4, a surrogate window less), so the
backward kernel's cost is seen where it works.  64-row arrays, 1-bit sense amplifiers
(differential), 4-bit weights on 1-bit cells, as ``bench_train.py``; one torch thread.

    python benchmarks/bench_conv_layers.py [--spikes 0.15] [--grads 0.25 1.0] [--repeats 5] [--json F]

Prints a Markdown table: the median seconds of each pass and the crossbar layer's forward +
backward over the plain layer's.
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
from torch import nn

# (name, in channels, out channels, height = width, frames per batch): the convolutions of
# digits-cnn (batch 64 x T 8) and of the gesture CNN at 32 x 32 input (batch 16 x T 16)
LAYERS = [
    ("digits-cnn conv2", 16, 32, 8, 512),
    ("gesture conv2", 64, 128, 16, 256),
    ("gesture conv3", 128, 128, 8, 256),
]


def _time(layer: nn.Module, x: torch.Tensor, gy: torch.Tensor, repeats: int) -> tuple[float, float]:
    fwd, bwd = [], []
    for _ in range(repeats + 1):  # the first: warm-up (compilation, calibration)
        xr = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        y = layer(xr)
        t1 = time.perf_counter()
        y.backward(gy)
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        layer.zero_grad(set_to_none=True)
    return statistics.median(fwd[1:]), statistics.median(bwd[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spikes", type=float, default=0.15, help="input spike density")
    ap.add_argument("--grads", type=float, nargs="+", default=[0.25, 1.0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from neuronas.snn.crossbar import CrossbarConfig, CrossbarConv2d

    torch.set_num_threads(1)
    cfg = CrossbarConfig(
        weight_bits=4, adc_bits=1, adc_kind="sa", rows=64, bits_per_cell=1
    )  # differential
    load_before = os.getloadavg()[0]
    rows = []
    for name, c_in, c_out, hw, frames in LAYERS:
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        xbar = CrossbarConv2d(c_in, c_out, 3, padding=1, config=cfg)
        xbar.hardware_awareness = 1.0
        plain = nn.Conv2d(c_in, c_out, 3, padding=1)
        plain.load_state_dict({"weight": xbar.weight.detach(), "bias": xbar.bias.detach()})
        x = (torch.rand(frames, c_in, hw, hw, generator=gen) < args.spikes).float()
        for dg in args.grads:
            shape = (frames, c_out, hw, hw)
            gy = torch.randn(shape, generator=gen) * (torch.rand(shape, generator=gen) < dg)
            pf, pb = _time(plain, x, gy, args.repeats)
            xf, xb = _time(xbar, x, gy, args.repeats)
            rows.append(
                {
                    "layer": name,
                    "grad_density": dg,
                    "plain_fwd_s": pf,
                    "plain_bwd_s": pb,
                    "xbar_fwd_s": xf,
                    "xbar_bwd_s": xb,
                    "ratio": (xf + xb) / (pf + pb),
                }
            )
    load_after = os.getloadavg()[0]
    print(
        f"spikes {args.spikes}, median of {args.repeats}, one thread, "
        f"load average {load_before:.2f} -> {load_after:.2f}"
    )
    print(
        "| layer | grad density | plain fwd + bwd ms | crossbar fwd ms | crossbar bwd ms | ratio |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['layer']} | {r['grad_density']:.2f} | "
            f"{1e3 * r['plain_fwd_s']:.1f} + {1e3 * r['plain_bwd_s']:.1f} | "
            f"{1e3 * r['xbar_fwd_s']:.1f} | {1e3 * r['xbar_bwd_s']:.1f} | {r['ratio']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "spikes": args.spikes,
                    "rows": rows,
                    "machine": platform.platform(),
                    "load_average": [load_before, load_after],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
