"""A run: its configuration, creating it, resuming it, opening it.

A *run* is a folder ``runs/NAME/`` holding the study storage (``study.db`` SQLite by default,
``journal.log`` for ``--storage journal``, or nothing when an SQLAlchemy URL is given) and one
folder per trained trial (``trials/NNNN/`` with the trainer's ``model.pt`` and ``metrics.json``).
Everything ``show`` and ``export`` need is in the storage: the run's settings, the search space
and the chip are stored as study user attributes, each trial's architecture, costs, budget
margins and training result as trial user attributes.  The storage is plain Optuna, so
``optuna-dashboard sqlite:///runs/NAME/study.db`` opens it as is.

A run's *identity* -- what a trial's numbers mean -- is the hash of its space and chip, its
objectives, and the :class:`~neuronas.settings.TrialSettings` fields marked ``identity``
(dataset, seed, epochs, batch size, learning rate, ...).  Resuming with another value of any of
these is refused (:func:`check_identity`); the rest (trials, sampler, ...) may change.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronas.errors import ConfigError, StorageError
from neuronas.search.pareto import DIRECTIONS, OBJECTIVES
from neuronas.search.storage import (
    check_search_storage,
    detect_storage,
    load_study,
    mask_url,
    open_storage,
    storage_location,
)
from neuronas.settings import (
    SCREENING,
    SEARCH,
    SELECTION_SPLIT,
    TrialSettings,
    identity_fields,
    screening_for,
)

__all__ = [
    "IDENTITY",
    "Run",
    "RunConfig",
    "check_identity",
    "check_objectives",
    "check_run_name",
    "check_storage_file",
    "check_writable",
    "create_or_resume",
    "create_run",
    "default_run_name",
    "find_study",
    "open_run",
    "refuse_over_trials",
    "resolve_run_dir",
    "resume_run",
    "run_dir_for",
]

#: what defines a trial's numbers: a run cannot be resumed with other values
IDENTITY: tuple[str, ...] = ("space_hash", "chip_hash", "objectives", *identity_fields())

#: options that may change when a run is resumed (e.g. more trials to extend a finished search)
RESUMABLE: tuple[str, ...] = (
    "trials",
    "sampler",
    "population_size",
    "startup_trials",
    "data_root",
    "min_accuracy_after_first_epoch",
    "proxy_quantile",
    "halving_epochs",
    "halving_eta",
    "halving_min_trials",
)


@dataclass
class RunConfig:
    """Everything a run needs, JSON-serialisable (stored in the study's user attributes).

    The field names and their stored form are those of every earlier neuronas version, so
    existing runs open and resume; defaults apply only to keys an old run lacks."""

    name: str
    run_dir: str
    space: str
    space_dict: dict[str, Any]
    chip: str
    chip_dict: dict[str, Any] | None
    dataset: str
    objectives: tuple[str, ...]
    trials: int
    sampler: str = SEARCH.sampler
    seed: int = SCREENING.seed
    epochs: int = SCREENING.epochs
    batch_size: int = SCREENING.batch_size
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_instances: int = SCREENING.eval_instances
    #: None (runs stored before the screening rate existed): the trainer's own
    lr: float | None = None
    schedule: str = SCREENING.schedule
    activity_prior: float | None = None
    min_accuracy_after_first_epoch: float | None = None
    proxy_quantile: float | None = None
    #: successive halving's rung (None: runs stored before it existed train every candidate fully)
    halving_epochs: int | None = None
    halving_eta: int = SCREENING.halving_eta
    halving_min_trials: int = SCREENING.halving_min_trials
    population_size: int | None = None
    startup_trials: int | None = None
    data_root: str | None = None
    storage: str = SEARCH.storage
    input_shape: tuple[int, ...] = ()
    num_outputs: int = 0
    space_hash: str = ""
    chip_hash: str = ""
    version: str = ""
    #: the split whose chip accuracy the run's trials store and select by; "test" for a run
    #: stored before selection moved to the validation split (a key such a run lacks)
    accuracy_split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
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

    def trial_settings(self) -> TrialSettings:
        """How this run trains each candidate."""
        known = {f.name for f in dataclasses.fields(TrialSettings)}
        return TrialSettings.from_dict({k: v for k, v in self.to_dict().items() if k in known})


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


def config_hash(obj: Any) -> str:
    """A short stable hash of plain data (a dumped space or chip)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def resolve_run_dir(name_or_path: str | Path, root: Path | None = None) -> Path:
    """``runs/NAME`` under ``root`` (default: the current folder), or a run folder path."""
    p = Path(name_or_path)
    if p.is_dir() and (detect_storage(p) or (p / "run.json").is_file()):
        return p
    if len(p.parts) > 1 or str(name_or_path).startswith("."):
        return p
    return (root or Path.cwd()) / "runs" / str(name_or_path)


#: the longest run name (a folder name under runs/)
MAX_RUN_NAME = 100


def check_run_name(name: str) -> str:
    """``name`` if it is a safe folder name for ``runs/NAME``; ConfigError otherwise."""
    allowed = (
        f"a folder name of 1 to {MAX_RUN_NAME} characters, without '/', '\\' or NUL, "
        "not starting with '.' (so not '.' or '..')"
    )
    if (
        not name
        or name.startswith(".")
        or len(name) > MAX_RUN_NAME
        or any(c in name for c in "/\\\0")
        or not name.isprintable()
    ):
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise ConfigError(f"--name: got {shown!r}, must be {allowed}")
    return name


def default_run_name(space: str, chip: str, dataset: str) -> str:
    def stem(s: str) -> str:
        return Path(s).stem if ("/" in s or s.endswith((".yaml", ".yml"))) else s

    return f"{stem(space)}_{stem(chip)}_{stem(dataset)}"


def _study_name(run_dir: Path) -> str:
    """The name a new run's study gets (a renamed folder keeps its study's old name)."""
    return run_dir.name


def check_storage_file(run_dir: Path, kind: str) -> None:
    """StorageError when the run folder's ``study.db`` cannot be a run's storage: emptied to 0
    bytes, or not a regular file (a search there would start over beside its ``trials/``)."""
    if kind != "sqlite":
        return
    db = run_dir / "study.db"
    if db.exists() and not db.is_file():
        raise StorageError(
            f"{db}: is not a file (a folder?); a run keeps its study in a SQLite file there"
        )
    if db.is_file() and db.stat().st_size == 0:
        raise StorageError(
            f"{db}: is empty (0 bytes), the run's study is gone; restore it, or move it away "
            "(and trials/) to start a new run under this name"
        )


def check_writable(run_dir: Path, kind: str) -> None:
    """StorageError when a search could not write its run folder, study file or ``trials/``
    (read-only: caught before anything starts, rather than at the first trial's write)."""
    import os

    paths = [run_dir, run_dir / "trials"]
    if kind == "sqlite":
        paths.append(run_dir / "study.db")
    elif kind == "journal":
        paths.append(run_dir / "journal.log")
    for p in paths:
        if p.exists() and not os.access(p, os.W_OK):
            raise StorageError(
                f"{p}: is read-only, and a search writes its trials there; make it writable "
                "or copy the run to a writable place (neuronas show / export only read it)"
            )


def refuse_over_trials(run_dir: Path, where: str) -> None:
    """StorageError when ``run_dir/trials`` holds files: a new study there would overwrite the
    weights of trials it does not know."""
    trials = run_dir / "trials"
    if trials.is_dir() and any(trials.iterdir()):
        raise StorageError(
            f"{trials}: holds the files of earlier trials but {where} holds no neuronas study of "
            "them; a new run here would overwrite them -- choose another --name, or move the folder away"
        )


def find_study(storage: Any, run_dir: Path, kind: str) -> Any | None:
    """The neuronas study of ``run_dir`` in ``storage``, or None when it holds none yet.

    A run's identity is what its folder holds: in the folder's own ``study.db`` / ``journal.log``
    the study named after the folder, else the one neuronas study stored there whatever its
    name (a renamed folder).  A local storage holding only other studies is foreign: refused,
    never used for a new run beside them.  In a shared database (a URL) the study is found by
    the folder's name, else by the name ``run.json`` recorded when the run was created."""
    where = storage_location(run_dir, kind)
    if kind not in ("sqlite", "journal"):
        study = load_study(storage, _study_name(run_dir))
        recorded = _recorded_name(run_dir)
        if study is None and recorded and recorded != _study_name(run_dir):
            study = load_study(storage, recorded)
        return study
    try:
        studies = storage.get_all_studies()
    except Exception as exc:  # noqa: BLE001 - a damaged storage: one line naming it
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise StorageError(f"{where}: cannot be read as a study storage: {first}") from None
    names = [s.study_name for s in studies]
    if _study_name(run_dir) in names:
        return load_study(storage, _study_name(run_dir))
    ours = [s.study_name for s in studies if s.user_attrs.get("neuronas")]
    if len(ours) == 1:
        return load_study(storage, ours[0])
    if len(ours) > 1:
        raise StorageError(
            f"{where}: holds {len(ours)} neuronas studies ({', '.join(sorted(ours))}) and none named "
            f"{_study_name(run_dir)!r}; rename the folder after the run to open"
        )
    if names:
        raise StorageError(
            f"{where}: holds no neuronas study, only other studies ({', '.join(sorted(names)[:5])}); "
            "not a neuronas run folder -- choose another --name or move the file away"
        )
    return None


def _recorded_name(run_dir: Path) -> str | None:
    try:
        name = json.loads((run_dir / "run.json").read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    objs = tuple(objectives)
    if not objs:
        raise ConfigError(f"--objectives: give at least one of {', '.join(OBJECTIVES)}")
    for o in objs:
        if o not in DIRECTIONS:
            near = difflib.get_close_matches(o, OBJECTIVES, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(
                f"--objectives: unknown objective {o!r}{hint} Known: {', '.join(OBJECTIVES)}"
            )
    if len(set(objs)) != len(objs):
        raise ConfigError(f"--objectives: {list(objs)} names an objective twice")
    return objs


def objectives_for_task(objectives: Sequence[str], info: Any, *, given: bool) -> tuple[str, ...]:
    """The objectives with the dataset task's quality metric: the default ``accuracy`` becomes
    ``aee`` for an optical-flow dataset; a metric the task cannot measure, given explicitly, is
    an error."""
    from neuronas.tasks import METRICS, TASKS

    metric = TASKS[info.task].metric
    wrong = [o for o in objectives if o in METRICS and o != metric]
    if wrong and given:
        raise ConfigError(
            f"--objectives: {wrong[0]} cannot be measured on dataset {info.name} (a {info.task} "
            f"dataset, measured by {metric}); use {metric}"
        )
    return tuple(metric if o in METRICS else o for o in objectives)


def _check_counts(trials: int, epochs: int, max_train_samples: int | None) -> None:
    if trials < 1:
        raise ConfigError(f"--trials: got {trials}, must be >= 1")
    if epochs < 1:
        raise ConfigError(f"--epochs: got {epochs}, must be >= 1")
    if max_train_samples is not None and max_train_samples < 0:
        raise ConfigError(
            f"--max-train-samples: got {max_train_samples}, must be >= 1 (or 0: all samples)"
        )


def _check_sampler(name: str) -> None:
    from neuronas.search.samplers import SAMPLER_FACTORIES

    if name not in SAMPLER_FACTORIES:
        raise ConfigError(
            f"--sampler: got {name!r}, known samplers: {', '.join(SAMPLER_FACTORIES)}"
        )


def _load_chip(cfg: RunConfig) -> Any:
    from neuronas.search.objective import load_chip_ref

    return load_chip_ref(cfg.chip_ref())


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


def _stored_run(study: Any, run_dir: Path) -> tuple[RunConfig, Any]:
    from neuronas.search.space import space_from_dict

    cfg = RunConfig.from_dict(study.user_attrs["neuronas"])
    cfg.run_dir = str(run_dir)
    space = space_from_dict(study.user_attrs["space"], f"{run_dir} (stored search space)")
    return cfg, space


# --------------------------------------------------------------------------------------------
# opening


def open_run(name_or_path: str | Path, storage: str | None = None, root: Path | None = None) -> Run:
    """Open an existing run (for ``show`` / ``export`` / workers); StorageError if there is none."""
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
    check_storage_file(run_dir, kind)
    st = open_storage(run_dir, kind)
    study = find_study(st, run_dir, kind)
    if study is None:
        raise StorageError(
            f"{storage_location(run_dir, kind)}: holds no neuronas study named {_study_name(run_dir)!r}"
        )
    if not study.user_attrs.get("neuronas"):
        raise StorageError(
            f"{storage_location(run_dir, kind)}: study {study.study_name!r} was not made by neuronas search (no run metadata)"
        )
    cfg, space = _stored_run(study, run_dir)
    return Run(
        config=cfg,
        study=study,
        space=space,
        chip=_load_chip(cfg),
        storage=st,
        run_dir=run_dir,
        created=False,
    )


# --------------------------------------------------------------------------------------------
# creating or resuming


def create_or_resume(
    options: Mapping[str, Any], root: Path | None = None, *, preflight: bool = True
) -> Run:
    """Open the run named by ``options`` (CLI option names; None = not given) or create it.

    Resuming: options not given take the stored values; an option that changes what a trial's
    numbers mean (space, chip, dataset, objectives, epochs, seed, ...) must match the stored
    one (:func:`check_identity`).  ``trials``, ``sampler`` and ``workers`` may change (e.g. to
    extend a finished search).  A new run takes :data:`~neuronas.settings.SEARCH` and
    :data:`~neuronas.settings.SCREENING` for what is not given.

    ``preflight`` (default): before a new run is stored, and before a resumed run with trials
    left to run, one batch of the dataset is read and run through one candidate
    (:func:`neuronas.search.preflight.preflight`); data that is missing, unreadable or of the
    wrong shape is one DataError line instead of failed trials.  Turn it off only where the
    data is not on this host (a remote Ray cluster's workers read their own).
    """
    opts = {k: v for k, v in options.items() if v is not None}
    if "name" in opts:
        check_run_name(str(opts["name"]))
    if "storage" in opts:
        check_search_storage(str(opts["storage"]))
    space_ref = opts.get("space", SEARCH.space)
    chip_ref = opts.get("chip", SEARCH.chip)
    run_dir = run_dir_for(opts, root)
    existing = detect_storage(run_dir)
    if existing is None and not opts.get("storage") and (run_dir / "storage_url").is_file():
        existing = (run_dir / "storage_url").read_text().strip()  # a database run, resumed by name
    storage_kind = opts.get("storage") or existing or SEARCH.storage
    if existing and opts.get("storage") in ("sqlite", "journal") and opts["storage"] != existing:
        raise ConfigError(
            f"--storage {opts['storage']}: run {run_dir} already keeps its study in {existing}; drop --storage or pick another --name"
        )
    checked = None
    if existing is None and storage_kind in ("sqlite", "journal"):
        # a new local run: check every input (and that some candidate fits the chip) before
        # anything is written, so a typo leaves no half-made run folder behind
        checked = _check_new_inputs(opts, space_ref, chip_ref, preflight=preflight)
    check_storage_file(run_dir, storage_kind)
    check_writable(run_dir, storage_kind)
    if existing is None and storage_kind in ("sqlite", "journal"):
        refuse_over_trials(run_dir, storage_location(run_dir, storage_kind))
    st = open_storage(run_dir, storage_kind)
    study = find_study(st, run_dir, storage_kind)
    if study is not None and study.user_attrs.get("neuronas"):
        return resume_run(study, st, run_dir, opts, preflight=preflight)
    if study is not None:
        raise StorageError(
            f"{storage_location(run_dir, storage_kind)}: a study named {study.study_name!r} exists but was not made by neuronas search"
        )
    return create_run(
        st,
        run_dir,
        storage_kind,
        opts,
        checked or _check_new_inputs(opts, space_ref, chip_ref, preflight=preflight),
        space_ref=space_ref,
        chip_ref=chip_ref,
    )


def run_dir_for(options: Mapping[str, Any], root: Path | None = None) -> Path:
    """The folder of the run ``options`` name (``--name``, else SPACE_CHIP_DATASET)."""
    name = options.get("name") or default_run_name(
        options.get("space") or SEARCH.space,
        options.get("chip") or SEARCH.chip,
        options.get("dataset") or SCREENING.dataset,
    )
    return resolve_run_dir(name, root)


def check_identity(stored: RunConfig, opts: Mapping[str, Any], run_dir: Path) -> None:
    """Raise ConfigError when ``opts`` give another value for anything in :data:`IDENTITY`."""
    from neuronas.hardware import load_chip
    from neuronas.search.space import load_space

    given: dict[str, Any] = {}
    if "space" in opts:
        given["space_hash"] = config_hash(load_space(opts["space"]).model_dump(mode="json"))
    if "chip" in opts:
        given["chip_hash"] = config_hash(load_chip(opts["chip"]).model_dump(mode="json"))
    for key in IDENTITY:
        if key not in ("space_hash", "chip_hash") and key in opts:
            given[key] = opts[key]
    if given.get("max_train_samples") == 0:
        given["max_train_samples"] = None  # 0: no cap
    if "objectives" in opts:
        given["objectives"] = check_objectives(opts["objectives"])
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


def resume_run(
    study: Any, storage: Any, run_dir: Path, opts: Mapping[str, Any], *, preflight: bool = True
) -> Run:
    """The stored run in ``study``, with the resumable options of ``opts`` applied (and, with
    ``preflight`` and trials left to run, its data checked as for a new run)."""
    stored, space = _stored_run(study, run_dir)
    if stored.accuracy_split != SELECTION_SPLIT:
        raise ConfigError(
            f"run {run_dir}: its trials were selected by {stored.accuracy_split}-split accuracy "
            f"(neuronas {stored.version or '< 0.1'}); new trials select by {SELECTION_SPLIT}-split "
            "accuracy and the two are not comparable -- start a new run with another --name "
            "(export still reads this one)"
        )
    check_identity(stored, opts, run_dir)
    cfg = dataclasses.replace(stored)
    for key in RESUMABLE:
        if key in opts:
            # stored as plain JSON: a path (--data-root) is kept as its string;
            # --halving-epochs 0: no halving
            value = opts[key]
            if key == "halving_epochs":
                value = value or None
            setattr(cfg, key, str(value) if isinstance(value, Path) else value)
    _check_counts(cfg.trials, cfg.epochs, cfg.max_train_samples)
    chip = _load_chip(cfg)
    if preflight:
        from neuronas.search.trials import count_trials

        if count_trials(study).finished < cfg.trials:
            _preflight(
                space,
                chip,
                cfg.dataset,
                cfg.data_root,
                input_shape=tuple(cfg.input_shape),
                num_outputs=int(cfg.num_outputs),
                seed=int(cfg.seed),
            )
    if cfg.to_dict() != stored.to_dict():
        meta = cfg.to_dict()
        meta["run_dir"] = ""
        study.set_user_attr("neuronas", meta)
    return Run(
        config=cfg,
        study=study,
        space=space,
        chip=chip,
        storage=storage,
        run_dir=run_dir,
        created=False,
    )


def _preflight(
    space: Any,
    chip: Any,
    dataset: str,
    data_root: Any,
    *,
    input_shape: tuple[int, ...],
    num_outputs: int,
    seed: int,
) -> None:
    """The data preflight hook (see :mod:`neuronas.search.preflight`)."""
    from neuronas.search.preflight import preflight

    preflight(
        space,
        chip,
        dataset,
        data_root=str(data_root) if data_root else None,
        input_shape=input_shape or None,
        num_outputs=num_outputs or None,
        seed=seed,
    )


@dataclass(frozen=True)
class _NewInputs:
    space: Any
    chip: Any
    dataset: str
    info: Any
    objectives: tuple[str, ...]
    screen: dict[str, Any]


def _check_new_inputs(
    opts: Mapping[str, Any], space_ref: str, chip_ref: str, *, preflight: bool = True
) -> _NewInputs:
    """Load and check what a new run needs; raise before anything is stored."""
    from neuronas.data import dataset_info
    from neuronas.hardware import load_chip
    from neuronas.search.prescreen import prescreen
    from neuronas.search.space import load_space

    space = load_space(space_ref)
    chip = load_chip(chip_ref)
    dataset = opts.get("dataset") or space.dataset
    info = dataset_info(dataset)
    objectives = objectives_for_task(
        check_objectives(opts.get("objectives", SEARCH.objectives)),
        info,
        given="objectives" in opts,
    )
    _check_sampler(opts.get("sampler", SEARCH.sampler))
    _check_counts(
        int(opts.get("trials", SEARCH.trials)),
        int(opts.get("epochs", SCREENING.epochs)),
        opts.get("max_train_samples"),
    )
    # the same checks `neuronas validate SPACE --chip C --dataset D` runs: the space and the chip
    # share converters, neuron models and array sizes, and a candidate can be built
    space.check(chip, dataset=dataset)
    screen = prescreen(
        space,
        chip,
        seed=int(opts.get("seed", SCREENING.seed)),
        input_shape=tuple(info.input_shape),
        num_outputs=int(info.num_classes),
        activity=opts.get("activity_prior", space.activity_prior),
    )
    if preflight:
        _preflight(
            space,
            chip,
            dataset,
            opts.get("data_root"),
            input_shape=tuple(info.input_shape),
            num_outputs=int(info.num_classes),
            seed=int(opts.get("seed", SCREENING.seed)),
        )
    return _NewInputs(space, chip, dataset, info, objectives, screen)


def create_run(
    storage: Any,
    run_dir: Path,
    storage_kind: str,
    opts: Mapping[str, Any],
    new: _NewInputs,
    *,
    space_ref: str,
    chip_ref: str,
) -> Run:
    """Store a new run (checked inputs ``new``) in ``storage`` and return it opened."""
    import optuna

    from neuronas.search.trials import jsonable, name_constraints
    from neuronas.version import __version__

    d = screening_for(new.info.task)  # the screening defaults of the dataset's task
    cfg = RunConfig(
        name=run_dir.name,
        run_dir=str(run_dir),
        space=str(space_ref),
        space_dict=new.space.model_dump(mode="json"),
        chip=str(chip_ref),
        chip_dict=_dump_chip(new.chip),
        dataset=new.dataset,
        objectives=new.objectives,
        trials=int(opts.get("trials", SEARCH.trials)),
        sampler=opts.get("sampler", SEARCH.sampler),
        seed=int(opts.get("seed", d.seed)),
        epochs=int(opts.get("epochs", d.epochs)),
        batch_size=int(opts.get("batch_size", d.batch_size)),
        # 0 on the command line: no cap (all training samples)
        max_train_samples=opts.get("max_train_samples", d.max_train_samples) or None,
        max_eval_samples=opts.get("max_eval_samples", d.max_eval_samples),
        eval_instances=int(opts.get("eval_instances", d.eval_instances)),
        lr=opts.get("lr", d.lr),
        schedule=opts.get("schedule", d.schedule),
        activity_prior=opts.get("activity_prior", new.space.activity_prior),
        min_accuracy_after_first_epoch=opts.get("min_accuracy_after_first_epoch"),
        proxy_quantile=opts.get("proxy_quantile"),
        # 0 on the command line: no halving
        halving_epochs=opts.get("halving_epochs", d.halving_epochs) or None,
        halving_eta=int(opts.get("halving_eta") or d.halving_eta),
        halving_min_trials=int(opts.get("halving_min_trials") or d.halving_min_trials),
        population_size=opts.get("population_size"),
        startup_trials=opts.get("startup_trials"),
        data_root=str(opts["data_root"]) if opts.get("data_root") else None,
        storage=storage_kind if storage_kind in ("sqlite", "journal") else "url",
        input_shape=tuple(int(x) for x in new.info.input_shape),
        num_outputs=int(new.info.num_classes),
        space_hash=config_hash(new.space.model_dump(mode="json")),
        chip_hash=config_hash(new.chip.model_dump(mode="json")),
        version=__version__,
        accuracy_split=SELECTION_SPLIT,
    )
    study_name = _study_name(run_dir)
    if load_study(storage, study_name) is None:
        refuse_over_trials(run_dir, storage_location(run_dir, storage_kind))
    try:
        study = optuna.create_study(
            storage=storage, study_name=study_name, directions=cfg.directions, load_if_exists=True
        )
    except Exception as exc:  # noqa: BLE001
        raise StorageError(
            f"cannot create study {study_name!r} in {mask_url(storage_location(run_dir, storage_kind))}: {exc}"
        ) from None
    if not study.user_attrs.get("neuronas"):
        # what optuna-dashboard shows: the objectives by name, the constraints in order
        study.set_metric_names(list(cfg.objectives))
        name_constraints(study, new.chip.budgets.items())
        study.set_user_attr("prescreen", jsonable(new.screen))
        study.set_user_attr("space", new.space.model_dump(mode="json"))
        if cfg.chip_dict is not None:
            study.set_user_attr("chip", cfg.chip_dict)
        meta = cfg.to_dict()
        meta["run_dir"] = ""  # the folder may move; it is known from where the run is opened
        # written last: its presence marks a complete neuronas study (see create_or_resume)
        study.set_user_attr("neuronas", meta)
        # a copy next to the storage for people and tools (not read back)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
        if storage_kind not in ("sqlite", "journal") and mask_url(storage_kind) == storage_kind:
            # a database run: remember where (URLs with a password are not written down)
            (run_dir / "storage_url").write_text(storage_kind + "\n")
    return Run(
        config=cfg,
        study=study,
        space=new.space,
        chip=new.chip,
        storage=storage,
        run_dir=run_dir,
        created=True,
    )
