"""The ``neuronas`` command line.

Each subcommand lives in its own module under :mod:`neuronas._cli` exposing
``add_parser(subparsers)``; the module is imported only when needed so that ``neuronas cost``
never pays for importing torch.  Every :class:`~neuronas.errors.NeuronasError` is printed as one
line and exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from neuronas.errors import NeuronasError
from neuronas.version import __version__

#: subcommand -> (module under neuronas._cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("search", "search a space for the best networks that fit a chip"),
    "show": ("show", "print the trials and the Pareto front of a run"),
    "export": ("export", "export a run's feasible Pareto front for the hardware team"),
    "cost": ("cost", "price an architecture on a chip with the built-in CIM cost model"),
    "train": ("train", "train one architecture with the crossbar in the loop"),
    "validate": ("validate", "check chip, search-space and architecture files"),
    "datasets": ("datasets", "list the datasets neuronas can load"),
}

#: subcommands neuronas starts itself, left out of ``--help`` (module under neuronas._cli)
HIDDEN: dict[str, str] = {"_worker": "worker"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with exit status 2 and one line (its default too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="neuronas",
        allow_abbrev=False,
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--version", action="version", version=f"neuronas {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, add_help=False, allow_abbrev=False)
            continue
        mod = importlib.import_module(f"neuronas._cli.{module}")
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks for errors",
        )
        mod.add_parser(p)
    if only in HIDDEN:
        # no help= : argparse then leaves the subcommand out of the listing
        p = sub.add_parser(only, allow_abbrev=False)
        importlib.import_module(f"neuronas._cli.{HIDDEN[only]}").add_parser(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in COMMANDS or command in HIDDEN else None)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    try:
        rc = args.func(args)
    except NeuronasError as exc:
        if debug:
            raise
        print(f"neuronas {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"neuronas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`neuronas cost ... | head`): not an error of ours
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
