"""``neuronas _worker RUN_DIR``: one local worker process of ``neuronas search --workers N``.

Hidden from ``neuronas --help``: the search starts these itself
(:func:`neuronas.search.local.worker_command`); a person has no reason to.
"""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run folder")
    parser.add_argument("--index", type=int, default=0, help="this worker's index")
    parser.add_argument("--workers", type=int, default=1, help="workers sharing the study")
    parser.add_argument("--storage", default=None, help="the SQLAlchemy URL of a database run")
    parser.add_argument(
        "--deadline", type=float, default=None, help="time.time() after which no trial begins"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronas.search.local import worker_main

    return worker_main(
        args.run_dir,
        index=args.index,
        workers=args.workers,
        storage=args.storage,
        deadline=args.deadline,
    )
