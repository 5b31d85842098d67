"""The trial bookkeeping on a real (in-memory) Optuna study: ownership and reaping, abandoning,
duplicate reuse, the crash guard."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from neuronas.errors import SearchError
from neuronas.search.lifecycle import CrashGuard, Pending, abandon, failed_result
from neuronas.search.trials import (
    DUPLICATE_ALLOWANCE,
    TrialStatus,
    count_trials,
    owner_record,
    reap_stale_trials,
    record_result,
    reuse_duplicate,
)
from neuronas.settings import SCREENING

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study() -> Any:
    return optuna.create_study(directions=["maximize"])


def _dead_pid() -> int:
    pid = 2**22 - 1  # above Linux's default pid_max unless raised: no such process
    assert not Path(f"/proc/{pid}").exists()
    return pid


def test_a_trial_whose_owner_died_is_reaped_and_requeued() -> None:
    study = _study()
    live = study.ask({"w": optuna.distributions.IntDistribution(1, 8)})
    live.set_user_attr("owner", owner_record())  # this very process: alive
    dead = study.ask({"w": optuna.distributions.IntDistribution(1, 8)})
    dead.set_user_attr("owner", {"host": socket.gethostname(), "pid": _dead_pid(), "start": "1"})
    remote = study.ask({"w": optuna.distributions.IntDistribution(1, 8)})
    remote.set_user_attr("owner", {"host": "another-host", "pid": 1, "start": "1"})
    unowned = study.ask({"w": optuna.distributions.IntDistribution(1, 8)})

    assert reap_stale_trials(study) == [dead.number]
    trials = study.get_trials(deepcopy=False)
    t = trials[dead.number]
    assert t.state.name == "FAIL" and t.user_attrs["status"] == TrialStatus.INTERRUPTED
    retry = trials[-1]
    assert retry.state.name == "WAITING" and retry.user_attrs["retry_of"] == dead.number
    assert retry.system_attrs["fixed_params"] == dead.params
    # the live, the remote and the unowned trial are left alone (see trials.py's rules)
    for other in (live, remote, unowned):
        assert trials[other.number].state.name == "RUNNING"
    c = count_trials(study)
    assert (c.interrupted, c.running, c.waiting, c.finished) == (1, 3, 1, 0)
    assert reap_stale_trials(study) == []  # reaped once


def test_abandon_interrupts_and_requeues() -> None:
    study = _study()
    trial = study.ask({"w": optuna.distributions.IntDistribution(1, 8)})
    pending = Pending(trial, {}, SCREENING, 0.0, Path("nowhere"))
    abandon(pending, study, "stopped")
    t, retry = study.get_trials(deepcopy=False)
    assert t.state.name == "FAIL" and t.user_attrs == {"status": "interrupted", "reason": "stopped"}
    assert retry.state.name == "WAITING" and retry.system_attrs["fixed_params"] == t.params


def _told(study: Any, key: str, *, trained: bool, accuracy: float) -> None:
    t = study.ask()
    t.set_user_attr("arch_key", key)
    result = {
        "status": "ok",
        "trained": trained,
        "reason": "",
        "prior": {},
        "measured": {
            "compatible": True,
            "cost": {"energy_uj": 0.5},
            "metrics": {"energy_uj": 0.5},
            "margins": {"energy_uj": -0.5},
            "violations": [],
        },
        "train": {"history": [{"epoch": 1}]} if trained else None,
        "accuracy_mean": accuracy,
        "accuracy_std": 0.0,
    }
    record_result(study, t, result, ["accuracy"])


def test_a_reproposal_reuses_the_trained_result_within_the_allowance() -> None:
    study = _study()
    _told(study, "a", trained=True, accuracy=0.75)
    target = 1
    first = study.ask()
    result = reuse_duplicate(study, first, "a", target)
    assert result is not None and result["cached_from"] == 0 and result["accuracy_mean"] == 0.75
    assert result["measured"]["metrics"] == {"energy_uj": 0.5}
    assert first.user_attrs["uncounted"] and first.user_attrs["duplicate_of"] == 0
    record_result(study, first, result, ["accuracy"])
    # the allowance (DUPLICATE_ALLOWANCE x target) is used up: the next one counts
    assert DUPLICATE_ALLOWANCE * target <= 1
    second = study.ask()
    assert reuse_duplicate(study, second, "a", target) is not None
    assert "uncounted" not in second.user_attrs
    # an architecture never evaluated: nothing to reuse, nothing marked
    third = study.ask()
    assert reuse_duplicate(study, third, "b", target) is None and not third.user_attrs


def test_record_result_keeps_nan_in_a_reason() -> None:
    study = _study()
    t = study.ask()
    record_result(study, t, failed_result("loss is NaN at epoch 1", trained=True), ["accuracy"])
    stored = study.get_trials(deepcopy=False)[0]
    assert stored.state.name == "FAIL" and stored.user_attrs["reason"] == "loss is NaN at epoch 1"


def test_the_crash_guard_stops_after_consecutive_crashes_only() -> None:
    guard = CrashGuard(SimpleNamespace(run_dir="runs/x"), limit=3)
    crash = failed_result("RuntimeError: boom", trained=True, traceback="Traceback ...")
    guard.check(crash)
    guard.check(crash)
    guard.check({"status": "ok"})  # a success in between resets the count
    guard.check(crash)
    guard.check(crash)
    with pytest.raises(SearchError, match="3 trials in a row crashed .*RuntimeError: boom"):
        guard.check(crash)


def test_constraint_names_are_read_until_recorded_then_kept_per_study(tmp_path: Path) -> None:
    """constraint_names reads the study's attributes until the names are recorded (an empty
    answer is not kept), then answers from memory for that study object; another object on
    the same storage reads them itself."""
    from neuronas.search.trials import constraint_names, name_constraints

    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = optuna.create_study(storage=url, study_name="c")
    assert constraint_names(study) == []
    name_constraints(study, ["latency_us", "energy_uj"])
    assert constraint_names(study) == ["energy_uj", "latency_us"]
    names = constraint_names(study)
    names.append("changed by the caller")  # a copy: the kept list is not the caller's
    assert constraint_names(study) == ["energy_uj", "latency_us"]
    other = optuna.load_study(study_name="c", storage=url)
    assert constraint_names(other) == ["energy_uj", "latency_us"]


_STOPPED_WHILE_TAKING = """
import os, signal, sys
import optuna
from neuronas.search.trials import take_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="s", storage=sys.argv[1])
storage = study._storage
taken = storage.set_trial_state_values


