"""The noisy-cell pass alone: a training read's cells from the integer weights and the draws.

Every training batch of a crossbar layer on a noisy chip turns its integer weights and three
draws per cell (programming noise, stuck-cell uniforms, read noise; ``[K, S, P, Nc]`` each) into
the signed per-slice cells ``[K, S, Nc]`` the event-driven forward reads
(:func:`neuronas.snn._kernels.noisy_cells`).  This times that call on one thread, per layer
shape of the default search space (``digits-small``: 6-bit weights, 1 bit per cell, differential
pairs; fc layers of 64-512 inputs and outputs) and a few other cell layouts, with the default
chip's non-idealities (``rram-adcless-65nm``) and with read noise only.

``--compare PATH`` also loads another checkout's kernel (``PATH/neuronas/snn/_cell_kernels_nb.py``)
and runs both through the same wrapper, alternating call by call in this one process, checks
that they give the same bits and prints the ratio (both kernels compile into a new temporary
numba cache, whatever ``NUMBA_CACHE_DIR`` says: a second copy of a module must not write into a
checkout's cache, and numba cannot load that copy from a cache again).

``--trial ARCH`` (with ``--compare``) also runs whole trials of ``ARCH`` at the search's screening
settings, each seed once with each kernel in alternating order (``--threads`` torch threads), and
checks that both give the same results.

    python benchmarks/bench_noisy_cells.py [--repeats 40] [--compare PATH] [--json OUT]
        [--trial ARCH --trial-seeds 8 --threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: (name, inputs K, outputs N, weight bits, bits per cell, differential)
SHAPES = (
    ("fc 512->128, 6 b, 1 b/cell, pairs", 512, 128, 6, 1, True),
    ("fc 128->10, 6 b, 1 b/cell, pairs", 128, 10, 6, 1, True),
    ("fc 512->512, 4 b, 1 b/cell, pairs", 512, 512, 4, 1, True),
    ("fc 512->128, 6 b, 2 b/cell, pairs", 512, 128, 6, 2, True),
    ("fc 512->128, 6 b, 2 b/cell, offset", 512, 128, 6, 2, False),
)


def cases(read_only: bool) -> list[tuple[str, Any, Any, tuple[Any, Any, Any]]]:
    """(name, q, CellParams, (eps, u, r)) per shape: integer weights over the whole range and
    the draws of one training read."""
    import torch

    from neuronas.hardware.chip import load_chip
    from neuronas.snn import _kernels
    from neuronas.snn.crossbar import CrossbarConfig, DeviceModel

    dev = DeviceModel.from_chip(load_chip("rram-adcless-65nm"))
    out = []
    gen = torch.Generator().manual_seed(0)
    for name, k_in, n_out, wbits, bpc, diff in SHAPES:
        cfg = CrossbarConfig(
            weight_bits=wbits,
            adc_bits=1,
            adc_kind="sa",
            rows=128,
            bits_per_cell=bpc,
            signed_scheme="differential" if diff else "offset",
        )
        qn, qp = cfg.weight_range
        nc = n_out if diff else n_out + 1  # offset columns: one reference column more
        lmax = 2**bpc - 1
        g_off = lmax / dev.on_off_ratio
        q = torch.randint(qn, qp + 1, (n_out, k_in), generator=gen).float()
        shape = (k_in, cfg.slices, 2 if diff else 1, nc)
        p = _kernels.CellParams(
            n_slices=cfg.slices,
            bits=bpc,
            differential=diff,
            offset=0 if diff else -qn,
            g_off=g_off,
            g_on=lmax + g_off,
            program_sigma=0.0 if read_only else dev.program_sigma,
            stuck_off_below=0.0 if read_only else dev.stuck_off_rate,
            stuck_on_below=0.0 if read_only else dev.stuck_off_rate + dev.stuck_on_rate,
            read_sigma=dev.read_noise_sigma,
            n_cols=nc,
        )
        eps = None if read_only else torch.randn(shape, generator=gen)
        u = None if read_only else torch.rand(shape, generator=gen)
        r = torch.randn(shape, generator=gen)
        label = name + (", read noise only" if read_only else "")
        out.append((label, q, p, (eps, u, r)))
    return out


def paired_trials(arms: dict[str, Any], arch_name: str, seeds: int, threads: int) -> dict[str, Any]:
    """Whole trials (``neuronas.search.objective.evaluate`` at the search's screening settings,
    the default chip) of one architecture, seeds 1..``seeds``, each run once with each arm's
    kernel, the order alternating by seed (seed 0 first, untimed: the warm-up); the results
    must be the same (chip accuracies, float accuracy, every epoch's loss)."""
    import torch

    from neuronas.config import resolve_preset
    from neuronas.search.objective import evaluate
    from neuronas.settings import SearchSettings
    from neuronas.snn import _kernels
    from neuronas.spec import ArchSpec

    torch.set_num_threads(threads)
    arch = ArchSpec.from_yaml(resolve_preset(arch_name, "arch")).to_dict()
    chip = SearchSettings().chip

    def one(mod: Any, seed: int) -> tuple[float, Any]:
        with tempfile.TemporaryDirectory() as tmp, _kernels.cell_kernels_from(mod):
            t0 = time.perf_counter()
            out = evaluate(arch, chip, {"seed": seed, "out_dir": tmp})
            wall = time.perf_counter() - t0
        tr = out["train"]
        return wall, (
            tr["accuracies"],
            tr["float_accuracy"],
            [h.get("loss") for h in tr["history"]],
        )

    for mod in arms.values():
        one(mod, 0)
    per_seed = []
    for seed in range(1, seeds + 1):
        order = list(arms.items()) if seed % 2 else list(arms.items())[::-1]
        res = {arm: one(mod, seed) for arm, mod in order}
        if res["this"][1] != res["other"][1]:
            raise SystemExit(f"trial seed {seed}: the two kernels' trials differ")
        ratio = res["other"][0] / res["this"][0]
        per_seed.append({"seed": seed, "this_s": res["this"][0], "other_s": res["other"][0]})
        print(
            f"trial {arch_name} seed {seed}: this {res['this'][0]:.3f} s, other "
            f"{res['other'][0]:.3f} s, other/this {ratio:.3f} (same results)",
            flush=True,
        )
    ratios = [r["other_s"] / r["this_s"] for r in per_seed]
    print(
        f"trial {arch_name}: median other/this {statistics.median(ratios):.3f} over {seeds} seeds"
    )
    return {
        "arch": arch_name,
        "threads": threads,
        "per_seed": per_seed,
        "median_other_over_this": statistics.median(ratios),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--compare", default=None, help="another checkout's root")
    ap.add_argument(
        "--trial",
        default=None,
        help="with --compare: also whole trials of this architecture (preset or file), paired",
    )
    ap.add_argument("--trial-seeds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the trials")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.compare is not None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_conv_kernels import private_numba_cache

        private_numba_cache("bench_noisy_cells_")

    import torch

    torch.set_num_threads(1)
    from neuronas.snn import _kernels

    if not _kernels.available():
        raise SystemExit("numba is not importable here: nothing to time")
    arms: dict[str, Any] = {"this": None}  # None: this checkout's own kernel
    if args.compare is not None:
        from bench_conv_kernels import other_checkout_module

        arms["other"] = other_checkout_module(
            Path(args.compare), "neuronas/snn/_cell_kernels_nb.py", "bench_noisy_cells_other"
        )

    rows = []
    for read_only in (False, True):
        for name, q, p, (eps, u, r) in cases(read_only):
            times: dict[str, list[float]] = {a: [] for a in arms}
            outs: dict[str, Any] = {}
            for arm, mod in arms.items():  # compile / warm each
                with _kernels.cell_kernels_from(mod):
                    outs[arm] = _kernels.noisy_cells(q, p, eps, u, r)
            for _ in range(args.repeats):
                for arm, mod in arms.items():
                    with _kernels.cell_kernels_from(mod):
                        t0 = time.process_time()
                        _kernels.noisy_cells(q, p, eps, u, r)
                        times[arm].append(time.process_time() - t0)
            row: dict[str, Any] = {
                "case": name,
                "cells": int(eps.numel() if eps is not None else r.numel()),
            }
            for arm in arms:
                row[f"{arm}_median_ms"] = 1e3 * statistics.median(times[arm])
                row[f"{arm}_min_ms"] = 1e3 * min(times[arm])
            if "other" in arms:
                row["same_bits"] = bool(
                    torch.equal(outs["this"].view(torch.int32), outs["other"].view(torch.int32))
                )
                row["other_over_this"] = row["other_median_ms"] / row["this_median_ms"]
            rows.append(row)
            line = f"{name:<52} {row['cells']:>9} cells  this {row['this_median_ms']:7.3f} ms"
            if "other" in arms:
                line += (
                    f"  other {row['other_median_ms']:7.3f} ms  other/this "
                    f"{row['other_over_this']:.2f}  {'same bits' if row['same_bits'] else 'BITS DIFFER'}"
                )
            print(line, flush=True)
    trials = None
    if args.trial is not None and "other" in arms:
        trials = paired_trials(arms, args.trial, args.trial_seeds, args.threads)
    if args.json:
        out = {
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
            "load_start": list(os.getloadavg()),
            "rows": rows,
            "trials": trials,
        }
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if "other" in arms and not all(r["same_bits"] for r in rows):
        raise SystemExit("the two kernels' cells differ")


if __name__ == "__main__":
    main()
