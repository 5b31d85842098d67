"""Training and search settings, typed and frozen, with every default in this one module.

Two kinds of options:

* :class:`TrialSettings` -- how one candidate is trained and evaluated (what
  :func:`neuronas.search.objective.evaluate` reads).  It crosses process boundaries (local
  worker processes, Ray tasks) as a plain dict: :meth:`TrialSettings.to_dict` /
  :meth:`TrialSettings.from_dict`.  Two named profiles of it: :data:`SCREENING`, the search's
  short training of each candidate (what ``neuronas search`` uses), and :data:`FULL_TRAINING`,
  the trainer's own defaults for one long training (``neuronas train``).
* :class:`SearchSettings` -- the rest of a search's options (space, chip, trials, sampler, ...),
  with ``neuronas search``'s embedded defaults as :data:`SEARCH`.
* :class:`ReportSettings` -- how the export evaluates the front it reports (:data:`REPORT`).

The fields marked ``identity`` define what a trial's numbers mean: a run cannot be resumed with
other values (:func:`identity_fields`).  This module imports neither torch nor optuna.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FULL_TRAINING",
    "REPORT",
    "SCREENING",
    "SEARCH",
    "SELECTION_SPLIT",
    "TASK_SCREENING",
    "ReportSettings",
    "SearchSettings",
    "TrialSettings",
    "identity_fields",
    "screening_for",
]


#: the split whose chip accuracy every selection of a search uses (the objective told to Optuna,
#: the sampler's inputs, early stopping, duplicate reuse, the front); the test split is read
#: only once the front is chosen, to report it (``neuronas export``)
SELECTION_SPLIT = "validation"


def _identity(default: Any) -> Any:
    return field(default=default, metadata={"identity": True})


@dataclass(frozen=True)
class TrialSettings:
    """How one candidate is trained and evaluated; defaults: the search's screening fidelity."""

    #: dataset name (or a folder holding ``dataset.yaml``)
    dataset: str = _identity("digits-events")
    #: seed of the training (weights, data order, chip instances)
    seed: int = _identity(0)
    #: training epochs per candidate.  Screening: 3, sized so that ``make run`` (30 trials and
    #: the export) fits in 10 minutes on a 2-core CPU on digits-events' training split
    epochs: int = _identity(3)
    batch_size: int = _identity(32)
    #: Adam's learning rate.  Screening: 3 epochs with a cosine schedule; the trainer's 1e-2
    #: (tuned for 15-30 epoch trainings) is too slow there, 3e-2 reached higher chip accuracy
    #: on 10 of 10 digits-small candidates (mean +12.5 points; benchmarks/RESULTS.md, "Search").
    #: A stored None (runs made before the screening rate existed) means the trainer's.
    lr: float = _identity(3e-2)
    #: hardware-awareness schedule across epochs (neuronas.train.SCHEDULES)
    schedule: str = _identity("progressive")
    #: noisy chip instances the (validation) accuracy is averaged over
    eval_instances: int = _identity(3)
    #: training / evaluation samples used at most (None: all); cheap screening fidelities.
    #: max_eval_samples caps the validation samples a candidate's chip accuracy is measured on
    #: (and the test samples of the export's report)
    max_train_samples: int | None = _identity(None)
    max_eval_samples: int | None = _identity(None)
    #: share of the training split held out as the validation split: early stopping and the
    #: chip accuracy every selection uses.  The test split is only for reporting the front
    #: (``neuronas export``).  Not a search option: every run uses this value
    val_fraction: float = 0.1
    #: spike rate used to price candidates before training (None: the chip's prior)
    activity_prior: float | None = _identity(None)
    #: stop (prune) a candidate whose validation accuracy after epoch 1 is below this
    min_accuracy_after_first_epoch: float | None = None
    #: train a candidate only if its training-free score reaches this quantile of the trained ones
    proxy_quantile: float | None = None
    #: the trained candidates' training-free scores (the proxy filter's yardstick)
    proxy_reference: tuple[float, ...] = ()
    #: samples the training-free score is computed on
    proxy_batch: int = 32
    #: successive halving (neuronas.search.fidelity): after this many epochs (the rung) a
    #: candidate goes on to ``epochs`` only if its validation accuracy, with its priced costs,
    #: ranks in the best 1 / ``halving_eta`` of the candidates trained before it; the rest
    #: stop there, unevaluated and out of the front.  None (the default) or >= epochs: every
    #: candidate gets the full ``epochs``.  A promoted candidate continues the same run, so its
    #: result equals the one without halving.  Off by default: on the default search (rung 1
    #: of 3 epochs, eta 3) it halved the median trial time but did not reach the front of 30
    #: full trials sooner (benchmarks/RESULTS.md, "Time to a front")
    halving_epochs: int | None = None
    #: keep the best 1 / eta at the rung (Optuna's SuccessiveHalvingPruner's reduction factor)
    halving_eta: int = 3
    #: every candidate is promoted until this many rung points exist
    halving_min_trials: int = 5
    #: the rung points (accuracy, *costs) of the candidates trained so far, and this
    #: candidate's priced costs in the same cost objectives (filled in per trial by the search)
    halving_reference: tuple[tuple[float, ...], ...] = ()
    halving_costs: tuple[float, ...] = ()
    #: the hypervolume reference of those costs (the chip's budgets; NaN: none)
    halving_bound: tuple[float, ...] = ()
    #: folder holding tonic datasets (nothing is downloaded)
    data_root: str | None = None
    #: cpu, cuda or auto (CUDA when present)
    device: str = "cpu"
    #: where the trainer writes ``model.pt`` / ``metrics.json`` (None: nowhere)
    out_dir: str | None = None
    #: a per-epoch progress bar (for a person at a terminal)
    progress: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable values (what crosses a process boundary)."""
        d = dataclasses.asdict(self)
        d["proxy_reference"] = list(self.proxy_reference)
        d["halving_reference"] = [list(p) for p in self.halving_reference]
        d["halving_costs"] = list(self.halving_costs)
        d["halving_bound"] = [v if math.isfinite(v) else None for v in self.halving_bound]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialSettings:
        """From :meth:`to_dict`'s output or any subset of it (the rest: the defaults).

        Unknown keys are ignored: a run stored by another version carries keys of its own.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "lr" in kw and kw["lr"] is None:
            kw["lr"] = FULL_TRAINING.lr
        if "proxy_reference" in kw:
            kw["proxy_reference"] = tuple(float(v) for v in kw["proxy_reference"] or ())
        if "halving_reference" in kw:
            kw["halving_reference"] = tuple(
                tuple(float(v) for v in p) for p in kw["halving_reference"] or ()
            )
        for k in ("halving_costs", "halving_bound"):
            if k in kw:
                kw[k] = tuple(float("nan") if v is None else float(v) for v in kw[k] or ())
        if kw.get("out_dir") is not None:
            kw["out_dir"] = str(kw["out_dir"])
        if kw.get("data_root") is not None:
            kw["data_root"] = str(kw["data_root"])
        return cls(**kw)

    def replace(self, **changes: Any) -> TrialSettings:
        return dataclasses.replace(self, **changes)


