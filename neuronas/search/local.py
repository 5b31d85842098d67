"""The search on this machine: in this process, or in local worker processes.

Both run the trial lifecycle of :mod:`neuronas.search.lifecycle` and evaluate each candidate
in the process that began it (:func:`~neuronas.search.lifecycle.evaluate_here`).  With
``workers > 1`` this process starts that many ``neuronas _worker RUN_DIR`` processes on the
same storage (a hidden subcommand, :func:`worker_main`), reports progress, and restarts workers
until the study has its trials.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from neuronas.errors import NeuronasError, SearchError
from neuronas.search import lifecycle, samplers
from neuronas.search.progress import Progress
from neuronas.search.trials import awaiting_owner, count_trials, reap_stale_trials

__all__ = ["search_here", "supervise_workers", "worker_command", "worker_main"]


def search_here(
    run: Any,
    *,
    workers: int = 1,
    worker_index: int = 0,
    progress: Progress | None = None,
    deadline: float | None = None,
    backend: str = "local",
) -> None:
    """Begin, evaluate and finish trials in this process until the study has its trials.

    ``workers`` / ``worker_index``: how many processes share the study and which one this is
    (the sampler's seed and its handling of trials in flight depend on them)."""
    n_existing = len(run.study.get_trials(deepcopy=False))
    run.study.sampler = samplers.make_sampler(
        run, workers=workers, worker_index=worker_index, n_existing=n_existing
    )
    guard = lifecycle.CrashGuard(run, where=" while training")

    def tick() -> None:
        if progress is not None:
            progress.show(run)

    try:
        while True:
            pending = lifecycle.begin(run, backend=backend, deadline=deadline, on_recorded=tick)
            if pending is None:
                return
            try:
                result = lifecycle.evaluate_here(run, pending)
            except BaseException:  # Ctrl-C: the candidate is evaluated again later
                with contextlib.suppress(Exception):
                    lifecycle.abandon(
                        pending, run.study, "the search stopped while the trial ran; re-enqueued"
                    )
                raise
            lifecycle.finish(run, pending, result)
            tick()
            guard.check(result)
    finally:
        samplers.close_sampler(run.study.sampler)


def worker_command(
    run: Any, storage: str | None, worker_index: int, workers: int, deadline: float | None = None
) -> list[str]:
    """The command line of local worker process ``worker_index`` of ``workers``."""
    cmd = [
        sys.executable,
        "-m",
        "neuronas",
        "_worker",
        str(run.run_dir),
        "--index",
        str(worker_index),
        "--workers",
        str(workers),
    ]
    if deadline is not None:
        cmd += ["--deadline", repr(deadline)]
    if storage and storage not in ("sqlite", "journal"):
        cmd += ["--storage", storage]
    return cmd


def worker_main(
    run_dir: str | Path,
    *,
    index: int = 0,
    workers: int = 1,
    storage: str | None = None,
    deadline: float | None = None,
) -> int:
    """One local worker process: open the run and search in it (``neuronas _worker``)."""
    from neuronas.search.run import open_run

    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    def stop(signum: int, frame: Any) -> None:
        # the supervisor stops the others when one refuses: the trial in flight is abandoned
        # (re-enqueued) by search_here's handler instead of being left RUNNING
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    run = open_run(run_dir, storage=storage)
    search_here(run, workers=workers, worker_index=index, deadline=deadline, backend="local-worker")
    return 0


#: how a worker's NeuronasError reaches its log (the one-line form of neuronas.cli.main)
REFUSAL_PREFIX = "neuronas _worker: error: "


def _refusal(log: Path, offset: int) -> str | None:
    """The one-line NeuronasError a worker printed to ``log`` after ``offset``, or None."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    lines = [x[len(REFUSAL_PREFIX) :] for x in text.splitlines() if x.startswith(REFUSAL_PREFIX)]
    return lines[-1].strip() if lines else None


def _first_refusal(procs: list[Any], logs: Path, offsets: list[int]) -> str | None:
    """The refusal of the first worker that exited with a NeuronasError's status, if any."""
    for i, (p, _) in enumerate(procs):
        if p.poll() == NeuronasError.exit_code:
            msg = _refusal(logs / f"worker-{i}.log", offsets[i])
            if msg is not None:
                return msg
    return None


def _stop(procs: list[Any]) -> None:
    """SIGTERM the workers still running and wait for them to give their trials back."""
    for p, _ in procs:
        if p.poll() is None:
            p.terminate()
    for p, _ in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _set_pdeathsig() -> None:
    """Children die with the search process (a kill -9 of the search leaves no orphans)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def supervise_workers(
    run: Any,
    *,
    workers: int,
    storage_url: str | None,
    bar: Progress,
    deadline: float | None = None,
) -> None:
    """Start ``workers`` worker processes on the run and restart them until it has its trials."""
    logs = run.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # share the cores between workers instead of each torch grabbing all of them
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    attempts = 0
    while True:
        reap_stale_trials(run.study)
        trials = run.study.get_trials(deepcopy=False)
        c = count_trials(run.study, trials)
        remaining = run.target - c.finished
        if remaining <= 0 or (deadline is not None and time.time() >= deadline):
            return
        if c.running >= remaining and any(awaiting_owner(t) for t in trials):
            # a trial taken from the queue by a process killed before it wrote its owner: the
            # study looks full to every worker until it is reaped (OWNERLESS_GRACE_S)
            time.sleep(1.0)
            bar.show(run)
            continue
        attempts += 1
        if attempts > 3:
            raise SearchError(
                f"workers keep exiting with {remaining} trials left; see {logs}/worker-*.log"
            )
        n = min(workers, remaining)
        procs = []
        offsets = []
        for i in range(n):
            log = open(logs / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed below
            offsets.append(log.tell())
            p = subprocess.Popen(
                worker_command(run, storage_url, i, n, deadline),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_set_pdeathsig,
            )
            procs.append((p, log))
        try:
            while any(p.poll() is None for p, _ in procs):
                time.sleep(1.0)
                bar.show(run)
                refused = _first_refusal(procs, logs, offsets)
                if refused is not None:
                    break
            else:
                refused = _first_refusal(procs, logs, offsets)
        finally:
            _stop(procs)
            for _, log in procs:
                log.close()
        if refused is not None:
            # a refusal (bad input, read-only or foreign storage, files it will not overwrite)
            # is the same in every worker and on every restart: the user sees the worker's line
            raise NeuronasError(refused)
        bad = [p.returncode for p, _ in procs if p.returncode != 0]
        if bad:
            tail = (
                (logs / "worker-0.log").read_text(errors="replace").strip().splitlines()[-1:]
                if (logs / "worker-0.log").exists()
                else []
            )
            if len(bad) == len(procs) and attempts >= 2:
                raise SearchError(
                    f"all workers failed (exit {bad[0]}): {tail[0] if tail else ''} (logs in {logs})"
                )
