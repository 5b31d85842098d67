"""Every sampler runs the conditional space end to end with constraints, and the study records
every trial the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
from _search_helpers import TINY_SPACE

from neuronas.search.study import SAMPLERS, count_trials, create_or_resume, make_sampler, run_search

pytestmark = pytest.mark.slow

FAST = {"epochs": 1, "max_train_samples": 32, "max_eval_samples": 32, "eval_instances": 1}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_runs_with_constraints(tmp_path: Path, sampler: str) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    opts = {
        "name": f"s-{sampler}",
        "space": str(space),
        "chip": "rram-adcless-65nm",
        "sampler": sampler,
        "seed": 0,
        "trials": 6,
        **FAST,
    }
    run = create_or_resume(opts, root=tmp_path)
    assert (
        type(make_sampler(run))
        .__name__.lower()
        .startswith(
            {"tpe": "tpe", "nsga2": "nsgaii", "random": "random", "grid": "grid", "qmc": "qmc"}[
                sampler
            ]
        )
    )
    run_search(run, progress=False)
    trials = run.study.get_trials(deepcopy=False)
    assert count_trials(run.study, trials).finished == 6
    for t in trials:
        assert t.user_attrs["status"] in ("ok", "infeasible", "infeasible_measured", "failed")
        if t.state.name == "COMPLETE":
            # every budget the chip sets is a constraint of every priced trial
            assert set(t.constraints) == set(run.chip.budgets.items())


def test_a_crashing_candidate_is_a_failed_trial_and_the_search_goes_on(tmp_path: Path) -> None:
    # a learning rate the optimiser refuses makes every training raise: each such trial must end
    # FAIL with the reason and traceback recorded, and the search must still finish its trials
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    opts = {
        "name": "crash",
        "space": str(space),
        "chip": "rram-adcless-65nm",
        "seed": 0,
        "trials": 3,
        "lr": float("nan"),
        **FAST,
    }
    run = create_or_resume(opts, root=tmp_path)
    run_search(run, progress=False)
    trials = run.study.get_trials(deepcopy=False)
    assert count_trials(run.study, trials).finished == 3
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed
    for t in failed:
        assert t.user_attrs["status"] == "failed"
        assert (
            "learning rate" in t.user_attrs["reason"] and "Traceback" in t.user_attrs["traceback"]
        )
