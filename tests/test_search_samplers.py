"""Every sampler runs the conditional space end to end with constraints, and the study records
every trial the same way."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _search_helpers import TINY_SPACE

from neuronas.search.run import create_or_resume
from neuronas.search.samplers import SAMPLERS, make_sampler
from neuronas.search.study import run_search
from neuronas.search.trials import DUPLICATE_ALLOWANCE, count_trials

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
            {
                "guided": "costguided",
                "tpe": "tpe",
                "nsga2": "nsgaii",
                "random": "random",
                "grid": "grid",
                "qmc": "qmc",
            }[sampler]
        )
    )
    run_search(run, progress=False)
    trials = run.study.get_trials(deepcopy=False)
    assert count_trials(run.study, trials).finished == 6
    for t in trials:
        assert t.user_attrs["status"] in ("ok", "infeasible", "infeasible_measured", "failed")
        if t.state.name == "COMPLETE":
            # every budget the chip sets is a constraint of every priced trial, one value per
            # budget in the order the study names them (the list optuna-dashboard reads)
            assert run.study.user_attrs["constraint_names"] == sorted(run.chip.budgets.items())
            margins = t.user_attrs["margins"]
            assert list(t.constraints.values()) == pytest.approx(
                [margins[m] for m in run.study.user_attrs["constraint_names"]]
            )


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


# every dimension fixed: the space holds exactly one architecture
ONE_CANDIDATE_SPACE = """\
name: one
dataset: digits-events
input: {timesteps: 2, downsample: 4}
families:
  mlp: {depth: 1, width: 16}
neuron: {model: lif}
precision: {weight_bits: 2}
mapping: {adc_kind: [sa], crossbar: 64, dataflow: weight_stationary}
"""


def test_reproposals_are_told_but_do_not_use_up_the_budget(tmp_path: Path) -> None:
    # a one-candidate space: every trial after the first re-proposes it.  The first
    # trials x DUPLICATE_ALLOWANCE re-proposals are free (told to the study with the first
    # trial's values, marked uncounted); after that, re-proposals count, so the search ends
    # with exactly the requested finished trials and at most (1 + allowance) x trials asks
    space = tmp_path / "one.yaml"
    space.write_text(ONE_CANDIDATE_SPACE)
    n = 3
    opts = {
        "name": "dups",
        "space": str(space),
        "chip": "rram-adcless-65nm",
        "seed": 0,
        "trials": n,
        **FAST,
    }
    run = create_or_resume(opts, root=tmp_path)
    run_search(run, progress=False)
    trials = sorted(run.study.get_trials(deepcopy=False), key=lambda t: t.number)
    free = math.ceil(DUPLICATE_ALLOWANCE * n)
    c = count_trials(run.study, trials)
    assert c.finished == n and c.duplicates == free
    assert len(trials) == n + free
    first = trials[0]
    assert first.user_attrs["trained"] and "uncounted" not in first.user_attrs
    uncounted = [t for t in trials if t.user_attrs.get("uncounted")]
    assert [t.number for t in uncounted] == list(range(1, 1 + free))  # the allowance goes first
    for t in trials[1:]:
        # told like the original (the sampler learns from it), trained only once
        assert t.state.name == "COMPLETE" and t.values == first.values
        assert t.user_attrs["cached_from"] == first.number
        assert t.user_attrs["arch_key"] == first.user_attrs["arch_key"]
        assert "trial_dir" not in t.user_attrs
    for t in uncounted:
        assert t.user_attrs["duplicate_of"] == first.number
    assert len(list((run.run_dir / "trials").iterdir())) == 1
    # resuming a finished search asks nothing more
    again = create_or_resume({"name": "dups"}, root=tmp_path)
    run_search(again, progress=False)
    assert len(again.study.get_trials(deepcopy=False)) == n + free
