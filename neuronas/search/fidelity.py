"""Multi-fidelity screening: successive halving over epochs among the feasible candidates.

Every candidate within the chip's budgets starts its training as before; after its first
``halving_epochs`` epochs (the *rung*) its validation accuracy is compared with the rung
accuracies of the candidates trained before it.  Only the better ``1 / halving_eta`` of them
(itself included) go on to the search's full screening epochs; the rest stop there
(``status = "stopped"``, Optuna PRUNED, marked ``fidelity = {"rung": ..., "promoted": false}``),
are not evaluated on the chip and never enter the front.  A promoted candidate simply continues
the same training run, so its result is exactly the one the search without halving gets:
the front is made of full-fidelity trials only.

This is the stopping variant of asynchronous successive halving (ASHA: Li et al., "A System for
Massively Parallel Hyperparameter Tuning", MLSys 2020; the rule of Optuna's
``SuccessiveHalvingPruner``: promote when in the top ``n // eta`` of the rung's values, the
best alone while ``n < eta``), made multi-objective because Optuna's pruners are
single-objective.  A rung point is (rung validation accuracy, the candidate's priced costs in the
run's cost objectives); the points are ranked by non-dominated sorting and, within one front,
by each point's exclusive hypervolume contribution to that front, measured against the
search's own hypervolume reference (accuracy 0, each cost at the chip's budget; the selection of SMS-EMOA:
Beume et al., EJOR 2007; the multi-objective ASHA of Schmucker et al., 2021, ranks the same way
with NSGA-II's crowding instead).  The costs are exact at every fidelity (priced before
training); only the accuracy is the low-fidelity estimate.

Nothing here is per backend: :func:`neuronas.search.lifecycle.begin` puts the rung points of
the trials recorded so far (:func:`rung_reference`) into the trial's settings, and
:func:`neuronas.search.objective.evaluate` applies :func:`promote` after the rung epoch, in
whatever process trains the candidate.  The reference is rebuilt from the stored trials every
time, so a resumed search decides as an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neuronas.search.pareto import dominated_volume, nondominated_mask

__all__ = ["FIDELITY_ATTR", "halving_active", "promote", "rung_point", "rung_reference"]

#: the trial user attribute holding a trained candidate's fidelity mark
FIDELITY_ATTR = "fidelity"


def halving_active(rung_epochs: int | None, epochs: int, objectives: Sequence[str]) -> bool:
    """Whether successive halving applies: a rung before the last epoch, accuracy an objective."""
    return (
        rung_epochs is not None and 0 < int(rung_epochs) < int(epochs) and "accuracy" in objectives
    )


def _ranks(loss: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 0 for the first front, 1 for the next, ..."""
    ranks = np.full(len(loss), -1)
    left = np.arange(len(loss))
    r = 0
    while len(left):
        mask = nondominated_mask(loss[left])
        ranks[left[mask]] = r
        left = left[~mask]
        r += 1
    return ranks


def _volume(loss: np.ndarray, ref: np.ndarray) -> float:
    inside = loss[np.all(loss < ref, axis=1)]
    if len(inside) == 0:
        return 0.0
    return dominated_volume(inside[nondominated_mask(inside)], ref)


def _contributions(loss: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Each point's exclusive hypervolume contribution to the set ``loss`` (one front), up to
    the loss-form reference ``ref``."""
    total = _volume(loss, ref)
    return np.array([total - _volume(np.delete(loss, i, axis=0), ref) for i in range(len(loss))])


def promote(
    point: Sequence[float],
    reference: Sequence[Sequence[float]],
    *,
    eta: float,
    min_trials: int,
    bound: Sequence[float] = (),
) -> bool:
    """Whether a candidate at rung point ``point`` (accuracy, *costs) goes on to full fidelity.

    ``reference``: the rung points of the candidates trained before it.  Until ``min_trials``
    of them exist every candidate is promoted; then it is promoted when its place, by
    non-dominated rank and then hypervolume contribution within its front (ties: the earlier
    candidate first), is within the top ``max(1, (n + 1) // eta)`` of the ``n + 1`` points.
    ``bound``: the hypervolume reference of each cost (the search's: the chip's budget for it;
    NaN or missing: 1.1x the largest value among the points); accuracy's is 0.
    """
    if len(reference) < int(min_trials):
        return True
    pts = np.asarray([*reference, point], dtype=float)
    loss = pts.copy()
    loss[:, 0] = -loss[:, 0]  # accuracy is maximised, every cost minimised
    ref = np.zeros(pts.shape[1])
    for j in range(1, pts.shape[1]):
        b = float(bound[j - 1]) if j - 1 < len(bound) else float("nan")
        ref[j] = b if np.isfinite(b) else 1.1 * float(np.max(pts[:, j]))
    ranks = _ranks(loss)
    contrib = np.zeros(len(pts))
    for r in np.unique(ranks):
        members = np.flatnonzero(ranks == r)
        contrib[members] = _contributions(loss[members], ref)
    order = sorted(range(len(pts)), key=lambda i: (ranks[i], -contrib[i], i))
    keep = max(1, int(len(pts) // float(eta)))
    return order.index(len(pts) - 1) < keep


def rung_point(trial: Any, rung_epochs: int, cost_objectives: Sequence[str]) -> list[float] | None:
    """A stored trial's rung point (validation accuracy after ``rung_epochs`` epochs, priced
    costs), or None when it holds none (untrained, a reused result, stopped before the rung)."""
    ua = trial.user_attrs
    if not ua.get("trained") or "cached_from" in ua:
        return None
    history = ua.get("history") or []
    prior = ua.get("prior_metrics") or {}
    if len(history) < int(rung_epochs) or any(prior.get(o) is None for o in cost_objectives):
        return None
    acc = history[int(rung_epochs) - 1].get("val_accuracy")
    if acc is None:
        return None
    return [float(acc), *(float(prior[o]) for o in cost_objectives)]


def rung_reference(
    trials: Sequence[Any], rung_epochs: int, cost_objectives: Sequence[str]
) -> list[list[float]]:
    """The rung points of the trained trials among ``trials`` (stored, any earlier run of the
    same study included), in trial order."""
    pts = []
    for t in sorted(trials, key=lambda t: t.number):
        p = rung_point(t, rung_epochs, cost_objectives)
        if p is not None:
            pts.append(p)
    return pts
