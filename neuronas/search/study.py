"""The study: samplers, storage, resume and local worker processes around :func:`evaluate`.

A *run* is a folder ``runs/NAME/`` holding the study storage (``study.db`` SQLite by default,
``journal.log`` for ``--storage journal``, or nothing when an SQLAlchemy URL is given) and one
folder per trained trial (``trials/NNNN/`` with the trainer's ``model.pt`` and ``metrics.json``).
Everything ``show`` and ``export`` need is in the storage: the run's settings, the search space
and the chip are stored as study user attributes, each trial's architecture, costs, budget
margins and training result as trial user attributes.  The storage is plain Optuna, so
``optuna-dashboard sqlite:///runs/NAME/study.db`` opens it as is.

Trial states (read from optuna 5.0's samplers; see the README's "Search" section):

* over a hard budget at the prior spike rate -> **COMPLETE** with the budget margins as
  constraints (``trial.set_constraint``, > 0 = violated), accuracy 0 (untrained) and the priced
  costs.  Not PRUNED: NSGA-II builds its populations from COMPLETE trials only
  (``optuna/samplers/_ga/_base.py``), so pruned trials would be invisible to it and it would
  keep proposing the infeasible region; TPE puts every trial with a positive constraint in its
  "above" (bad) group whatever its state (``_tpe/sampler.py: _split_trials``), ranked by total
  violation.  Optuna's own ``best_trials`` excludes infeasible trials, so the dashboard's front
  is right too.
* trained and within every hard budget with the measured spike rates -> COMPLETE, constraints
  all <= 0 (soft budgets may still show positive margins).
* stopped early as hopeless (``min_accuracy_after_first_epoch``), or not trained because its
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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronas.errors import ConfigError, SearchError, StorageError
from neuronas.search.pareto import DIRECTIONS, OBJECTIVES, pareto_front

__all__ = [
    "DEFAULTS",
    "DUPLICATE_ALLOWANCE",
    "Counts",
    "RunConfig",
    "count_trials",
    "create_or_resume",
    "front_trials",
    "make_sampler",
    "open_run",
    "open_storage",
    "prescreen",
    "progress_line",
    "reap_stale_trials",
    "record_result",
    "run_search",
    "run_trial",
    "tpe_settings",
]

SAMPLERS: tuple[str, ...] = ("guided", "tpe", "nsga2", "random", "grid", "qmc")

#: the embedded defaults of ``neuronas search`` (every CLI option falls back to these)
DEFAULTS: dict[str, Any] = {
    "space": "digits-small",
    "chip": "rram-adcless-65nm",
    "dataset": None,  # None: the space's dataset
    # screening fidelity sized so that `make run` (this search + the export) fits in 10 minutes
    # on a 2-core CPU: 30 trials, 3 epochs on digits-events' training split
    "trials": 30,
    "sampler": "guided",
    "objectives": ("accuracy", "energy_uj", "latency_us"),
    "seed": 0,
    "epochs": 3,
    "batch_size": 32,
    "max_train_samples": None,
    "max_eval_samples": None,
    "eval_instances": 3,
    # 3 epochs with a cosine schedule: the trainer's 1e-2 (tuned for 15-30 epoch trainings) is
    # too slow here; 3e-2 reached higher chip accuracy on 10 of 10 digits-small candidates
    # (mean +12.5 points; benchmarks/RESULTS.md, "Search")
    "lr": 3e-2,
    "schedule": "progressive",
    "activity_prior": None,
    "min_accuracy_after_first_epoch": None,
    "proxy_quantile": None,
    "population_size": None,
    "startup_trials": None,
    "storage": "sqlite",
    "workers": 1,
    "data_root": None,
}

#: settings that define what a trial's numbers mean: a run cannot be resumed with others
IDENTITY: tuple[str, ...] = (
    "space_hash",
    "chip_hash",
    "dataset",
    "objectives",
    "seed",
    "epochs",
    "batch_size",
    "max_train_samples",
    "max_eval_samples",
    "eval_instances",
    "lr",
    "schedule",
    "activity_prior",
)

#: free re-proposals of an already evaluated architecture, as a fraction of ``--trials``
#: (1.0: a search asks the sampler at most twice its trial budget)
DUPLICATE_ALLOWANCE = 1.0

FINISHED_STATUSES = (
    "ok",
    "infeasible",
    "incompatible",
    "infeasible_measured",
    "stopped",
    "proxy_rejected",
    "failed",
    "invalid",
)


# --------------------------------------------------------------------------------------------
# run configuration


@dataclass
class RunConfig:
    """Everything a run needs, JSON-serialisable (stored in the study's user attributes)."""

    name: str
    run_dir: str
    space: str
    space_dict: dict[str, Any]
    chip: str
    chip_dict: dict[str, Any] | None
    dataset: str
    objectives: tuple[str, ...]
    trials: int
    sampler: str = "guided"
    seed: int = 0
    epochs: int = 2
    batch_size: int = 32
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_instances: int = 3
    lr: float | None = None
    schedule: str = "progressive"
    activity_prior: float | None = None
    min_accuracy_after_first_epoch: float | None = None
    proxy_quantile: float | None = None
    population_size: int | None = None
    startup_trials: int | None = None
    data_root: str | None = None
    storage: str = "sqlite"
    input_shape: tuple[int, ...] = ()
    num_outputs: int = 0
    space_hash: str = ""
    chip_hash: str = ""
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["objectives"] = tuple(kw.get("objectives", ()))
        kw["input_shape"] = tuple(kw.get("input_shape", ()))
        return cls(**kw)

    @property
    def directions(self) -> list[Any]:
        return [DIRECTIONS[o] for o in self.objectives]

    def chip_ref(self) -> Any:
        """What :func:`evaluate` gets for the chip: the stored dump (same chip on resume)."""
        return self.chip_dict if self.chip_dict is not None else self.chip

    def train_settings(self, out_dir: str | None) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "epochs": self.epochs,
            "seed": self.seed,
            "data_root": self.data_root,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "schedule": self.schedule,
            "eval_instances": self.eval_instances,
            "max_train_samples": self.max_train_samples,
            "max_eval_samples": self.max_eval_samples,
            "activity_prior": self.activity_prior,
            "min_accuracy_after_first_epoch": self.min_accuracy_after_first_epoch,
            "proxy_quantile": self.proxy_quantile,
            "out_dir": out_dir,
        }


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _dump_chip(chip: Any) -> dict[str, Any] | None:
    """The chip as plain data if it round-trips exactly (then a resumed run uses the same chip
    even if its file changed); None otherwise (the run then refers to the chip by name)."""
    try:
        data = chip.model_dump(mode="json")
        from neuronas.search.objective import load_chip_ref

        if load_chip_ref(data).model_dump(mode="json") == data:
            return data
    except Exception:  # noqa: BLE001 - a chip model that does not round-trip is referred to by name
        return None
    return None


