"""What a running search prints: a one-line summary of the study, live on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from neuronas.search.pareto import front_trials
from neuronas.search.trials import count_trials

__all__ = ["Progress", "banner", "progress_line"]


def _fmt_metric(name: str, v: float) -> str:
    if name == "accuracy":
        return f"{100 * v:.1f}%"
    if name == "aee":
        return f"AEE {v:.3f} px"
    unit = {"energy_uj": "uJ", "latency_us": "us", "area_mm2": "mm2", "memory_kb": "kB"}[name]
    return f"{v:.3g} {unit}"


def progress_line(
    study: Any, target: int, objectives: Sequence[str], trials: Sequence[Any] | None = None
) -> str:
    """One line: trials done, rejected untrained, failed, and the best front so far."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    c = count_trials(study, trials)
    parts = [
        f"trials {c.finished}/{target}",
        f"trained {c.trained}",
        f"infeasible (not trained) {c.infeasible}",
    ]
    if c.infeasible_measured:
        parts.append(f"over budget after training {c.infeasible_measured}")
    if c.pruned:
        parts.append(f"stopped {c.pruned}")
    parts.append(f"failed {c.failed}")
    if c.running:
        parts.append(f"running {c.running}")
    if c.duplicates:
        parts.append(f"re-proposed (not counted) {c.duplicates}")
    front = front_trials(study, objectives, trials)
    if front:
        best = front[0]
        parts.append(
            f"front {len(front)} (best: "
            + ", ".join(_fmt_metric(o, v) for o, v in zip(objectives, best.values, strict=False))
            + ")"
        )
    else:
        parts.append("front 0")
    return " | ".join(parts)


def banner(run: Any, screen: dict[str, Any]) -> str:
    """The line a search starts with: where, what, and how much of the space fits the chip."""
    cfg = run.config
    return (
        f"neuronas search: run {run.run_dir} | space {run.space.name} on chip {run.chip.name}, dataset {cfg.dataset} | "
        f"sampler {cfg.sampler}, objectives {', '.join(cfg.objectives)} | "
        f"{100 * screen['feasible_share']:.0f}% of {screen['buildable']} random candidates fit the hard budgets\n"
    )


class Progress:
    """A live line on a terminal (rewritten in place), one line per update otherwise."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""

    def update(self, line: str) -> None:
        if not self.enabled or line == self.last:
            return
        self.last = line
        if self.tty:
            width = 200
            self.stream.write("\r" + line[:width].ljust(min(width, len(self.last) + 1)) + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def show(self, run: Any) -> None:
        """Update the line from ``run``'s study (nothing is read when the line is off: it would
        cost a read of every trial after each one)."""
        if not self.enabled:
            return
        self.update(progress_line(run.study, run.target, run.config.objectives))

    def close(self) -> None:
        if self.enabled and self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()
