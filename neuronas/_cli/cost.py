"""``neuronas cost``: price architectures on a chip with the built-in CIM cost model."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

DEFAULT_CHIP = "rram-adcless-65nm"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False  # a prefix of an option is an error, not a guess
    parser.add_argument(
        "archs",
        nargs="*",
        metavar="ARCH",
        help="architecture YAML files or shipped names (experiments/archs)",
    )
    parser.add_argument(
        "--chip", default=None, help=f"chip preset name or YAML path (default: {DEFAULT_CHIP})"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--activity",
        type=float,
        default=None,
        metavar="RATE",
        help="uniform spike rate in [0, 1] (default: the chip's prior; 1 = dense worst case)",
    )
    group.add_argument(
        "--activity-file",
        default=None,
        metavar="FILE",
        help="measured activity JSON (or a trainer metrics.json with an 'activity' key)",
    )
    parser.add_argument("--json", action="store_true", help="print the full CostReport(s) as JSON")
    parser.add_argument(
        "--all",
        action="store_true",
        help="price every shipped architecture on every shipped chip (or on --chip) as one table",
    )
    parser.add_argument(
        "--fit",
        action="store_true",
        help="move an architecture's ADC / crossbar / cell choices onto what the chip offers instead of failing",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronas.config import list_presets, resolve_preset
    from neuronas.errors import ConfigError
    from neuronas.hardware import estimate, load_activity, load_chip
    from neuronas.hardware.chip import chip_problems, fit_to_chip
    from neuronas.spec import ArchSpec

    if args.activity is not None and not (
        0.0 <= args.activity <= 1.0 and math.isfinite(args.activity)
    ):
        raise ConfigError(f"--activity: got {args.activity}, must be a spike rate in [0, 1]")
    if args.all:
        chips = [args.chip] if args.chip else list_presets("chip")
        names = args.archs or list_presets("arch")
        return _table(names, chips, args)
    if not args.archs:
        raise ConfigError(
            "no architecture given: pass ARCH.yaml (or a shipped name: "
            + ", ".join(list_presets("arch"))
            + "), or --all for every shipped one"
        )
    chip = load_chip(args.chip or DEFAULT_CHIP)
    reports = []
    for ref in args.archs:
        path = resolve_preset(ref, "arch")
        arch = ArchSpec.from_yaml(path)
        problems = chip_problems(arch, chip)
        fitted = False
        if problems:
            if not args.fit:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise ConfigError(
                    f"{path}: {problems[0]}{more}; pass --fit to map it onto the chip's periphery"
                )
            arch = fit_to_chip(arch, chip)
            fitted = True
        activity: Any = args.activity
        if args.activity_file:
            activity = load_activity(args.activity_file)
            if len(activity.input_rates) != len(arch.resolved()):
                raise ConfigError(
                    f"{args.activity_file}: activity.input_rates: got {len(activity.input_rates)} rates, "
                    f"{path} has {len(arch.resolved())} weighted layers (one rate each)"
                )
        report = estimate(arch, chip, activity)
        reports.append((str(path), arch, report, fitted))
    if args.json:
        out = [dict(r.to_dict(), file=p, fitted_to_chip=f) for p, _a, r, f in reports]
        print(strict_json(out[0] if len(out) == 1 else out))
        return 0
    for i, (source, arch, report, fitted) in enumerate(reports):
        if i:
            print()
        _print_report(source, arch, report, fitted)
    return 0


def strict_json(data: Any) -> str:
    """``data`` as standard JSON: a NaN or infinity (which ``json`` would print as the invalid
    tokens NaN / Infinity) is an error naming where it sits, never printed."""
    from neuronas.errors import NeuronasError

    try:
        return json.dumps(data, indent=2, allow_nan=False)
    except ValueError:
        where = _non_finite(data, "") or "(unknown)"
        raise NeuronasError(
            f"the cost report holds a non-finite number at {where}; check the chip's constants"
        ) from None


def _non_finite(v: Any, where: str) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):
        return where or "(top level)"
    if isinstance(v, dict):
        items: Any = v.items()
    elif isinstance(v, (list, tuple)):
        items = enumerate(v)
    else:
        return None
    for k, item in items:
        got = _non_finite(
            item, f"{where}[{k}]" if isinstance(k, int) else f"{where}.{k}" if where else str(k)
        )
        if got:
            return got
    return None


# ---------------------------------------------------------------------------------------------
# printing


def _fmt(v: float, unit: str = "") -> str:
    if v == 0:
        s = "0"
    elif abs(v) >= 1e5 or abs(v) < 1e-3:
        s = f"{v:.3e}"
    else:
        s = f"{v:.4g}"
    return f"{s} {unit}".rstrip()


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(str(x) for x in s)


def _print_report(path: str, arch: Any, r: Any, fitted: bool) -> None:
    act = r.activity
    rates = ", ".join(f"{x:.3g}" for x in act.input_rates)
    print(f"{arch.name or path} on {r.chip}  ({path})")
    if fitted:
        print(
            "  mapped onto the chip's periphery (--fit): "
            f"adc {arch.mapping.adc_kind}/{arch.mapping.adc_bits} b, crossbar {arch.mapping.rows}x{arch.mapping.cols}, "
            f"{arch.mapping.bits_per_cell} bit/cell, neuron {arch.neuron.model}"
        )
    print(
        f"  T = {arch.input.timesteps} timesteps; activity ({act.source}) per weighted layer input: {rates}"
    )
    print(f"  latency: {r.schedule}")
    for note in r.notes:
        print(f"  note: {note}")
    shapes = arch.shapes()
    print()
    head = f"  {'layer':<10}{'shape out':>14}{'arrays':>8}{'util':>7}{'in rate':>9}{'energy uJ':>12}{'stage ns':>11}{'busy us':>10}{'area mm2':>11}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for layer in r.layers:
        print(
            f"  {layer.name:<10}{_shape(shapes[layer.index]):>14}{layer.arrays:>8}"
            f"{(f'{layer.utilisation:.0%}' if layer.arrays else '-'):>7}{layer.input_rate:>9.3g}"
            f"{_fmt(layer.energy_uj):>12}{_fmt(layer.stage_ns):>11}{_fmt(layer.latency_us):>10}{_fmt(layer.area_mm2):>11}"
        )
    print()
    print(f"  {'component':<14}{'energy uJ':>12}{'share':>8}{'area mm2':>12}{'share':>8}")
    print("  " + "-" * 52)
    for c, e in r.components.items():
        a = r.area_components.get(c)
        es = f"{e / r.energy_uj:.1%}" if r.energy_uj else "-"
        as_ = f"{a / r.area_mm2:.1%}" if a is not None and r.area_mm2 else ""
        print(f"  {c:<14}{_fmt(e):>12}{es:>8}{(_fmt(a) if a is not None else ''):>12}{as_:>8}")
    print()
    print(
        f"  total: energy {_fmt(r.energy_uj, 'uJ')}, latency {_fmt(r.latency_us, 'us')} "
        f"({'pipelined' if r.pipelined else 'not pipelined'}), area {_fmt(r.area_mm2, 'mm2')}, "
        f"memory {_fmt(r.memory_kb, 'kB')}"
    )
    print(
        f"         {r.arrays} arrays in {r.tiles} tiles, utilisation {r.utilisation:.1%}, "
        f"{_fmt(r.sops)} SOPs ({_fmt(r.ops)} dense MACs)"
    )
    if r.budgets:
        print()
        print(f"  {'budget':<12}{'value':>12}{'limit':>12}{'margin':>10}  status")
        margins = r.margins()
        for m, (lim, hard) in r.budgets.items():
            v = r.metric(m)
            ok = v <= lim
            status = "ok" if ok else ("OVER (hard)" if hard else "over (soft)")
            print(
                f"  {m:<12}{_fmt(v):>12}{_fmt(lim):>12}{margins[m]:>+10.1%}  {status}{'' if hard else '  [soft]' if ok else ''}"
            )
        print(f"  => {'feasible' if r.feasible else 'INFEASIBLE (a hard budget is broken)'}")
    else:
        print("  (the chip sets no budgets)")


def _table(names: list[str], chips: list[str], args: argparse.Namespace) -> int:
    from neuronas.config import resolve_preset
    from neuronas.hardware import estimate, load_chip
    from neuronas.hardware.chip import chip_problems, fit_to_chip
    from neuronas.spec import ArchSpec

    archs = [ArchSpec.from_yaml(resolve_preset(n, "arch")) for n in names]
    rows = []
    for chip_name in chips:
        chip = load_chip(chip_name)
        for arch in archs:
            fitted = bool(chip_problems(arch, chip))
            a = fit_to_chip(arch, chip) if fitted else arch
            r = estimate(a, chip, args.activity)
            rows.append((chip.name, arch.name, a, r, fitted))
    if args.json:
        print(strict_json([dict(r.to_dict(), fitted_to_chip=f) for _c, _n, _a, r, f in rows]))
        return 0
    act = "the chip's prior" if args.activity is None else f"rate {args.activity:g}"
    print(
        f"every shipped architecture on every chip (activity: {act}; * = mapped onto the chip's periphery)"
    )
    head = f"{'chip':<24}{'arch':<17}{'readout':>11}{'energy uJ':>12}{'latency us':>12}{'area mm2':>10}{'memory kB':>11}  budgets"
    print(head)
    print("-" * (len(head) + 12))
    last = None
    for chip_name, arch_name, a, r, fitted in rows:
        if last is not None and chip_name != last:
            print()
        last = chip_name
        ro = f"{a.mapping.adc_kind}{'' if a.mapping.adc_kind in ('sa', 'digital') else a.mapping.adc_bits}{'*' if fitted else ''}"
        if not r.budgets:
            verdict = "-"
        elif r.feasible:
            verdict = "ok" + (
                " (soft over: " + ", ".join(v.metric for v in r.violations) + ")"
                if r.violations
                else ""
            )
        else:
            verdict = "OVER " + ", ".join(f"{v.metric} {v.margin:+.0%}" for v in r.hard_violations)
        print(
            f"{chip_name:<24}{arch_name:<17}{ro:>11}{_fmt(r.energy_uj):>12}{_fmt(r.latency_us):>12}"
            f"{_fmt(r.area_mm2):>10}{_fmt(r.memory_kb):>11}  {verdict}"
        )
    return 0