def _check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    objs = tuple(objectives)
    if not objs:
        raise ConfigError(f"--objectives: give at least one of {', '.join(OBJECTIVES)}")
    for o in objs:
        if o not in DIRECTIONS:
            import difflib

            near = difflib.get_close_matches(o, OBJECTIVES, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(
                f"--objectives: unknown objective {o!r}{hint} Known: {', '.join(OBJECTIVES)}"
            )
    if len(set(objs)) != len(objs):
        raise ConfigError(f"--objectives: {list(objs)} names an objective twice")
    return objs


# --------------------------------------------------------------------------------------------
# storage


def _mask(url: str) -> str:
    """The URL with any password hidden (it is printed in messages)."""
    if "://" in url and "@" in url:
        head, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{head}://{user}:***@{host}"
    return url


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
    import optuna

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
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
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
            driver = "psycopg (pip install 'psycopg[binary]')" if storage.startswith(
                "postgresql"
            ) else "the database driver its URL names"
            raise StorageError(
                f"cannot open the study storage {_mask(storage)}: {driver} is not installed "
                "(or use --storage sqlite / journal)"
            ) from None
        if not isinstance(exc, ModuleNotFoundError):
            raise

        raise StorageError(
            f"cannot open the study storage {_mask(storage)}: the database driver {exc.name!r} is not "
            f"installed (pip install it, or use --storage sqlite / journal)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy/optuna raise many kinds; one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 200:
            first = first[:197] + "..."
        raise StorageError(
            f"cannot open the study storage {_mask(storage_location(run_dir, storage))}: {first}"
        ) from None


def _open_rdb(url: str, engine_kwargs: dict[str, Any], attempts: int = 8) -> Any:
    """``RDBStorage(url)``, safe against another process creating the same schema at once.

    On an empty database, Optuna creates its tables (``CREATE TABLE`` without ``IF NOT EXISTS``
    semantics under concurrency): two search processes started together on two machines race,
    and PostgreSQL fails the loser with a unique violation on its catalogue
    (``pg_type_typname_nsp_index``) or "already exists". The winner's schema is complete a moment
    later, so the loser opens the storage again instead of failing.
    """
    import time

    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as exc:
            text = str(exc)
            racing = "already exists" in text or "duplicate key" in text or "UniqueViolation" in text
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# opening / creating a run


@dataclass
class Run:
    """An opened run: its config, the Optuna study and the loaded space and chip."""

    config: RunConfig
    study: Any
    space: Any
    chip: Any
    storage: Any
    run_dir: Path
    created: bool

    @property
    def target(self) -> int:
        return self.config.trials


def resolve_run_dir(name_or_path: str | Path, root: Path | None = None) -> Path:
    """``runs/NAME`` under ``root`` (default: the current folder), or a run folder path."""
    p = Path(name_or_path)
    if p.is_dir() and (detect_storage(p) or (p / "run.json").is_file()):
        return p
    if len(p.parts) > 1 or str(name_or_path).startswith("."):
        return p
    return (root or Path.cwd()) / "runs" / str(name_or_path)


def default_run_name(space: str, chip: str, dataset: str) -> str:
    def stem(s: str) -> str:
        return Path(s).stem if ("/" in s or s.endswith((".yaml", ".yml"))) else s

    return f"{stem(space)}_{stem(chip)}_{stem(dataset)}"


def _load_study(storage: Any, name: str) -> Any | None:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def open_run(name_or_path: str | Path, storage: str | None = None, root: Path | None = None) -> Run:
    """Open an existing run (for ``show`` / ``export`` / workers); StorageError if there is none."""
    from neuronas.search.space import space_from_dict

    run_dir = resolve_run_dir(name_or_path, root)
    kind = storage or detect_storage(run_dir)
    if kind is None and (run_dir / "storage_url").is_file():
        kind = (run_dir / "storage_url").read_text().strip()
    if kind is None:
        known = (
            sorted(p.name for p in (run_dir.parent.glob("*")) if p.is_dir())
            if run_dir.parent.is_dir()
            else []
        )
        hint = f" Runs in {run_dir.parent}: {', '.join(known)}" if known else ""
        raise StorageError(
            f"{run_dir}: no run here (no study.db or journal.log; give --storage URL for a database run).{hint}"
        )
    st = open_storage(run_dir, kind)
    study = _load_study(st, _study_name(run_dir, kind))
    if study is None:
        raise StorageError(
            f"{storage_location(run_dir, kind)}: holds no neuronas study named {_study_name(run_dir, kind)!r}"
        )
    meta = study.user_attrs.get("neuronas")
    if not meta:
        raise StorageError(
            f"{storage_location(run_dir, kind)}: study {study.study_name!r} was not made by neuronas search (no run metadata)"
        )
    cfg = RunConfig.from_dict(meta)
    cfg.run_dir = str(run_dir)
    space = space_from_dict(study.user_attrs["space"], f"{run_dir} (stored search space)")
    from neuronas.search.objective import load_chip_ref

    chip = load_chip_ref(cfg.chip_ref())
    return Run(
        config=cfg, study=study, space=space, chip=chip, storage=st, run_dir=run_dir, created=False
    )


def _study_name(run_dir: Path, storage: str) -> str:
    return run_dir.name


def create_or_resume(options: dict[str, Any], root: Path | None = None) -> Run:
    """Open the run named by ``options`` (CLI options, None = not given) or create it.

    Resuming: options not given take the stored values; an option that changes what a trial's
    numbers mean (space, chip, dataset, objectives, epochs, seed, ...) must match the stored
    one, otherwise the message says which differs.  ``trials``, ``sampler`` and ``workers``
    may change (e.g. to extend a finished search).
    """
    import optuna

    from neuronas import __version__
    from neuronas.hardware import load_chip
    from neuronas.search.space import load_space, space_from_dict

    opts = {k: v for k, v in options.items() if v is not None}
    name = opts.get("name")
    space_ref = opts.get("space", DEFAULTS["space"])
    chip_ref = opts.get("chip", DEFAULTS["chip"])
    if name is None:
        name = default_run_name(space_ref, chip_ref, opts.get("dataset") or "digits-events")
    run_dir = resolve_run_dir(name, root)
    existing = detect_storage(run_dir)
    if existing is None and not opts.get("storage") and (run_dir / "storage_url").is_file():
        existing = (run_dir / "storage_url").read_text().strip()  # a database run, resumed by name
    storage_kind = opts.get("storage") or existing or DEFAULTS["storage"]
    if existing and opts.get("storage") in ("sqlite", "journal") and opts["storage"] != existing:
        raise ConfigError(
            f"--storage {opts['storage']}: run {run_dir} already keeps its study in {existing}; drop --storage or pick another --name"
        )
    fresh = None
    if existing is None and storage_kind in ("sqlite", "journal"):
        # a new local run: check every input (and that some candidate fits the chip) before
        # anything is written, so a typo leaves no half-made run folder behind
        fresh = _check_new_inputs(opts, space_ref, chip_ref)
    st = open_storage(run_dir, storage_kind)
    study_name = _study_name(run_dir, storage_kind)
    study = _load_study(st, study_name)

    if study is not None and study.user_attrs.get("neuronas"):
        stored = RunConfig.from_dict(study.user_attrs["neuronas"])
        stored.run_dir = str(run_dir)
        space = space_from_dict(study.user_attrs["space"], f"{run_dir} (stored search space)")
        cfg = dataclasses.replace(stored)
        # what the user gave now, checked against the stored run
        given: dict[str, Any] = {}
        if "space" in opts:
            sp = load_space(opts["space"])
            given["space_hash"] = _hash(sp.model_dump(mode="json"))
        if "chip" in opts:
            ch = load_chip(opts["chip"])
            given["chip_hash"] = _hash(ch.model_dump(mode="json"))
        for key in IDENTITY:
            if key not in ("space_hash", "chip_hash") and key in opts:
                given[key] = opts[key]
        if given.get("max_train_samples") == 0:
            given["max_train_samples"] = None  # 0: no cap
        if "objectives" in opts:
            given["objectives"] = _check_objectives(opts["objectives"])
        for key, value in given.items():
            have = getattr(stored, key)
            if key == "objectives":
                have, value = tuple(have), tuple(value)
            if have != value:
                shown = {
                    "space_hash": ("--space", stored.space),
                    "chip_hash": ("--chip", stored.chip),
                }.get(key, (f"--{key.replace('_', '-')}", have))
                raise ConfigError(
                    f"{shown[0]}: run {run_dir} was started with {shown[1]!r} and a different value was given; "
                    f"results would not be comparable -- drop the option to resume, or choose another --name"
                )
        for key in (
            "trials",
            "sampler",
            "population_size",
            "startup_trials",
            "data_root",
            "min_accuracy_after_first_epoch",
            "proxy_quantile",
        ):
            if key in opts:
                setattr(cfg, key, opts[key])
        _validate_counts(cfg)
        if cfg.to_dict() != stored.to_dict():
            meta = cfg.to_dict()
            meta["run_dir"] = ""
            study.set_user_attr("neuronas", meta)
        chip = _chip_for(cfg)
        return Run(
            config=cfg,
            study=study,
            space=space,
            chip=chip,
            storage=st,
            run_dir=run_dir,
            created=False,
        )

    if study is not None:
        raise StorageError(
            f"{storage_location(run_dir, storage_kind)}: a study named {study_name!r} exists but was not made by neuronas search"
        )

    # a new run
    space, chip, dataset, info, objectives, screen = fresh or _check_new_inputs(
        opts, space_ref, chip_ref
    )
    cfg = RunConfig(
        name=run_dir.name,
        run_dir=str(run_dir),
        space=str(space_ref),
        space_dict=space.model_dump(mode="json"),
        chip=str(chip_ref),
        chip_dict=_dump_chip(chip),
        dataset=dataset,
        objectives=objectives,
        trials=int(opts.get("trials", DEFAULTS["trials"])),
        sampler=opts.get("sampler", DEFAULTS["sampler"]),
        seed=int(opts.get("seed", DEFAULTS["seed"])),
        epochs=int(opts.get("epochs", DEFAULTS["epochs"])),
        batch_size=int(opts.get("batch_size", DEFAULTS["batch_size"])),
        # 0 on the command line: no cap (all training samples)
        max_train_samples=opts.get("max_train_samples", DEFAULTS["max_train_samples"]) or None,
        max_eval_samples=opts.get("max_eval_samples", DEFAULTS["max_eval_samples"]),
        eval_instances=int(opts.get("eval_instances", DEFAULTS["eval_instances"])),
        lr=opts.get("lr", DEFAULTS["lr"]),
        schedule=opts.get("schedule", DEFAULTS["schedule"]),
        activity_prior=opts.get("activity_prior", space.activity_prior),
        min_accuracy_after_first_epoch=opts.get("min_accuracy_after_first_epoch"),
        proxy_quantile=opts.get("proxy_quantile"),
        population_size=opts.get("population_size"),
        startup_trials=opts.get("startup_trials"),
        data_root=str(opts["data_root"]) if opts.get("data_root") else None,
        storage=storage_kind if storage_kind in ("sqlite", "journal") else "url",
        input_shape=tuple(int(x) for x in info.input_shape),
        num_outputs=int(info.num_classes),
        space_hash=_hash(space.model_dump(mode="json")),
        chip_hash=_hash(chip.model_dump(mode="json")),
        version=__version__,
    )
    try:
        study = optuna.create_study(
            storage=st, study_name=study_name, directions=cfg.directions, load_if_exists=True
        )
    except Exception as exc:  # noqa: BLE001
        raise StorageError(
            f"cannot create study {study_name!r} in {_mask(storage_location(run_dir, storage_kind))}: {exc}"
        ) from None
    if not study.user_attrs.get("neuronas"):
        study.set_user_attr("prescreen", _jsonable(screen))
        study.set_user_attr("space", space.model_dump(mode="json"))
        if cfg.chip_dict is not None:
            study.set_user_attr("chip", cfg.chip_dict)
        meta = cfg.to_dict()
        meta["run_dir"] = ""  # the folder may move; it is known from where the run is opened
        # written last: its presence marks a complete neuronas study (see the resume branch)
        study.set_user_attr("neuronas", meta)
        # a copy next to the storage for people and tools (not read back)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        if storage_kind not in ("sqlite", "journal") and _mask(storage_kind) == storage_kind:
            # a database run: remember where (URLs with a password are not written down)
            (run_dir / "storage_url").write_text(storage_kind + "\n")
    return Run(
        config=cfg, study=study, space=space, chip=chip, storage=st, run_dir=run_dir, created=True
    )


def _check_new_inputs(opts: dict[str, Any], space_ref: str, chip_ref: str) -> tuple[Any, ...]:
    """Load and check what a new run needs; raise before anything is stored."""
    from neuronas.data import dataset_info
    from neuronas.hardware import load_chip
    from neuronas.search.space import load_space

    space = load_space(space_ref)
    chip = load_chip(chip_ref)
    dataset = opts.get("dataset") or space.dataset
    info = dataset_info(dataset)
    objectives = _check_objectives(opts.get("objectives", DEFAULTS["objectives"]))
    sampler = opts.get("sampler", DEFAULTS["sampler"])
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler: got {sampler!r}, known samplers: {', '.join(SAMPLERS)}")
    probe = RunConfig(
        name="",
        run_dir="",
        space="",
        space_dict={},
        chip="",
        chip_dict=None,
        dataset=dataset,
        objectives=objectives,
        trials=int(opts.get("trials", DEFAULTS["trials"])),
        epochs=int(opts.get("epochs", DEFAULTS["epochs"])),
        max_train_samples=opts.get("max_train_samples"),
    )
    _validate_counts(probe)
    space.restricted(chip)  # the space and the chip share converters, neuron models, array sizes
    screen = prescreen(
        space,
        chip,
        seed=int(opts.get("seed", DEFAULTS["seed"])),
        input_shape=tuple(info.input_shape),
        num_outputs=int(info.num_classes),
        activity=opts.get("activity_prior", space.activity_prior),
    )
    return space, chip, dataset, info, objectives, screen


def _chip_for(cfg: RunConfig) -> Any:
    from neuronas.search.objective import load_chip_ref

    return load_chip_ref(cfg.chip_ref())


def _validate_counts(cfg: RunConfig) -> None:
    if cfg.trials < 1:
        raise ConfigError(f"--trials: got {cfg.trials}, must be >= 1")
    if cfg.epochs < 1:
        raise ConfigError(f"--epochs: got {cfg.epochs}, must be >= 1")
    if cfg.max_train_samples is not None and cfg.max_train_samples < 0:
        raise ConfigError(
            f"--max-train-samples: got {cfg.max_train_samples}, must be >= 1 (or 0: all samples)"
        )


# --------------------------------------------------------------------------------------------
# samplers


def startup_trials(cfg: RunConfig) -> int:
    """Trials before a model-based sampler (guided, TPE) uses its model."""
    return cfg.startup_trials if cfg.startup_trials is not None else max(5, min(10, cfg.trials // 4))


def tpe_settings(cfg: RunConfig, *, workers: int = 1) -> dict[str, Any]:
    """TPE's settings (TPESampler keyword arguments, without the seed)."""
    startup = startup_trials(cfg)
    return {
        "n_startup_trials": startup,
        # the space is conditional (family -> depth -> widths): the multivariate, grouped
        # TPE models the branches jointly instead of each parameter on its own
        "multivariate": True,
        "group": True,
        # parallel workers: count running trials as bad so workers do not propose the same
        "constant_liar": workers > 1,
    }


def make_sampler(run: Run, *, workers: int = 1, worker_index: int = 0, n_existing: int = 0) -> Any:
    """The Optuna sampler named in the run's config, seeded for reproducibility.

    The seed is offset by the trials already in the study (so a resumed search does not replay
    its first proposals) and by the worker index (so parallel workers do not propose in
    lock-step).
    """
    import optuna

    cfg = run.config
    seed = cfg.seed + 7919 * n_existing + 104729 * worker_index
    if cfg.sampler == "guided":
        from neuronas.search.guided import CostGuidedSampler

        return CostGuidedSampler(
            run.space,
            run.chip,
            objectives=cfg.objectives,
            input_shape=cfg.input_shape,
            num_outputs=cfg.num_outputs,
            activity=cfg.activity_prior,
            n_startup_trials=startup_trials(cfg),
            seed=seed,
        )
    if cfg.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **tpe_settings(cfg, workers=workers))
    if cfg.sampler == "nsga2":
        pop = cfg.population_size or max(8, min(50, cfg.trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if cfg.sampler == "grid":
        grid = run.space.grid(run.chip, input_shape=cfg.input_shape, num_outputs=cfg.num_outputs)
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise ConfigError(f"--sampler: got {cfg.sampler!r}, known samplers: {', '.join(SAMPLERS)}")


# --------------------------------------------------------------------------------------------
# counting, stale trials, ownership


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


def _status(t: Any) -> str:
    return str(t.user_attrs.get("status", ""))


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
        st = _status(t)
        if t.user_attrs.get("uncounted") and t.state in done and st != "interrupted":
            c["duplicates"] += 1
            continue
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
        elif t.state == TrialState.PRUNED:
            c["pruned"] += 1
        elif t.state == TrialState.FAIL:
            if st == "interrupted":
                c["interrupted"] += 1
            else:
                c["failed"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        elif t.state == TrialState.WAITING:
            c["waiting"] += 1
        if st in ("infeasible", "incompatible"):
            c["infeasible"] += 1
        if st == "infeasible_measured":
            c["infeasible_measured"] += 1
        if t.user_attrs.get("trained"):
            c["trained"] += 1
    finished = c["complete"] + c["pruned"] + c["failed"]
    return Counts(finished=finished, **c)


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


def _owner_alive(owner: Any) -> bool | None:
    """True/False for an owner on this host; None when it cannot be told (another host)."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None
    start = _proc_start(int(owner.get("pid", -1)))
    if start is None:
        return False
    return not owner.get("start") or start == owner.get("start")


def reap_stale_trials(study: Any, *, requeue: bool = True) -> list[int]:
    """Fail the RUNNING trials whose owner process on this host is gone; re-enqueue their
    parameters so the candidate is still evaluated.  Returns the reaped trial numbers.

    Trials owned by live processes or by other hosts are left alone (a Ray driver or a remote
    worker reaps its own)."""
    from optuna.trial import TrialState

    reaped = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a trial without an owner record is left alone: every backend marks its trials
        # (owner_record()) right after asking for them, under the ask lock for local workers
        if _owner_alive(t.user_attrs.get("owner")) is False:
            storage = study._storage
            with contextlib.suppress(Exception):
                storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
                storage.set_trial_user_attr(
                    t._trial_id,
                    "reason",
                    "its process died while the trial ran (killed or crashed); re-enqueued",
                )
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                if requeue and t.params:
                    study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
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


def ask_next(run: Run) -> Any | None:
    """The next trial to run, or None when the study has its requested finished trials.

    Under a file lock: reap stale trials, count finished + running, ask only if below the
    target.  The new trial is marked with this process as its owner before the lock is freed.
    """
    with _ask_lock(run.run_dir):
        reap_stale_trials(run.study)
        c = count_trials(run.study)
        if c.finished + c.running >= run.target:
            return None
        trial = run.study.ask()
        trial.set_user_attr("owner", owner_record())
        return trial


# --------------------------------------------------------------------------------------------
# one trial


def record_result(study: Any, trial: Any, result: dict[str, Any], objectives: Sequence[str]) -> Any:
    """Write what :func:`~neuronas.search.objective.evaluate` returned into ``trial`` and finish it.

    Public so that other backends (Ray) record results exactly like the local search.
    Returns the trial's final :class:`optuna.trial.TrialState`.
    """
    from optuna.trial import TrialState

    status = result["status"]
    final = result.get("measured") or result.get("prior") or {}
    attrs: dict[str, Any] = {
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
        attrs["accuracy"] = result["accuracy_mean"]
        attrs["accuracy_std"] = result["accuracy_std"]
    train = result.get("train")
    if train:
        attrs["train"] = {k: v for k, v in train.items() if k != "history"}
        attrs["history"] = train.get("history", [])
        attrs["checkpoint"] = train.get("checkpoint")
    if result.get("cached_from") is not None:
        attrs["cached_from"] = result["cached_from"]
    for k, v in attrs.items():
        trial.set_user_attr(k, _jsonable(v))

    if status in ("failed", "invalid"):
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if status == "incompatible":
        # cannot be built at all: the worst possible constraint so samplers steer away
        trial.set_constraint("compatible", 1.0)
    if final.get("compatible"):
        for metric, margin in sorted(final["margins"].items()):
            trial.set_constraint(metric, float(margin) if math.isfinite(margin) else 1e9)
    if result.get("proxy_score") is not None:
        trial.set_user_attr(
            "proxy_score",
            float(result["proxy_score"]) if math.isfinite(result["proxy_score"]) else None,
        )
    if status in ("stopped", "proxy_rejected"):
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    values = _objective_values(result, objectives)
    study.tell(trial, values)
    return TrialState.COMPLETE


def _objective_values(result: dict[str, Any], objectives: Sequence[str]) -> list[float]:
    final = result.get("measured") or result.get("prior") or {}
    metrics = final.get("metrics") or {}
    out = []
    for o in objectives:
        if o == "accuracy":
            # untrained (rejected) candidates: accuracy 0, the pessimistic value; their costs
            # are real (priced) so the dashboard's scatter still shows where they lie
            acc = result.get("accuracy_mean")
            out.append(float(acc) if acc is not None else 0.0)
        else:
            v = metrics.get(o)
            out.append(float(v) if v is not None and math.isfinite(v) else 1e30)
    return out


def _jsonable(v: Any) -> Any:
    return (
        json.loads(json.dumps(v, default=str, allow_nan=True).replace("NaN", "null"))
        if not isinstance(v, (str, int, float, bool, type(None)))
        else v
    )


def _find_cached(study: Any, key: str, number: int) -> Any | None:
    """A finished trial that trained the very same architecture (its result is reused: a
    retraining would cost as much and only draw the same candidate's accuracy again)."""
    from optuna.trial import TrialState

    for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ):
        if (
            t.number != number
            and t.user_attrs.get("arch_key") == key
            and t.user_attrs.get("trained")
            and "cached_from" not in t.user_attrs
        ):
            return t
    return None


def _find_evaluated(study: Any, key: str, number: int) -> Any | None:
    """The first finished trial (trained or rejected, not interrupted) of architecture ``key``."""
    from optuna.trial import TrialState

    for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ):
        if (
            t.number != number
            and t.user_attrs.get("arch_key") == key
            and _status(t) != "interrupted"
        ):
            return t
    return None


def _free_duplicate(run: Run, trial: Any, key: str) -> bool:
    """Mark ``trial`` as a free re-proposal if ``key`` was evaluated before and the allowance
    (``DUPLICATE_ALLOWANCE`` x the trial budget) is not used up; True if it was marked.

    Several workers may mark one each at the same moment: the allowance can be exceeded by
    the number of workers minus one, which only bounds how long a search can run."""
    first = _find_evaluated(run.study, key, trial.number)
    if first is None:
        return False
    used = sum(1 for t in run.study.get_trials(deepcopy=False) if t.user_attrs.get("uncounted"))
    if used >= math.ceil(DUPLICATE_ALLOWANCE * run.target):
        return False
    trial.set_user_attr("uncounted", True)
    trial.set_user_attr("duplicate_of", first.number)
    return True


def _result_from_trial(t: Any) -> dict[str, Any]:
    """Rebuild an evaluate() result from a stored trial (for the duplicate cache)."""
    ua = t.user_attrs
    measured = {
        "compatible": True,
        "feasible": ua.get("status") == "ok",
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
        "seconds": {"price": 0.0, "train": 0.0, "total": 0.0},
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


def trial_dir(run: Run, number: int) -> Path:
    return run.run_dir / "trials" / f"{number:04d}"


def run_trial(run: Run, trial: Any) -> dict[str, Any]:
    """Sample, evaluate and record one trial; never raises for a candidate's own failure."""
    from optuna.trial import TrialState

    from neuronas.errors import SpecError
    from neuronas.search.objective import evaluate

    cfg = run.config
    t0 = time.perf_counter()
    try:
        arch = run.space.sample(
            trial, run.chip, input_shape=cfg.input_shape, num_outputs=cfg.num_outputs
        )
    except SpecError as exc:
        trial.set_user_attr("status", "invalid")
        trial.set_user_attr("reason", f"the space produced an invalid architecture: {exc}")
        run.study.tell(trial, state=TrialState.FAIL)
        return {"status": "invalid", "reason": str(exc)}
    arch_dict = arch.to_dict()
    trial.set_user_attr("arch", arch_dict)
    trial.set_user_attr("arch_key", arch.key)
    # a re-proposal is still evaluated and told (the sampler learns from it) but, while the
    # allowance lasts, does not use up a trial of the budget: ask_next draws another one
    _free_duplicate(run, trial, arch.key)
    cached = _find_cached(run.study, arch.key, trial.number)
    if cached is not None:
        result = _result_from_trial(cached)
    else:
        out_dir = trial_dir(run, trial.number)
        settings = cfg.train_settings(str(out_dir))
        if cfg.proxy_quantile is not None:
            settings["proxy_reference"] = proxy_reference(run.study)
        try:
            result = evaluate(arch_dict, cfg.chip_ref(), settings)
        except Exception as exc:  # noqa: BLE001 - one candidate's crash must not end the search
            tb = traceback.format_exc(limit=8)
            result = {
                "status": "failed",
                "trained": True,
                "reason": f"{type(exc).__name__}: {exc}",
                "prior": {},
                "measured": None,
                "train": None,
                "accuracy_mean": None,
                "accuracy_std": None,
                "seconds": {"total": time.perf_counter() - t0},
                "traceback": tb,
            }
            trial.set_user_attr("traceback", tb)
        if result.get("trained"):
            trial.set_user_attr("trial_dir", str(out_dir.relative_to(run.run_dir)))
    result.setdefault("seconds", {})["wall"] = time.perf_counter() - t0
    record_result(run.study, trial, result, cfg.objectives)
    return result


# --------------------------------------------------------------------------------------------
# the front and the progress line


def front_trials(
    study: Any, objectives: Sequence[str] | None = None, trials: Sequence[Any] | None = None
) -> list[Any]:
    """The feasible Pareto front: trained COMPLETE trials within every hard budget with their
    measured spike rates, non-dominated in the run's objectives (duplicated architectures
    appear once: the first trial that trained them)."""
    from optuna.trial import TrialState

    if objectives is None:
        objectives = study.user_attrs["neuronas"]["objectives"]
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    ok = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and _status(t) == "ok" and t.values is not None
    ]
    seen: set[str] = set()
    uniq = []
    for t in ok:
        key = t.user_attrs.get("arch_key", str(t.number))
        if key in seen:
            continue
        seen.add(key)
        uniq.append(t)
    idx = pareto_front([t.values for t in uniq], objectives)
    return sorted(
        (uniq[i] for i in idx),
        key=lambda t: -t.values[0] if objectives[0] == "accuracy" else t.values[0],
    )


def _fmt_metric(name: str, v: float) -> str:
    if name == "accuracy":
        return f"{100 * v:.1f}%"
    unit = {"energy_uj": "uJ", "latency_us": "us", "area_mm2": "mm2", "memory_kb": "kB"}[name]
    return f"{v:.3g} {unit}"


def progress_line(
    study: Any, target: int, objectives: Sequence[str], trials: Sequence[Any] | None = None
) -> str:
    """One line: trials done, rejected untrained, failed, and the best front so far."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    c = count_trials(study, trials)
    parts = [
        f"trials {c.finished}/{target}",
        f"trained {c.trained}",
        f"infeasible (not trained) {c.infeasible}",
    ]
    if c.infeasible_measured:
        parts.append(f"over budget after training {c.infeasible_measured}")
    if c.pruned:
        parts.append(f"stopped {c.pruned}")
    parts.append(f"failed {c.failed}")
    if c.running:
        parts.append(f"running {c.running}")
    if c.duplicates:
        parts.append(f"re-proposed (not counted) {c.duplicates}")
    front = front_trials(study, objectives, trials)
    if front:
        best = front[0]
        parts.append(
            f"front {len(front)} (best: "
            + ", ".join(_fmt_metric(o, v) for o, v in zip(objectives, best.values, strict=False))
            + ")"
        )
    else:
        parts.append("front 0")
    return " | ".join(parts)


class _Progress:
    """A live line on a terminal (rewritten in place), one line per update otherwise."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = ""

    def update(self, line: str) -> None:
        if not self.enabled or line == self.last:
            return
        self.last = line
        if self.tty:
            width = 200
            self.stream.write("\r" + line[:width].ljust(min(width, len(self.last) + 1)) + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# pre-screen: is any candidate of the space within the chip's budgets at all?


class _RandomTrial:
    """A trial stand-in drawing uniformly at random (for pricing many candidates quickly)."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            v = int(round(math.exp(self.rng.uniform(math.log(low), math.log(high)))))
            v = min(max(v, low), high)
        else:
            v = low + step * int(self.rng.integers(0, (high - low) // step + 1))
        self.params[name] = v
        return v

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        v = choices[int(self.rng.integers(0, len(choices)))]
        self.params[name] = v
        return v


def prescreen(
    space: Any,
    chip: Any,
    *,
    n: int = 300,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    num_outputs: int | None = None,
    activity: float | None = None,
) -> dict[str, Any]:
    """Price ``n`` random candidates of ``space`` on ``chip`` (no training; milliseconds each).

    Returns the feasible share and, per hard budget, how many candidates break it and the best
    (smallest) margin any candidate reaches.  When none is feasible, raises a
    :class:`SearchError` that names the tightest budget (the one even the cheapest candidate
    misses by the most).
    """
    import numpy as np

    from neuronas.errors import SpecError
    from neuronas.hardware import chip_problems, estimate

    rng = np.random.default_rng(seed)
    n_ok = n_feasible = 0
    broken: dict[str, int] = {}
    best_margin: dict[str, float] = {}
    best_value: dict[str, float] = {}
    limits: dict[str, float] = {}
    for _ in range(n):
        try:
            arch = space.sample(
                _RandomTrial(rng), chip, input_shape=input_shape, num_outputs=num_outputs
            )
        except SpecError:
            continue
        if chip_problems(arch, chip):
            continue
        n_ok += 1
        rep = estimate(arch, chip, activity)
        if rep.feasible:
            n_feasible += 1
        for v in rep.violations:
            if v.hard:
                broken[v.metric] = broken.get(v.metric, 0) + 1
        for metric, margin, value, limit in _hard_margins(rep, chip):
            limits[metric] = limit
            if margin < best_margin.get(metric, math.inf):
                best_margin[metric] = margin
                best_value[metric] = value
    stats = {
        "sampled": n,
        "buildable": n_ok,
        "feasible": n_feasible,
        "feasible_share": (n_feasible / n_ok) if n_ok else 0.0,
        "broken": broken,
        "best_margin": best_margin,
        "limits": limits,
    }
    if n_ok == 0:
        raise SearchError(
            f"search space {space.name!r}: none of {n} sampled candidates can be built on chip {chip.name} (check the space's ADC kinds and crossbar sizes against the chip)"
        )
    if n_feasible == 0:
        if best_margin:
            tight = max(best_margin, key=lambda k: best_margin[k])
            raise SearchError(
                f"search space {space.name!r} on chip {chip.name}: all {n_ok} sampled candidates break a hard budget; "
                f"the tightest is {tight} <= {limits[tight]:.4g} (even the cheapest candidate needs {best_value[tight]:.4g}, "
                f"+{100 * best_margin[tight]:.0f}%; {broken.get(tight, 0)}/{n_ok} break it). Loosen that budget or search smaller networks"
            )
        raise SearchError(
            f"search space {space.name!r} on chip {chip.name}: all {n_ok} sampled candidates break a hard budget"
        )
    return stats


def _hard_margins(report: Any, chip: Any) -> list[tuple[str, float, float, float]]:
    """(metric, margin, value, limit) for every hard budget of the chip."""
    hard = _hard_budget_names(chip)
    out = []
    for metric, margin in report.margins().items():
        if metric in hard:
            value = float(report.metric(metric))
            limit = value / (1.0 + margin) if (1.0 + margin) != 0 else float("nan")
            out.append((metric, float(margin), value, limit))
    return out


def _hard_budget_names(chip: Any) -> set[str]:
    """Names of the chip's hard budgets."""
    return set(chip.budgets.hard_metrics)


# --------------------------------------------------------------------------------------------
# the search loop (in process) and local workers (subprocesses)


def _work(
    run: Run,
    *,
    workers: int,
    worker_index: int,
    progress: _Progress | None,
    max_consecutive_crashes: int = 5,
    deadline: float | None = None,
) -> None:
    n_existing = len(run.study.get_trials(deepcopy=False))
    run.study.sampler = make_sampler(
        run, workers=workers, worker_index=worker_index, n_existing=n_existing
    )
    crashes = 0
    while True:
        if deadline is not None and time.time() >= deadline:
            return
        trial = ask_next(run)
        if trial is None:
            return
        result = run_trial(run, trial)
        if result.get("traceback"):
            crashes += 1
            if crashes >= max_consecutive_crashes:
                raise SearchError(
                    f"{crashes} trials in a row crashed while training ({result['reason']}); stopping -- "
                    f"see `neuronas show {run.run_dir}` for the tracebacks"
                )
        else:
            crashes = 0
        if progress is not None:
            progress.update(progress_line(run.study, run.target, run.config.objectives))


def _worker_command(
    run: Run, storage: str | None, worker_index: int, workers: int, deadline: float | None = None
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "neuronas.search.study",
        "worker",
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


def _set_pdeathsig() -> None:
    """Children die with the search process (a kill -9 of the search leaves no orphans)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_search(
    run: Run,
    *,
    workers: int = 1,
    storage_url: str | None = None,
    progress: bool = True,
    prescreen_n: int = 300,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run (or resume) the search until the study has ``run.target`` finished trials.

    ``timeout_s``: propose no new trial after this many seconds (trials under way finish);
    the same command later resumes towards ``run.target``.

    ``workers > 1`` starts that many local worker processes on the same storage (each a
    ``python -m neuronas.search.study worker`` process); this process then only reports
    progress and restarts workers until the target is reached.
    """
    cfg = run.config
    screen = run.study.user_attrs.get("prescreen")
    if not screen:
        screen = prescreen(
            run.space,
            run.chip,
            n=prescreen_n,
            seed=cfg.seed,
            input_shape=cfg.input_shape,
            num_outputs=cfg.num_outputs,
            activity=cfg.activity_prior,
        )
        run.study.set_user_attr("prescreen", _jsonable(screen))
    bar = _Progress(enabled=progress)
    if progress:
        sys.stderr.write(
            f"neuronas search: run {run.run_dir} | space {run.space.name} on chip {run.chip.name}, dataset {cfg.dataset} | "
            f"sampler {cfg.sampler}, objectives {', '.join(cfg.objectives)} | "
            f"{100 * screen['feasible_share']:.0f}% of {screen['buildable']} random candidates fit the hard budgets\n"
        )
        bar.update(progress_line(run.study, run.target, cfg.objectives))
    deadline = time.time() + timeout_s if timeout_s is not None else None
    try:
        if workers <= 1:
            _work(run, workers=1, worker_index=0, progress=bar, deadline=deadline)
        else:
            _supervise(run, workers=workers, storage_url=storage_url, bar=bar, deadline=deadline)
    finally:
        bar.close()
    trials = run.study.get_trials(deepcopy=False)
    c = count_trials(run.study, trials)
    return {
        "counts": dataclasses.asdict(c),
        "front": [t.number for t in front_trials(run.study, cfg.objectives, trials)],
        "prescreen": screen,
    }


def _supervise(
    run: Run,
    *,
    workers: int,
    storage_url: str | None,
    bar: _Progress,
    deadline: float | None = None,
) -> None:
    logs = run.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # share the cores between workers instead of each torch grabbing all of them
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    attempts = 0
    while True:
        reap_stale_trials(run.study)
        c = count_trials(run.study)
        remaining = run.target - c.finished
        if remaining <= 0 or (deadline is not None and time.time() >= deadline):
            return
        attempts += 1
        if attempts > 3:
            raise SearchError(
                f"workers keep exiting with {remaining} trials left; see {logs}/worker-*.log"
            )
        n = min(workers, remaining)
        procs = []
        for i in range(n):
            log = open(logs / f"worker-{i}.log", "ab")  # noqa: SIM115 - closed below
            p = subprocess.Popen(
                _worker_command(run, storage_url, i, n, deadline),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_set_pdeathsig,
            )
            procs.append((p, log))
        try:
            while any(p.poll() is None for p, _ in procs):
                time.sleep(1.0)
                bar.update(progress_line(run.study, run.target, run.config.objectives))
        finally:
            for p, log in procs:
                if p.poll() is None:
                    p.terminate()
                log.close()
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


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m neuronas.search.study worker RUN_DIR [--index I] [--workers N] [--storage URL]``."""
    import argparse

    p = argparse.ArgumentParser(prog="neuronas-search-worker")
    p.add_argument("cmd", choices=["worker"])
    p.add_argument("run_dir")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--storage", default=None)
    p.add_argument(
        "--deadline", type=float, default=None, help="time.time() after which no trial is started"
    )
    a = p.parse_args(list(argv))
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run = open_run(a.run_dir, storage=a.storage)
    _work(run, workers=a.workers, worker_index=a.index, progress=None, deadline=a.deadline)
    return 0


if __name__ == "__main__":  # pragma: no cover - the worker process entry point
    from neuronas.errors import NeuronasError

    try:
        sys.exit(_worker_main(sys.argv[1:]))
    except NeuronasError as exc:
        print(f"neuronas search worker: error: {exc}", file=sys.stderr)
        sys.exit(2)
