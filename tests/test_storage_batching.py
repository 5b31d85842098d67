"""A trial's writes in one transaction per phase (neuronas.search.rdb, storage.deferred_writes),
on real SQLite files: what is stored is what one commit per value stored, only with fewer
commits, and nothing is lost or reordered around a state change."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import event

from neuronas.search.rdb import BatchedRDBStorage
from neuronas.search.storage import deferred_writes, open_storage
from neuronas.search.trials import (
    interrupt,
    name_constraints,
    record_result,
    take_trial,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTS = {
    "layers": IntDistribution(1, 4),
    "width": IntDistribution(8, 256, log=True),
    "adc": CategoricalDistribution(["sa", "sar", "flash"]),
    "lr": FloatDistribution(1e-3, 1e-1, log=True),
}


def _study_on(storage: Any) -> Any:
    study = optuna.create_study(
        storage=storage,
        study_name="s",
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=3),
    )
    name_constraints(study, ["energy_uj", "latency_us"])
    return study


def _study(run_dir: Path, storage: str = "sqlite") -> Any:
    return _study_on(open_storage(run_dir, storage))


def _plain_study(db: Path) -> Any:
    """The same study on Optuna's own RDBStorage (one commit per value): the reference."""
    return _study_on(optuna.storages.RDBStorage(f"sqlite:///{db}"))


def _commits(study: Any) -> list[int]:
    """A counter of the commits of ``study``'s database connection (reads included)."""
    engine = study._storage._backend.engine
    n = [0]
    event.listen(engine, "commit", lambda conn: n.__setitem__(0, n[0] + 1))
    return n


def _fill(trial: Any) -> None:
    for name, dist in DISTS.items():
        trial._suggest(name, dist)
    for i in range(12):
        trial.set_user_attr(f"a{i}", {"i": i, "nested": [i, None, "x"]})
    trial.set_user_attr("a3", "overwritten")


def _result() -> dict[str, Any]:
    priced = {
        "compatible": True,
        "feasible": True,
        "cost": {"energy_pj": 1.0},
        "metrics": {"energy_uj": 2.5, "latency_us": 0.7},
        "margins": {"energy_uj": -0.4, "latency_us": -0.1},
        "violations": [],
    }
    return {
        "status": "ok",
        "trained": True,
        "reason": "",
        "prior": priced,
        "measured": priced,
        "train": {"history": [{"epoch": 0, "val_accuracy": 0.5}], "epochs_run": 1},
        "accuracy_mean": 0.8,
        "accuracy_std": 0.01,
        "seconds": {"total": 1.0},
    }


def _stored(path: Path) -> list[tuple[Any, ...]]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.load_study(study_name="s", storage=storage)
    return [
        (t.number, t.state, t.values, t.params, t.user_attrs, t.system_attrs)
        for t in study.get_trials(deepcopy=False)
    ]


def test_a_phase_is_one_commit_and_stores_what_one_commit_per_value_stored(
    tmp_path: Path,
) -> None:
    plain_dir, batched_dir = tmp_path / "plain", tmp_path / "batched"
    plain = _plain_study(Path(f"{plain_dir}.db"))
    batched = _study(batched_dir)
    assert isinstance(batched._storage._backend, BatchedRDBStorage)
    commits = _commits(batched)
    for study in (plain, batched):
        for _ in range(2):
            trial = take_trial(study)
            before = commits[0]
            with deferred_writes(study, trial):
                _fill(trial)
                # the Trial object sees its own held values
                assert trial.params["layers"] in range(1, 5)
                assert trial.user_attrs["a3"] == "overwritten"
                if study is batched:
                    assert commits[0] == before  # nothing written yet
            if study is batched:
                assert commits[0] == before + 1  # one transaction for the phase
            record_result(
                study, trial, _result(), ["accuracy", "energy_uj"], {"trial_dir": "trials/x"}
            )
    got = _stored(batched_dir / "study.db")
    want = _stored(Path(f"{plain_dir}.db"))
    assert got == want
    assert got[0][4]["a3"] == "overwritten" and got[0][4]["trial_dir"] == "trials/x"
    assert got[0][5]["constraints"] == [-0.4, -0.1] and got[0][1] == TrialState.COMPLETE


