"""Several local worker processes on one study: no lost or duplicated trials."""

from __future__ import annotations

from pathlib import Path

import pytest
from _search_helpers import FAST, cli, trials_of, write_space

pytestmark = pytest.mark.slow

N = 8


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_workers_share_one_study(tmp_path: Path, storage: str) -> None:
    space = write_space(tmp_path)
    r = cli(
        [
            "search",
            "--space",
            str(space),
            "--trials",
            str(N),
            "--name",
            "w2",
            "--seed",
            "5",
            "--workers",
            "2",
            "--storage",
            storage,
            *FAST,
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    run_dir = tmp_path / "runs" / "w2"
    trials = trials_of(run_dir, storage)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # no gaps, no duplicates
    # exactly N: none lost, none extra (free re-proposals of an evaluated architecture are
    # recorded but do not count, see neuronas/search/trials.py)
    assert len([t for t in trials if not t.user_attrs.get("uncounted")]) == N
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in trials)
    assert all(t.user_attrs.get("status") != "interrupted" for t in trials)
    # both workers ran trials, in their own processes
    pids = {t.user_attrs["owner"]["pid"] for t in trials}
    assert len(pids) == 2
    # every trained trial has its own artefact folder (no two trials wrote the same one)
    dirs = [t.user_attrs["trial_dir"] for t in trials if t.user_attrs.get("trial_dir")]
    assert len(dirs) == len(set(dirs))
    assert (run_dir / "logs" / "worker-0.log").exists() and (
        run_dir / "logs" / "worker-1.log"
    ).exists()


def test_a_refusal_inside_a_worker_is_its_own_line_and_loses_nothing(tmp_path: Path) -> None:
    import hashlib
    import shutil

    space = write_space(tmp_path)
    args = ["search", "--space", str(space), "--name", "w", "--seed", "2", *FAST]
    r = cli([*args, "--trials", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "w"
    completed = {t.number: t.values for t in trials_of(run_dir) if t.state.name == "COMPLETE"}
    # the next trials' folders hold weights this study does not know: every worker refuses
    foreign = [run_dir / "trials" / f"{n:04d}" for n in range(2, 40)]
    for d in foreign:
        d.mkdir(parents=True)
        (d / "model.pt").write_bytes(b"weights of another study")

    def digest() -> dict[str, str]:
        return {
            str(p.relative_to(run_dir)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted((run_dir / "trials").rglob("*"))
            if p.is_file()
        }

    before = digest()
    r = cli([*args, "--trials", "4", "--workers", "2"], tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    # the worker's own message, not "workers keep exiting" / "all workers failed"
    assert lines[0].startswith("neuronas search: error: ")
    assert "refusing to overwrite" in lines[0] and str(run_dir / "trials") in lines[0]
    assert "workers" not in lines[0]
    # stopped at the first refusal, not after restarting the workers
    logs = "".join(p.read_text() for p in (run_dir / "logs").glob("worker-*.log"))
    assert logs.count("refusing to overwrite") <= 2
    assert digest() == before

    # moved away, the same command finishes and every completed trial is kept as it was
    for d in foreign:
        shutil.rmtree(d)
    r = cli([*args, "--trials", "4", "--workers", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    after = trials_of(run_dir)
    assert {t.number: t.values for t in after if t.number in completed} == completed
    assert not [t for t in after if t.state.name in ("RUNNING", "WAITING")]


def test_a_trial_left_without_an_owner_is_waited_for_not_given_up_on(tmp_path: Path) -> None:
    """A worker killed (-9) between taking a queued retry (RUNNING) and writing its owner leaves a
    RUNNING trial without one, counted as in flight by every worker until it is reaped
    (OWNERLESS_GRACE_S after it started). The supervisor waits for that instead of restarting
    workers that find the study full and giving up ("workers keep exiting with 1 trials left")."""
    import datetime

    import optuna
    from optuna.trial import FrozenTrial, TrialState

    from neuronas.search.trials import OWNERLESS_GRACE_S, count_trials

    space = write_space(tmp_path)
    args = ["search", "--space", str(space), "--name", "w", "--seed", "4", *FAST]
    r = cli([*args, "--trials", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "w"
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{run_dir / 'study.db'}")
    first = study.get_trials(deepcopy=False)[0]
    # what such a kill leaves: RUNNING, the retried candidate's parameters, no owner; 30 s of
    # the grace left (three restarts of a worker that finds nothing to ask take less)
    started = datetime.datetime.now() - datetime.timedelta(seconds=OWNERLESS_GRACE_S - 30)
    template = FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=started,
        datetime_complete=None,
        params=first.params,
        distributions=first.distributions,
        user_attrs={"retry_of": first.number},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    tid = study._storage.create_new_trial(study._study_id, template_trial=template)
    ownerless = study._storage.get_trial(tid).number

    r = cli([*args, "--trials", "3", "--workers", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    after = trials_of(run_dir)
    t = after[ownerless]
    assert t.state.name == "FAIL" and t.user_attrs["status"] == "interrupted"
    assert "no owner" in t.user_attrs["reason"]
    assert count_trials(study, after).finished == 3
    assert not [t for t in after if t.state.name in ("RUNNING", "WAITING")]
