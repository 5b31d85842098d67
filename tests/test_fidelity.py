"""Successive halving over epochs (neuronas/search/fidelity.py): the rule, its marks in the
stored trials, the front of full-fidelity trials only, and a search killed mid-rung."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from _search_helpers import FAST, cli, popen, trials_of, write_space

from neuronas.search.fidelity import promote, rung_reference
from neuronas.settings import SCREENING, TrialSettings

# two epochs, so that a rung after the first one exists; enough samples that a trial's training
# lasts long enough to be killed in
HALVING = [a if a != "64" else "640" for a in FAST]
HALVING[HALVING.index("--epochs") + 1] = "2"


def test_with_equal_costs_the_best_accuracies_are_promoted() -> None:
    earlier = [[a, 1.0, 1.0] for a in (0.50, 0.20, 0.40, 0.30, 0.10)]
    # 6 points, eta 3: the best 2 go on
    assert promote([0.45, 1.0, 1.0], earlier, eta=3, min_trials=5)
    assert not promote([0.35, 1.0, 1.0], earlier, eta=3, min_trials=5)
    # a tie with an earlier point: the earlier one keeps the place
    assert not promote([0.40, 1.0, 1.0], earlier, eta=3, min_trials=5)
    # eta 2: the best 3 of 6
    assert promote([0.35, 1.0, 1.0], earlier, eta=2, min_trials=5)


def test_until_min_trials_every_candidate_is_promoted() -> None:
    earlier = [[0.9, 1.0], [0.8, 1.0]]
    assert promote([0.0, 1.0], earlier, eta=3, min_trials=3)
    assert not promote([0.0, 1.0], earlier, eta=3, min_trials=2)
    assert promote([0.0, 1.0], [], eta=3, min_trials=0)  # alone: the best of one


def test_ranked_by_front_then_by_hypervolume_contribution() -> None:
    # (accuracy, energy_uj) on one front; the chip's energy budget 1.0 is the reference
    earlier = [[0.9, 0.9], [0.8, 0.7], [0.7, 0.5], [0.6, 0.3], [0.5, 0.2]]
    # keep 2 of 6.  0.75 at 0.8: dominated by (0.8, 0.7) -> second front, out
    assert not promote([0.75, 0.8], earlier, eta=3, min_trials=5, bound=(1.0,))
    # exclusive volumes on that front: 0.01 (0.9), 0.02 (0.8, 0.7 and 0.6), 0.05 (0.5).
    # 0.45 at 0.02: the cheapest; its own 0.45 x 0.18 = 0.081 is the largest -> promoted,
    # although its accuracy is the lowest
    assert promote([0.45, 0.02], earlier, eta=3, min_trials=5, bound=(1.0,))
    # the same accuracy at 0.19: 0.45 x 0.01 = 0.0045, behind the 0.02s -> out
    assert not promote([0.45, 0.19], earlier, eta=3, min_trials=5, bound=(1.0,))
    # the most accurate, but beyond the budget: no volume, last of the first front -> out
    assert not promote([0.95, 1.5], earlier, eta=3, min_trials=5, bound=(1.0,))


def test_halving_settings_cross_processes_as_json() -> None:
    s = SCREENING.replace(
        halving_reference=((0.5, 1.0), (0.25, 2.0)),
        halving_costs=(3.0,),
        halving_bound=(float("nan"),),
    )
    back = TrialSettings.from_dict(json.loads(json.dumps(s.to_dict(), allow_nan=False)))
    assert back.halving_reference == s.halving_reference
    assert back.halving_costs == (3.0,) and math.isnan(back.halving_bound[0])
    # off by default (benchmarks/RESULTS.md, "Time to a front"); eta 3 when asked for
    assert SCREENING.halving_epochs is None and SCREENING.halving_eta == 3


def _check_decisions(trials: list, epochs: int, eta: int, min_trials: int) -> None:
    """Every trained trial's stored mark is the rule's decision on the trials before it, and
    promoted ones are exactly those whose rung accuracy ranks in the best n // eta."""
    trained = sorted(
        (t for t in trials if t.user_attrs.get("trained") and "cached_from" not in t.user_attrs),
        key=lambda t: t.number,
    )
    assert trained
    promoted = stopped = 0
    for i, t in enumerate(trained):
        mark = t.user_attrs["fidelity"]
        acc = mark["rung_accuracy"]
        assert acc == t.user_attrs["history"][0]["val_accuracy"] and mark["rung_epochs"] == 1
        before = [u.user_attrs["history"][0]["val_accuracy"] for u in trained[:i]]
        assert mark["competitors"] == len(before)
        # accuracy is the only objective: the best max(1, n // eta) rung accuracies go on
        better = sum(1 for a in before if a >= acc)
        expect = len(before) < min_trials or better < max(1, (len(before) + 1) // eta)
        assert mark["promoted"] == expect, (t.number, acc, before)
        if expect:
            promoted += 1
            assert t.state.name == "COMPLETE" and t.user_attrs["status"] == "ok"
            assert (
                mark["epochs"] == epochs and mark["full"] and len(t.user_attrs["history"]) == epochs
            )
            assert t.user_attrs["accuracy"] is not None
        else:
            stopped += 1
            assert t.state.name == "PRUNED" and t.user_attrs["status"] == "stopped"
            assert mark["epochs"] == 1 and not mark["full"] and len(t.user_attrs["history"]) == 1
            assert t.user_attrs.get("accuracy") is None  # never evaluated on the chip
            assert "successive halving" in t.user_attrs["reason"]
    assert promoted and stopped, "the run should both promote and stop candidates"


def test_a_halving_search_promotes_exactly_the_best_and_fronts_only_full_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = write_space(tmp_path)
    r = cli(
        [
            "search",
            "--space",
            str(space),
            "--trials",
            "9",
            "--name",
            "sh",
            "--seed",
            "1",
            "--objectives",
            "accuracy",
            "--sampler",
            "random",
            "--halving-epochs",
            "1",
            "--halving-eta",
            "2",
            *HALVING,
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "sh"
    trials = trials_of(run_dir)
    stored = json.loads((run_dir / "run.json").read_text())
    assert (stored["halving_epochs"], stored["halving_eta"]) == (1, 2)
    _check_decisions(trials, epochs=2, eta=2, min_trials=SCREENING.halving_min_trials)
    show = cli(["show", "sh", "--front-only"], tmp_path)
    assert show.returncode == 0, show.stderr
    # the front is made of full-fidelity trials only
    from neuronas.search.run import open_run
    from neuronas.search.study import front_trials

    monkeypatch.chdir(tmp_path)
    front = front_trials(open_run("sh").study)
    assert front and all(t.user_attrs["fidelity"]["full"] for t in front)


@pytest.mark.parametrize("flag", [[], ["--halving-epochs", "0"]])
def test_without_halving_every_candidate_trains_fully(tmp_path: Path, flag: list[str]) -> None:
    space = write_space(tmp_path)
    args = ["search", "--space", str(space), "--trials", "4", "--name", "full", "--seed", "1"]
    r = cli([*args, *flag, *HALVING], tmp_path)
    assert r.returncode == 0, r.stderr
    trained = [t for t in trials_of(tmp_path / "runs" / "full") if t.user_attrs.get("trained")]
    assert trained and all(len(t.user_attrs["history"]) == 2 for t in trained)
    assert all("fidelity" not in t.user_attrs for t in trained)


def test_a_search_killed_mid_rung_resumes_with_the_same_rule(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    # longer trials than HALVING (the rung at epoch 1 of 8), so that the kill lands inside a
    # trial: with today's kernels a tiny candidate's 2 epochs take less than a poll of the
    # database on a loaded machine, and the search once finished unseen
    longer = list(HALVING)
    longer[longer.index("--epochs") + 1] = "8"
    args = [
        "search",
        "--space",
        str(space),
        "--trials",
        "9",
        "--name",
        "killed",
        "--seed",
        "2",
        "--objectives",
        "accuracy",
        "--sampler",
        "random",
        "--halving-epochs",
        "1",
        "--halving-eta",
        "2",
        *longer,
    ]
    proc = popen(args, tmp_path)
    run_dir = tmp_path / "runs" / "killed"
    try:
        # kill it inside a trial begun after some were recorded
        end = time.monotonic() + 300
        while time.monotonic() < end:
            assert proc.poll() is None, proc.stderr.read()
            if (run_dir / "run.json").exists():
                try:
                    trials = trials_of(run_dir)
                except Exception:  # the study is being created
                    trials = []
                done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
                running = [
                    t for t in trials if t.state.name == "RUNNING" and "arch" in t.user_attrs
                ]
                if len(done) >= 6 and running:
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("the search never reached the point to kill it")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {
        t.number: t.user_attrs.get("fidelity")
        for t in trials_of(run_dir)
        if t.state.name != "RUNNING"
    }
    r = cli(args, tmp_path)
    assert r.returncode == 0, r.stderr
    after = trials_of(run_dir)
    # nothing recorded changed; the killed trial was retried under the same rule
    for t in after:
        if t.number in before:
            assert t.user_attrs.get("fidelity") == before[t.number]
    assert any(t.user_attrs.get("status") == "interrupted" for t in after)
    _check_decisions(after, epochs=8, eta=2, min_trials=SCREENING.halving_min_trials)
    # the rung reference as the search rebuilds it from storage: one point per trained trial
    points = rung_reference(after, 1, [])
    assert len(points) == sum(1 for t in after if t.user_attrs.get("trained"))


@pytest.mark.parametrize("eta", [2, 3])
def test_the_promoted_training_is_the_training_without_halving(repo_root: Path, eta: int) -> None:
    from neuronas.search.objective import evaluate
    from neuronas.spec import ArchSpec

    a = ArchSpec.from_yaml(repo_root / "experiments" / "archs" / "digits-mlp.yaml").to_dict()
    base = SCREENING.replace(
        epochs=2, max_train_samples=64, max_eval_samples=64, eval_instances=1, seed=0
    )
    plain = evaluate(a, "rram-adcless-65nm", base.replace(halving_epochs=None))
    # the best rung accuracy so far: promoted, and the run continues exactly as without halving
    halved = evaluate(
        a,
        "rram-adcless-65nm",
        base.replace(
            halving_epochs=1,
            halving_eta=eta,
            halving_min_trials=1,
            halving_reference=((0.0, 0.0, 0.0),),
            halving_costs=(0.0, 0.0),
        ),
    )
    assert halved["fidelity"]["promoted"] and halved["fidelity"]["full"]
    assert halved["accuracy_mean"] == plain["accuracy_mean"]
    assert (
        halved["train"]["history"][-1]["train_loss"] == plain["train"]["history"][-1]["train_loss"]
    )


def test_local_workers_halve_through_the_same_lifecycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = write_space(tmp_path)
    args = ["search", "--space", str(space), "--trials", "9", "--name", "w2", "--seed", "4"]
    r = cli(
        [*args, "--workers", "2", "--halving-epochs", "1", "--halving-eta", "2", *HALVING],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    trials = trials_of(tmp_path / "runs" / "w2")
    assert len({t.user_attrs["owner"]["pid"] for t in trials}) == 2  # two processes trained
    trained = [
        t for t in trials if t.user_attrs.get("trained") and "cached_from" not in t.user_attrs
    ]
    assert trained
    for t in trained:
        mark = t.user_attrs["fidelity"]
        # each decision saw only trials recorded before it began
        assert mark["competitors"] < len(trained)
        if mark["promoted"]:
            assert mark["full"] and len(t.user_attrs["history"]) == 2
        else:
            assert t.state.name == "PRUNED" and len(t.user_attrs["history"]) == 1
    from neuronas.search.run import open_run
    from neuronas.search.study import front_trials

    monkeypatch.chdir(tmp_path)
    assert all(t.user_attrs["fidelity"]["full"] for t in front_trials(open_run("w2").study))
