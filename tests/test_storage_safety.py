"""A run's storage under faults: renamed folders, emptied or foreign study.db, files of earlier
trials, in-memory URLs, read-only storage, and the proposal window of a killed process.

Every case uses real SQLite files and real `neuronas` processes; nothing completed may be lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from _search_helpers import FAST, cli, write_space


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a hash of its bytes (what must never change)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _studies(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        return [r[0] for r in c.execute("select study_name from studies")]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real finished run of 3 trials in ``runs/base`` (copied by each test)."""
    tmp = tmp_path_factory.mktemp("base")
    write_space(tmp)
    r = cli(
        ["search", "--space", "tiny.yaml", "--name", "base", "--trials", "3", *FAST],
        tmp,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert any((tmp / "runs" / "base" / "trials").rglob("model.pt"))
    return tmp


@pytest.fixture
def work(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path, dirs_exist_ok=True)
    return tmp_path


def test_run_json_holds_no_absolute_run_dir(work: Path) -> None:
    meta = json.loads((work / "runs" / "base" / "run.json").read_text())
    assert meta["name"] == "base" and meta["run_dir"] == ""
    assert str(work) not in (work / "runs" / "base" / "run.json").read_text()


def test_renamed_folder_opens_and_resumes_its_own_study(work: Path) -> None:
    (work / "runs" / "base").rename(work / "runs" / "moved")
    run_dir = work / "runs" / "moved"
    before = _digest(run_dir / "trials")
    r = cli(["show", "moved"], work, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "finished 3/3" in r.stdout
    r = cli(["export", "moved", "--out", "front"], work, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (work / "front" / "report.md").is_file()
    r = cli(["search", "--name", "moved", "--trials", "4", *FAST], work, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "finished 4/4" in r.stdout
    # one study (the original, under its stored name), never a second one beside it
    assert _studies(run_dir / "study.db") == ["base"]
    after = _digest(run_dir / "trials")
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) > len(before)


def test_emptied_study_db_is_refused_and_trials_kept(work: Path) -> None:
    run_dir = work / "runs" / "base"
    before = _digest(run_dir / "trials")
    (run_dir / "study.db").write_bytes(b"")
    msg = _one_line_error(cli(["search", "--name", "base", *FAST], work, timeout=120))
    assert str(run_dir / "study.db") in msg and "empty" in msg
    msg = _one_line_error(cli(["show", "base"], work, timeout=120))
    assert "empty" in msg
    assert (run_dir / "study.db").stat().st_size == 0
    assert _digest(run_dir / "trials") == before


def test_study_db_that_is_not_a_database_is_refused(work: Path) -> None:
    run_dir = work / "runs" / "base"
    before = _digest(run_dir / "trials")
    (run_dir / "study.db").write_text("not a database\n" * 100)
    msg = _one_line_error(cli(["search", "--name", "base", *FAST], work, timeout=120))
    assert "study.db" in msg and "not a database" in msg
    assert _digest(run_dir / "trials") == before


def test_foreign_study_db_is_refused(work: Path) -> None:
    import optuna

    run_dir = work / "runs" / "foreign"
    run_dir.mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=f"sqlite:///{run_dir / 'study.db'}", study_name="someone-else")
    msg = _one_line_error(cli(["search", "--name", "foreign", *FAST], work, timeout=120))
    assert "study.db" in msg and "no neuronas study" in msg and "someone-else" in msg
    assert _studies(run_dir / "study.db") == ["someone-else"]
    assert not (run_dir / "trials").exists()


def test_study_db_that_is_a_folder_is_refused(work: Path) -> None:
    run_dir = work / "runs" / "base"
    (run_dir / "study.db").unlink()
    (run_dir / "study.db").mkdir()
    msg = _one_line_error(cli(["search", "--name", "base", *FAST], work, timeout=120))
    assert str(run_dir / "study.db") in msg and "not a file" in msg


def test_new_study_never_starts_over_files_of_earlier_trials(work: Path) -> None:
    run_dir = work / "runs" / "base"
    before = _digest(run_dir / "trials")
    (run_dir / "study.db").unlink()  # the study is gone, the trained weights are not
    msg = _one_line_error(cli(["search", "--name", "base", *FAST], work, timeout=120))
    assert str(run_dir / "trials") in msg and "overwrite" in msg
    assert _digest(run_dir / "trials") == before
    assert not (run_dir / "study.db").exists()


def test_study_db_holding_only_an_empty_schema_and_old_trials_is_refused(work: Path) -> None:
    import optuna

    run_dir = work / "runs" / "base"
    before = _digest(run_dir / "trials")
    (run_dir / "study.db").unlink()
    optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'study.db'}")  # schema, no study
    msg = _one_line_error(cli(["search", "--name", "base", *FAST], work, timeout=120))
    assert "overwrite" in msg
    assert _studies(run_dir / "study.db") == []
    assert _digest(run_dir / "trials") == before


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_in_memory_storage_refused_by_the_api(tmp_path: Path, url: str) -> None:
    from neuronas.errors import StorageError
    from neuronas.search.run import create_or_resume

    with pytest.raises(StorageError, match="in-memory"):
        create_or_resume({"name": "mem", "storage": url}, root=tmp_path)
    assert not (tmp_path / "runs").exists()


def test_file_sqlite_url_is_not_taken_for_memory() -> None:
    from neuronas.search.storage import is_memory_url

    assert not is_memory_url("sqlite:///runs/x/study.db")
    assert not is_memory_url("sqlite:////abs/study.db")
    assert not is_memory_url("postgresql://u@h/db")
    assert is_memory_url("sqlite:///file:m?mode=memory&uri=true")


def _without_dac() -> list[str]:
    """A command prefix under which permission bits bind: none for a user; for root (CI), the
    DAC capabilities dropped (util-linux ``setpriv``, or libcap's ``capsh``)."""
    if os.geteuid() != 0:
        return []
    caps = "dac_override,dac_read_search"
    if shutil.which("setpriv"):
        drop = ",".join(f"-{c}" for c in caps.split(","))
        return ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--"]
    if shutil.which("capsh"):
        drop = ",".join(f"cap_{c}" for c in caps.split(","))
        return ["capsh", f"--drop={drop}", "--", "-c", 'exec "$0" "$@"']
    pytest.skip("running as root without setpriv or capsh: permission bits cannot bind")


def _cli_without_dac(args: list[str], cwd: Path):
    import subprocess
    import sys

    from _search_helpers import env

    return subprocess.run(
        [*_without_dac(), sys.executable, "-m", "neuronas", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("read_only", ["study.db", "run folder", "both", "trials folder"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_read_only_run_is_one_line_and_loses_nothing(
    work: Path, read_only: str, workers: str
) -> None:
    run_dir = work / "runs" / "base"
    before = _digest(run_dir)
    modes = {
        "study.db": [(run_dir / "study.db", 0o444)],
        "run folder": [(run_dir, 0o555)],
        "both": [(run_dir / "study.db", 0o444), (run_dir, 0o555)],
        "trials folder": [(run_dir / "trials", 0o555)],
    }[read_only]
    for path, mode in modes:
        path.chmod(mode)
    try:
        r = _cli_without_dac(
            ["search", "--name", "base", "--trials", "4", "--workers", workers, *FAST], work
        )
        msg = _one_line_error(r)
        assert "read-only" in msg and str(run_dir) in msg
        # reading a read-only run still works
        r = _cli_without_dac(["show", "base"], work)
        assert r.returncode == 0 and "finished 3/3" in r.stdout, r.stderr
    finally:
        for path, _ in modes:
            path.chmod(0o644 if path.name == "study.db" else 0o755)
    assert _digest(run_dir) == before


def test_permission_bits_bind_under_the_prefix(tmp_path: Path) -> None:
    # the test above proves nothing if the prefix left root able to write through the bits
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = subprocess.run([*_without_dac(), "touch", str(ro / "x")], capture_output=True)
        assert r.returncode != 0 and not (ro / "x").exists()
    finally:
        ro.chmod(0o755)


def _add_ownerless_running_trial(run_dir: Path, age_s: float) -> int:
    """What a process killed between taking an enqueued trial and recording its owner (or a
    program that asks through Optuna directly) leaves: a RUNNING trial, no owner record, made
    RUNNING ``age_s`` seconds ago.  Returns its number."""
    import datetime

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = run_dir / "study.db"
    study = optuna.load_study(study_name="base", storage=f"sqlite:///{db}")
    trial = study.ask()  # RUNNING, no owner: the process "dies" here
    start = datetime.datetime.now() - datetime.timedelta(seconds=age_s)
    with sqlite3.connect(db) as c:
        c.execute(
            "update trials set datetime_start = ? where number = ? and study_id = "
            "(select study_id from studies where study_name = 'base')",
            (start.strftime("%Y-%m-%d %H:%M:%S.%f"), trial.number),
        )
    return int(trial.number)


def _states(run_dir: Path) -> dict[int, tuple[str, str]]:
    from _search_helpers import trials_of

    return {
        t.number: (t.state.name, str(t.user_attrs.get("status", ""))) for t in trials_of(run_dir)
    }


def test_ownerless_running_trial_is_reaped_after_the_grace(work: Path) -> None:
    run_dir = work / "runs" / "base"
    number = _add_ownerless_running_trial(run_dir, age_s=600)
    r = cli(["search", "--name", "base", "--trials", "4", *FAST], work, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "finished 4/4" in r.stdout and "finished trials: the same" not in r.stdout
    states = _states(run_dir)
    assert states[number] == ("FAIL", "interrupted")
    assert sum(1 for s in states.values() if s[0] == "RUNNING") == 0
    finished = [n for n, s in states.items() if s[0] != "RUNNING" and s[1] != "interrupted"]
    assert len(finished) == 4


def test_fresh_ownerless_trial_is_left_alone_and_no_timeout_claimed(work: Path) -> None:
    run_dir = work / "runs" / "base"
    number = _add_ownerless_running_trial(run_dir, age_s=0)
    r = cli(["search", "--name", "base", "--trials", "4", *FAST], work, timeout=300)
    assert r.returncode == 0, r.stderr
    # within the grace it may be another process still proposing: not reaped, and the
    # command says why it stopped without inventing a --timeout
    assert _states(run_dir)[number] == ("RUNNING", "")
    assert "finished 3/4" in r.stdout
    assert "--timeout" not in r.stdout and "still run in another process" in r.stdout


# a real `neuronas search` whose default sampler stalls inside its proposal (``before_trial``,
# which Optuna runs after the trial exists) from trial STALL_AT on, so a SIGKILL lands there
_STALLING_SEARCH = """
import os, sys, time
from pathlib import Path
from neuronas.search import samplers
from neuronas.cli import main

guided = samplers.SAMPLER_FACTORIES["guided"]
mark, stall_at = Path(os.environ["STALL_MARK"]), int(os.environ["STALL_AT"])

def stalling(run, seed, workers):
    sampler = guided(run, seed, workers)
    propose = sampler.before_trial

    def before_trial(study, trial):
        propose(study, trial)
        if trial.number >= stall_at:
            mark.write_text(str(trial.number))
            time.sleep(600)

    sampler.before_trial = before_trial
    return sampler

samplers.SAMPLER_FACTORIES["guided"] = stalling
sys.exit(main(sys.argv[1:]))
"""


def test_kill_9_inside_the_proposal_then_the_same_command_finishes(work: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from _search_helpers import env

    run_dir = work / "runs" / "base"
    args = ["search", "--name", "base", "--trials", "5", *FAST]
    before = {n: s for n, s in _states(run_dir).items()}
    files = _digest(run_dir / "trials")
    script = work / "stalling_search.py"
    script.write_text(_STALLING_SEARCH)
    mark = work / "proposing"
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=work,
        env={**env(), "STALL_MARK": str(mark), "STALL_AT": "3"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 240
        while not mark.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < end, "the search never reached the proposal of trial 3"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    from _search_helpers import trials_of

    killed = {t.number: t for t in trials_of(run_dir)}[3]
    # killed inside the window: the trial exists, its parameters were never suggested ...
    assert killed.state.name == "RUNNING" and not killed.params and "arch" not in killed.user_attrs
    # ... and it was created with its owner, so the next run knows its process is gone
    assert killed.user_attrs["owner"]["pid"] == proc.pid

    r = cli(args, work, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "finished 5/5" in r.stdout
    assert "--timeout" not in r.stdout and "finished trials: the same command" not in r.stdout
    states = _states(run_dir)
    assert states[3] == ("FAIL", "interrupted")
    assert not [n for n, s in states.items() if s[0] in ("RUNNING", "WAITING")]
    # nothing completed was lost or changed
    assert {n: states[n] for n in before} == before
    after = _digest(run_dir / "trials")
    assert {k: v for k, v in after.items() if k in files} == files


def test_reap_rule_in_process(work: Path) -> None:
    import optuna

    from neuronas.search.trials import reap_stale_trials

    run_dir = work / "runs" / "base"
    old = _add_ownerless_running_trial(run_dir, age_s=120)
    new = _add_ownerless_running_trial(run_dir, age_s=5)
    study = optuna.load_study(study_name="base", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert reap_stale_trials(study) == [old]
    assert reap_stale_trials(study, grace_s=1) == [new]


def test_read_only_database_found_at_the_first_write_is_one_line(work: Path) -> None:
    # root writes through permission bits; SQLite's read-only open mode binds root too
    run_dir = work / "runs" / "base"
    before = _digest(run_dir)
    url = f"sqlite:///file:{run_dir / 'study.db'}?mode=ro&uri=true"
    msg = _one_line_error(
        cli(["search", "--name", "base", "--trials", "4", "--storage", url, *FAST], work)
    )
    assert str(run_dir) in msg and "read-only" in msg and "readonly database" in msg
    assert _digest(run_dir) == before
    r = cli(["show", "base", "--storage", url], work, timeout=120)  # reading still works
    assert r.returncode == 0 and "finished 3/3" in r.stdout, r.stderr


def test_files_of_an_unknown_trial_are_never_overwritten(work: Path) -> None:
    run_dir = work / "runs" / "base"
    # the next trial numbers' folders already hold weights the study does not know about
    for n in range(3, 40):
        d = run_dir / "trials" / f"{n:04d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.pt").write_bytes(b"weights of a trial of another study %d" % n)
    before = _digest(run_dir / "trials")
    msg = _one_line_error(
        cli(["search", "--name", "base", "--trials", "5", *FAST], work, timeout=300)
    )
    assert "refusing to overwrite" in msg and str(run_dir / "trials") in msg
    assert _digest(run_dir / "trials") == before
    states = _states(run_dir)
    assert not any(s[0] == "RUNNING" for s in states.values())
