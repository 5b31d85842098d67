"""Pareto fronts and hypervolume: hand-checked values, invariants, and optuna as a cross-check."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronas.search.pareto import dominates, hypervolume, nondominated_mask, pareto_front, to_loss


def test_to_loss_negates_maximised_objectives() -> None:
    loss = to_loss([[0.9, 2.0, 3.0]], ["accuracy", "energy_uj", "latency_us"])
    assert loss.tolist() == [[-0.9, 2.0, 3.0]]


def test_front_mixed_directions_by_hand() -> None:
    objs = ["accuracy", "energy_uj"]
    pts = [
        [0.90, 1.0],  # 0: front
        [0.80, 0.5],  # 1: front
        [0.85, 1.2],  # 2: dominated by 0
        [0.80, 0.6],  # 3: dominated by 1
        [0.95, 4.0],  # 4: front (best accuracy)
        [0.90, 1.0],  # 5: duplicate of 0: kept (neither dominates)
    ]
    assert pareto_front(pts, objs) == [0, 1, 4, 5]


def test_dominates_is_strict() -> None:
    assert dominates([1, 1], [1, 2])
    assert not dominates([1, 2], [1, 2])
    assert not dominates([0, 3], [1, 2])


def test_hypervolume_2d_by_hand() -> None:
    # loss form, reference (4, 4): rectangles 3x1 + 2x1 + 1x1 stacked = union area 6
    pts = [[1, 3], [2, 2], [3, 1]]
    assert hypervolume(pts, [4, 4]) == pytest.approx(6.0)
    # a dominated point and a point outside the reference add nothing
    assert hypervolume(pts + [[3, 3], [5, 0]], [4, 4]) == pytest.approx(6.0)


def test_hypervolume_3d_by_hand() -> None:
    # two boxes from the origin: [0,2]x[0,1]x[0,1] (vol 2) and [0,1]x[0,2]x[0,1] (vol 2), overlap 1
    pts = [[0, 1, 0], [1, 0, 0]]
    assert hypervolume(pts, [2, 2, 1]) == pytest.approx(3.0)


def test_hypervolume_natural_units() -> None:
    # accuracy up, energy down; reference accuracy 0, energy 10
    hv = hypervolume([[0.5, 2.0]], [0.0, 10.0], ["accuracy", "energy_uj"])
    assert hv == pytest.approx(0.5 * 8.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * 3), min_size=1, max_size=12))
def test_hypervolume_matches_optuna_and_is_monotone(
    points: list[tuple[float, float, float]],
) -> None:
    from optuna._hypervolume import compute_hypervolume

    pts = np.array(points)
    ref = np.array([1.1, 1.1, 1.1])
    mine = hypervolume(pts, ref)
    theirs = compute_hypervolume(pts, ref)
    assert mine == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    # adding a point never shrinks the hypervolume
    assert hypervolume(np.vstack([pts, [[0.5, 0.5, 0.5]]]), ref) >= mine - 1e-12


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=15))
def test_nondominated_mask_against_brute_force(points: list[tuple[int, int]]) -> None:
    pts = np.array(points, dtype=float)
    mask = nondominated_mask(pts)
    for i, j in itertools.product(range(len(pts)), repeat=2):
        if mask[i] and mask[j]:
            assert not dominates(pts[i], pts[j])
    for i in np.flatnonzero(~mask):
        assert any(dominates(pts[j], pts[i]) for j in range(len(pts)))
