"""``neuronas train``: train one architecture with the crossbar in the loop."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from pathlib import Path
from typing import Any

SCHEDULES = ("progressive", "abrupt", "none")
#: what --device accepts: auto, cpu, cuda or cuda:N (cuda without a GPU falls back to the CPU)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d{1,2})?")


def add_parser(parser: argparse.ArgumentParser) -> None:
    from neuronas.settings import FULL_TRAINING

    # --epoch must not quietly mean --epochs: a prefix of an option is an error, not a guess
    parser.allow_abbrev = False
    parser.add_argument(
        "arch", metavar="ARCH", help="architecture YAML file or shipped name (experiments/archs)"
    )
    parser.add_argument(
        "--chip",
        default=None,
        metavar="NAME|PATH",
        help="chip preset or YAML (its device noise is trained against and sampled at evaluation); "
        "default: an ideal device",
    )
    parser.add_argument(
        "--dataset", default=FULL_TRAINING.dataset, help="dataset name (see `neuronas datasets`)"
    )
    parser.add_argument(
        "--data-root", default=None, metavar="DIR", help="where tonic datasets live"
    )
    parser.add_argument("--epochs", type=int, default=FULL_TRAINING.epochs)
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="write metrics.json and model.pt here"
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=FULL_TRAINING.schedule,
        help="hardware awareness across training: ramp 0->1 over the first 60%% of steps "
        "(progressive), 1 throughout (abrupt), or 0 (none: the chip only at evaluation)",
    )
    parser.add_argument("--seed", type=int, default=FULL_TRAINING.seed)
    parser.add_argument(
        "--eval-instances",
        type=int,
        default=FULL_TRAINING.eval_instances,
        metavar="K",
        help="sampled chip instances (device-noise seeds) for the validation accuracy's mean "
        "and std and the test accuracy's interval",
    )
    parser.add_argument("--batch-size", type=int, default=FULL_TRAINING.batch_size)
    parser.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default: the trainer's)"
    )
    parser.add_argument("--max-train-samples", type=int, default=None, metavar="N")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: $NEURONAS_NUM_THREADS or torch's)",
    )
    parser.add_argument(
        "--fit",
        action="store_true",
        help="move the architecture's ADC / crossbar / cell / neuron choices onto what --chip offers "
        "instead of failing (as `neuronas cost --fit`)",
    )
    parser.set_defaults(func=run)


def check_args(args: argparse.Namespace) -> None:
    """Refuse settings no training can use, each with one line naming the flag and the value."""
    from neuronas.errors import ConfigError

    def need(ok: bool, flag: str, value: Any, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{flag}: got {value}, {allowed}")

    need(1 <= args.epochs <= 100_000, "--epochs", args.epochs, "must be an integer in 1..100000")
    need(
        1 <= args.eval_instances <= 10_000,
        "--eval-instances",
        args.eval_instances,
        "must be an integer in 1..10000",
    )
    need(
        1 <= args.batch_size <= 1 << 20,
        "--batch-size",
        args.batch_size,
        "must be an integer in 1..1048576",
    )
    need(0 <= args.seed <= 2**32 - 1, "--seed", args.seed, "must be an integer in 0..4294967295")
    if args.lr is not None:
        need(
            math.isfinite(args.lr) and 0 < args.lr <= 10,
            "--lr",
            args.lr,
            "must be a learning rate in (0, 10]",
        )
    if args.max_train_samples is not None:
        need(
            args.max_train_samples >= 1,
            "--max-train-samples",
            args.max_train_samples,
            "must be an integer >= 1",
        )
    if args.threads is not None:
        need(1 <= args.threads <= 1024, "--threads", args.threads, "must be an integer in 1..1024")
    need(
        DEVICE_PATTERN.fullmatch(args.device) is not None,
        "--device",
        repr(args.device),
        "must be auto, cpu, cuda or cuda:N",
    )
    if args.out is not None:
        check_out_dir(args.out)


def check_out_dir(out: str) -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be created."""
    from neuronas.errors import ConfigError

    p = Path(out)
    if not out or p.exists() and not p.is_dir():
        raise ConfigError(
            f"--out: {out!r} is not a folder (a file of that name exists); give a folder path"
        )
    parent = p
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(
            f"--out: {out!r} lies under {str(parent)!r}, which is a file; give a folder path"
        )
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out: {str(parent)!r} is not writable; give a folder you can write to")


