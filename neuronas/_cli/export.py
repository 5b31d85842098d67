"""``neuronas export RUN --out DIR``: the feasible Pareto front as files for the hardware team."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run name (runs/NAME in the current folder) or a run folder")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default RUN_FOLDER/export)"
    )
    parser.add_argument(
        "--storage", default=None, help="the SQLAlchemy URL, for a run kept in a database"
    )
    parser.add_argument("--no-nir", action="store_true", help="skip the NIR graphs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronas.export import export_run
    from neuronas.search.study import open_run

    r = open_run(args.run, storage=args.storage)
    out = args.out or (r.run_dir / "export")
    res = export_run(r, out, nir=not args.no_nir)
    print(f"exported {len(res['members'])} front member(s) to {out}")
    print(f"report: {res['report']}")
    return 0
