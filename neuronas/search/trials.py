"""Trials in the study: their statuses, counting, recording a result, duplicates, ownership.

Trial states (read from optuna 5.0's samplers; see the README's "Search" section):

* over a hard budget at the prior spike rate -> **COMPLETE** with the budget margins as
  constraints (:func:`set_constraints`, > 0 = violated), accuracy 0 (untrained) and the priced
  costs.  Not PRUNED: NSGA-II builds its populations from COMPLETE trials only
  (``optuna/samplers/_ga/_base.py``), so pruned trials would be invisible to it and it would
  keep proposing the infeasible region; TPE puts every trial with a positive constraint in its
  "above" (bad) group whatever its state (``_tpe/sampler.py: _split_trials``), ranked by total
  violation.  Optuna's own ``best_trials`` excludes infeasible trials, and optuna-dashboard's
  Pareto-front plot draws them apart (grey, never as the front); see :func:`set_constraints`.
* trained and within every hard budget with the measured spike rates -> COMPLETE, constraints
  all <= 0 (soft budgets may still show positive margins).
* stopped early as hopeless (``min_accuracy_after_first_epoch``, or successive halving:
  :mod:`neuronas.search.fidelity`), or not trained because its
  training-free score fell below the ``proxy_quantile`` of the trained ones -> PRUNED.
* training diverged (NaN) or crashed -> FAIL with the reason in ``user_attrs["reason"]``.
* left RUNNING by a killed process -> FAIL with ``status = "interrupted"`` and re-enqueued with
  the same parameters; interrupted trials do not count as finished (they produced nothing).

Re-proposed architectures: a sampler may propose an architecture the study has already
evaluated (TPE does, once it concentrates on a region).  Its result is copied from the first
trial (retraining would only pay again for another draw of the same candidate's accuracy) and
told to the study again, so the sampler still learns from the proposal; but it does not use up a
trial of the budget: such a trial is marked ``uncounted`` and the search draws again.  At most
``trials x DUPLICATE_ALLOWANCE`` re-proposals are free (so a sampler stuck on a small space still
ends); later ones count like any trial.

``finished`` = COMPLETE + PRUNED + FAIL, neither interrupted nor uncounted: a search ends with
exactly the requested number of finished trials, however often it was killed and restarted.

Who owns a RUNNING trial, and when another process may take it over:

* The process that asked for a trial owns it.  :func:`take_trial` creates the trial with its
  owner (host, pid and the process's start time, so a reused pid is told apart) in
  ``user_attrs["owner"]``, in the one storage call that creates it, before the sampler proposes.
  A Ray driver owns the trials it dispatched: the tasks on the cluster never write to the
  storage, the driver records their results.
* Only the owner finishes its trial (:func:`record_result`) or gives it up
  (:func:`interrupt`: FAIL, ``status = "interrupted"``, parameters re-enqueued).
* Another process may reap a RUNNING trial (:func:`reap_stale_trials`) only when its owner is
  on the same host and provably gone: no process with that pid, or one with another start time.
  A trial owned by another host, or by a live process, is never touched: its owner reaps it
  itself when it resumes (a remote worker, a Ray driver).
* The proposal window: Optuna's own ``study.ask()`` creates the RUNNING trial and then runs the
  sampler's proposal (about a second for the default sampler); an owner written after ``ask()``
  returned would leave a process killed meanwhile with a RUNNING trial *without* an owner, which
  only its age could tell from one still being proposed.  :func:`take_trial` closes that
  window for new trials (created owned); an enqueued retry is owned from the storage call after
  the one that takes it, and a SIGTERM or Ctrl-C waits until both are made
  (:func:`signals_held`).  A RUNNING trial without an owner record (a kill -9 or a crash between
  those two calls, or a study written by another program) is reaped once it has been ownerless
  for :data:`OWNERLESS_GRACE_S` seconds, counted from its ``datetime_start`` (the moment the
  storage made it RUNNING); a supervisor of local workers waits for that rather than restarting
  workers that would find the study full.
* Reaping happens under the ask lock (in :func:`ask_next`) or in the supervising process before
  it starts workers, so a trial is never reaped twice; an enqueued retry is an ordinary WAITING
  trial that the next ask takes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from neuronas.search.storage import deferred_writes
from neuronas.settings import SELECTION_SPLIT

__all__ = [
    "CONSTRAINT_NAMES_ATTR",
    "DUPLICATE_ALLOWANCE",
    "OWNERLESS_GRACE_S",
    "Counts",
    "TrialStatus",
    "ask_next",
    "awaiting_owner",
    "sampler_exhausted",
    "constraint_names",
    "count_trials",
    "interrupt",
    "jsonable",
    "name_constraints",
    "objective_values",
    "owner_record",
    "proxy_reference",
    "reap_stale_trials",
    "set_constraints",
    "signals_held",
    "record_result",
    "result_from_trial",
    "reuse_duplicate",
    "take_trial",
    "trial_status",
]

#: free re-proposals of an already evaluated architecture, as a fraction of ``--trials``
#: (1.0: a search asks the sampler at most twice its trial budget)
DUPLICATE_ALLOWANCE = 1.0

#: seconds a RUNNING trial may stay without an owner record before it is reaped (a process
#: killed between taking an enqueued trial and recording its owner; see the module docstring)
OWNERLESS_GRACE_S = 60.0


class TrialStatus(str, Enum):
    """What happened to a candidate (``user_attrs["status"]``; the Optuna state follows)."""

    OK = "ok"  # trained, within every hard budget with its measured spike rates
    INFEASIBLE = "infeasible"  # over a hard budget at the prior spike rate; not trained
    INCOMPATIBLE = "incompatible"  # the chip cannot build it; not trained
    INFEASIBLE_MEASURED = "infeasible_measured"  # trained, over a hard budget when measured
    STOPPED = "stopped"  # stopped early as hopeless (PRUNED)
    PROXY_REJECTED = "proxy_rejected"  # training-free score too low; not trained (PRUNED)
    FAILED = "failed"  # diverged or crashed (FAIL)
    INVALID = "invalid"  # the space produced an invalid architecture (FAIL)
    INTERRUPTED = "interrupted"  # its process stopped or died; re-enqueued (FAIL, not counted)


#: statuses that end a trial in FAIL / PRUNED (the rest are COMPLETE)
_FAIL = (TrialStatus.FAILED, TrialStatus.INVALID)
_PRUNED = (TrialStatus.STOPPED, TrialStatus.PROXY_REJECTED)


def trial_status(t: Any) -> str:
    """A stored trial's status ("" when it has none yet)."""
    return str(t.user_attrs.get("status", ""))


