"""One trial's life, the same on every backend: begin, (evaluate), finish or abandon.

* :func:`begin` -- take the next trial (an enqueued candidate or the sampler's proposal, under
  the ask lock), sample its architecture, and settle at once everything that needs no training:
  an invalid architecture (FAIL), a re-proposal of an architecture trained before (its result is
  reused, see :func:`neuronas.search.trials.reuse_duplicate`), a candidate over a hard budget or
  not buildable on the chip (priced here in microseconds, recorded untrained).  Returns the next
  candidate that needs training, as a :class:`Pending`, or None when the search has its trials.
* evaluate -- the only part a backend supplies: :func:`evaluate_here` in this process (the
  in-process search and each local worker process), or a Ray task
  (:mod:`neuronas.search.ray_backend`).  Either way :func:`neuronas.search.objective.evaluate`
  runs on ``pending.arch_dict`` / ``pending.settings`` and gives back a result dict (or a
  :func:`failed_result` when it raised).
* :func:`finish` -- record the result (the one tell path: :func:`~neuronas.search.trials.record_result`).
* :func:`abandon` -- the trial was cut off (the search stopped): FAIL as interrupted, its
  parameters enqueued again.

:class:`CrashGuard` stops a search after ``5`` trainings in a row crashed: the same input
(a broken dataset, an impossible setting) would fail every trial.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronas.errors import SearchError
from neuronas.search import fidelity, objective
from neuronas.search.heap import release_freed_memory
from neuronas.search.storage import deferred_writes
from neuronas.search.trials import (
    TrialStatus,
    ask_next,
    interrupt,
    proxy_reference,
    record_result,
    reuse_duplicate,
)
from neuronas.settings import TrialSettings

__all__ = [
    "CrashGuard",
    "Pending",
    "abandon",
    "begin",
    "evaluate_here",
    "failed_result",
    "finish",
    "trial_dir",
]

#: trainings in a row that may crash before the search stops
MAX_CONSECUTIVE_CRASHES = 5


@dataclass
class Pending:
    """A begun trial whose candidate needs training (what a backend evaluates)."""

    trial: Any
    arch_dict: dict[str, Any]
    settings: TrialSettings
    #: time.perf_counter() when the trial began (its ``seconds.wall`` counts from here)
    started: float
    out_dir: Path


def trial_dir(run: Any, number: int) -> Path:
    """Where trial ``number`` of ``run`` keeps its files (weights, metrics.json)."""
    return Path(run.run_dir) / "trials" / f"{number:04d}"


def failed_result(
    reason: str, *, trained: bool, traceback: str | None = None, seconds: float | None = None
) -> dict[str, Any]:
    """An evaluate()-shaped result for a candidate whose evaluation raised or was lost."""
    out: dict[str, Any] = {
        "status": TrialStatus.FAILED.value,
        "trained": trained,
        "reason": reason,
        "prior": {},
        "measured": None,
        "train": None,
        "accuracy_mean": None,
        "accuracy_std": None,
        "aee_mean": None,
        "aee_std": None,
        "seconds": {} if seconds is None else {"total": seconds},
    }
    if traceback is not None:
        out["traceback"] = traceback
    return out


def begin(
    run: Any,
    *,
    backend: str,
    device: str = "cpu",
    deadline: float | None = None,
    on_recorded: Callable[[], None] | None = None,
) -> Pending | None:
    """The next trial that needs training; every trial settled without it is recorded here.

    ``backend`` is stored on each trial (``user_attrs["backend"]``); ``device`` goes into the
    training settings; ``deadline`` (a ``time.time()``): no trial begins after it;
    ``on_recorded()`` is called after each trial recorded here (a progress line).
    """
    from optuna.trial import TrialState

    from neuronas.errors import SpecError

    cfg = run.config
    while True:
        if deadline is not None and time.time() >= deadline:
            return None
        trial = ask_next(run.study, run.run_dir, run.target)
        if trial is None:
            return None
        # the trial's parameters and attributes, set while sampling and pricing it, are written
        # in one transaction when this block ends (storage.deferred_writes): before it is
        # trained, told or handed on
        with deferred_writes(run.study, trial):
            trial.set_user_attr("backend", backend)
            t0 = time.perf_counter()
            try:
                arch = run.space.sample(
                    trial, run.chip, input_shape=cfg.input_shape, num_outputs=cfg.num_outputs
                )
            except SpecError as exc:
                trial.set_user_attr("status", TrialStatus.INVALID.value)
                trial.set_user_attr("reason", f"the space produced an invalid architecture: {exc}")
                arch = None
            if arch is not None:
                pending, result = _settle(run, trial, arch, t0, device)
        if arch is None:
            run.study.tell(trial, state=TrialState.FAIL)
            if on_recorded is not None:
                on_recorded()
            continue
        if result is None:
            return pending
        finish(run, pending, result)
        if on_recorded is not None:
            on_recorded()


def _settle(
    run: Any, trial: Any, arch: Any, t0: float, device: str
) -> tuple[Pending, dict[str, Any] | None]:
    """``trial``'s candidate as a :class:`Pending` with its training settings, and the result
    to record at once when it needs no training (a re-proposal of a trained one, over a hard
    budget, not buildable), else None."""
    cfg = run.config
    arch_dict = arch.to_dict()
    trial.set_user_attr("arch", arch_dict)
    trial.set_user_attr("arch_key", arch.key)
    out_dir = trial_dir(run, trial.number)
    pending = Pending(trial, arch_dict, cfg.trial_settings(), t0, out_dir)
    # a re-proposal is still evaluated and told (the sampler learns from it) but, while the
    # allowance lasts, does not use up a trial of the budget: ask_next draws another one
    result = reuse_duplicate(run.study, trial, arch.key, run.target)
    if result is not None:
        return pending, result
    prior = objective.price(arch_dict, cfg.chip_ref(), cfg.activity_prior)
    if prior["compatible"] and prior["feasible"]:
        _refuse_foreign_files(run, pending)
        extra: dict[str, Any] = {"out_dir": str(out_dir), "device": device}
        if cfg.proxy_quantile is not None:
            extra["proxy_reference"] = tuple(proxy_reference(run.study))
        extra.update(_halving(run, pending.settings, prior))
        pending.settings = pending.settings.replace(**extra)
        return pending, None
    # over a hard budget or not buildable: evaluate() returns at its pricing step, untrained,
    # in microseconds
    result = objective.evaluate(arch_dict, cfg.chip_ref(), pending.settings)
    if result["trained"]:
        raise SearchError(
            f"trial {trial.number}: a candidate over a hard budget was trained (a bug)"
        )
    return pending, result


def _halving(run: Any, settings: TrialSettings, prior: dict[str, Any]) -> dict[str, Any]:
    """The trial's successive-halving settings: the rung points of the trials recorded so far
    and its own priced costs, or no halving (see :mod:`neuronas.search.fidelity`)."""
    objectives = run.config.objectives
    rung = settings.halving_epochs
    if rung is None or not fidelity.halving_active(rung, settings.epochs, objectives):
        return {"halving_epochs": None}
    costs = [o for o in objectives if o != "accuracy"]
    trials = run.study.get_trials(deepcopy=False)
    budgets = run.chip.budgets.items()
    return {
        "halving_reference": tuple(tuple(p) for p in fidelity.rung_reference(trials, rung, costs)),
        "halving_costs": tuple(float(prior["metrics"][o]) for o in costs),
        "halving_bound": tuple(
            float(budgets[o].limit) if o in budgets else float("nan") for o in costs
        ),
    }


def _refuse_foreign_files(run: Any, pending: Pending) -> None:
    """Never overwrite a completed trial's files: trial numbers are unique in a study, so a
    new trial's folder that already holds files belongs to a trial of another study (a
    replaced or re-created ``study.db``).  The trial is given up and the search stops."""
    out = pending.out_dir
    if out.is_dir() and any(out.iterdir()):
        interrupt(run.study, pending.trial, f"{out} already held files of another trial")
        raise SearchError(
            f"{out}: already holds the files of a trial this study does not know (from another "
            "study of this run folder?); refusing to overwrite them -- move them away to continue"
        )


def evaluate_here(run: Any, pending: Pending) -> dict[str, Any]:
    """Evaluate ``pending`` in this process; a crash is a failed result, never an exception.

    Afterwards the heap the training freed goes back to the OS
    (:func:`~neuronas.search.heap.release_freed_memory`), so that a long search keeps a flat
    resident set (a Ray worker does the same after its evaluation)."""
    try:
        return objective.evaluate(pending.arch_dict, run.config.chip_ref(), pending.settings)
    except Exception as exc:  # noqa: BLE001 - one candidate's crash must not end the search
        return failed_result(
            f"{type(exc).__name__}: {exc}",
            trained=False,  # a crash leaves no trained candidate: never counted as trained
            traceback=traceback.format_exc(limit=8),
            seconds=time.perf_counter() - pending.started,
        )
    finally:
        release_freed_memory()


def finish(run: Any, pending: Pending, result: dict[str, Any]) -> Any:
    """Record ``result`` as ``pending``'s outcome; returns the trial's final Optuna state."""
    extra: dict[str, Any] = {}
    if result.get("traceback"):
        extra["traceback"] = result["traceback"]
    if result.get("trained") and result.get("cached_from") is None and pending.out_dir.is_dir():
        extra["trial_dir"] = str(pending.out_dir.relative_to(run.run_dir))
    # wall: from sampling to the result recorded (queueing and retries on Ray included)
    result.setdefault("seconds", {})["wall"] = time.perf_counter() - pending.started
    return record_result(run.study, pending.trial, result, run.config.objectives, extra)


def abandon(pending: Pending, study: Any, reason: str) -> None:
    """``pending`` was cut off before its result came: interrupted, its parameters enqueued."""
    interrupt(study, pending.trial, reason)


class CrashGuard:
    """Stops the search when ``limit`` evaluations in a row crashed (raised in the trainer)."""

    def __init__(self, run: Any, limit: int = MAX_CONSECUTIVE_CRASHES, where: str = "") -> None:
        self.run = run
        self.limit = limit
        self.where = where
        self.crashes = 0

    def check(self, result: dict[str, Any]) -> None:
        """Count ``result`` (an evaluation's); raise SearchError at the limit."""
        if not result.get("traceback"):
            self.crashes = 0
            return
        self.crashes += 1
        if self.crashes >= self.limit:
            raise SearchError(
                f"{self.crashes} trials in a row crashed{self.where} ({result['reason']}); stopping -- "
                f"see `neuronas show {self.run.run_dir}` for the tracebacks"
            )
