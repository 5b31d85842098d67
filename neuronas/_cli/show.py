"""``neuronas show RUN``: the trials and the feasible Pareto front of a run, as tables."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, TextIO


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run name (runs/NAME in the current folder) or a run folder")
    parser.add_argument(
        "--storage", default=None, help="the SQLAlchemy URL, for a run kept in a database"
    )
    parser.add_argument("--front-only", action="store_true", help="print only the Pareto front")
    parser.add_argument(
        "--limit", type=int, default=0, help="print at most this many trials (latest; 0 = all)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronas.search.run import open_run

    r = open_run(args.run, storage=args.storage)
    print_summary(r, stream=sys.stdout, trials_table=not args.front_only, limit=args.limit)
    return 0


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]

    def fmt(cells: list[str]) -> str:
        out = []
        for c, w in zip(cells, widths, strict=False):
            numeric = c[:1].isdigit() or (c[:1] in "-+" and c[1:2].isdigit())
            out.append(c.rjust(w) if numeric else c.ljust(w))
        return "  ".join(out).rstrip()

    lines = [fmt(header), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _num(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def describe_arch(arch: dict[str, Any] | None) -> str:
    """A compact one-cell description of a stored architecture (:meth:`ArchSpec.describe`)."""
    if not arch:
        return "-"
    from neuronas.errors import NeuronasError
    from neuronas.spec import ArchSpec

    try:
        return str(ArchSpec.from_dict(arch).describe())
    except NeuronasError:  # stored by another version and no longer valid: no description
        return "-"


def _worst_margin(t: Any) -> str:
    margins = t.user_attrs.get("margins") or {}
    if not margins:
        return "-"
    k = max(margins, key=lambda m: margins[m])
    return f"{k}{100 * margins[k]:+.0f}%"


def trial_rows(
    trials: list[Any], objectives: list[str], split: str = "validation"
) -> tuple[list[list[str]], list[str]]:
    where = "val" if split == "validation" else split
    header = [
        "#",
        "state",
        "status",
        "arch",
        f"{where} AEE px" if "aee" in objectives else f"{where} acc",
        "±",
        "energy_uj",
        "latency_us",
        "area_mm2",
        "memory_kb",
        "worst margin",
        "s",
    ]
    rows = []
    for t in trials:
        ua = t.user_attrs
        metrics = ua.get("metrics") or {}
        acc = ua.get("accuracy")
        if ua.get("aee") is not None:  # optical flow: AEE (px) in the quality column
            quality, spread = f"{ua['aee']:.3f}px", _num(ua.get("aee_std"), ".3f")
        else:
            quality = _num(100 * acc, ".1f") if acc is not None else "-"
            spread = (
                _num(100 * ua["accuracy_std"], ".1f") if ua.get("accuracy_std") is not None else "-"
            )
        rows.append(
            [
                str(t.number),
                t.state.name,
                str(ua.get("status", "")),
                describe_arch(ua.get("arch")),
                quality,
                spread,
                _num(metrics.get("energy_uj")),
                _num(metrics.get("latency_us")),
                _num(metrics.get("area_mm2")),
                _num(metrics.get("memory_kb")),
                _worst_margin(t),
                _num((ua.get("seconds") or {}).get("wall"), ".2f"),
            ]
        )
    return rows, header


#: statuses whose trials produced no front member, with the reason they carry
_NOT_OK = (
    "failed",
    "invalid",
    "incompatible",
    "infeasible",
    "infeasible_measured",
    "stopped",
    "proxy_rejected",
    "interrupted",
)
#: trial numbers listed per reason before "..."
_LISTED = 8


def _reason_key(reason: str) -> str:
    """A reason with its numbers blanked: "energy_uj 1.2 > hard budget 1" and "energy_uj 3 >
    hard budget 1" are one group."""
    return re.sub(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?%?", "#", reason)


def trial_reasons(
    trials: list[Any], *, failed_only: bool = False
) -> list[tuple[str, str, list[int]]]:
    """``(status, reason, trial numbers)`` for the trials that were rejected, stopped or failed,
    one entry per kind of reason (numbers aside), the most frequent first; the reason shown is
    the first trial's.  ``failed_only``: FAIL trials only (not the interrupted ones)."""
    groups: dict[tuple[str, str], tuple[str, list[int]]] = {}
    for t in trials:
        status = str(t.user_attrs.get("status", ""))
        if t.state.name == "FAIL" and not status:
            status = "failed"
        if status not in _NOT_OK or t.user_attrs.get("uncounted"):
            continue
        if failed_only and (t.state.name != "FAIL" or status == "interrupted"):
            continue
        reason = " ".join(str(t.user_attrs.get("reason") or "(no reason recorded)").split())
        key = (status, _reason_key(reason))
        groups.setdefault(key, (reason, []))[1].append(t.number)
    out = [(status, reason, nums) for (status, _), (reason, nums) in groups.items()]
    return sorted(out, key=lambda g: (-len(g[2]), g[2][0]))


def reason_lines(trials: list[Any]) -> list[str]:
    """One line per kind of reason: count, status, the trials (at most a few) and the reason."""
    lines = []
    for status, reason, nums in trial_reasons(trials):
        shown = ", ".join(str(n) for n in nums[:_LISTED]) + (", ..." if len(nums) > _LISTED else "")
        short = reason if len(reason) <= 300 else reason[:297] + "..."
        lines.append(f"{len(nums):>4} x {status} (#{shown}): {short}")
    return lines


def print_summary(
    r: Any, stream: TextIO = sys.stdout, trials_table: bool = True, limit: int = 0
) -> None:
    """Header, counts, trials table and front table of an opened run."""
    from neuronas.search.pareto import front_trials
    from neuronas.search.trials import count_trials

    cfg = r.config
    trials = r.study.get_trials(deepcopy=False)
    c = count_trials(r.study, trials)
    budgets = (
        ", ".join(
            f"{m} <= {b.limit:g}{'' if b.hard else ' (soft)'}"
            for m, b in r.chip.budgets.items().items()
        )
        or "none"
    )
    w = stream.write
    w(
        f"run {r.run_dir}: space {r.space.name}, chip {r.chip.name} (budgets: {budgets}), dataset {cfg.dataset}\n"
    )
    w(
        f"sampler {cfg.sampler}, objectives {', '.join(cfg.objectives)}, seed {cfg.seed}, {cfg.epochs} epoch(s)"
        + (f", <= {cfg.max_train_samples} training samples" if cfg.max_train_samples else "")
        + "\n"
    )
    split = cfg.accuracy_split
    if split == "validation":
        w(
            f"accuracy: chip accuracy on the validation split (held out of the training data), mean "
            f"and std over {cfg.eval_instances} chip instance(s): what the search selects by; the "
            "test split is measured only by `neuronas export`\n"
        )
    else:
        w(
            f"accuracy: chip accuracy on the {split} split, mean and std over {cfg.eval_instances} "
            "chip instance(s) (a run made before selection moved to the validation split: its "
            "front was selected on these numbers)\n"
        )
    w(
        f"finished {c.finished}/{cfg.trials}: trained {c.trained}, rejected untrained (over a hard budget) {c.infeasible}, "
        f"over budget after training {c.infeasible_measured}, stopped {c.pruned}, failed {c.failed}"
        + (f", interrupted and retried {c.interrupted}" if c.interrupted else "")
        + (f", running {c.running}" if c.running else "")
        + "\n"
    )
    if trials_table:
        shown = [t for t in trials if t.state.name != "WAITING"]
        if limit:
            shown = shown[-limit:]
        rows, header = trial_rows(shown, list(cfg.objectives), split)
        w("\ntrials\n" + table(rows, header) + "\n")
        lines = reason_lines(shown)
        if lines:
            w("\nwhy trials were rejected, stopped or failed\n" + "\n".join(lines) + "\n")
    front = front_trials(r.study, list(cfg.objectives), trials)
    rows, header = trial_rows(front, list(cfg.objectives), split)
    w(
        f"\nfeasible Pareto front ({len(front)} member{'s' if len(front) != 1 else ''}; {', '.join(cfg.objectives)})\n"
    )
    w(
        table(rows, header) + "\n"
        if front
        else "(empty: no trained candidate within every hard budget yet)\n"
    )