# --------------------------------------------------------------------------------------------
# counting


@dataclass(frozen=True)
class Counts:
    finished: int
    complete: int
    trained: int
    infeasible: int  # rejected before training (hard budget at the prior)
    infeasible_measured: int
    pruned: int
    failed: int
    running: int
    waiting: int
    interrupted: int
    duplicates: int = 0  # re-proposals that did not use up a trial (counted nowhere else)


def count_trials(study: Any, trials: Sequence[Any] | None = None) -> Counts:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False) if trials is None else trials
    c = {
        s: 0
        for s in (
            "complete",
            "trained",
            "infeasible",
            "infeasible_measured",
            "pruned",
            "failed",
            "running",
            "waiting",
            "interrupted",
            "duplicates",
        )
    }
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    for t in trials:
        st = trial_status(t)
        if t.user_attrs.get("uncounted") and t.state in done and st != TrialStatus.INTERRUPTED:
            c["duplicates"] += 1
            continue
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
        elif t.state == TrialState.PRUNED:
            c["pruned"] += 1
        elif t.state == TrialState.FAIL:
            if st == TrialStatus.INTERRUPTED:
                c["interrupted"] += 1
            else:
                c["failed"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.WAITING:
            c["waiting"] += 1
        if st in (TrialStatus.INFEASIBLE, TrialStatus.INCOMPATIBLE):
            c["infeasible"] += 1
        if st == TrialStatus.INFEASIBLE_MEASURED:
            c["infeasible_measured"] += 1
        if t.user_attrs.get("trained"):
            c["trained"] += 1
    finished = c["complete"] + c["pruned"] + c["failed"]
    return Counts(finished=finished, **c)


# --------------------------------------------------------------------------------------------
# ownership (see the module docstring for the rules)


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
        return data.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_record() -> dict[str, Any]:
    """Who runs a trial: host, pid and process start time (a reused pid is told apart)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid) or ""}


@contextlib.contextmanager
def signals_held(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold ``signums`` until the block ends, then deliver them: a change of a trial that takes
    several storage calls (WAITING -> RUNNING, then its owner; interrupted, FAIL, re-enqueued)
    is never cut between them by a Ctrl-C or by a supervisor stopping its workers.

    A local worker stopped between taking an enqueued trial and writing its owner used to leave
    the trial RUNNING without one; every worker then saw the study full (finished + running)
    until :data:`OWNERLESS_GRACE_S` passed, and the supervisor gave up before.  Only the main
    thread can install handlers; elsewhere (and for handlers not installed from Python, which
    could not be put back) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        arrived.append(signum)

    previous = {}
    for s in signums:
        handler = signal.getsignal(s)
        if handler is not None:
            previous[s] = signal.signal(s, hold)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(arrived):
            signal.raise_signal(s)


def awaiting_owner(t: Any) -> bool:
    """A RUNNING trial without an owner record yet (taken from the queue by a process that was
    killed before it wrote its owner, or one still writing it); reaped after
    :data:`OWNERLESS_GRACE_S`."""
    from optuna.trial import TrialState

    return t.state == TrialState.RUNNING and "owner" not in t.user_attrs


def _owner_alive(owner: Any) -> bool | None:
    """True/False for an owner on this host; None when it cannot be told (another host)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None
    start = _proc_start(int(owner.get("pid", -1)))
    if start is None:
        return False
    return not owner.get("start") or start == owner.get("start")


def _trial_id(trial: Any) -> int:
    # optuna's storage API addresses trials by id; Trial and FrozenTrial keep it private
    return int(trial._trial_id)  # noqa: SLF001


def interrupt(study: Any, trial: Any, reason: str, *, requeue: bool = True) -> None:
    """End a RUNNING ``trial`` (a Trial or FrozenTrial) as interrupted and, when it has
    parameters, enqueue them again so the candidate is still evaluated (``retry_of``).

    Written through the storage, not ``study.tell``: a reaped trial belongs to another
    (dead) process, whose sampler state this process does not hold."""
    from optuna.trial import TrialState

    storage = study._storage  # noqa: SLF001 - optuna offers no public per-trial writes by id
    tid = _trial_id(trial)
    with signals_held():
        storage.set_trial_user_attr(tid, "status", TrialStatus.INTERRUPTED.value)
        storage.set_trial_user_attr(tid, "reason", reason)
        storage.set_trial_state_values(tid, state=TrialState.FAIL)
        if requeue and trial.params:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})


