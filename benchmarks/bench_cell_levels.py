"""Time of one training call of ``CrossbarLayer._cell_levels`` (the noisy cells drawn for every
training batch) on a chip's device model, for the layers of digits-mlp, and what bounds it.

Prints, per layer shape: the call's median milliseconds; the part of it that is torch's own
random draws (programming ``randn``, stuck-cell ``rand``, read ``randn`` over the ``[K, S, P,
Nc]`` cells: what the fixed random stream costs); and, as a proposal only, what the same draws
cost from numba's generator inside one kernel (a different random stream, so not what neuronas
does).  Run it against another checkout with ``PYTHONPATH=that/checkout``.

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


def numba_draws() -> Callable[[int], None]:
    """The three draws from numba's own generator into preallocated buffers (the proposal)."""
    import numpy as np
    from numba import njit

    @njit(cache=False, nogil=True)
    def draw(eps, u, r):  # pragma: no cover
        for i in range(eps.shape[0]):
            eps[i] = np.random.standard_normal()
        for i in range(u.shape[0]):
            u[i] = np.random.random()
        for i in range(r.shape[0]):
            r[i] = np.random.standard_normal()

    bufs: dict[int, tuple[np.ndarray, ...]] = {}

    def run(n: int) -> None:
        if n not in bufs:
            bufs[n] = tuple(np.empty(n, dtype=np.float32) for _ in range(3))
        draw(*bufs[n])

    return run


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
    draw_nb = numba_draws()
    print(f"neuronas from {os.path.dirname(neuronas.__file__)}; {dev}")
    print(f"load average {os.getloadavg()[0]:.2f}, threads {args.threads}")
    print("| columns | layer K x N | cells | _cell_levels ms | torch draws ms | numba draws ms |")
    print("|---|---|---|---|---|---|")
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

            t_cells = median_ms(lambda c=cells, q=q: c(q, True), args.calls, args.repeats)
            t_draws = median_ms(draws, args.calls, args.repeats)
            t_nb = median_ms(lambda n=n: draw_nb(n), args.calls, args.repeats)
            print(
                f"| {scheme} | {fan_in} x {fan_out} | {n} | {t_cells:.2f} | {t_draws:.2f} | {t_nb:.2f} |"
            )


if __name__ == "__main__":
    main()
