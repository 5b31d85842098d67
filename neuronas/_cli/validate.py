"""``neuronas validate``: check chip, architecture and search-space files."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False  # a prefix of an option is an error, not a guess
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="chip, architecture or search-space YAML files"
    )
    parser.add_argument(
        "--chip",
        default=None,
        metavar="NAME|PATH",
        help="also check search spaces and architectures against this chip (as a search would)",
    )
    parser.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="check search spaces against this dataset instead of the space's own",
    )
    parser.set_defaults(func=run)


def _kind(data: Any) -> str | None:
    """Which file this is, from its top-level keys."""
    if not isinstance(data, Mapping):
        return None
    if "technology" in data:
        return "chip"
    if "layers" in data:
        return "architecture"
    if "families" in data:
        return "search space"
    return None


def check_file(path: str, chip: Any = None, dataset: str | None = None) -> str:
    """A one-line description of a valid file; raises NeuronasError for an invalid one.

    A search space gets the checks a search makes before it starts (:meth:`SearchSpace.check`),
    against ``chip`` when given; an architecture is checked for ``chip``'s periphery.
    """
    from neuronas.config import load_yaml
    from neuronas.errors import ConfigError, NeuronasError

    data = load_yaml(path)
    kind = _kind(data)
    if kind == "chip":
        from neuronas.config import parse_model
        from neuronas.hardware.chip import Chip

        chip = parse_model(Chip, data, path)
        budgets = ", ".join(
            f"{m} {b.limit:g}{'' if b.hard else ' (soft)'}" for m, b in chip.budgets.items().items()
        )
        return (
            f"chip {chip.name}: {chip.technology.node_nm:g} nm {chip.technology.device.kind}, "
            f"{'/'.join(chip.periphery.adc_kinds)}; budgets: {budgets or 'none'}"
        )
    if kind == "architecture":
        from neuronas.spec import ArchSpec

        arch = ArchSpec.from_yaml(path)
        if chip is not None:
            from neuronas.hardware.chip import require_compatible

            require_compatible(arch, chip, path)
        layers = arch.resolved()
        return (
            f"architecture {arch.name or '(unnamed)'}: {len(arch.layers)} layers ({len(layers)} weighted), "
            f"input {list(arch.input.shape)} x T={arch.input.timesteps}, output {list(arch.output_shape)}"
        )
    if kind == "search space":
        try:
            from neuronas.search.space import load_space
        except ImportError:
            return (
                "search space (not checked: neuronas.search.space is not available in this install)"
            )
        space = load_space(path, dataset=dataset)
        if chip is not None:
            try:
                space.check(chip, dataset=dataset)
            except NeuronasError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        on = f" on chip {chip.name}" if chip is not None else ""
        return f"search space {space.name or '(unnamed)'}: candidates can be built{on}"
    raise ConfigError(
        f"{path}: not a chip, architecture or search-space file (a chip has a top-level 'technology' key, "
        "an architecture 'layers', a search space 'families')"
    )


def run(args: argparse.Namespace) -> int:
    from neuronas.errors import NeuronasError

    chip = None
    if args.chip:
        from neuronas.hardware import load_chip

        chip = load_chip(args.chip)  # a bad --chip is the command's error, not a file's
    failed = 0
    for path in args.files:
        try:
            what = check_file(path, chip, args.dataset)
        except NeuronasError as exc:
            failed += 1
            msg = str(exc)
            print(f"FAIL {msg if msg.startswith(path) else f'{path}: {msg}'}")
        else:
            print(f"OK   {path}: {what}")
    if failed:
        print(f"{failed} of {len(args.files)} file{'s' if len(args.files) > 1 else ''} failed")
        return 2
    return 0
