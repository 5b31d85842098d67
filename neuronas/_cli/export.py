"""``neuronas export RUN --out DIR``: the feasible Pareto front as files for the hardware team."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuronas.settings import REPORT


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run name (runs/NAME in the current folder) or a run folder")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder, new or empty (default RUN_FOLDER/export)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out if it holds files (the whole folder: nothing of it is kept)",
    )
    parser.add_argument(
        "--storage", default=None, help="the SQLAlchemy URL, for a run kept in a database"
    )
    parser.add_argument("--no-nir", action="store_true", help="skip the NIR graphs")
    parser.add_argument(
        "--no-chip-package", action="store_true", help="skip the chip programming packages"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=REPORT.instances,
        help="chip instances each member's validation and test accuracy is measured on "
        f"(default {REPORT.instances})",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=REPORT.confidence,
        help=f"confidence level of the accuracy intervals, Student-t over the instances "
        f"(default {REPORT.confidence:g})",
    )
    parser.add_argument(
        "--trials",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="export these trials instead of the Pareto front (each trained and within every "
        "hard budget; the report and pareto.csv say which are on the front)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronas.export import check_out, check_report_options, export_run
    from neuronas.search.study import open_run

    check_report_options(args.instances, args.confidence)
    if args.out is not None:
        check_out(args.out, args.overwrite)  # before opening the study: a wrong --out fails fast
    r = open_run(args.run, storage=args.storage)
    out = args.out or (r.run_dir / "export")
    res = export_run(
        r,
        out,
        nir=not args.no_nir,
        overwrite=args.overwrite,
        chip_package=not args.no_chip_package,
        instances=args.instances,
        confidence=args.confidence,
        trial_numbers=args.trials,
    )
    what = "chosen trial(s)" if args.trials else "front member(s)"
    print(f"exported {len(res['members'])} {what} to {out}")
    print(f"report: {res['report']}")
    return 0