def test_a_state_change_inside_the_block_writes_the_held_values_first(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = take_trial(study)
    with deferred_writes(study, trial):
        _fill(trial)
        # interrupt() writes its reason and fails the trial through the storage, by id
        interrupt(study, trial, "killed", requeue=True)
    (first, *rest) = _stored(tmp_path / "study.db")
    assert first[1] == TrialState.FAIL and first[4]["reason"] == "killed"
    assert first[3] == trial.params and first[4]["a11"]["i"] == 11
    # the retry is enqueued with the (held, then written) parameters
    assert rest and rest[0][1] == TrialState.WAITING
    assert rest[0][5]["fixed_params"] == trial.params


def test_writes_before_an_error_in_the_block_are_kept_and_other_trials_are_not_held(
    tmp_path: Path,
) -> None:
    study = _study(tmp_path)
    first, second = take_trial(study), take_trial(study)
    with pytest.raises(RuntimeError, match="boom"), deferred_writes(study, first):
        first.set_user_attr("seen", 1)
        second.set_user_attr("other", 2)  # another trial: written at once
        assert _stored(tmp_path / "study.db")[1][4]["other"] == 2
        assert "seen" not in _stored(tmp_path / "study.db")[0][4]
        raise RuntimeError("boom")
    assert _stored(tmp_path / "study.db")[0][4]["seen"] == 1


def test_nested_blocks_join_and_the_storage_pickles(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = take_trial(study)
    with deferred_writes(study, trial):
        trial.set_user_attr("outer", 1)
        with deferred_writes(study, trial):
            trial.set_user_attr("inner", 2)
        assert "inner" not in _stored(tmp_path / "study.db")[0][4]  # held by the outer block
    assert {"outer", "inner"} <= set(_stored(tmp_path / "study.db")[0][4])
    copy = pickle.loads(pickle.dumps(study._storage._backend))
    assert isinstance(copy, BatchedRDBStorage)
    assert copy.get_trial_user_attrs(trial._trial_id)["inner"] == 2


def test_a_journal_storage_is_written_as_before(tmp_path: Path) -> None:
    study = _study(tmp_path, "journal")
    trial = take_trial(study)
    with deferred_writes(study, trial):
        trial.set_user_attr("x", 1)
        # nothing held: the journal has the value at once
        assert study.get_trials(deepcopy=False)[0].user_attrs["x"] == 1
    record_result(study, trial, _result(), ["accuracy", "energy_uj"])
    assert study.get_trials(deepcopy=False)[0].state == TrialState.COMPLETE


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The attribute and parameter tables as stored: row ids, trials, keys, JSON text."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in ("trial_user_attributes", "trial_system_attributes", "trial_params")
        }
    finally:
        con.close()


def test_held_writes_store_the_rows_one_commit_per_value_stores(tmp_path: Path) -> None:
    """Row for row (ids, order, JSON text): the held writes of a phase -- parameters, new
    attributes, an attribute written twice in the block, one that existed before it (the
    owner, written when the trial was created) -- are stored as RDBStorage's writes one by one
    store them, also with a second trial and an enqueued retry in between."""
    plain_db, batched_dir = tmp_path / "plain.db", tmp_path / "batched"
    plain = _plain_study(plain_db)
    batched = _study(batched_dir)
    for study in (plain, batched):
        first = take_trial(study)
        with deferred_writes(study, first):
            _fill(first)
            first.set_user_attr("owner", {"host": "elsewhere", "pid": 1, "start": ""})
            study._storage.set_trial_system_attr(first._trial_id, "mark", [1, 2])
            study._storage.set_trial_system_attr(first._trial_id, "mark", {"again": True})
        second = take_trial(study)
        with deferred_writes(study, second):
            _fill(second)
            interrupt(study, second, "stopped", requeue=True)
        record_result(study, first, _result(), ["accuracy", "energy_uj"], {"trial_dir": "t/0"})
    got, want = _rows(batched_dir / "study.db"), _rows(plain_db)
    assert got == want
    assert len(got["trial_params"]) == 2 * len(DISTS)
    assert any(r[2] == "mark" and r[3] == '{"again": true}' for r in got["trial_system_attributes"])
