"""The same search on a Ray cluster (``neuronas search --backend ray``).

Design (why not Ray Tune's ``OptunaSearch``): Tune's searcher can write into an existing Optuna
storage (``storage=``, ``study_name=``) and handles several objectives, but it only ``tell``s
values: it records none of what a neuronas trial carries (the architecture, costs, budget
margins via ``set_constraint``, the failure reason), and every candidate it proposes becomes a
Tune trial on a worker, so an over-budget candidate would still occupy a worker slot.  So the
driver (this process) keeps the run's single Optuna study in the run's own storage and drives
it with ask/tell, exactly as a local search does:

* each asked candidate is sampled and **priced in the driver** (microseconds); one that breaks
  a hard budget (or cannot be built on the chip) is recorded at once and never leaves the driver;
* a feasible candidate is sent to the cluster as one Ray task running
  :func:`neuronas.search.objective.evaluate` with the trial's resources
  (``--cpus-per-trial``, ``--gpus-per-trial``); at most ``--max-concurrent`` run at once;
* a task whose worker process or node is lost is re-run by Ray (``--max-retries``); after the
  last retry, or when the objective itself raised, the trial is recorded as FAIL with the reason;
* what the task returns -- the result dict plus the files the trainer wrote (weights,
  ``metrics.json``) -- is written by the driver into the run folder and the storage, so
  ``show``/``export`` read a Ray run exactly like a local one, and running the same command
  again resumes it.

Nothing here needs a shared filesystem between the nodes: the chip travels as a plain dict and
the trained weights travel back in the task's return value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronas.errors import NeuronasError
from neuronas.search.ray_cluster import (
    ClusterInfo,
    RayOptions,
    add_ray_arguments,
    connect,
    default_capacity,
    parse_address,
    probe_address,
    ray_options,
)

__all__ = [
    "ClusterInfo",
    "RayOptions",
    "add_ray_arguments",
    "connect",
    "dispatch",
    "evaluate_on_worker",
    "failure_reason",
    "parse_address",
    "place_files",
    "probe_address",
    "ray_options",
    "run_ray_search",
]

# -- the worker side -------------------------------------------------------------------------


def evaluate_on_worker(
    arch_dict: dict[str, Any], chip_ref: Any, settings: dict[str, Any], threads: int
) -> dict[str, Any]:
    """Run :func:`~neuronas.search.objective.evaluate` on a Ray worker and bring its files back.

    The trainer writes into a private temporary folder on the worker's node; the files come
    back in the return value (bytes) so the driver can put them into the run folder -- the
    worker's disk may be another machine's.  Returns ``{"result", "files", "worker"}``.
    """
    import torch

    from neuronas.search.heap import release_freed_memory
    from neuronas.search.objective import evaluate
    from neuronas.settings import TrialSettings

    # the trainer reads this too (neuronas.train.set_threads): one trial, its own cores only
    os.environ["NEURONAS_NUM_THREADS"] = str(max(1, threads))
    torch.set_num_threads(max(1, threads))
    with tempfile.TemporaryDirectory(prefix="neuronas-trial-") as tmp:
        result = evaluate(
            arch_dict, chip_ref, TrialSettings.from_dict({**settings, "out_dir": tmp})
        )
        files: dict[str, bytes] = {}
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                files[path.relative_to(tmp).as_posix()] = path.read_bytes()
    release_freed_memory()  # as lifecycle.evaluate_here does: this worker trains the next one
    return {
        "result": result,
        "files": files,
        "worker": {"pid": os.getpid(), "host": socket.gethostname(), "tmp_dir": tmp},
    }


def place_files(payload: dict[str, Any], out_dir: Path | None) -> dict[str, Any]:
    """Write a worker's files under ``out_dir`` and point the result's paths there.

    Returns a copy of the result in which every string naming a path in the worker's
    temporary folder (the checkpoint, ...) names the same file under ``out_dir`` instead;
    with ``out_dir`` None the files are dropped and such paths become None.
    """
    files: dict[str, bytes] = payload.get("files") or {}
    tmp = str(payload.get("worker", {}).get("tmp_dir") or "")
    if out_dir is not None and files:
        out_dir.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)

    def moved(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: moved(v) for k, v in value.items()}
        if isinstance(value, list):
            return [moved(v) for v in value]
        if tmp and isinstance(value, str) and (value == tmp or value.startswith(tmp + "/")):
            return None if out_dir is None else str(out_dir / Path(value).relative_to(tmp))
        return value

    return moved(dict(payload["result"]))


# -- dispatching -----------------------------------------------------------------------------


@dataclass
class _Running:
    trial: Any  # what propose() returned (a lifecycle.Pending)
    started: float


def failure_reason(exc: BaseException, retries: int) -> tuple[str, str | None]:
    """``(one-line reason, remote traceback or None)`` for a failed ``ray.get`` of a trial."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        if isinstance(cause, NeuronasError):
            return str(cause), str(exc)
        return f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]}", str(exc)
    labels = (
        (rex.WorkerCrashedError, "its Ray worker process died"),
        (rex.NodeDiedError, "its Ray node died"),
        (rex.TaskCancelledError, "it was cancelled"),
    )
    label = next(
        (text for cls, text in labels if isinstance(exc, cls)), f"Ray error {type(exc).__name__}"
    )
    detail = " ".join(str(exc).split())[:200]
    return (
        f"lost: {label} on each of {1 + retries} attempt{'s' if retries else ''} ({detail})",
        None,
    )