#: the search's screening fidelity (``neuronas search``)
SCREENING = TrialSettings()

#: screening settings that depend on the dataset's task (:mod:`neuronas.tasks`' names), in place
#: of :data:`SCREENING`'s where the command line gives none (:func:`screening_for`).
#: ``flow``: batch 16, twice the optimisation steps of batch 32 in the same samples seen: at 3
#: epochs of flow-events a spiking encoder-decoder with skips on the 1-bit sense-amplifier chip
#: reached 0.66x the mean-flow AEE at batch 16 and 0.83x at batch 32, same samples and time
#: (benchmarks/RESULTS.md, "Issue 12: flow at screening fidelity")
TASK_SCREENING: dict[str, dict[str, Any]] = {"flow": {"batch_size": 16}}


def screening_for(task: str) -> TrialSettings:
    """:data:`SCREENING` with the task's own defaults (:data:`TASK_SCREENING`) applied."""
    return SCREENING.replace(**TASK_SCREENING.get(task, {}))


#: one full training (``neuronas train``, :func:`neuronas.train.train_candidate`'s defaults)
FULL_TRAINING = TrialSettings(epochs=20, batch_size=64, lr=1e-2, eval_instances=5)


def identity_fields() -> tuple[str, ...]:
    """The :class:`TrialSettings` fields that define what a trial's numbers mean."""
    return tuple(f.name for f in dataclasses.fields(TrialSettings) if f.metadata.get("identity"))


@dataclass(frozen=True)
class SearchSettings:
    """A search's options besides the training (``neuronas search``'s embedded defaults);
    the seed and the training options are :class:`TrialSettings`' (:data:`SCREENING`)."""

    space: str = "digits-small"
    chip: str = "rram-adcless-65nm"
    #: None: the space's dataset (then stored in the run's TrialSettings.dataset)
    dataset: str | None = None
    #: finished trials to reach, counting earlier runs of the same name.  30 with
    #: :data:`SCREENING` keeps ``make run`` within 10 minutes on a 2-core CPU
    trials: int = 30
    sampler: str = "guided"
    objectives: tuple[str, ...] = ("accuracy", "energy_uj", "latency_us")
    #: sqlite (runs/NAME/study.db), journal (runs/NAME/journal.log) or an SQLAlchemy URL
    storage: str = "sqlite"
    #: local worker processes sharing the study
    workers: int = 1
    #: NSGA-II population (None: trials / 4 within 8..50)
    population_size: int | None = None
    #: trials before a model-based sampler uses its model (None: trials / 4 within 5..10)
    startup_trials: int | None = None


#: ``neuronas search``'s embedded defaults (with :data:`SCREENING` for the training)
SEARCH = SearchSettings()


@dataclass(frozen=True)
class ReportSettings:
    """How ``neuronas export`` measures the front it reports (after the search chose it)."""

    #: chip instances (device-noise seeds) each front member is evaluated on, on the validation
    #: and on the test split; more than the search's ``eval_instances`` for a tighter interval
    instances: int = 10
    #: two-sided confidence level of the accuracy intervals (Student-t over the instances)
    confidence: float = 0.95


#: ``neuronas export``'s defaults
REPORT = ReportSettings()
