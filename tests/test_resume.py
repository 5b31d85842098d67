"""Kill -9 a real search mid-way, run the same command again: it resumes and ends with exactly
the requested number of finished trials, and nothing completed is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from _search_helpers import FAST, cli, popen, trials_of, write_space

pytestmark = pytest.mark.slow

N = 8


def _wait_for(
    run_dir: Path, proc, min_finished: int, storage: str, deadline_s: float = 300
) -> list:
    """Poll the storage until >= min_finished trials are done and one is RUNNING (mid-training)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, proc.stderr.read()
        # run.json is written once the study exists: opening the database earlier would race
        # the search process creating its tables (each Optuna storage creates missing ones)
        if (run_dir / "run.json").exists():
            try:
                trials = trials_of(run_dir, storage)
            except Exception:  # the study is being created
                trials = []
            done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
            running = [t for t in trials if t.state.name == "RUNNING" and "arch" in t.user_attrs]
            if len(done) >= min_finished and running:
                return trials
        time.sleep(0.05)
    raise AssertionError("the search never reached the point to kill it")


# the same contract on every local storage
@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_kill_9_then_same_command_resumes_exactly(tmp_path: Path, storage: str) -> None:
    space = write_space(tmp_path)
    # more training than the other tests so that a trial is long enough to be killed in (the
    # event-driven kernels train a tiny candidate on 256 samples in well under a second)
    fast = [a if a != "64" else "640" for a in FAST]
    fast[fast.index("--epochs") + 1] = "6"
    args = [
        "search",
        "--space",
        str(space),
        "--trials",
        str(N),
        "--name",
        "killed",
        "--seed",
        "3",
        "--storage",
        storage,
        *fast,
    ]
    proc = popen(args, tmp_path)
    run_dir = tmp_path / "runs" / "killed"
    try:
        _wait_for(run_dir, proc, min_finished=2, storage=storage)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = trials_of(run_dir, storage)
    completed_before = {
        t.number: (t.values, t.user_attrs.get("arch_key"))
        for t in before
        if t.state.name == "COMPLETE"
    }
    stale = [t for t in before if t.state.name == "RUNNING"]
    assert completed_before and stale, (
        "the kill should leave completed trials and one RUNNING trial"
    )

    r = cli(args, tmp_path)
    assert r.returncode == 0, r.stderr
    after = trials_of(run_dir, storage)
    finished = [
        t
        for t in after
        if (
            t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and t.user_attrs.get("status") != "interrupted")
        )
        # a free re-proposal of an evaluated architecture does not count (see neuronas/search/trials.py)
        and not t.user_attrs.get("uncounted")
    ]
    assert len(finished) == N
    assert not [t for t in after if t.state.name in ("RUNNING", "WAITING")]
    # nothing completed was lost or changed
    by_number = {t.number: t for t in after}
    for number, (values, key) in completed_before.items():
        assert by_number[number].state.name == "COMPLETE"
        assert (
            by_number[number].values == values
            and by_number[number].user_attrs.get("arch_key") == key
        )
    # the killed trial is marked interrupted, and its candidate was evaluated by a retry
    for t in stale:
        killed = by_number[t.number]
        assert killed.state.name == "FAIL" and killed.user_attrs["status"] == "interrupted"
        retries = [
            x
            for x in after
            if x.system_attrs.get("fixed_params") and x.user_attrs.get("retry_of") == t.number
        ]
        assert len(retries) == 1 and retries[0].params == killed.params
        assert retries[0].state.name in ("COMPLETE", "PRUNED", "FAIL")
    # and `show` reports the same count
    s = cli(["show", "killed", "--front-only"], tmp_path)
    assert f"finished {N}/{N}" in s.stdout and "interrupted and retried 1" in s.stdout