def dispatch(
    propose: Callable[[], Any],
    finish: Callable[[Any, dict[str, Any] | None, BaseException | None], None],
    abandon: Callable[[Any], None],
    chip_ref: Any,
    options: RayOptions,
    capacity: int,
    *,
    poll_s: float = 0.5,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Keep up to ``capacity`` trials running as Ray tasks until ``propose`` has no more.

    ``propose()`` returns a :class:`~neuronas.search.lifecycle.Pending` candidate to train, or
    None when no further trial should start (it records untrained candidates itself).
    ``finish(pending, payload, error)`` is called once per task that ended, with the worker's
    payload or with the exception ``ray.get`` raised.  When this function is left early (an
    exception, Ctrl-C) the tasks still running are cancelled and ``abandon(pending)`` is
    called for each.
    """
    import ray

    remote = ray.remote(evaluate_on_worker)
    task_options: dict[str, Any] = {
        "num_cpus": options.cpus_per_trial,
        "num_gpus": options.gpus_per_trial,
        # Ray re-runs a task whose worker process or node died; an exception raised by the
        # objective itself is a result (recorded as FAIL), never retried
        "max_retries": options.max_retries,
        "retry_exceptions": False,
    }
    threads = max(1, int(options.cpus_per_trial))
    running: dict[Any, _Running] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < capacity:
                nxt = propose()
                if nxt is None:
                    exhausted = True
                    break
                # the name shows in `ray list tasks`, the dashboard and the worker's process
                # title (ray::neuronas_trial_12), so an operator can tell which trial runs where
                name = f"neuronas_trial_{getattr(nxt.trial, 'number', len(running))}"
                settings = nxt.settings.replace(out_dir=None).to_dict()
                ref = remote.options(name=name, **task_options).remote(
                    nxt.arch_dict, chip_ref, settings, threads
                )
                running[ref] = _Running(nxt, time.monotonic())
            if not running:
                return
            ready, _ = ray.wait(list(running), num_returns=1, timeout=poll_s)
            for ref in ready:
                job = running.pop(ref)
                try:
                    payload = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure of a task is recorded
                    finish(job.trial, None, exc)
                    continue
                finish(job.trial, payload, None)
            if ready and on_tick is not None:
                on_tick()
    finally:
        for ref, job in list(running.items()):
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            with contextlib.suppress(Exception):
                abandon(job.trial)


# -- the search ------------------------------------------------------------------------------


class _RayDriver:
    """The driver's side of a Ray search: the trial lifecycle of
    :mod:`neuronas.search.lifecycle`, with each candidate that needs training evaluated as a
    Ray task; one study, the run's storage."""

    def __init__(
        self, run: Any, options: RayOptions, bar: Any, deadline: float | None = None
    ) -> None:
        from neuronas.search.lifecycle import CrashGuard

        self.run = run
        self.deadline = deadline
        self.options = options
        self.bar = bar
        self.guard = CrashGuard(run, where=" on Ray workers")
        self.device = "cuda" if options.gpus_per_trial > 0 else "cpu"
        #: dispatched: sent to the cluster; untrained: recorded by the driver without training
        #: (over a hard budget, not buildable, invalid, a reused re-proposal); lost: tasks whose
        #: worker or node died on every attempt
        self.stats = {"dispatched": 0, "untrained": 0, "lost": 0}

    def tick(self) -> None:
        self.bar.show(self.run)

    def propose(self) -> Any:
        """The next candidate to train (a Pending); the others are recorded without leaving the driver."""
        from neuronas.search import lifecycle

        def untrained() -> None:
            self.stats["untrained"] += 1
            self.tick()

        pending = lifecycle.begin(
            self.run,
            backend="ray",
            device=self.device,
            deadline=self.deadline,
            on_recorded=untrained,
        )
        if pending is not None:
            self.stats["dispatched"] += 1
        return pending

    def finish(
        self, pending: Any, payload: dict[str, Any] | None, error: BaseException | None
    ) -> None:
        from neuronas.search import lifecycle

        trial = pending.trial
        lost = False
        if payload is not None:
            result = place_files(payload, pending.out_dir)
            worker = payload.get("worker", {})
            trial.set_user_attr(
                "ray_worker", {"host": worker.get("host"), "pid": worker.get("pid")}
            )
        else:
            assert error is not None
            reason, remote_tb = failure_reason(error, self.options.max_retries)
            result = lifecycle.failed_result(
                reason,
                trained=False,  # a crashed or lost task trained nothing that was kept
                traceback=remote_tb[-4000:] if remote_tb is not None else None,
            )
            lost = remote_tb is None
            cause = getattr(error, "cause", None)
            if isinstance(cause, NeuronasError):
                # the same input fails every trial (a dataset missing on a node, ...): stop
                result.pop("traceback", None)
                lifecycle.finish(self.run, pending, result)
                raise type(cause)(str(cause)) from None
        lifecycle.finish(self.run, pending, result)
        self.tick()
        if lost:
            self.stats["lost"] += 1  # the cluster's failure, not the candidate's: no crash counted
        else:
            self.guard.check(result)

    def abandon(self, pending: Any) -> None:
        """A trial cut off by the driver stopping: interrupted, its parameters queued again."""
        from neuronas.search import lifecycle

        lifecycle.abandon(
            pending, self.run.study, "the search stopped while the trial ran on Ray; re-enqueued"
        )


def run_ray_search(
    run: Any,
    options: RayOptions,
    *,
    progress: bool = True,
    prescreen_n: int = 300,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``run``'s search with its trials as Ray tasks; the counterpart of
    :func:`neuronas.search.study.run_search`, with the same return value (plus ``ray``).

    ``timeout_s``: start no new trial after this many seconds (trials under way finish); the
    same command later resumes towards ``run.target``.

    ``run`` is a :class:`neuronas.search.run.Run` (from ``create_or_resume``).  The study
    ends with ``run.target`` finished trials, recorded in the run's storage exactly as a local
    search records them, plus ``ray_worker`` (host, pid) on each trained trial.
    """
    from neuronas.search import samplers
    from neuronas.search.pareto import front_trials
    from neuronas.search.prescreen import stored_prescreen
    from neuronas.search.progress import Progress, banner
    from neuronas.search.trials import count_trials

    cfg = run.config
    deadline = time.time() + timeout_s if timeout_s is not None else None
    screen = stored_prescreen(run, prescreen_n)
    bar = Progress(enabled=progress)
    with connect(options) as info:
        capacity = default_capacity(options, info)
        if progress:
            sys.stderr.write(
                banner(run, screen)
                + f"neuronas search: {info.describe()} | up to {capacity} trials at once, "
                f"{options.cpus_per_trial:g} CPU{'s' if options.cpus_per_trial != 1 else ''}"
                f"{f', {options.gpus_per_trial:g} GPU' if options.gpus_per_trial else ''} each | "
                f"lost workers retried {options.max_retries}x\n"
            )
            sys.stderr.flush()
        n_existing = len(run.study.get_trials(deepcopy=False))
        # several trials are in flight at once: the sampler must know (TPE's constant liar)
        run.study.sampler = samplers.make_sampler(run, workers=capacity, n_existing=n_existing)
        driver = _RayDriver(run, options, bar, deadline=deadline)
        if progress:
            driver.tick()
        try:
            dispatch(
                driver.propose,
                driver.finish,
                driver.abandon,
                cfg.chip_ref(),
                options,
                capacity,
                on_tick=driver.tick,
            )
        finally:
            bar.close()
            samplers.close_sampler(run.study.sampler)
    trials = run.study.get_trials(deepcopy=False)
    c = count_trials(run.study, trials)
    return {
        "counts": dataclasses.asdict(c),
        "front": [t.number for t in front_trials(run.study, cfg.objectives, trials)],
        "prescreen": screen,
        "ray": {"cluster": info.describe(), "capacity": capacity, **driver.stats},
    }