def _ownerless_too_long(t: Any, grace_s: float) -> bool:
    """A RUNNING trial without an owner record, made RUNNING more than ``grace_s`` ago."""
    import datetime

    if "owner" in t.user_attrs or t.datetime_start is None:
        return False
    age = (datetime.datetime.now() - t.datetime_start).total_seconds()
    return age > grace_s


def reap_stale_trials(
    study: Any,
    *,
    requeue: bool = True,
    grace_s: float = OWNERLESS_GRACE_S,
    trials: Sequence[Any] | None = None,
) -> list[int]:
    """Fail the RUNNING trials whose owner process on this host is gone, and those left without
    an owner record for more than ``grace_s`` seconds (the proposal window); re-enqueue their
    parameters so the candidate is still evaluated.  Returns the reaped trial numbers.
    ``trials``: the study's trials as just read (default: read them).

    Trials owned by live processes or by other hosts are left alone (a Ray driver or a remote
    worker reaps its own)."""
    from optuna.trial import TrialState

    reaped = []
    running = (
        study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if trials is None
        else [t for t in trials if t.state == TrialState.RUNNING]
    )
    for t in running:
        if _owner_alive(t.user_attrs.get("owner")) is False:
            reason = "its process died while the trial ran (killed or crashed); re-enqueued"
        elif _ownerless_too_long(t, grace_s):
            reason = (
                f"its process died while proposing it (no owner after {grace_s:g} s); re-enqueued"
            )
        else:
            continue
        with contextlib.suppress(Exception):
            interrupt(study, t, reason, requeue=requeue)
            reaped.append(t.number)
    return reaped


