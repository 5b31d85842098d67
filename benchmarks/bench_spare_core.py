"""The spare core takes rows too: while the draws are taken ahead, the linear layers' convert-sum
forward and the noisy-cell pass are split between the training thread and the draws' thread.

Two parts, each interleaving its arms in ONE process (the order reversed every repeat):

* ``--calls``: one call at a time, torch on one thread with the draws ahead switched on, the
  call split (``_kernels.SPARE_PARTS`` as shipped) against one pass (``SPARE_PARTS = 1``), at
  layer sizes from an SHD readout to a 1152-input layer; median ms of ``--call-repeats`` calls,
  and whether the outputs are the same bits.
* whole trials (``neuronas.search.objective.evaluate``, as ``bench_draws_ahead.py`` runs them:
  the CLI's screening settings, 3 epochs, lr 3e-2, 3 chip instances, the default noisy chip), torch
  given ``--threads`` threads, in three arms: ``in place`` (``NEURONAS_DRAWS_AHEAD=0``: all
  threads, draws in place), ``ahead`` (one thread fewer, the draws ahead, nothing else shared:
  the trainer before this change, forced for every candidate; the conv backward in one task)
  and ``ahead + rows`` (the same with the rows, items and the conv backward's two tasks shared:
  what the trainer does now where it takes the draws ahead).  Prints each arm's median wall
  seconds and what the trainer's choice (``neuronas.train.spare_core_pays``) is, and checks for
  networks of linear layers that ``ahead`` and ``ahead + rows`` give the same numbers (losses,
  accuracies per instance; a conv backward in one task and in two sums in other orders: "-").
  SHD candidates (``NAME@shd``) read a generated SHD file in its real layout.

    python benchmarks/bench_spare_core.py --calls
    python benchmarks/bench_spare_core.py --repeats 3 digits-mlp \\
        benchmarks/archs/space-mlp-max2.yaml benchmarks/archs/space-mlp-max2-w2.yaml \\
        benchmarks/archs/audio-mlp-t40.yaml@shd benchmarks/archs/space-conv4-max4.yaml
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

#: (rows M = batch x timesteps, inputs G x R, columns S x Nc) of the forward calls timed
FORWARD_SIZES = [(320, 192, 160), (256, 512, 256), (256, 1024, 512), (256, 1152, 1024)]
#: (inputs K, outputs N) of the noisy-cell calls timed (2 slices of 2-bit cells, differential)
CELL_SIZES = [(175, 64), (512, 128), (1024, 256), (2048, 512)]


def time_calls(repeats: int) -> list[dict[str, Any]]:
    import torch

    from neuronas.snn import _kernels, set_draws_ahead

    torch.set_num_threads(1)
    set_draws_ahead(True)
    shipped = _kernels.SPARE_PARTS
    gen = torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = []

    def arms(call: Any) -> tuple[dict[str, float], bool]:
        times: dict[str, list[float]] = {"one pass": [], "split": []}
        outs: dict[str, Any] = {}
        for i in range(repeats + 1):
            for arm in ("one pass", "split") if i % 2 else ("split", "one pass"):
                _kernels.SPARE_PARTS = shipped if arm == "split" else 1
                t0 = time.perf_counter()
                outs[arm] = call()
                if i:
                    times[arm].append(time.perf_counter() - t0)
        _kernels.SPARE_PARTS = shipped
        a, b = outs["one pass"], outs["split"]
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        same = all(
            (x is None and y is None) or torch.equal(x, y) for x, y in zip(a, b, strict=True)
        )
        return {k: statistics.median(v) * 1e3 for k, v in times.items()}, same

    for m, gr, k in FORWARD_SIZES:
        g = max(1, gr // 64)
        x = (torch.rand(m, gr, generator=gen) < 0.15).float()
        wg = torch.randn(g, gr // g, k, generator=gen)
        step = torch.rand(k, generator=gen) + 0.5
        args = (x, wg, step, torch.randn(k, generator=gen), 1e-4 * step)
        rest = (torch.rand(4, generator=gen), torch.rand(k, generator=gen), 1, -1, 1, True)
        ms, same = arms(lambda: _kernels.convert_sum_forward(*args, *rest))  # noqa: B023
        rows.append(
            {
                "call": "convert-sum forward",
                "size": f"M {m}, inputs {gr}, columns {k}",
                "work": m * gr * k,
            }
            | {"ms": ms, "same_bits": same}
        )
    for n_in, n_out in CELL_SIZES:
        p = _kernels.CellParams(2, 2, True, 0, 0.1, 3.0, 0.1, 0.03, 0.05, 0.02, n_out)
        shape = (n_in, 2, 2, n_out)
        eps, u, r = (
            torch.randn(shape, generator=gen),
            torch.rand(shape, generator=gen),
            torch.randn(shape, generator=gen),
        )
        q = torch.randint(-3, 4, (n_out, n_in), generator=gen).float()
        ms, same = arms(lambda: _kernels.noisy_cells(q, p, eps, u, r))  # noqa: B023
        rows.append(
            {"call": "noisy cells", "size": f"{n_in} x {n_out}", "work": n_in * 2 * n_out}
            | {"ms": ms, "same_bits": same}
        )
    set_draws_ahead(False)
    print(
        f"\none call at a time, torch on one thread + the draws' thread, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("| call | size | work / cells | one pass ms | split ms | ratio | same bits |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r["ms"]
        print(
            f"| {r['call']} | {r['size']} | {r['work'] / 1e6:.2f}M | {ms['one pass']:.3f} | "
            f"{ms['split']:.3f} | {ms['one pass'] / ms['split']:.2f} | {r['same_bits']} |"
        )
    return rows


def time_trials(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    import neuronas.train as train
    from neuronas.config import resolve_preset
    from neuronas.hardware import load_chip
    from neuronas.settings import SCREENING
    from neuronas.snn import _kernels, build
    from neuronas.spec import ArchSpec

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_draws_ahead import shd_files, timed_trial, trial_settings

    shipped, min_share = _kernels.SPARE_PARTS, train.DRAWS_AHEAD_MIN_SHARE
    conv_tasks = _kernels.SPARE_CONV_TASKS
    tmp_root = tempfile.TemporaryDirectory()
    data_root = args.data_root
    if data_root is None and any(a.endswith("@shd") for a in args.archs):
        data_root = str(shd_files(Path(tmp_root.name)))
    # arm: (draws ahead switch, forced for every candidate, spare parts)
    arms = {
        "in place": ("0", False, 1),
        "ahead": ("1", True, 1),
        "ahead + rows": ("1", True, shipped),
    }
    rows: list[dict[str, Any]] = []
    for spec in args.archs:
        name, dataset = spec.split("@") if "@" in spec else (spec, "digits-events")
        arch = ArchSpec.from_yaml(resolve_preset(name, "arch"))
        net = build(arch, load_chip(args.chip))
        share = train.draw_share(net, SCREENING.batch_size)
        choice = train.spare_core_pays(net, SCREENING.batch_size, args.threads)
        settings = trial_settings(dataset, data_root)
        times: dict[str, list[float]] = {a: [] for a in arms}
        results: dict[str, set[str]] = {a: set() for a in arms}
        for rep in range(args.repeats + 1):
            for arm in list(arms) if rep % 2 else list(arms)[::-1]:
                env, forced, parts = arms[arm]
                torch.set_num_threads(args.threads)
                os.environ["NEURONAS_DRAWS_AHEAD"] = env
                train.DRAWS_AHEAD_MIN_SHARE = 0.0 if forced else min_share
                _kernels.SPARE_PARTS = parts
                _kernels.SPARE_CONV_TASKS = conv_tasks if parts > 1 else 1
                wall, tr, numbers = timed_trial(arch, args.chip, settings)
                results[arm].add(numbers)
                if rep > 0:
                    times[arm].append(wall)
                print(
                    f"{spec} {arm}: {wall:.2f} s (threads {tr['config']['threads']}), "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        os.environ.pop("NEURONAS_DRAWS_AHEAD", None)
        train.DRAWS_AHEAD_MIN_SHARE, _kernels.SPARE_PARTS = min_share, shipped
        _kernels.SPARE_CONV_TASKS = conv_tasks
        linear = all(lay.kind == "fc" for lay in arch.resolved())
        med = {a: statistics.median(v) for a, v in times.items()}
        rows.append(
            {
                "arch": spec,
                "draw_share": share,
                "choice_ahead": choice,
                "seconds": times,
                "median_s": med,
                "same_numbers": (results["ahead"] == results["ahead + rows"]) if linear else None,
            }
        )
    print(
        f"\ntorch {args.threads} threads given, chip {args.chip}, {args.repeats} repeats, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "| candidate | est. draw share | choice | in place s | ahead s | ahead + rows s | "
        "in place / ahead + rows | ahead / ahead + rows | same numbers |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["median_s"]
        print(
            f"| {r['arch']} | {r['draw_share']:.3f} | "
            f"{'ahead + rows' if r['choice_ahead'] else 'in place'} | {m['in place']:.2f} | "
            f"{m['ahead']:.2f} | {m['ahead + rows']:.2f} | "
            f"{m['in place'] / m['ahead + rows']:.3f} | {m['ahead'] / m['ahead + rows']:.3f} | "
            f"{ {True: 'yes', False: 'NO', None: '-'}[r['same_numbers']] } |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "archs", nargs="*", help="shipped names or YAML paths; NAME@DATASET for another"
    )
    ap.add_argument("--calls", action="store_true", help="time single calls")
    ap.add_argument("--call-repeats", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chip", default="rram-adcless-65nm")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    report: dict[str, Any] = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "argv": sys.argv[1:],
        "load_before": os.getloadavg()[0],
    }
    if args.calls:
        report["calls"] = time_calls(args.call_repeats)
    if args.archs:
        report["trials"] = time_trials(args)
    report["load_after"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
