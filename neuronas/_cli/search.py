"""``neuronas search``: search a space for the best spiking networks that fit a chip."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    from neuronas.search.pareto import OBJECTIVES
    from neuronas.search.samplers import SAMPLERS
    from neuronas.settings import SCREENING, SEARCH

    d, t = SEARCH, SCREENING
    a = parser.add_argument
    # every option defaults to None so that a resumed run keeps its stored settings; the
    # embedded defaults (shown in --help) apply to a new run
    a("--space", default=None, help=f"search space preset or YAML file (default {d.space})")
    a("--chip", default=None, help=f"chip preset or YAML file (default {d.chip})")
    a("--dataset", default=None, help="dataset name (default: the space's dataset, digits-events)")
    a(
        "--trials",
        type=int,
        default=None,
        help=f"finished trials to reach, counting earlier runs of the same name (default {d.trials})",
    )
    a("--sampler", choices=SAMPLERS, default=None, help=f"Optuna sampler (default {d.sampler})")
    a(
        "--objectives",
        nargs="+",
        default=None,
        metavar="OBJ",
        help=f"objectives among {', '.join(OBJECTIVES)} (default {' '.join(d.objectives)})",
    )
    a(
        "--workers",
        type=int,
        default=d.workers,
        help="local worker processes sharing the study (default 1)",
    )
    a(
        "--storage",
        default=None,
        help="sqlite (runs/NAME/study.db, default), journal (runs/NAME/journal.log, for --workers) or an SQLAlchemy URL",
    )
    a(
        "--name",
        default=None,
        help="run name: the run lives in runs/NAME (default SPACE_CHIP_DATASET); the same name resumes",
    )
    a(
        "--seed",
        type=int,
        default=None,
        help=f"seed of the sampler and of training (default {t.seed})",
    )
    a(
        "--epochs",
        type=int,
        default=None,
        help=f"training epochs per candidate (screening fidelity; default {t.epochs})",
    )
    a(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding tonic datasets (nothing is downloaded)",
    )
    a(
        "--max-train-samples",
        type=int,
        default=None,
        help=f"train each candidate on at most this many samples (screening fidelity; default {t.max_train_samples or 'all'}; 0 = all)",
    )
    a(
        "--max-eval-samples",
        type=int,
        default=None,
        help="evaluate each candidate on at most this many test samples (cheap fidelity)",
    )
    a(
        "--batch-size",
        type=int,
        default=None,
        help=f"training batch size (default {t.batch_size}; flow datasets 16: settings.TASK_SCREENING)",
    )
    a(
        "--eval-instances",
        type=int,
        default=None,
        help=f"noisy chip instances accuracy is averaged over (default {t.eval_instances})",
    )
    a("--lr", type=float, default=None, help=f"learning rate (default {t.lr:g})")
    a(
        "--activity-prior",
        type=float,
        default=None,
        help="spike rate used to price candidates before training (default: the space's, else the chip's)",
    )
    a(
        "--min-accuracy",
        type=float,
        default=None,
        dest="min_accuracy_after_first_epoch",
        help="stop (prune) a candidate whose validation accuracy after its first epoch is below this",
    )
    a(
        "--proxy-quantile",
        type=float,
        default=None,
        metavar="Q",
        help="train a within-budget candidate only if its training-free score (SAHD) reaches the Q-quantile of those trained so far",
    )
    a(
        "--halving-epochs",
        type=int,
        default=None,
        metavar="N",
        help="successive halving: after N epochs only the best 1/ETA of the candidates (by "
        "validation accuracy and priced costs) go on to --epochs; 0: train every candidate "
        "fully (the default)",
    )
    a(
        "--halving-eta",
        type=int,
        default=None,
        metavar="ETA",
        help=f"successive halving keeps the best 1/ETA at the rung (default {t.halving_eta})",
    )
    a(
        "--population",
        type=int,
        default=None,
        dest="population_size",
        help="NSGA-II population size",
    )
    a(
        "--startup-trials",
        type=int,
        default=None,
        help="guided, TPE: trials before the model is used (default: trials/4, within 5..10)",
    )
    a(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new trial after this many seconds (the same command later resumes towards --trials)",
    )
    a("--quiet", action="store_true", help="no live progress line")
    from neuronas.search.ray_cluster import add_ray_arguments

    add_ray_arguments(parser)  # --backend ray and its flags (lightweight: ray loads only when used)
    parser.set_defaults(func=run)


def check_search_flags(args: argparse.Namespace) -> None:
    """Refuse, before any run is created or resumed, a flag value no trial could use (one line)."""
    import math

    from neuronas.errors import ConfigError
    from neuronas.search.run import check_run_name

    def bad(flag: str, value: object, allowed: str) -> None:
        raise ConfigError(f"{flag}: got {value!r}, must be {allowed}")

    ints = (
        ("--seed", "seed", 0, 2**32 - 1),
        ("--trials", "trials", 1, None),
        ("--workers", "workers", 1, None),
        ("--epochs", "epochs", 1, None),
        ("--startup-trials", "startup_trials", 0, None),
        ("--population", "population_size", 2, None),
        ("--batch-size", "batch_size", 1, None),
        ("--max-eval-samples", "max_eval_samples", 1, None),
        ("--max-train-samples", "max_train_samples", 0, None),
        ("--eval-instances", "eval_instances", 1, None),
        ("--halving-epochs", "halving_epochs", 0, None),
        ("--halving-eta", "halving_eta", 2, None),
    )
    for flag, key, low, high in ints:
        v = getattr(args, key, None)
        if v is None:
            continue
        if v < low or (high is not None and v > high):
            bad(flag, v, f"an integer in [{low}, {high}]" if high is not None else f">= {low}")
    lr = args.lr
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        bad("--lr", lr, "a finite number > 0")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout >= 0):
        bad("--timeout", args.timeout, "a finite number of seconds >= 0")
    for flag, key in (
        ("--min-accuracy", "min_accuracy_after_first_epoch"),
        ("--proxy-quantile", "proxy_quantile"),
    ):
        v = getattr(args, key, None)
        if v is not None and not (math.isfinite(v) and 0.0 <= v <= 1.0):
            bad(flag, v, "a number in [0, 1]")
    ap = args.activity_prior
    if ap is not None and not (math.isfinite(ap) and 0.0 < ap <= 1.0):
        bad("--activity-prior", ap, "a spike rate in (0, 1]")
    if args.name is not None:
        check_run_name(args.name)
    if args.storage is not None:
        from neuronas.search.storage import check_search_storage

        check_search_storage(args.storage)


def run(args: argparse.Namespace) -> int:
    from neuronas._cli.show import print_summary
    from neuronas.errors import NeuronasError, SearchError, StorageError
    from neuronas.search.run import create_or_resume, run_dir_for
    from neuronas.search.storage import readonly_cause
    from neuronas.search.study import run_search
    from neuronas.search.trials import count_trials, sampler_exhausted

    check_search_flags(args)
    options = {
        k: getattr(args, k)
        for k in (
            "space",
            "chip",
            "dataset",
            "trials",
            "sampler",
            "objectives",
            "storage",
            "name",
            "seed",
            "epochs",
            "data_root",
            "max_train_samples",
            "max_eval_samples",
            "batch_size",
            "eval_instances",
            "lr",
            "activity_prior",
            "min_accuracy_after_first_epoch",
            "proxy_quantile",
            "halving_epochs",
            "halving_eta",
            "population_size",
            "startup_trials",
        )
    }
    from neuronas.search.ray_cluster import ray_options

    # None for the local backend; checks the Ray flags before anything is stored
    ray = ray_options(args)
    try:
        # a remote Ray cluster's workers read the data on their own hosts: no local preflight
        run_ = create_or_resume(options, preflight=ray is None or ray.address is None)
        url = args.storage if args.storage and "://" in args.storage else None
        run_search(
            run_,
            workers=args.workers,
            ray=ray,
            storage_url=url,
            progress=not args.quiet,
            timeout_s=args.timeout,
        )
    except NeuronasError:
        raise
    except Exception as exc:
        # read-only storage found at its first write (root, a read-only mount, a mode=ro URL)
        cause = readonly_cause(exc)
        if cause is None:
            raise
        raise StorageError(
            f"{run_dir_for(options)}: the run's storage is read-only ({cause}); make the run "
            "folder and its study writable, or copy the run to a writable place"
        ) from None
    print_summary(run_, stream=sys.stdout)
    counts = count_trials(run_.study)
    done = counts.finished
    if done < run_.target and sampler_exhausted(run_.study):
        print(f"\nthe grid is exhausted: its {done} points are all evaluated")
    elif done < run_.target:
        if args.timeout is not None:
            why = "stopped at --timeout"
        elif counts.running:
            why = (
                f"stopped while {counts.running} trial(s) still run in another process "
                "(or were left by one on another host)"
            )
        else:
            why = "stopped"
        print(
            f"\n{why} with {done}/{run_.target} finished trials: the same command continues the run"
        )
    where = run_.run_dir
    with contextlib.suppress(ValueError):
        where = where.relative_to(Path.cwd())
    if done and counts.failed == done:
        # nothing was learnt: a failure of the search, not an empty front (the summary above
        # lists each reason; the most common one is the line a user sees last)
        from neuronas._cli.show import trial_reasons

        _, reason, numbers = trial_reasons(run_.study.get_trials(deepcopy=False), failed_only=True)[
            0
        ]
        raise SearchError(
            f"all {done} finished trial(s) of run {where} failed ({len(numbers)} x: {reason}); nothing was "
            f"trained -- fix the cause and run the same command again, or see `neuronas show {where}`"
        )
    print(f"\nnext: neuronas show {where}   |   neuronas export {where} --out {where}/export")
    return 0
