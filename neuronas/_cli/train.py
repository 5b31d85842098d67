"""``neuronas train``: train one architecture with the crossbar in the loop."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SCHEDULES = ("progressive", "abrupt", "none")


def add_parser(parser: argparse.ArgumentParser) -> None:
    from neuronas.settings import FULL_TRAINING

    parser.add_argument("arch", metavar="ARCH", help="architecture YAML file or shipped name (experiments/archs)")
    parser.add_argument("--chip", default=None, metavar="NAME|PATH",
                        help="chip preset or YAML (its device noise is trained against and sampled at evaluation); "
                             "default: an ideal device")
    parser.add_argument("--dataset", default=FULL_TRAINING.dataset, help="dataset name (see `neuronas datasets`)")
    parser.add_argument("--data-root", default=None, metavar="DIR", help="where tonic datasets live")
    parser.add_argument("--epochs", type=int, default=FULL_TRAINING.epochs)
    parser.add_argument("--out", default=None, metavar="DIR", help="write metrics.json and model.pt here")
    parser.add_argument("--schedule", choices=SCHEDULES, default=FULL_TRAINING.schedule,
                        help="hardware awareness across training: ramp 0->1 over the first 60%% of steps "
                             "(progressive), 1 throughout (abrupt), or 0 (none: the chip only at evaluation)")
    parser.add_argument("--seed", type=int, default=FULL_TRAINING.seed)
    parser.add_argument("--eval-instances", type=int, default=FULL_TRAINING.eval_instances, metavar="K",
                        help="sampled chip instances (device-noise seeds) for the accuracy mean and std")
    parser.add_argument("--batch-size", type=int, default=FULL_TRAINING.batch_size)
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the trainer's)")
    parser.add_argument("--max-train-samples", type=int, default=None, metavar="N")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: $NEURONAS_NUM_THREADS or torch's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronas.config import resolve_preset
    from neuronas.errors import ConfigError
    from neuronas.spec import ArchSpec

    if args.epochs < 1:
        raise ConfigError(f"--epochs: got {args.epochs}, must be >= 1")
    if args.eval_instances < 1:
        raise ConfigError(f"--eval-instances: got {args.eval_instances}, must be >= 1")
    arch = ArchSpec.from_yaml(resolve_preset(args.arch, "arch"))
    chip = None
    if args.chip:
        from neuronas.hardware import load_chip

        chip = load_chip(args.chip)
    from neuronas.data import check_input_shape, dataset_info

    dataset_info(args.dataset)  # unknown names fail here, listing the known ones
    check_input_shape(args.dataset, arch.input.shape, what=f"{args.arch}: input.shape")
    from neuronas.train import _check_task

    _check_task(arch, args.dataset)

    from neuronas.train import train_candidate

    kwargs = {"lr": args.lr} if args.lr is not None else {}
    result = train_candidate(
        arch, chip, args.dataset, epochs=args.epochs, seed=args.seed, data_root=args.data_root,
        batch_size=args.batch_size, schedule=args.schedule, eval_instances=args.eval_instances,
        device=args.device, out_dir=args.out, max_train_samples=args.max_train_samples, progress=True,
        num_threads=args.threads, **kwargs,
    )
    chip_name = chip.name if chip is not None else "ideal device"
    print(f"{arch.name or args.arch} on {chip_name}: status {result.status}"
          + (f" ({result.reason})" if result.reason else ""))
    if result.status != "diverged":
        print(f"  accuracy on chip: {100 * result.accuracy_mean:.2f} +- {100 * result.accuracy_std:.2f} % "
              f"over {len(result.accuracies)} instances; float: {100 * result.float_accuracy:.2f} %")
        rates = ", ".join(f"{r:.3f}" for r in result.activity.get("input_rates", []))
        print(f"  input spike rate per weighted layer: {rates}")
    print(f"  {result.epochs_run} epochs in {result.train_seconds:.1f} s")
    if args.out:
        print(f"  wrote {Path(args.out) / 'metrics.json'}" + (f" and {result.checkpoint}" if result.checkpoint else ""))
    else:
        print(json.dumps({"accuracy_mean": result.accuracy_mean, "accuracy_std": result.accuracy_std}))
    return 0 if result.status != "diverged" else 1