def taken_then_stopped(*args, **kwargs):
    out = taken(*args, **kwargs)  # WAITING -> RUNNING, in the database
    os.kill(os.getpid(), signal.SIGTERM)  # the supervisor stops this worker right then
    return out


storage.set_trial_state_values = taken_then_stopped


def stop(signum, frame):  # a local worker's handler (neuronas.search.local.worker_main)
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, stop)
take_trial(study)
print("not stopped")
"""


def test_a_worker_stopped_while_taking_a_queued_trial_writes_its_owner_first(
    tmp_path: Path,
) -> None:
    """A real SIGTERM between the two storage calls that take an enqueued retry (RUNNING, then
    the owner) waits until the owner is written; the trial is then an ordinary dead-owner trial,
    reaped at once, not an ownerless one every worker sees as in flight for a minute (CI saw a
    supervisor give up on that: "workers keep exiting with 1 trials left")."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize"])
    study.enqueue_trial({"w": 3}, user_attrs={"retry_of": 0})
    r = subprocess.run(
        [sys.executable, "-c", _STOPPED_WHILE_TAKING, url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 128 + 15, r.stderr  # stopped by the signal, once the owner was written
    assert "not stopped" not in r.stdout
    (t,) = study.get_trials(deepcopy=False)
    assert t.state.name == "RUNNING"
    assert t.user_attrs["owner"]["host"] == socket.gethostname()
    assert reap_stale_trials(study) == [t.number]  # its owner is gone: reaped without a wait
