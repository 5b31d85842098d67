"""Where a run's Optuna study lives: opening, detecting and describing its storage.

``sqlite`` (``runs/NAME/study.db``, the default), ``journal`` (``runs/NAME/journal.log``, for
several processes on one machine) or any SQLAlchemy URL (PostgreSQL for a cluster).  A URL is
printed only through :func:`mask_url` (no password in a message).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuronas.errors import StorageError

__all__ = [
    "check_search_storage",
    "deferred_writes",
    "is_memory_url",
    "readonly_cause",
    "detect_storage",
    "load_study",
    "mask_url",
    "open_storage",
    "quiet_optuna",
    "storage_location",
]


def mask_url(url: str) -> str:
    """The URL with any password hidden (it is printed in messages)."""
    if "://" in url and "@" in url:
        head, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{head}://{user}:***@{host}"
    return url


def is_memory_url(url: str) -> bool:
    """True for an SQLite URL whose database lives in memory (gone when the process ends)."""
    if not url.lower().startswith("sqlite"):
        return False
    head, _, rest = url.partition("://")
    path = rest[1:] if rest.startswith("/") else rest
    path, _, query = path.partition("?")
    return path in ("", ":memory:") or ":memory:" in path or "mode=memory" in query.lower()


def check_search_storage(storage: str) -> str:
    """``storage`` if a search may keep its study there; StorageError for in-memory SQLite."""
    if "://" in storage and is_memory_url(storage):
        raise StorageError(
            f"--storage: got {storage!r}, an in-memory database: every trial would be lost when "
            "the search ends; use sqlite (runs/NAME/study.db), journal or a database URL with a file or server"
        )
    return storage


def readonly_cause(exc: BaseException) -> str | None:
    """The first line of the read-only / permission error behind ``exc`` (its chain of causes
    included: Optuna wraps SQLite's "attempt to write a readonly database"), or None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).strip()
        low = text.lower()
        if isinstance(e, PermissionError) or any(
            k in low for k in ("readonly database", "read-only", "permission denied")
        ):
            first = text.splitlines()[0] if text else type(e).__name__
            return first[:200]
        e = e.__cause__ or e.__context__
    return None


def storage_location(run_dir: Path, storage: str) -> str:
    """``sqlite`` / ``journal`` / a URL -> a description of where the study lives."""
    if storage == "sqlite":
        return f"sqlite:///{run_dir / 'study.db'}"
    if storage == "journal":
        return str(run_dir / "journal.log")
    return storage


def detect_storage(run_dir: Path) -> str | None:
    """Which local storage an existing run folder holds (None: none)."""
    if (run_dir / "study.db").is_file():
        return "sqlite"
    if (run_dir / "journal.log").is_file():
        return "journal"
    return None


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and experimental-feature warnings would drown the live
    progress line; neuronas reports trials itself."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(run_dir: Path, storage: str) -> Any:
    """An Optuna storage for ``storage`` (``sqlite``, ``journal`` or an SQLAlchemy URL).

    Any failure to reach or open it is a one-line :class:`StorageError`.
    """

    quiet_optuna()

    try:
        if storage == "journal":
            from optuna.storages.journal import (
                JournalFileBackend,
                JournalFileOpenLock,
                JournalStorage,
            )

            run_dir.mkdir(parents=True, exist_ok=True)
            path = str(run_dir / "journal.log")
            return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
        if storage == "sqlite":
            run_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{run_dir / 'study.db'}"
            # several local workers may write at once: wait for SQLite's lock rather than fail
            return _rdb_class()(url, engine_kwargs={"connect_args": {"timeout": 60}})
        if "://" not in storage:
            raise StorageError(
                f"--storage: got {storage!r}; use sqlite (runs/NAME/study.db), journal "
                "(runs/NAME/journal.log) or an SQLAlchemy URL such as postgresql://user@host/db"
            )
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if storage.startswith(("postgresql", "mysql")):
            kwargs["connect_args"] = {"connect_timeout": 10}
        if storage.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        return _open_rdb(storage, kwargs)
    except StorageError:
        raise
    except ImportError as exc:
        if not isinstance(exc, ModuleNotFoundError) and "DB access module" in str(exc):
            # optuna hides which driver SQLAlchemy wanted; for postgresql:// it is psycopg (3)
            driver = (
                "psycopg (pip install 'psycopg[binary]')"
                if storage.startswith("postgresql")
                else "the database driver its URL names"
            )
            raise StorageError(
                f"cannot open the study storage {mask_url(storage)}: {driver} is not installed "
                "(or use --storage sqlite / journal)"
            ) from None
        if not isinstance(exc, ModuleNotFoundError):
            raise
        raise StorageError(
            f"cannot open the study storage {mask_url(storage)}: the database driver {exc.name!r} is not "
            f"installed (pip install it, or use --storage sqlite / journal)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/optuna raise many kinds; one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 200:
            first = first[:197] + "..."
        raise StorageError(
            f"cannot open the study storage {mask_url(storage_location(run_dir, storage))}: {first}"
        ) from None


def _open_rdb(url: str, engine_kwargs: dict[str, Any], attempts: int = 8) -> Any:
    """``RDBStorage(url)``, safe against another process creating the same schema at once.

    On an empty database, Optuna creates its tables: two search processes started together on
    two machines race, and PostgreSQL fails the loser with a unique violation on its catalogue
    (``pg_type_typname_nsp_index``) or "already exists". The winner's schema is complete a moment
    later, so the loser opens the storage again instead of failing.
    """
    import time

    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return _rdb_class()(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            text = str(exc)
            racing = (
                "already exists" in text or "duplicate key" in text or "UniqueViolation" in text
            )
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _rdb_class() -> Any:
    """The RDB storage every run opens: Optuna's, writing a trial's phases in one transaction
    each (:mod:`neuronas.search.rdb`; imported here, on first use, with optuna)."""
    from neuronas.search.rdb import BatchedRDBStorage

    return BatchedRDBStorage


@contextlib.contextmanager
def deferred_writes(study: Any, trial: Any) -> Iterator[None]:
    """Write ``trial``'s parameters and attributes set inside the block in one transaction when
    it ends (:meth:`neuronas.search.rdb.BatchedRDBStorage.deferring`), instead of one commit
    each; on any other storage (a journal, one opened by another program) the block changes
    nothing.  Tell the trial after the block: Optuna's ``tell`` reads the trial back from the
    storage (its samplers' ``after_trial`` sees the attributes)."""
    from neuronas.search.rdb import BatchedRDBStorage

    storage = study._storage  # noqa: SLF001 - optuna offers no public storage accessor
    # optuna wraps an RDB storage in its in-process cache, which forwards every write to it
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, BatchedRDBStorage):
        yield
        return
    with backend.deferring(trial._trial_id):  # noqa: SLF001 - the storage addresses trials by id
        yield


def load_study(storage: Any, name: str) -> Any | None:
    """The study ``name`` in ``storage``, or None when there is none."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