@contextlib.contextmanager
def _ask_lock(run_dir: Path) -> Iterator[None]:
    """An exclusive lock (fcntl) around count-then-ask, so local workers never overshoot."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".ask.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ask_next(study: Any, run_dir: Path, target: int) -> Any | None:
    """The next trial to run, or None when the study has its ``target`` finished trials or its
    sampler has nothing left to propose (a grid search whose every point is evaluated).

    Under a file lock: reap stale trials, count finished + running, take a trial only if below
    the target (:func:`take_trial`: owned by this process from its creation on).
    """
    with _ask_lock(run_dir):
        # one read of the trials for both, unless a trial was reaped (then count afresh)
        trials = study.get_trials(deepcopy=False)
        c = count_trials(study, None if reap_stale_trials(study, trials=trials) else trials)
        if c.finished + c.running >= target or sampler_exhausted(study):
            return None
        return take_trial(study)


def sampler_exhausted(study: Any) -> bool:
    """Whether the study's sampler has no new point to propose (Optuna's grid sampler once
    every grid point has a finished trial); other samplers never run out."""
    is_exhausted = getattr(study.sampler, "is_exhausted", None)
    return bool(is_exhausted(study)) if callable(is_exhausted) else False


def take_trial(study: Any) -> Any:
    """``study.ask()`` with this process recorded as the trial's owner *before* the sampler
    proposes (Optuna's ``ask`` creates the trial, then runs the sampler's ``before_trial``, the
    proposal, and only its caller could record an owner after that).

    * a new trial is created RUNNING with ``user_attrs["owner"]`` in one storage call
      (``create_new_trial`` with a template: one transaction in an RDB storage, one log record
      in a journal), so no new trial is ever RUNNING without an owner;
    * an enqueued (WAITING) trial -- a retry of an interrupted one -- is taken as ``ask`` takes
      it (WAITING -> RUNNING, which only one process can win) and its owner written by the very
      next storage call, before the sampler runs (SIGINT / SIGTERM held in between); only a
      kill -9 or a crash between those two calls leaves it ownerless, and
      :func:`reap_stale_trials` reaps it after :data:`OWNERLESS_GRACE_S`.

    Then the :class:`optuna.trial.Trial` is built, which runs the sampler's ``before_trial``.
    """
    import datetime

    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import FrozenTrial, TrialState

    # optuna offers no public "ask with attributes"; these are the storage calls ask() makes
    storage = study._storage  # noqa: SLF001
    study_id = study._study_id  # noqa: SLF001
    with contextlib.suppress(AttributeError):
        study._thread_local.cached_all_trials = None  # noqa: SLF001 - what ask() resets
    owner = owner_record()
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        tid = _trial_id(waiting)
        try:
            with signals_held():  # a SIGTERM / Ctrl-C waits until the owner is written
                if not storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    continue  # another process took it
                storage.set_trial_user_attr(tid, "owner", owner)
        except UpdateFinishedTrialError:
            continue  # finished (or reaped) by another process meanwhile
        return optuna.Trial(study, tid)
    template = FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.datetime.now(),
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={"owner": owner},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
    return optuna.Trial(study, storage.create_new_trial(study_id, template_trial=template))


# --------------------------------------------------------------------------------------------
# recording a result


def jsonable(v: Any) -> Any:
    """``v`` as plain JSON values (what Optuna stores): containers become dicts and lists,
    anything else unknown its ``str``, and a float NaN ``None`` (JSON has no NaN).  Text is
    never touched: a reason "loss is NaN" stays as it is."""
    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    return json.loads(json.dumps(_nan_to_none(v), default=str))


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_to_none(x) for x in v]
    return v


def record_result(
    study: Any,
    trial: Any,
    result: dict[str, Any],
    objectives: Sequence[str],
    extra_attrs: Mapping[str, Any] | None = None,
) -> Any:
    """Write what :func:`~neuronas.search.objective.evaluate` returned into ``trial`` and
    finish it (the one place a neuronas trial is told); ``extra_attrs``: further user
    attributes written with it (the trial's folder, a traceback).  Returns the trial's final
    :class:`optuna.trial.TrialState`."""
    from optuna.trial import TrialState

    status = result["status"]
    final = result.get("measured") or result.get("prior") or {}
    attrs: dict[str, Any] = {
        **(extra_attrs or {}),
        "status": status,
        "reason": result.get("reason", ""),
        "trained": bool(result.get("trained")),
        "seconds": result.get("seconds", {}),
    }
    if result.get("prior", {}).get("compatible"):
        attrs["prior_metrics"] = result["prior"]["metrics"]
        attrs["prior_margins"] = result["prior"]["margins"]
    if final.get("compatible"):
        attrs["cost"] = final["cost"]
        attrs["metrics"] = final["metrics"]
        attrs["margins"] = final["margins"]
        attrs["violations"] = final["violations"]
    if result.get("accuracy_mean") is not None:
        # what every selection uses (the objective, the sampler, the front, duplicates): the
        # validation split's chip accuracy; the key keeps its name, the split says what it is
        attrs["accuracy"] = result["accuracy_mean"]
        attrs["accuracy_std"] = result["accuracy_std"]
        attrs["accuracy_split"] = result.get("accuracy_split") or SELECTION_SPLIT
    if result.get("aee_mean") is not None:
        # optical flow (neuronas.tasks): AEE in pixels, its mean over pixels with events, and the
        # AEE of predicting the training split's mean flow on the same samples
        attrs["aee"] = result["aee_mean"]
        attrs["aee_std"] = result["aee_std"]
        attrs["aee_split"] = result.get("accuracy_split") or SELECTION_SPLIT
        train_d = result.get("train") or {}
        attrs["aee_events"] = train_d.get("aee_events_mean")
        attrs["baseline_aee"] = train_d.get("baseline_aee")
    train = result.get("train")
    if train:
        attrs["train"] = {k: v for k, v in train.items() if k != "history"}
        attrs["history"] = train.get("history", [])
        attrs["checkpoint"] = train.get("checkpoint")
    if result.get("fidelity"):
        # successive halving's mark: the rung, its accuracy, promoted or not, epochs trained
        attrs["fidelity"] = result["fidelity"]
    if result.get("cached_from") is not None:
        attrs["cached_from"] = result["cached_from"]
    # every attribute and the constraints in one transaction (storage.deferred_writes), then
    # the tell (which reads them back for the sampler's after_trial); a SIGTERM or Ctrl-C waits
    # until the trial is told (its training is never lost between the two)
    with signals_held():
        with deferred_writes(study, trial):
            for k, v in attrs.items():
                trial.set_user_attr(k, jsonable(v))
            if status not in _FAIL:
                if status == TrialStatus.INCOMPATIBLE:
                    # cannot be built at all: every budget violated, so samplers steer away
                    set_constraints(study, trial, dict.fromkeys(constraint_names(study), 1.0))
                if final.get("compatible"):
                    margins = {
                        metric: float(margin) if math.isfinite(margin) else 1e9
                        for metric, margin in final["margins"].items()
                    }
                    set_constraints(study, trial, margins)
                if result.get("proxy_score") is not None:
                    trial.set_user_attr(
                        "proxy_score",
                        float(result["proxy_score"])
                        if math.isfinite(result["proxy_score"])
                        else None,
                    )
        if status in _FAIL:
            study.tell(trial, state=TrialState.FAIL)
            return TrialState.FAIL
        if status in _PRUNED:
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
        study.tell(trial, objective_values(result, objectives))
        return TrialState.COMPLETE


#: the study attribute naming the trials' constraints, in order (:func:`set_constraints`)
CONSTRAINT_NAMES_ATTR = "constraint_names"


#: constraint names already read, per study object (they never change once recorded)
_CONSTRAINT_NAMES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def constraint_names(study: Any) -> list[str]:
    """The names of the trials' constraints, in the order of their values (the hard and soft
    budgets of the run's chip; recorded on the study by :func:`name_constraints`).  Read from
    the storage until they are found, then remembered for ``study`` (recorded once, never
    changed: a read of the study's attributes less per trial)."""
    with contextlib.suppress(TypeError):  # a study object without weak references
        names = _CONSTRAINT_NAMES.get(study)
        if names is not None:
            return list(names)
    names = list(study.user_attrs.get(CONSTRAINT_NAMES_ATTR) or [])
    if names:
        with contextlib.suppress(TypeError):
            _CONSTRAINT_NAMES[study] = names
    return list(names)


def name_constraints(study: Any, names: Sequence[str]) -> None:
    """Record the constraint names (once, when the study is created)."""
    if CONSTRAINT_NAMES_ATTR not in study.user_attrs:
        study.set_user_attr(CONSTRAINT_NAMES_ATTR, sorted(names))


def set_constraints(study: Any, trial: Any, values: dict[str, float]) -> None:
    """Record a trial's constraint values (> 0 = violated) as the list under the ``constraints``
    system attribute, ordered as :func:`constraint_names`.

    One record that both readers understand: Optuna 5 reads the list as constraints ``"0"``,
    ``"1"``, ... (``optuna/study/_constrained_optimization.py``: the format ``constraints_func``
    writes; the samplers and ``best_trials`` use the values), and optuna-dashboard 0.21 shows only
    that list (``optuna_dashboard/_serializer.py``, ``CONSTRAINTS_KEY``), not the per-name keys of
    ``Trial.set_constraint``, and splits its Pareto-front plot into feasible and infeasible trials
    by it.  The names live once on the study (``user_attrs["constraint_names"]``)."""
    names = constraint_names(study) or sorted(values)
    missing = set(values) - set(names)
    if missing:
        raise ValueError(f"constraints {sorted(missing)} are not among the study's {names}")
    row = [float(values.get(name, 0.0)) for name in names]
    storage = study._storage  # noqa: SLF001 - optuna offers no public per-trial writes by id
    storage.set_trial_system_attr(_trial_id(trial), "constraints", row)


def objective_values(result: dict[str, Any], objectives: Sequence[str]) -> list[float]:
    """The values told to the study for ``result``, in the order of ``objectives``."""
    final = result.get("measured") or result.get("prior") or {}
    metrics = final.get("metrics") or {}
    out = []
    from neuronas.tasks import METRICS

    for o in objectives:
        if o in METRICS:
            # untrained (rejected) candidates: the pessimistic value (accuracy 0, AEE 1e30);
            # their costs are real (priced) so the dashboard's scatter still shows where they lie
            v = result.get(f"{o}_mean")
            out.append(float(v) if v is not None else METRICS[o].untrained)
        else:
            v = metrics.get(o)
            out.append(float(v) if v is not None and math.isfinite(v) else 1e30)
    return out


# --------------------------------------------------------------------------------------------
# duplicates: the one place a re-proposed architecture is recognised


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    )


def reuse_duplicate(study: Any, trial: Any, key: str, target: int) -> dict[str, Any] | None:
    """Handle ``trial`` proposing architecture ``key``: when an earlier finished trial (not
    interrupted) evaluated it and the allowance (``DUPLICATE_ALLOWANCE`` x ``target``) lasts,
    mark ``trial`` as a free re-proposal (``uncounted``, ``duplicate_of``); when an earlier
    trial *trained* it, return that trial's result to record again (a retraining would cost as
    much and only draw the same candidate's accuracy again).  None: evaluate it.

    Several workers may mark one each at the same moment: the allowance can be exceeded by
    the number of workers minus one, which only bounds how long a search can run."""
    done = [t for t in _finished(study) if t.number != trial.number]
    first = next(
        (
            t
            for t in done
            if t.user_attrs.get("arch_key") == key and trial_status(t) != TrialStatus.INTERRUPTED
        ),
        None,
    )
    if first is not None:
        used = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("uncounted"))
        if used < math.ceil(DUPLICATE_ALLOWANCE * target):
            trial.set_user_attr("uncounted", True)
            trial.set_user_attr("duplicate_of", first.number)
    cached = next(
        (
            t
            for t in done
            if t.user_attrs.get("arch_key") == key
            and t.user_attrs.get("trained")
            and "cached_from" not in t.user_attrs
        ),
        None,
    )
    return None if cached is None else result_from_trial(cached)


