"""Before a search: is any candidate of the space within the chip's hard budgets at all?"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neuronas.errors import SearchError
from neuronas.search.draw import draw_priced

__all__ = ["prescreen", "stored_prescreen"]


def prescreen(
    space: Any,
    chip: Any,
    *,
    n: int = 300,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    num_outputs: int | None = None,
    activity: float | None = None,
) -> dict[str, Any]:
    """Price ``n`` random candidates of ``space`` on ``chip`` (no training; milliseconds each).

    Returns the feasible share and, per hard budget, how many candidates break it and the best
    (smallest) margin any candidate reaches.  When none is feasible, raises a
    :class:`SearchError` that names the tightest budget (the one even the cheapest candidate
    misses by the most).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    n_ok = n_feasible = 0
    broken: dict[str, int] = {}
    best_margin: dict[str, float] = {}
    best_value: dict[str, float] = {}
    limits: dict[str, float] = {}
    hard = set(chip.budgets.hard_metrics)
    for draw in draw_priced(
        space, chip, rng, n, input_shape=input_shape, num_outputs=num_outputs, activity=activity
    ):
        rep = draw.report
        n_ok += 1
        if rep.feasible:
            n_feasible += 1
        for v in rep.violations:
            if v.hard:
                broken[v.metric] = broken.get(v.metric, 0) + 1
        for metric, margin, value, limit in _hard_margins(rep, hard):
            limits[metric] = limit
            if margin < best_margin.get(metric, math.inf):
                best_margin[metric] = margin
                best_value[metric] = value
    stats = {
        "sampled": n,
        "buildable": n_ok,
        "feasible": n_feasible,
        "feasible_share": (n_feasible / n_ok) if n_ok else 0.0,
        "broken": broken,
        "best_margin": best_margin,
        "limits": limits,
    }
    if n_ok == 0:
        raise SearchError(
            f"search space {space.name!r}: none of {n} sampled candidates can be built on chip {chip.name} (check the space's ADC kinds and crossbar sizes against the chip)"
        )
    if n_feasible == 0:
        if best_margin:
            tight = max(best_margin, key=lambda k: best_margin[k])
            raise SearchError(
                f"search space {space.name!r} on chip {chip.name}: all {n_ok} sampled candidates break a hard budget; "
                f"the tightest is {tight} <= {limits[tight]:.4g} (even the cheapest candidate needs {best_value[tight]:.4g}, "
                f"+{100 * best_margin[tight]:.0f}%; {broken.get(tight, 0)}/{n_ok} break it). Loosen that budget or search smaller networks"
            )
        raise SearchError(
            f"search space {space.name!r} on chip {chip.name}: all {n_ok} sampled candidates break a hard budget"
        )
    return stats


def _hard_margins(report: Any, hard: set[str]) -> list[tuple[str, float, float, float]]:
    """(metric, margin, value, limit) for every hard budget of the chip."""
    out = []
    for metric, margin in report.margins().items():
        if metric in hard:
            value = float(report.metric(metric))
            limit = value / (1.0 + margin) if (1.0 + margin) != 0 else float("nan")
            out.append((metric, float(margin), value, limit))
    return out


def stored_prescreen(run: Any, n: int = 300) -> dict[str, Any]:
    """The run's pre-screen (stored when the run was created), computed and stored if missing."""
    from neuronas.search.trials import jsonable

    screen = run.study.user_attrs.get("prescreen")
    if not screen:
        cfg = run.config
        screen = prescreen(
            run.space,
            run.chip,
            n=n,
            seed=cfg.seed,
            input_shape=cfg.input_shape,
            num_outputs=cfg.num_outputs,
            activity=cfg.activity_prior,
        )
        run.study.set_user_attr("prescreen", jsonable(screen))
    return dict(screen)
