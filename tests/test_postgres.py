"""PostgreSQL for real: the storage several search processes (on one or several machines) share.

A throw-away PostgreSQL server (Debian's package, installed when absent) is started on
127.0.0.1 for this module and stopped at its end. Two ``neuronas search`` processes started at the
same moment against one ``--storage postgresql://...`` study must end with exactly ``--trials``
finished trials between them, none lost or duplicated; a search killed with ``kill -9`` resumes on
the same command without losing a completed trial; the run exports from the database.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _postgres import PostgresServer, find_bin_dir, install_with_apt, postgres_server
from _search_helpers import FAST, cli, popen, write_space

pytestmark = pytest.mark.slow

N = 8


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver psycopg is not installed")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        why = install_with_apt()
        if why is not None:
            pytest.skip(f"no PostgreSQL server: {why}")
        bin_dir = find_bin_dir()
        if bin_dir is None:
            pytest.skip(
                "no PostgreSQL server: apt-get installed postgresql but initdb is not found"
            )
    with postgres_server(bin_dir) as server:
        yield server


_STORAGES: dict[str, Any] = {}


def _trials(url: str) -> list[Any]:
    import optuna
    import sqlalchemy.pool

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # one storage per database: opening a new one on every poll costs a schema check, long
    # enough on a loaded machine for the search to finish between polls.  No pool: every read
    # closes its connection (a pool kept this process's connections open -- 8 to 22 of the
    # server's 50 while the search was being created, measured with `ss -tnp` -- and the
    # resumed search was refused: "too many clients")
    storage = _STORAGES.get(url)
    if storage is None:
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs={"poolclass": sqlalchemy.pool.NullPool}
        )
        _STORAGES[url] = storage
    names = optuna.get_all_study_names(storage)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=storage).get_trials(deepcopy=False)


def _finished(trials: list[Any]) -> list[Any]:
    return [
        t
        for t in trials
        if (
            t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and t.user_attrs.get("status") != "interrupted")
        )
        and not t.user_attrs.get("uncounted")
    ]


def test_two_search_processes_share_one_study(pg: PostgresServer, tmp_path: Path) -> None:
    url = pg.create_database("two_processes")
    space = write_space(tmp_path)
    args = ["search", "--space", str(space), "--trials", str(N), "--name", "shared", "--seed", "5"]
    args += ["--storage", url, *FAST]
    # started together, as two machines of a cluster would be: the first one creates the tables
    # and the study while the second is opening the same database
    procs = [popen(args, tmp_path), popen(args, tmp_path)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err + out

    trials = _trials(url)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # no gaps, no duplicates
    assert len(_finished(trials)) == N  # none lost, none extra
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    # no two trials trained the same candidate or wrote the same artefact folder
    keys = [t.user_attrs["arch_key"] for t in trials if t.user_attrs.get("trained")]
    assert len(keys) == len(set(keys))
    dirs = [t.user_attrs["trial_dir"] for t in trials if t.user_attrs.get("trial_dir")]
    assert len(dirs) == len(set(dirs))
    # both processes took part
    assert len({t.user_attrs["owner"]["pid"] for t in trials}) == 2

    # the run exports from the database
    out_dir = tmp_path / "front"
    r = cli(["export", "shared", "--storage", url, "--out", str(out_dir)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out_dir / "report.md").is_file() and (out_dir / "pareto.csv").is_file()
    members = [d for d in out_dir.iterdir() if d.is_dir() and (d / "arch.yaml").is_file()]
    assert members, list(out_dir.iterdir())


def _killed_inside_a_trial(args: list[str], url: str, tmp_path: Path) -> bool:
    """Start the search and SIGKILL it inside a trial begun after one was completed; False if
    the search ended before a poll of the database saw that point."""
    proc = popen(args, tmp_path)
    try:
        end = time.monotonic() + 300
        while True:
            assert time.monotonic() < end, "the search never reached the point to kill it"
            if proc.poll() is not None:
                assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
                return False
            try:
                trials = _trials(url)
            except Exception:  # noqa: BLE001 - the study is still being created
                # close the pool's connections: a new storage on every failed poll otherwise
                # leaves them open until the server refuses clients and every poll fails
                stale = _STORAGES.pop(url, None)
                if stale is not None:
                    stale.engine.dispose()
                gc.collect()  # and those of a storage whose constructor failed (a cycle)
                trials = []
            done = [t for t in trials if t.state.name == "COMPLETE"]
            running = [t for t in trials if t.state.name == "RUNNING" and "arch" in t.user_attrs]
            if len(done) >= 1 and running:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_9_then_same_command_resumes(pg: PostgresServer, tmp_path: Path) -> None:
    space = write_space(tmp_path)
    # longer training than FAST, so that the kill lands inside a trial (with the fused neuron
    # and cell kernels and the numba noise draws a tiny candidate trains 640 samples x 10 epochs
    # in a fraction of a second, shorter than a poll of the database under load: the search
    # finished unseen once at 10 epochs, and once at 30 on a loaded machine: then it is run
    # again on a new database, at most three times)
    fast = [a if a != "64" else "640" for a in FAST]
    fast[fast.index("--epochs") + 1] = "30"
    for attempt in range(3):
        url = pg.create_database(f"killed{attempt}")
        args = ["search", "--space", str(space), "--trials", str(N), "--name", f"killed{attempt}"]
        args += ["--seed", "3", "--storage", url, *fast]
        if _killed_inside_a_trial(args, url, tmp_path):
            break
    else:
        raise AssertionError("three searches ended before a poll saw a trial to kill")
    before = _trials(url)
    completed = {t.number: t.values for t in before if t.state.name == "COMPLETE"}
    stale = [t.number for t in before if t.state.name == "RUNNING"]
    assert completed and stale
    gc.collect()  # nothing of this process's left open while the search runs again

    r = cli(args, tmp_path)
    assert r.returncode == 0, r.stderr
    after = _trials(url)
    assert len(_finished(after)) == N
    assert not [t for t in after if t.state.name in ("RUNNING", "WAITING")]
    by_number = {t.number: t for t in after}
    for number, values in completed.items():  # nothing completed lost or changed
        assert by_number[number].state.name == "COMPLETE" and by_number[number].values == values
    for number in stale:
        assert by_number[number].state.name == "FAIL"
        assert by_number[number].user_attrs["status"] == "interrupted"