def result_from_trial(t: Any) -> dict[str, Any]:
    """Rebuild an evaluate() result from a stored trial (for the duplicate cache)."""
    ua = t.user_attrs
    measured = {
        "compatible": True,
        "feasible": ua.get("status") == TrialStatus.OK,
        "cost": ua.get("cost"),
        "metrics": ua.get("metrics"),
        "margins": ua.get("margins", {}),
        "violations": ua.get("violations", []),
        "hard_violations": [v for v in ua.get("violations", []) if v.get("hard")],
    }
    prior = {
        "compatible": True,
        "metrics": ua.get("prior_metrics"),
        "margins": ua.get("prior_margins", {}),
    }
    train = dict(ua.get("train") or {})
    train["history"] = ua.get("history", [])
    return {
        "status": ua.get("status"),
        "reason": ua.get("reason", ""),
        "trained": True,
        "prior": prior,
        "measured": measured if ua.get("metrics") else None,
        "train": train,
        "accuracy_mean": ua.get("accuracy"),
        "accuracy_std": ua.get("accuracy_std"),
        "accuracy_split": ua.get("accuracy_split"),
        "aee_mean": ua.get("aee"),
        "aee_std": ua.get("aee_std"),
        "seconds": {"price": 0.0, "train": 0.0, "total": 0.0},
        "fidelity": ua.get("fidelity"),
        "cached_from": t.number,
    }


def proxy_reference(study: Any) -> list[float]:
    """The training-free scores of the candidates trained so far (the proxy filter's yardstick)."""
    return [
        float(t.user_attrs["proxy_score"])
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("trained")
        and t.user_attrs.get("proxy_score") is not None
        and "cached_from" not in t.user_attrs
    ]
