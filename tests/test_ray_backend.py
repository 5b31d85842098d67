"""The search on a real Ray cluster: a head node started here (``ray start --head --block`` on
127.0.0.1, its own process group), a small search against its address, the front exported; a
Ray worker killed mid-trial; an unreachable address.  No mocks: real Ray, real SQLite, real
training (tiny), real processes killed.

One head serves the whole module (starting one costs ~10 s); the fixture's finaliser stops
every process the head started (its process group, then any worker that left it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _search_helpers import FAST, TINY_SPACE, trials_of

from neuronas.errors import NeuronasError
from neuronas.search.ray_backend import RayOptions, parse_address, probe_address

RAY = Path(sys.executable).with_name("ray")
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


# -- the head node -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process (from /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry)] = (ppid, cmd)
    return table


def _descendants(root: int) -> dict[int, str]:
    """Every live process below ``root``: pid -> command line (Ray workers set it to ray::NAME)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = table[child][1]
            todo.append(child)
    return out


@dataclass
class Head:
    address: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes]

    def workers(self, prefix: str = "ray::neuronas_trial_") -> dict[int, str]:
        """Worker processes of this head running a neuronas trial: pid -> title."""
        return {
            pid: cmd for pid, cmd in _descendants(self.proc.pid).items() if cmd.startswith(prefix)
        }


