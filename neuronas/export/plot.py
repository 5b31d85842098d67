"""The Pareto plot of an export (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_front"]


def plot_front(run: Any, trials: list[Any], front: list[Any], path: Path) -> None:
    """``pareto.png``: accuracy against each cost objective (front, other trained, rejected)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = run.config
    costs = [o for o in cfg.objectives if o != "accuracy"] or ["energy_uj"]
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.2), squeeze=False)
    front_ids = {t.number for t in front}
    budgets = run.chip.budgets.items()
    for ax, metric in zip(axes[0], costs, strict=False):
        groups: dict[str, tuple[list[float], list[float], str, str]] = {
            "rejected untrained (prior cost)": ([], [], "x", "#bbbbbb"),
            "trained, over budget": ([], [], "s", "#e8a33d"),
            "trained, feasible": ([], [], "o", "#7aa6d6"),
        }
        for t in trials:
            ua = t.user_attrs
            met = ua.get("metrics") or {}
            if metric not in met:
                continue
            st = ua.get("status")
            if st in ("infeasible", "incompatible"):
                groups["rejected untrained (prior cost)"][0].append(met[metric])
                groups["rejected untrained (prior cost)"][1].append(0.0)
            elif st == "infeasible_measured" and ua.get("accuracy") is not None:
                groups["trained, over budget"][0].append(met[metric])
                groups["trained, over budget"][1].append(100 * ua["accuracy"])
            elif st == "ok" and t.number not in front_ids:
                groups["trained, feasible"][0].append(met[metric])
                groups["trained, feasible"][1].append(100 * ua["accuracy"])
        for label, (xs, ys, marker, color) in groups.items():
            if xs:
                ax.scatter(
                    xs,
                    ys,
                    marker=marker,
                    color=color,
                    s=22,
                    label=f"{label} ({len(xs)})",
                    alpha=0.8,
                )
        fx = [(t.user_attrs["metrics"][metric], 100 * t.user_attrs["accuracy"]) for t in front]
        fx.sort()
        if fx:
            # markers only: a line through a 3-objective front projected on two axes would zigzag
            ax.scatter(
                [p[0] for p in fx],
                [p[1] for p in fx],
                marker="o",
                color="#c0392b",
                s=46,
                zorder=3,
                label=f"Pareto front ({len(fx)})",
            )
            for t in front:
                ax.annotate(
                    str(t.number),
                    (t.user_attrs["metrics"][metric], 100 * t.user_attrs["accuracy"]),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                )
        if metric in budgets:
            b = budgets[metric]
            ax.axvline(
                b.limit,
                color="k",
                ls="--" if b.hard else ":",
                lw=1,
                label=f"{'hard' if b.hard else 'soft'} budget {b.limit:g}",
            )
        ax.set_xscale("log")
        ax.set_xlabel(metric)
        ax.set_ylabel("accuracy (%) [rejected candidates drawn at 0]")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{run.space.name} on {run.chip.name} ({cfg.dataset}, {cfg.sampler}, {len(trials)} trials)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