def run(args: argparse.Namespace) -> int:
    from neuronas.config import resolve_preset
    from neuronas.errors import ConfigError
    from neuronas.spec import ArchSpec

    check_args(args)
    path = resolve_preset(args.arch, "arch")
    arch = ArchSpec.from_yaml(path)
    chip = None
    if args.chip:
        from neuronas.hardware import load_chip
        from neuronas.hardware.chip import chip_problems, fit_to_chip

        chip = load_chip(args.chip)
        problems = chip_problems(arch, chip)
        if problems and not args.fit:
            # training a network the chip cannot map would report an accuracy no chip delivers
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ConfigError(
                f"{path}: {problems[0]}{more}; pass --fit to map it onto the chip's periphery"
            )
        if problems:
            arch = fit_to_chip(arch, chip)
    elif args.fit:
        raise ConfigError(
            "--fit: needs --chip (the chip whose periphery the architecture is mapped onto)"
        )
    from neuronas.data import check_input_shape, dataset_info

    dataset_info(args.dataset)  # unknown names fail here, listing the known ones
    check_input_shape(args.dataset, arch.input.shape, what=f"{args.arch}: input.shape")
    from neuronas.tasks import check_task

    check_task(arch, args.dataset)

    from neuronas.train import train_candidate

    kwargs = {"lr": args.lr} if args.lr is not None else {}
    result = train_candidate(
        arch,
        chip,
        args.dataset,
        epochs=args.epochs,
        seed=args.seed,
        data_root=args.data_root,
        batch_size=args.batch_size,
        schedule=args.schedule,
        eval_instances=args.eval_instances,
        device=args.device,
        out_dir=args.out,
        max_train_samples=args.max_train_samples,
        progress=True,
        num_threads=args.threads,
        test_instances=args.eval_instances,
        **kwargs,
    )
    chip_name = chip.name if chip is not None else "ideal device"
    print(
        f"{arch.name or args.arch} on {chip_name}: status {result.status}"
        + (f" ({result.reason})" if result.reason else "")
    )
    if result.status != "diverged" and result.metric == "aee":
        print(
            f"  AEE on chip ({result.config['eval_split']} split, held out of the training data): "
            f"{result.aee_mean:.3f} +- {result.aee_std:.3f} px over "
            f"{len(result.aees)} instances (pixels with events: {result.aee_events_mean:.3f} px); "
            f"float: {result.float_aee:.3f} px; predicting the training split's mean flow: "
            f"{result.baseline_aee:.3f} px"
        )
    elif result.status != "diverged":
        acc, std, flt = (
            result.accuracy_mean or 0.0,
            result.accuracy_std or 0.0,
            result.float_accuracy,
        )
        print(
            f"  accuracy on chip ({result.config['eval_split']} split, held out of the training "
            f"data): {100 * acc:.2f} +- {100 * std:.2f} % "
            f"over {len(result.accuracies)} instances; float: {100 * (flt or 0.0):.2f} %"
        )
        if result.test_accuracies:
            from neuronas.settings import REPORT
            from neuronas.train import confidence_interval

            mean, half = confidence_interval(result.test_accuracies, REPORT.confidence)
            print(
                f"  accuracy on chip (test split): {100 * mean:.2f} % +- {100 * half:.2f} "
                f"({100 * REPORT.confidence:g}% Student-t interval over "
                f"{len(result.test_accuracies)} instances); float: "
                f"{100 * (result.test_float_accuracy or 0.0):.2f} %"
            )
        rates = ", ".join(f"{r:.3f}" for r in result.activity.get("input_rates", []))
        print(f"  input spike rate per weighted layer: {rates}")
    print(f"  {result.epochs_run} epochs in {result.train_seconds:.1f} s")
    if args.out:
        print(
            f"  wrote {Path(args.out) / 'metrics.json'}"
            + (f" and {result.checkpoint}" if result.checkpoint else "")
        )
    else:
        print(
            json.dumps(
                {
                    f"{result.metric}_mean": getattr(result, f"{result.metric}_mean"),
                    f"{result.metric}_std": getattr(result, f"{result.metric}_std"),
                }
            )
        )
    return 0 if result.status != "diverged" else 1
