"""The Pareto plot of an export (matplotlib, headless): accuracy against each cost objective.

Every trial with a price is drawn: the front (with its members' trial numbers), the other
feasible trained trials, trained trials over a budget once measured, and candidates rejected
untrained (at accuracy 0).  Trained points carry error bars (the std over chip instances).  The
legend sits below the axes so that it hides no point, each group's label counts its trials and,
when some coincide (a re-proposed architecture reuses its result), the distinct points; budget
lines are labelled with their value and kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["AXIS_TITLES", "plot_front"]

#: axis titles of the cost metrics (units spelled out)
AXIS_TITLES = {
    "energy_uj": "energy per inference (µJ)",
    "latency_us": "latency per inference (µs)",
    "area_mm2": "chip area (mm²)",
    "memory_kb": "weight memory (kB)",
}
_UNITS = {"energy_uj": "µJ", "latency_us": "µs", "area_mm2": "mm²", "memory_kb": "kB"}

# label, marker, colour, z-order; trial -> group decided in _group
_GROUPS = (
    ("rejected untrained (prior cost, drawn at 0 %)", "x", "#9a9a9a", 1),
    ("trained, over a budget once measured", "s", "#e8a33d", 2),
    ("trained, feasible, not on the front", "o", "#7aa6d6", 2),
    ("Pareto front (trial numbers)", "o", "#c0392b", 3),
)


def _group(t: Any, front_ids: set[int], quality: str = "accuracy") -> int | None:
    ua = t.user_attrs
    st = ua.get("status")
    if st in ("infeasible", "incompatible"):
        # untrained: drawn at accuracy 0; an AEE has no such floor, so they are left out
        return 0 if quality == "accuracy" else None
    if ua.get(quality) is None:
        return None
    if t.number in front_ids:
        return 3
    if st == "infeasible_measured":
        return 1
    if st == "ok":
        return 2
    return None


def plot_front(run: Any, trials: list[Any], front: list[Any], path: Path) -> list[str]:
    """Write ``pareto.png`` for ``run``'s ``trials`` and its feasible ``front``; returns the
    legend's labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neuronas.tasks import METRICS, quality_metric

    cfg = run.config
    quality = quality_metric(cfg.objectives) or "accuracy"
    scale = 100.0 if quality == "accuracy" else 1.0
    costs = [o for o in cfg.objectives if o not in METRICS] or ["energy_uj"]
    fig, axes = plt.subplots(1, len(costs), figsize=(5.4 * len(costs), 4.8), squeeze=False)
    front_ids = {t.number for t in front}
    budgets = run.chip.budgets.items()
    handles: dict[str, Any] = {}
    for ax, metric in zip(axes[0], costs, strict=False):
        points: list[list[tuple[float, float, float, int]]] = [[] for _ in _GROUPS]
        for t in trials:
            g = _group(t, front_ids, quality)
            met = t.user_attrs.get("metrics") or {}
            if g is None or metric not in met:
                continue
            ua = t.user_attrs
            acc = 0.0 if g == 0 else scale * float(ua[quality])
            std = 0.0 if g == 0 else scale * float(ua.get(f"{quality}_std") or 0.0)
            points[g].append((float(met[metric]), acc, std, t.number))
        for g, (label, marker, colour, z) in enumerate(_GROUPS):
            pts = points[g]
            if not pts:
                continue
            distinct = len({(p[0], p[1]) for p in pts})
            count = f"{len(pts)}" + (
                f", {distinct} distinct points" if distinct != len(pts) else ""
            )
            xs, ys, es = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
            size = 7 if g == 3 else 5
            if g == 0:
                h = ax.scatter(xs, ys, marker=marker, color=colour, s=24, zorder=z)
            else:
                h = ax.errorbar(
                    xs, ys, yerr=es, fmt=marker, color=colour, ms=size, capsize=2, lw=0.8, zorder=z
                )
            handles.setdefault(f"{label} ({count})", h)
            if g == 3:
                for x, y, _, number in pts:
                    ax.annotate(
                        str(number), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7
                    )
        if metric in budgets:
            b = budgets[metric]
            kind = "hard" if b.hard else "soft"
            text = f"{kind} budget {b.limit:g} {_UNITS.get(metric, '')}"
            h = ax.axvline(b.limit, color="k", ls="--" if b.hard else ":", lw=1)
            ax.annotate(
                text,
                (b.limit, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
            )
            handles.setdefault(f"{kind} budget ({metric})", h)
        baselines = [
            t.user_attrs["baseline_aee"] for t in trials if t.user_attrs.get("baseline_aee")
        ]
        if quality == "aee" and baselines:
            # what a flow network must beat: the training split's mean flow field as prediction
            h = ax.axhline(max(baselines), color="0.4", ls="-.", lw=1)
            handles.setdefault("predicting the training split's mean flow", h)
        ax.set_xscale("log")
        ax.set_xlabel(AXIS_TITLES.get(metric, metric))
        ax.set_ylabel(
            f"{cfg.accuracy_split} accuracy on the chip (%)"
            if quality == "accuracy"
            else f"AEE (px) on the chip ({cfg.accuracy_split} split)"
        )
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"{run.space.name} on {run.chip.name} ({cfg.dataset}, {cfg.sampler}, {len(trials)} trials); "
        "error bars: std over chip instances",
        fontsize=10,
    )
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="lower center",
        ncol=2,
        fontsize=7,
        frameon=False,
    )
    rows = -(-len(handles) // 2)
    fig.tight_layout(rect=(0, 0.035 * rows + 0.01, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return list(handles)
