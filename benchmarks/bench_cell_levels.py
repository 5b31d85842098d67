"""Time of one training call of ``CrossbarLayer._cell_levels`` (the noisy cells drawn for every
training batch) on a chip's device model, for the layers of digits-mlp, and what bounds it.

Prints, per layer shape: the call's median milliseconds as a training batch runs it (the
kernels draw torch's own numbers from its global generator, then the one-pass cell kernel); the
same call with ``NEURONAS_TORCH_DRAWS=1`` (torch's own ``randn`` / ``rand`` / ``randn``: the
reference path, the same numbers); torch's three draws over the ``[K, S, P, Nc]`` cells alone
(what the fixed random stream costs torch); and whether both paths gave the same cells, bit for
bit, from the same seed.  Run it against another checkout with ``PYTHONPATH=that/checkout``.

    python benchmarks/bench_cell_levels.py [--chip rram-adcless-65nm] [--weight-bits 4] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch


def median_ms(fn: Callable[[], object], calls: int, repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t0) / calls * 1e3)
    return statistics.median(out)


def torch_draws_env(on: bool) -> None:
    """Torch's own draws (``NEURONAS_TORCH_DRAWS=1``, read at every call) or the kernels'."""
    if on:
        os.environ["NEURONAS_TORCH_DRAWS"] = "1"
    else:
        os.environ.pop("NEURONAS_TORCH_DRAWS", None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--weight-bits", type=int, default=4)
    ap.add_argument("--bits-per-cell", type=int, default=1)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import neuronas
    from neuronas.hardware.chip import load_chip
    from neuronas.snn.crossbar import CrossbarConfig, CrossbarLinear, DeviceModel

    torch.set_num_threads(args.threads)
    dev = DeviceModel.from_chip(load_chip(args.chip))
    print(f"neuronas from {os.path.dirname(neuronas.__file__)}; {dev}")
    print(f"load average {os.getloadavg()[0]:.2f}, threads {args.threads}")
    print(
        "| columns | layer K x N | cells | _cell_levels ms | with torch's draws ms "
        "| torch's draws alone ms | same cells |"
    )
    print("|---|---|---|---|---|---|---|")
    for scheme in ("differential", "offset"):
        cfg = CrossbarConfig(
            weight_bits=args.weight_bits,
            adc_bits=1,
            adc_kind="sa",
            rows=128,
            bits_per_cell=args.bits_per_cell,
            signed_scheme=scheme,
        )
        for fan_in, fan_out in ((512, 256), (256, 10)):  # digits-mlp's two layers
            torch.manual_seed(0)
            layer = CrossbarLinear(fan_in, fan_out, cfg, dev)
            layer.train()
            with torch.no_grad():
                layer.w_step.fill_(0.02)  # weights over the whole integer range
            # the private call is the thing measured (no public entry draws training noise)
            q = layer._quantized().detach()  # noqa: SLF001
            shape = layer._cell_shape()  # noqa: SLF001
            n = shape[0] * shape[1] * shape[2] * shape[3]
            cells = layer._cell_levels  # noqa: SLF001

            def draws(shape: tuple[int, ...] = shape) -> None:
                torch.randn(shape), torch.rand(shape), torch.randn(shape)

            outs = []
            for torch_path in (False, True):
                torch_draws_env(torch_path)
                torch.manual_seed(1)
                outs.append(cells(q, True).view(torch.int32))
            same = torch.equal(outs[0], outs[1])
            torch_draws_env(True)
            t_torch = median_ms(lambda c=cells, q=q: c(q, True), args.calls, args.repeats)
            torch_draws_env(False)
            t_cells = median_ms(lambda c=cells, q=q: c(q, True), args.calls, args.repeats)
            t_draws = median_ms(draws, args.calls, args.repeats)
            print(
                f"| {scheme} | {fan_in} x {fan_out} | {n} | {t_cells:.2f} | {t_torch:.2f} "
                f"| {t_draws:.2f} | {same} |"
            )


if __name__ == "__main__":
    main()
