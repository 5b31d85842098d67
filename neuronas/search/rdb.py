"""Optuna's RDB storage, writing each phase of a trial in one transaction instead of one per value.

Optuna's :class:`~optuna.storages.RDBStorage` commits every parameter, user attribute and system
attribute on its own: a trial of the default search made ~40 commits, and on SQLite each commit
syncs the database file to disk (~15 ms on the shared VM: ~0.6 s per trial).
:class:`BatchedRDBStorage` is the same storage, with one addition: inside
:meth:`BatchedRDBStorage.deferring` ``(trial_id)`` the writes of that trial's parameters and
attributes made by this thread are held and written together, in one transaction, when the block
ends (and before any change of the trial's state, so that a trial is never finished with its
attributes still held).  Everything else -- reads, other trials, other threads, the trial's state
and values -- goes through at once, as before.

What a reader can see changes only inside the block: the held writes are not in the database
until it ends (the :class:`optuna.Trial` object keeps its own copy of its parameters and user
attributes, so the process holding them sees them).  A process killed inside the block loses the
held writes, as it would have lost the ones it had not yet reached: a block ends before the trial
is trained or told (:mod:`neuronas.search.lifecycle`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import optuna
from optuna import distributions
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session

__all__ = ["BatchedRDBStorage"]


def _upsert_insert(dialect: str) -> Any:
    """The ``insert`` construct whose statements take ``on_conflict_do_update`` (and several
    rows at once) on ``dialect``, as RDBStorage upserts attributes there; None elsewhere."""
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    return None


class BatchedRDBStorage(optuna.storages.RDBStorage):
    """:class:`optuna.storages.RDBStorage` with :meth:`deferring` (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[tuple[int, int], list[tuple[str, tuple[Any, ...]]]] = {}

    def __getstate__(self) -> dict[Any, Any]:
        state = dict(super().__getstate__())
        state.pop("_held", None)  # held writes belong to this process's blocks
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._held = {}

    @contextlib.contextmanager
    def deferring(self, trial_id: int) -> Iterator[None]:
        """Hold this thread's writes to trial ``trial_id`` and write them in one transaction at
        the end of the block (also when it raises).  A nested block for the same trial joins
        the outer one."""
        key = (threading.get_ident(), int(trial_id))
        if key in self._held:
            yield
            return
        self._held[key] = []
        try:
            yield
        finally:
            self._flush(key)

    def _queue(self, trial_id: int) -> list[tuple[str, tuple[Any, ...]]] | None:
        return self._held.get((threading.get_ident(), int(trial_id)))

    def _flush(self, key: tuple[int, int], *, keep: bool = False) -> None:
        writes = self._held.get(key) if keep else self._held.pop(key, None)
        if not writes:
            return
        trial_id = key[1]
        try:
            with _create_scoped_session(self.scoped_session) as session:
                self._write_held(session, trial_id, writes)
        finally:
            if keep:
                writes.clear()

    def _write_held(
        self, session: Any, trial_id: int, writes: list[tuple[str, tuple[Any, ...]]]
    ) -> None:
        """Write ``writes`` (held for ``trial_id``) in ``session``: what RDBStorage's
        ``_set_trial_param_without_commit`` / ``_set_trial_attr_without_commit`` write one by
        one, with the trial looked up and checked once, and each attribute table's values in
        one upsert statement (rows in the order of their first write, each with its last
        value: what the writes one after the other leave).  A database without a multi-row
        upsert here (MySQL, others) takes the writes one by one, as before."""
        trial: Any = models.TrialModel.find_or_raise_by_id(trial_id, session)
        self.check_trial_is_updatable(trial_id, trial.state)
        attrs: dict[str, dict[str, Any]] = {"user": {}, "system": {}}
        for kind, args in writes:
            if kind == "param":
                self._add_param(session, trial, *args)
            else:
                attrs[kind][args[0]] = args[1]
        for kind, values in attrs.items():
            if not values:
                continue
            model = (
                models.TrialUserAttributeModel
                if kind == "user"
                else models.TrialSystemAttributeModel
            )
            insert = _upsert_insert(self.engine.name)
            if insert is None:
                for k, v in values.items():
                    self._set_trial_attr_without_commit(session, model, trial_id, k, v)
                continue
            rows = [
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                for k, v in values.items()
            ]
            stmt = insert(model).values(rows)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[model.trial_id, model.key],
                    set_={"value_json": stmt.excluded.value_json},
                )
            )

    def _add_param(
        self,
        session: Any,
        trial: Any,
        param_name: str,
        param_value_internal: float,
        distribution: Any,
        previous_distribution: Any,
    ) -> None:
        # RDBStorage._set_trial_param_without_commit, the trial already looked up and checked
        if previous_distribution is None:
            previous_record = (
                session.query(models.TrialParamModel)
                .join(models.TrialModel)
                .filter(models.TrialModel.study_id == trial.study_id)
                .filter(models.TrialParamModel.param_name == param_name)
                .first()
            )
            if previous_record is not None:
                previous_distribution = distributions.json_to_distribution(
                    previous_record.distribution_json
                )
        if previous_distribution is not None:
            distributions.check_distribution_compatibility(previous_distribution, distribution)
        session.add(
            models.TrialParamModel(
                trial_id=trial.trial_id,
                param_name=param_name,
                param_value=param_value_internal,
                distribution_json=distributions.distribution_to_json(distribution),
            )
        )

    # -- the writes that may be held -----------------------------------------------------------

    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: Any,
        previous_distribution: Any,
    ) -> None:
        # the distribution is checked against the study's (and the trial's state against
        # finished) when written, as RDBStorage does, inside the one transaction
        queue = self._queue(trial_id)
        if queue is None:
            super()._set_trial_param(
                trial_id, param_name, param_value_internal, distribution, previous_distribution
            )
            return
        queue.append(
            ("param", (param_name, param_value_internal, distribution, previous_distribution))
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        queue = self._queue(trial_id)
        if queue is None:
            super().set_trial_user_attr(trial_id, key, value)
        else:
            queue.append(("user", (key, value)))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        queue = self._queue(trial_id)
        if queue is None:
            super().set_trial_system_attr(trial_id, key, value)
        else:
            queue.append(("system", (key, value)))

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        # a state change never overtakes the writes held for the trial
        self._flush((threading.get_ident(), int(trial_id)), keep=True)
        return bool(super().set_trial_state_values(trial_id, state, values))
