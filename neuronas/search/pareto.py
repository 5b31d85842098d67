"""Pareto fronts and hypervolume for mixed-direction objectives.

Objectives are named (``accuracy`` or, for optical flow, ``aee``; ``energy_uj``,
``latency_us``, ``area_mm2``, ``memory_kb``); :data:`DIRECTIONS` says which way each is better.  Points are turned into
"loss" form (every objective minimised) before any comparison, so callers never flip signs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DIRECTIONS",
    "OBJECTIVES",
    "dominated_volume",
    "dominates",
    "eligible_for_front",
    "front_trials",
    "hypervolume",
    "nondominated_mask",
    "pareto_front",
    "to_loss",
]

#: objective name -> "maximize" | "minimize"
DIRECTIONS: dict[str, str] = {
    "accuracy": "maximize",
    "aee": "minimize",
    "energy_uj": "minimize",
    "latency_us": "minimize",
    "area_mm2": "minimize",
    "memory_kb": "minimize",
}
OBJECTIVES: tuple[str, ...] = tuple(DIRECTIONS)


def to_loss(
    points: Sequence[Sequence[float]] | np.ndarray, objectives: Sequence[str]
) -> np.ndarray:
    """``points`` (rows) with every maximised objective negated, so that lower is better."""
    arr = np.asarray(points, dtype=float).reshape(-1, len(objectives))
    signs = np.array([-1.0 if DIRECTIONS[o] == "maximize" else 1.0 for o in objectives])
    return arr * signs


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Loss-form ``a`` dominates ``b``: no worse everywhere, strictly better somewhere."""
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a_ <= b_) and np.any(a_ < b_))


def nondominated_mask(loss: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``loss`` (minimised) that no other row dominates.

    Duplicated points are all kept (neither dominates the other).
    """
    loss = np.asarray(loss, dtype=float)
    n = len(loss)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        le = np.all(loss <= loss[i], axis=1)
        lt = np.any(loss < loss[i], axis=1)
        if np.any(le & lt):
            mask[i] = False
    return mask


def pareto_front(points: Sequence[Sequence[float]], objectives: Sequence[str]) -> list[int]:
    """Indices of the non-dominated ``points`` (natural units, mixed directions)."""
    if len(points) == 0:
        return []
    return [int(i) for i in np.flatnonzero(nondominated_mask(to_loss(points, objectives)))]


def hypervolume(
    points: Sequence[Sequence[float]] | np.ndarray,
    reference: Sequence[float],
    objectives: Sequence[str] | None = None,
) -> float:
    """The volume dominated by ``points`` and bounded by ``reference``.

    With ``objectives`` the points and the reference are in natural units (accuracy up, costs
    down); without, both are already in loss form.  Points that do not strictly dominate the
    reference contribute nothing.  Exact, by recursive slicing along the last objective
    (fine for the few dozen points of a search front).
    """
    if objectives is not None:
        pts = to_loss(points, objectives)
        ref = to_loss([reference], objectives)[0]
    else:
        pts = np.asarray(points, dtype=float)
        ref = np.asarray(reference, dtype=float)
    if pts.size == 0:
        return 0.0
    pts = pts.reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[nondominated_mask(pts)]
    return float(dominated_volume(np.unique(pts, axis=0), ref))


def dominated_volume(pts: np.ndarray, ref: np.ndarray) -> float:
    """The volume dominated by loss-form ``pts`` up to ``ref``, each point strictly below
    ``ref`` (unchecked: :func:`hypervolume` filters first).  Dominated points may be present
    in 1-D and 2-D (the sweep passes over them); in more dimensions they only cost time."""
    d = pts.shape[1]
    if d == 1:
        return float(ref[0] - pts[:, 0].min())
    if d == 2:
        order = np.argsort(pts[:, 0])
        # Python floats: the same double arithmetic as numpy's float64 scalars (every caller's
        # points are float64), without their overhead (the cost-guided sampler runs this sweep
        # thousands of times per proposal)
        ref_x = float(ref[0])
        vol, best_y = 0.0, float(ref[1])
        for x, y in pts[order].tolist():
            if y < best_y:
                vol += (ref_x - x) * (best_y - y)
                best_y = y
        return vol
    # slice along the last axis: between consecutive levels the cross-section is the
    # (d-1)-dimensional hypervolume of the points at or below that level
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    levels = list(pts[:, -1]) + [ref[-1]]
    vol = 0.0
    for i in range(len(pts)):
        height = levels[i + 1] - levels[i]
        if height <= 0:
            continue
        sub = pts[: i + 1, :-1]
        sub = sub[nondominated_mask(sub)]
        vol += height * dominated_volume(sub, ref[:-1])
    return vol


def eligible_for_front(trial: Any) -> bool:
    """Whether a trial can be on the front (or exported): COMPLETE, trained and within every
    hard budget with its measured spike rates (status ``ok``)."""
    from optuna.trial import TrialState

    return (
        trial.state == TrialState.COMPLETE
        and trial.user_attrs.get("status") == "ok"
        and trial.values is not None
    )


def front_trials(
    study: Any, objectives: Sequence[str] | None = None, trials: Sequence[Any] | None = None
) -> list[Any]:
    """The feasible Pareto front of a neuronas study: trained COMPLETE trials within every
    hard budget with their measured spike rates (status ``ok``), non-dominated in the run's
    objectives (duplicated architectures appear once: the first trial that trained them).

    ``objectives`` None: the run's (stored in the study); ``trials`` None: the study's.
    """
    if objectives is None:
        objectives = study.user_attrs["neuronas"]["objectives"]
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    ok = [t for t in trials if eligible_for_front(t)]
    seen: set[str] = set()
    uniq = []
    for t in ok:
        key = t.user_attrs.get("arch_key", str(t.number))
        if key in seen:
            continue
        seen.add(key)
        uniq.append(t)
    idx = pareto_front([t.values for t in uniq], objectives)
    first = objectives[0]
    return sorted(
        (uniq[i] for i in idx),
        key=lambda t: -t.values[0] if DIRECTIONS[first] == "maximize" else t.values[0],
    )