def _stop(proc: subprocess.Popen[bytes]) -> list[int]:
    """End the head's process group and every process it started (workers make their own
    groups); returns the pids still alive afterwards (none, unless something is wrong)."""
    spawned = set(_descendants(proc.pid))
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        for pid in spawned:  # only processes this head started (recorded above), by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            proc.poll()
            alive = [
                p for p in spawned | {proc.pid} if os.path.exists(f"/proc/{p}") and not _zombie(p)
            ]
            if not alive:
                break
            time.sleep(0.1)
    proc.wait(timeout=10)
    return [p for p in spawned if os.path.exists(f"/proc/{p}") and not _zombie(p)]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().decode(errors="replace").rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    port = _free_port()
    # short, private temp dir: the head's session files (and ray_current_cluster) stay out of
    # /tmp/ray, and the socket paths stay under the 107-byte limit of unix sockets
    temp_dir = tempfile.mkdtemp(prefix="nray", dir="/tmp")
    env = dict(os.environ)
    env.update(
        # Ray 2.60 turns token authentication on for new clusters: give head and drivers one
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        RAY_USAGE_STATS_ENABLED="0",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115 - closed in the finaliser
    cmd = [
        str(RAY),
        "start",
        "--head",
        "--block",
        "--port",
        str(port),
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--temp-dir",
        temp_dir,
    ]
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (Path(temp_dir) / "head.log").read_text()[-2000:]
            try:
                probe_address(address, timeout_s=1.0)
                break
            except NeuronasError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield Head(address=address, env=env, proc=proc)
    finally:
        left = _stop(proc)
        log.close()
        # and nothing else of this head's session (its processes name the private temp dir)
        left += [
            pid for pid, (_, cmd) in _proc_table().items() if temp_dir in cmd and not _zombie(pid)
        ]
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"ray processes left behind: {left}"


def _cli(
    head: Head, args: list[str], cwd: Path, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronas", *args],
        cwd=cwd,
        env=head.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _search_args(head: Head, space: Path, name: str, trials: int, *extra: str) -> list[str]:
    return [
        "search",
        "--backend",
        "ray",
        "--address",
        head.address,
        "--space",
        str(space),
        "--trials",
        str(trials),
        "--name",
        name,
        "--seed",
        "1",
        "--cpus-per-trial",
        "1",
        *FAST,
        *extra,
    ]


def _finished(trials: list) -> list:
    """Trials that count toward --trials (not interrupted, not a free re-proposal)."""
    return [
        t
        for t in trials
        if t.state.name in FINISHED
        and t.user_attrs.get("status") != "interrupted"
        and not t.user_attrs.get("uncounted")
    ]


def _reproposed(trials: list) -> list:
    """Free re-proposals of an evaluated architecture: finished, result copied, not counted."""
    return [t for t in trials if t.user_attrs.get("uncounted") and t.state.name in FINISHED]


# -- a search on the cluster, exported ---------------------------------------------------


@pytest.mark.slow
def test_search_on_a_cluster_lands_in_the_run_storage_and_exports(
    head: Head, tmp_path: Path
) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    r = _cli(
        head,
        _search_args(head, space, "onray", 5, "--max-concurrent", "2", "--sampler", "tpe"),
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "onray"
    trials = trials_of(run_dir)
    assert len(_finished(trials)) == 5 == len(trials) - len(_reproposed(trials))
    trained = [t for t in trials if t.user_attrs.get("trained")]
    rejected = [t for t in trials if t.user_attrs["status"] in ("infeasible", "incompatible")]
    assert trained and rejected, "the tiny space gives both kinds on the default chip"
    for t in trained:
        # trained on a Ray worker (another process), weights brought back into the run folder
        assert t.user_attrs["backend"] == "ray" and t.user_attrs["ray_worker"]["pid"] != os.getpid()
        assert (run_dir / t.user_attrs["trial_dir"] / "model.pt").is_file()
        assert Path(t.user_attrs["checkpoint"]).is_file()
        assert Path(t.user_attrs["checkpoint"]).resolve().is_relative_to(run_dir.resolve())
    for t in rejected:
        # priced and recorded by the driver, never sent to a worker
        assert "ray_worker" not in t.user_attrs and t.user_attrs["trained"] is False
        assert t.user_attrs["seconds"]["train"] == 0.0 and any(
            c > 0 for c in t.constraints.values()
        )

    out = tmp_path / "exp"
    r = _cli(head, ["export", "onray", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = (out / "pareto.csv").read_text().strip().splitlines()
    members = [p for p in out.iterdir() if p.is_dir()]
    assert len(rows) - 1 == len(members) >= 1
    for d in members:
        assert (d / "model.pt").is_file() and (d / "metrics.json").is_file()
        assert json.loads((d / "metrics.json").read_text())["accuracy"]["mean"] >= 0.0

    # the same command with more trials resumes the run: earlier trials untouched
    before = {t.number: (t.state.name, t.values) for t in trials}
    r = _cli(head, _search_args(head, space, "onray", 6, "--max-concurrent", "2"), tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    after = trials_of(run_dir)
    assert len(_finished(after)) == 6 == len(after) - len(_reproposed(after))
    for t in after:
        if t.number in before:
            assert (t.state.name, t.values) == before[t.number]


# -- a worker killed mid-trial -----------------------------------------------------------


@pytest.mark.slow
def test_killed_workers_are_retried_or_recorded_and_the_search_finishes(
    head: Head, tmp_path: Path
) -> None:
    """With one retry: the first trained trial loses its worker once (Ray re-runs it, it
    completes); the next one loses its worker on both attempts (recorded FAIL with the reason).
    The search still ends with every requested trial finished and recorded."""
    space = tmp_path / "tiny.yaml"
    # only small, feasible candidates: every trial goes to a worker
    space.write_text(
        TINY_SPACE.replace("width: [16, 256]", "width: [16, 24]").replace(
            "weight_bits: [2, 8]", "weight_bits: [2, 3]"
        )
    )
    n = 4
    args = _search_args(head, space, "killed", n, "--max-concurrent", "1", "--max-retries", "1")
    args = [a if a != "64" else "256" for a in args]  # long enough to be killed while training
    driver = subprocess.Popen(
        [sys.executable, "-m", "neuronas", *args],
        cwd=tmp_path,
        env=head.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kills: dict[str, list[int]] = {}  # trial title -> pids killed
    plan = [1, 2]  # the first trial seen: kill once; the second: kill every attempt (2)
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            for pid, title in head.workers().items():
                if title not in kills and len(kills) < len(plan):
                    kills[title] = []
                todo = plan[list(kills).index(title)] if title in kills else 0
                if pid not in kills.get(title, []) and len(kills.get(title, [])) < todo:
                    os.kill(pid, signal.SIGKILL)
                    kills[title].append(pid)
            time.sleep(0.05)
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]
    assert [len(p) for p in kills.values()] == plan, kills

    trials = trials_of(tmp_path / "runs" / "killed")
    by_number = {t.number: t for t in trials}
    assert len(_finished(trials)) == n == len(trials) - len(_reproposed(trials))
    once, twice = (int(title.rsplit("_", 1)[1]) for title in kills)
    # killed once: retried by Ray on another worker process, completed and recorded
    t = by_number[once]
    assert t.state.name == "COMPLETE" and t.user_attrs["status"] == "ok"
    assert t.user_attrs["ray_worker"]["pid"] not in kills[f"ray::neuronas_trial_{once}"]
    # killed on every attempt: FAIL with the reason, nothing made up
    t = by_number[twice]
    assert t.state.name == "FAIL" and t.user_attrs["status"] == "failed"
    assert (
        "worker process died" in t.user_attrs["reason"] and "2 attempts" in t.user_attrs["reason"]
    )
    # every other trial finished normally
    for t in trials:
        if t.number not in (once, twice):
            assert t.state.name == "COMPLETE" and t.user_attrs["status"] == "ok", t.user_attrs.get(
                "reason"
            )
    assert not head.workers(), "no trial may still run after the search returned"


# -- bad addresses -----------------------------------------------------------------------


def _closed_port() -> int:
    port = _free_port()  # bound and released: nothing listens there now
    return port


def test_unreachable_address_is_a_clear_error_within_seconds(tmp_path: Path) -> None:
    port = _closed_port()
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuronas",
            "search",
            "--backend",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "--trials",
            "2",
            "--quiet",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "ray start --head" in lines[0]
    assert not (tmp_path / "runs").exists(), "nothing is created for a search that cannot start"
    print(f"unreachable address reported after {elapsed:.1f} s")


def test_a_port_that_is_not_ray_is_refused_not_waited_on() -> None:
    with socket.socket() as srv:  # listens, accepts at the kernel level, never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with pytest.raises(NeuronasError, match="not a Ray head"):
            probe_address(f"127.0.0.1:{port}", timeout_s=0.5)


def test_the_head_answers_the_probe(head: Head) -> None:
    assert probe_address(head.address) is None  # a real GCS speaks gRPC: no error raised


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379, False)),
        ("head", ("head", 6379, False)),
        ("ray://head:10001", ("head", 10001, True)),
        ("[::1]:7000", ("::1", 7000, False)),
    ],
)
def test_addresses_parse(text: str, expected: tuple[str, int, bool]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["http://head:6379", "head:port", "head:0", ":6379", "a/b:1"])
def test_malformed_addresses_are_refused(text: str) -> None:
    with pytest.raises(NeuronasError, match="--address"):
        parse_address(text)


def test_resource_flags_are_checked() -> None:
    with pytest.raises(NeuronasError, match="--cpus-per-trial"):
        RayOptions(cpus_per_trial=0)
    with pytest.raises(NeuronasError, match="--gpus-per-trial"):
        RayOptions(gpus_per_trial=1.5)
    with pytest.raises(NeuronasError, match="--max-concurrent"):
        RayOptions(max_concurrent=0)


def test_ray_flags_need_the_ray_backend(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "neuronas", "search", "--address", "127.0.0.1:6379", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--backend ray" in r.stderr and "Traceback" not in r.stderr


def test_worker_files_land_in_the_trial_folder(tmp_path: Path) -> None:
    from neuronas.search.ray_backend import place_files

    tmp = "/tmp/neuronas-trial-abc"
    payload = {
        "result": {
            "status": "ok",
            "train": {"checkpoint": f"{tmp}/model.pt", "history": [{"dir": tmp}]},
            "note": "/tmp/neuronas-trial-abcdef/x",
        },
        "files": {"model.pt": b"\x00weights", "sub/metrics.json": b"{}"},
        "worker": {"pid": 1, "host": "node-7", "tmp_dir": tmp},
    }
    out = tmp_path / "trials" / "0003"
    result = place_files(payload, out)
    assert (out / "model.pt").read_bytes() == b"\x00weights" and (
        out / "sub" / "metrics.json"
    ).read_text() == "{}"
    assert result["train"]["checkpoint"] == str(out / "model.pt")
    assert result["train"]["history"][0]["dir"] == str(out)
    # only paths inside the worker's folder move, and the payload is not changed
    assert result["note"] == "/tmp/neuronas-trial-abcdef/x"
    assert payload["result"]["train"]["checkpoint"] == f"{tmp}/model.pt"
    assert place_files(payload, None)["train"]["checkpoint"] is None
