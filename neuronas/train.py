"""Training one candidate with the crossbar in the loop, and evaluating it on sampled chips.

Surrogate-gradient BPTT (Adam; the loss, readout and metric of the dataset's task, see
:mod:`neuronas.tasks`: cross-entropy and accuracy for classifiers, endpoint error and AEE for
optical flow) with a hardware-awareness schedule:

- ``progressive``: awareness rises linearly from 0 (ideal float crossbars) to 1 (the full chip
  model) over the first ``ramp_fraction`` of the training steps, then stays at 1 (the ADC-less
  IMC recipe: 1-bit partial sums keep accuracy when introduced gradually);
- ``abrupt``: the full chip model from the first step;
- ``none``: ideal training; the chip is met only at evaluation (post-training quantization).

Evaluation is on the validation split held out of the training data (never the test split: a
search selects by this number), on the chip: accuracy mean and std over ``eval_instances``
sampled chip instances (programming variation, stuck cells and the read-noise stream fixed per
instance: :func:`chip_instance_seed`), plus the float accuracy (awareness 0), plus the measured
spike rates and row-group occupancy (fraction of array reads whose rows hold a spike) per
weighted layer for the cost model.  A run whose loss or weights stop being finite ends with
status ``"diverged"`` and the reason; ``on_epoch`` returning True ends it with ``"stopped"``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuronas.errors import DataError, NeuronasError
from neuronas.settings import FULL_TRAINING, SELECTION_SPLIT
from neuronas.spec import ArchSpec
from neuronas.tasks import (
    TASKS,
    Task,
    batch_sums,
    check_task,
    mean_flow_baseline,
    readout,
    task_loss,
)

__all__ = [
    "SCHEDULES",
    "TrainResult",
    "awareness_at",
    "cap_samples",
    "chip_instance_seed",
    "clear_data_cache",
    "confidence_interval",
    "draw_share",
    "data_cache_info",
    "dataset_tensors",
    "evaluate_on_chip",
    "load_model",
    "resolve_device",
    "set_threads",
    "spare_core_pays",
    "split_train_validation",
    "train_candidate",
    "training_threads",
    "validation_tensors",
]

SCHEDULES = ("progressive", "abrupt", "none")


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced (plain values; ``to_dict`` is JSON-able)."""

    status: str  # "ok" | "diverged" | "stopped"
    reason: str
    accuracy_mean: float | None  # None for a flow network (its metric is AEE)
    accuracy_std: float | None
    accuracies: tuple[float, ...]
    float_accuracy: float | None
    activity: dict[str, Any]
    epochs_run: int
    train_seconds: float
    history: tuple[dict[str, Any], ...]
    checkpoint: str | None
    config: dict[str, Any] = field(default_factory=dict)
    #: the test split's chip accuracy per instance and float accuracy, only when asked for
    #: (``test_instances``: a single training's report, never a search's selection)
    test_accuracies: tuple[float, ...] = ()
    test_float_accuracy: float | None = None
    #: the task's quality metric: "accuracy" (classification) or "aee" (flow; the fields below)
    metric: str = "accuracy"
    #: flow: average endpoint error (px) over all pixels, mean and std over the chip instances
    aee_mean: float | None = None
    aee_std: float | None = None
    aees: tuple[float, ...] = ()
    float_aee: float | None = None
    #: flow: AEE over the pixels that saw an event, mean over the chip instances
    aee_events_mean: float | None = None
    #: flow: the AEE of predicting the training split's mean flow field on the evaluated
    #: samples (all pixels, pixels with events): the baseline a flow network must beat
    baseline_aee: float | None = None
    baseline_aee_events: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accuracies"] = list(self.accuracies)
        d["test_accuracies"] = list(self.test_accuracies)
        d["aees"] = list(self.aees)
        d["history"] = list(self.history)
        return d


def awareness_at(schedule: str, step: int, total_steps: int, ramp_fraction: float = 0.6) -> float:
    """Hardware awareness at optimisation step ``step`` of ``total_steps``."""
    if schedule == "none":
        return 0.0
    if schedule == "abrupt":
        return 1.0
    ramp = max(1.0, ramp_fraction * total_steps)
    return min(1.0, step / ramp)


def set_threads(num_threads: int | None = None) -> int:
    """Torch intra-op threads: the argument, else ``$NEURONAS_NUM_THREADS``, else
    ``$OMP_NUM_THREADS``, else torch's default.  Search workers share a few cores, so each worker
    should run with 1."""
    n = num_threads
    for var in ("NEURONAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if n is None and os.environ.get(var, "").strip().isdigit():
            n = int(os.environ[var])
    if n is not None and n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


#: The estimated share of a training step spent drawing the crossbars' noise (see
#: :func:`draw_share`) from which a training of a convolutional network on more than two threads
#: gives one of them to the draws (taken one batch ahead there,
#: :func:`neuronas.snn.set_draws_ahead`: the same numbers) and trains on the others
#: (:func:`spare_core_pays`).  Measured on the 2-core CI machine before the spare core also took
#: kernel work (benchmarks/RESULTS.md, "Draws ahead on a spare core"): one thread + the draws'
#: thread against two threads, draws in place: a conv in front of an fc (share 0.30) 1.10x
#: faster, digits-cnn (0.015) and the gesture CNN slower; not measured on more cores.
DRAWS_AHEAD_MIN_SHARE = 0.25
#: Dense multiply-accumulates of a training step that take about as long as one training draw
#: with its part of the noisy-cell pass (one thread, measured 4.3-8.0 on digits-mlp, the max-pool
#: MLP, the SHD MLPs and digits-cnn: the draws' seconds against the rest of the training step).
MACS_PER_DRAW = 6.0


def draw_share(model: Any, batch_size: int) -> float:
    """Estimated share of a training step of ``model`` (a built network) spent drawing its
    crossbars' noise: ``D c / (D c + B T M)`` for D draws per batch, B the batch, T timesteps,
    M dense multiply-accumulates per timestep and c :data:`MACS_PER_DRAW`."""
    draws = model.training_draws() * MACS_PER_DRAW
    if draws == 0:
        return 0.0
    return draws / (draws + batch_size * model.arch.input.timesteps * model.macs_per_timestep())


def spare_core_pays(model: Any, batch_size: int, threads: int) -> bool:
    """Whether a training of ``model`` (a built network) given ``threads`` (>= 2) CPU threads
    goes faster on one thread fewer, the spare one drawing its crossbars' noise ahead and taking
    parts of the numba kernels that would otherwise run on one thread (the linear and conv
    forwards, the conv backward's tasks, the noisy cells; :mod:`neuronas.snn._kernels`).  It
    must draw (a noisy device); then on two threads always (measured on the 2-core machine,
    benchmarks/RESULTS.md, "The spare core takes kernel work too": MLPs 1.03-1.45x, the default
    space's convolutional candidates and digits-cnn 1.1-1.3x faster than two threads with the
    draws in place, one small conv candidate 0.89-1.10x over three runs); on more threads
    (where torch's and the kernels' parallel twins have more cores) for networks of linear
    layers only or a :func:`draw_share` of at least :data:`DRAWS_AHEAD_MIN_SHARE`."""
    share = draw_share(model, batch_size)
    if share == 0 or threads < 2:
        return False
    linear = all(lay.kind == "fc" for lay in model.arch.resolved())
    return threads == 2 or linear or share >= DRAWS_AHEAD_MIN_SHARE


@contextmanager
def training_threads(
    model: Any, batch_size: int, device: torch.device
) -> Iterator[tuple[int, bool]]:
    """Torch's threads for one training (and its evaluation) of ``model``, restored after:
    with two or more on the CPU and :func:`spare_core_pays`, one fewer, and the crossbars' draws
    taken ahead on the one left over (where the numba kernels draw), which also takes parts of
    the kernels' work; else as they are.  Yields ``(threads, draws taken ahead)``.  The threads
    are a function of the network, the batch and the threads given only (a run's numbers depend
    on torch's thread count; this keeps them reproducible).  ``NEURONAS_DRAWS_AHEAD=0``: always
    as they are, the draws in place."""
    from neuronas.snn import set_draws_ahead

    cores = torch.get_num_threads()
    spare = (
        device.type == "cpu"
        and cores >= 2
        and os.environ.get("NEURONAS_DRAWS_AHEAD", "") != "0"
        and spare_core_pays(model, batch_size, cores)
    )
    if not spare:
        yield cores, False
        return
    torch.set_num_threads(cores - 1)
    try:
        yield cores - 1, set_draws_ahead(True)
    finally:
        set_draws_ahead(False)
        torch.set_num_threads(cores)


# --------------------------------------------------------------------------------------------
# data


# Frames are built once per (dataset, split, timesteps, root, shape) and shared by every trial of
# a process; least recently used first out beyond a byte budget, so that a long search over many
# timesteps / input sizes does not keep every variant alive (digits-events at T = 16 is ~190 MB).
_TENSOR_CACHE: OrderedDict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_CACHE_MB_DEFAULT = 1024


def _cache_budget_bytes() -> int:
    text = os.environ.get("NEURONAS_DATA_CACHE_MB", "").strip()
    return (int(text) if text.isdigit() else _CACHE_MB_DEFAULT) * 2**20


def _entry_bytes(entry: tuple[torch.Tensor, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in entry)


def data_cache_info() -> dict[str, int]:
    """What the in-process frame cache holds: ``{"entries": n, "bytes": b, "budget_bytes": B}``."""
    total = sum(_entry_bytes(e) for e in _TENSOR_CACHE.values())
    return {"entries": len(_TENSOR_CACHE), "bytes": total, "budget_bytes": _cache_budget_bytes()}


def clear_data_cache() -> None:
    """Drop every cached dataset tensor of this process."""
    _TENSOR_CACHE.clear()


def _check_shape(arch: ArchSpec, dataset: str) -> tuple[int, ...]:
    """The frame shape to load for ``arch`` (DataError naming both shapes when they cannot meet)."""
    from neuronas.data import check_input_shape

    what = f"{arch.name or 'the architecture'}'s input.shape"
    return tuple(check_input_shape(dataset, arch.input.shape, what=what))


def _tensors(
    dataset: str, split: str, timesteps: int, data_root: Any, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    key = (dataset, split, timesteps, str(data_root), tuple(shape))
    if key in _TENSOR_CACHE:
        _TENSOR_CACHE.move_to_end(key)
        return _TENSOR_CACHE[key]
    from neuronas.data import load_dataset

    ds = load_dataset(dataset, split, timesteps, data_root=data_root, input_shape=shape)
    if hasattr(ds, "tensors"):
        x, y = ds.tensors()
    else:  # tonic datasets: materialise once (they are small at screening sizes)
        items = [ds[i] for i in range(len(ds))]
        x = torch.stack([torch.as_tensor(a, dtype=torch.float32) for a, _ in items])
        targets = [b for _, b in items]
        y = (
            torch.stack([torch.as_tensor(b) for b in targets])
            if torch.is_tensor(targets[0])
            else torch.tensor(targets)
        )
    entry = (torch.as_tensor(x).float(), _targets(y))
    _store(key, entry)
    return entry


def _store(key: tuple[Any, ...], entry: tuple[torch.Tensor, torch.Tensor]) -> None:
    _TENSOR_CACHE[key] = entry
    budget = _cache_budget_bytes()
    # the newest entry stays even over budget (and the one just used before it)
    while len(_TENSOR_CACHE) > 2 and sum(_entry_bytes(e) for e in _TENSOR_CACHE.values()) > budget:
        _TENSOR_CACHE.popitem(last=False)


def _targets(y: Any) -> torch.Tensor:
    """Class indices as int64, flow fields as float32."""
    y = torch.as_tensor(y)
    return y.float() if y.is_floating_point() else y.long()


def dataset_tensors(
    dataset: str,
    split: str,
    timesteps: int,
    data_root: str | Path | None = None,
    shape: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames [N, T, *shape], targets [N] or [N, 2, h, w])`` of a dataset split, cached in this process (shared by
    every training of the same dataset, timesteps and shape; bounded by ``$NEURONAS_DATA_CACHE_MB``,
    default 1024).  ``shape``: the frame shape (default the dataset's own)."""
    if shape is None:
        from neuronas.data import dataset_info

        shape = tuple(dataset_info(dataset).input_shape)
    return _tensors(dataset, split, timesteps, data_root, tuple(shape))


def split_train_validation(
    n: int, gen: torch.Generator, val_fraction: float, max_train_samples: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_idx, val_idx)``: the training split's ``n`` samples shuffled by ``gen`` (seeded
    with the training seed, which goes on to draw the batch order), the first
    ``round(val_fraction * n)`` held out for validation.  ``max_train_samples`` keeps that many
    training samples and a fifth as many validation samples."""
    perm = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(val_fraction * n)))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if max_train_samples is not None:
        train_idx = train_idx[: max(1, max_train_samples)]
        val_idx = val_idx[: max(1, max_train_samples // 5)]
    return train_idx, val_idx


def cap_samples(
    x: torch.Tensor, y: torch.Tensor, max_samples: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_samples`` of ``x, y`` (all of them for None)."""
    if max_samples is None:
        return x, y
    return x[:max_samples], y[:max_samples]


def validation_tensors(
    dataset: str,
    timesteps: int,
    *,
    seed: int,
    shape: tuple[int, ...],
    data_root: str | Path | None = None,
    val_fraction: float = FULL_TRAINING.val_fraction,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation samples :func:`train_candidate` evaluated a candidate on, for the same
    seed and caps (the search's export re-evaluates its front on them)."""
    x_all, y_all = _tensors(dataset, "train", timesteps, data_root, tuple(shape))
    gen = torch.Generator().manual_seed(seed)
    _, val_idx = split_train_validation(len(y_all), gen, val_fraction, max_train_samples)
    return cap_samples(x_all[val_idx], y_all[val_idx], max_eval_samples)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=gen).split(batch_size))


def _prefix_enabled() -> bool:
    """Whether the trainer runs a network's input prefix once per split
    (:meth:`SpikingNetwork.apply_input_prefix`) instead of in every batch's forward;
    ``$NEURONAS_PER_BATCH_INPUT_PREFIX=1`` turns it off (the reference path: same numbers)."""
    return os.environ.get("NEURONAS_PER_BATCH_INPUT_PREFIX", "") in ("", "0")


def _prefixed_split(
    model: Any,
    dataset: str,
    split: str,
    timesteps: int,
    data_root: Any,
    shape: tuple[int, ...],
    chunk: int = 512,
) -> torch.Tensor:
    """``[N, T, ...]``: ``model``'s input-prefix output over a whole split's frames, on the CPU,
    run ``chunk`` samples at a time and cached beside the frames (same key plus the prefix's
    :attr:`SpikingNetwork.input_prefix_key`, same byte budget): every trial of a process whose
    leading pools are the same shares it."""
    key = (dataset, split, timesteps, str(data_root), tuple(shape), model.input_prefix_key)
    if key in _TENSOR_CACHE:
        _TENSOR_CACHE.move_to_end(key)
        return _TENSOR_CACHE[key][0]
    x_all, y_all = _tensors(dataset, split, timesteps, data_root, shape)
    parts = [
        model.apply_input_prefix(x_all[i : i + chunk].transpose(0, 1)).transpose(0, 1)
        for i in range(0, len(x_all), chunk)
    ]
    entry = (torch.cat(parts), y_all)
    _store(key, entry)
    return entry[0]


@torch.no_grad()
def _measure(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    task: Task,
    batch_size: int = 256,
    prefixed: bool = False,
) -> dict[str, float]:
    """The task's measures on ``x, y`` (accuracy; or aee and aee_events), NaN where nothing
    was counted.  ``prefixed``: ``x`` holds the model's input-prefix outputs (classification
    only: the flow measures read the raw frames' event mask)."""
    model.eval()
    sums: dict[str, list[float]] = {}
    for lo in range(0, len(y), batch_size):
        # a run of samples: a view, not a gathered copy (the same values and strides)
        hi = min(len(y), lo + batch_size)
        # contiguous [T, B, ...] as the prefix's own output is, so sums see the same layout
        xb = x[lo:hi].to(device).transpose(0, 1)
        pred = readout(model(xb.contiguous(), prefixed=True) if prefixed else model(xb)).cpu()
        for k, (total, count) in batch_sums(task, pred, y[lo:hi], xb.cpu()).items():
            acc = sums.setdefault(k, [0.0, 0.0])
            acc[0] += total
            acc[1] += count
    return {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in sums.items()}


# --------------------------------------------------------------------------------------------
# the trainer


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cuda`` without a GPU also falls back to CPU."""
    name = str(device)
    if name == "auto" or (name.startswith("cuda") and not torch.cuda.is_available()):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _resolve_chip(chip: Any) -> Any:
    if chip is None or not isinstance(chip, (str, os.PathLike)):
        return chip
    from neuronas.hardware import load_chip

    return load_chip(chip if isinstance(chip, str) else Path(chip))


def train_candidate(
    arch: ArchSpec,
    chip: Any,
    dataset: str,
    *,
    epochs: int,
    seed: int = 0,
    data_root: str | Path | None = None,
    batch_size: int = FULL_TRAINING.batch_size,
    lr: float = FULL_TRAINING.lr,
    schedule: str = FULL_TRAINING.schedule,
    eval_instances: int = FULL_TRAINING.eval_instances,
    device: str = "cpu",
    out_dir: Path | str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    on_epoch: Callable[[int, float], bool] | None = None,
    evaluate_stopped: bool = True,
    progress: bool = False,
    num_threads: int | None = None,
    ramp_fraction: float = 0.6,
    val_fraction: float = FULL_TRAINING.val_fraction,
    init_from_data: bool = True,
    test_instances: int = 0,
) -> TrainResult:
    """Train ``arch`` for ``chip`` on ``dataset`` and evaluate it on sampled chip instances.

    ``chip``: a Chip, a preset name or path, or None (an ideal device: the arch's quantization
    and converters, no device noise).  ``on_epoch(epoch, val_accuracy)`` is called after every
    epoch (validation split held out of the training data, at the current awareness); returning
    True stops the run (status ``"stopped"``, still evaluated unless ``evaluate_stopped`` is
    False: then no accuracy, activity or float accuracy, ``accuracies`` empty).  The chip
    accuracy returned is the **validation** split's (:func:`split_train_validation`;
    ``max_eval_samples`` caps it): unless ``test_instances`` asks for it the test split is not
    even loaded, so nothing that selects by this accuracy has seen test labels (the search's
    export measures the test split once the front is chosen).
    ``test_instances`` > 0: also evaluate the trained network on the test split (the first
    ``max_eval_samples``) over that many chip instances (``test_accuracies``), for a single
    training's report; a search never asks.  ``max_train_samples`` / ``max_eval_samples`` cap
    the data for fast screening.  ``device``: cpu, cuda or auto (CUDA when present).
    Deterministic for a seed on CPU.
    """
    from neuronas.snn import build
    from neuronas.snn.optim import adam

    if schedule not in SCHEDULES:
        raise NeuronasError(f"schedule: got {schedule!r}, must be one of {', '.join(SCHEDULES)}")
    if epochs < 1:
        raise NeuronasError(f"epochs: got {epochs}, must be >= 1")
    if not 0.0 < val_fraction < 1.0:
        raise NeuronasError(
            f"val_fraction: got {val_fraction}, must be in (0, 1): the chip accuracy a search "
            "selects by is measured on the validation split held out of the training data"
        )
    set_threads(num_threads)
    dev = resolve_device(device)
    chip = _resolve_chip(chip)
    shape = _check_shape(arch, dataset)
    task = check_task(arch, dataset)
    t_steps = arch.input.timesteps
    phase: dict[str, float] = {}  # wall seconds per phase of this run (what a trial's time goes to)
    t_phase = time.perf_counter()
    x_all, y_all = _tensors(dataset, "train", t_steps, data_root, shape)
    if tuple(x_all.shape[2:]) != tuple(arch.input.shape):
        raise DataError(
            f"input.shape: the architecture expects {list(arch.input.shape)} but dataset {dataset} "
            f"gives {list(x_all.shape[2:])}"
        )

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_idx, val_idx = split_train_validation(len(y_all), gen, val_fraction, max_train_samples)
    # batches are gathered from the shared frames: no per-trial copy of the training set
    y_tr = y_all[train_idx]
    x_first = x_all[train_idx[:batch_size]]
    x_val, y_val = x_all[val_idx], y_all[val_idx]
    x_eval, y_eval = cap_samples(x_val, y_val, max_eval_samples)

    phase["data"] = time.perf_counter() - t_phase
    t_phase = time.perf_counter()
    model = build(arch, chip).to(dev)
    with training_threads(model, batch_size, dev) as (threads, draws_ahead):
        if init_from_data:
            model.init_from_data(x_first.to(dev).transpose(0, 1))
        phase["build"] = time.perf_counter() - t_phase
        t_phase = time.perf_counter()
        # the parameter-free input pools run once per split, not in every batch of every epoch
        prefixed = (
            model.input_prefix_length > 0 and task.name == "classification" and _prefix_enabled()
        )
        x_train_in: torch.Tensor | None = None
        x_val_in = x_val
        if prefixed:
            x_pre = _prefixed_split(model, dataset, "train", t_steps, data_root, shape)
            x_train_in, x_val_in = x_pre[train_idx].to(dev), x_pre[val_idx].to(dev)
        x_eval_in = cap_samples(x_val_in, y_val, max_eval_samples)[0]
        phase["data"] += time.perf_counter() - t_phase
        # torch's Adam(foreach=True) updates, bit for bit (tested), in two numba passes per
        # parameter on the CPU (neuronas.snn.optim); torch's own elsewhere
        opt = adam(model.parameters(), lr)
        steps_per_epoch = math.ceil(len(y_tr) / batch_size)
        total_steps = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))

        history: list[dict[str, Any]] = []
        status, reason = "ok", ""
        step = 0
        phase["validation"] = 0.0
        t0 = time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=epochs, desc=f"train {arch.name or arch.key}", unit="epoch")
        epochs_run = 0
        for epoch in range(epochs):
            model.train()
            t_ep = time.perf_counter()
            loss_sum, seen = 0.0, 0
            train_sums: dict[str, list[float]] = {}
            for idx in _batches(len(y_tr), batch_size, gen):
                level = awareness_at(schedule, step, total_steps, ramp_fraction)
                model.set_hardware_awareness(level)
                yb = y_tr[idx].to(dev)
                # index_select: the same rows as x[idx], a batch 1.5-1.8x faster (bench_gathers.py)
                if x_train_in is not None:
                    rows = idx.to(x_train_in.device)
                    xb = x_train_in.index_select(0, rows).transpose(0, 1).contiguous()
                    pred = readout(model(xb, prefixed=True))
                else:
                    xb = x_all.index_select(0, train_idx[idx]).to(dev).transpose(0, 1)
                    pred = readout(model(xb))
                loss = task_loss(task, pred, yb)
                if not torch.isfinite(loss):
                    status, reason = (
                        "diverged",
                        f"loss became {loss.item()} at epoch {epoch}, step {step}",
                    )
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += float(loss.detach()) * len(idx)
                for k, (total, count) in batch_sums(task, pred.detach(), yb, xb).items():
                    acc = train_sums.setdefault(k, [0.0, 0.0])
                    acc[0] += total
                    acc[1] += count
                seen += len(idx)
            if status == "ok" and not all(torch.isfinite(p).all() for p in model.parameters()):
                status, reason = "diverged", f"weights became non-finite at epoch {epoch}"
            epochs_run = epoch + 1
            if status != "ok":
                break
            t_val = time.perf_counter()
            val_acc = (
                _measure(model, x_val_in, y_val, dev, task, prefixed=prefixed)[task.metric]
                if len(y_val)
                else float("nan")
            )
            phase["validation"] += time.perf_counter() - t_val
            rec = {
                "epoch": epoch,
                "hardware_awareness": round(model.hardware_awareness, 4),
                "train_loss": loss_sum / max(1, seen),
                f"train_{task.metric}": _ratio(train_sums.get(task.metric)),
                f"val_{task.metric}": val_acc,
                "seconds": time.perf_counter() - t_ep,
            }
            history.append(rec)
            if bar is not None:
                bar.set_postfix(
                    loss=f"{rec['train_loss']:.3f}",
                    val=f"{val_acc:.3f}",
                    hw=f"{rec['hardware_awareness']:.2f}",
                )
                bar.update(1)
            if on_epoch is not None and on_epoch(epoch, val_acc):
                status, reason = "stopped", f"stopped by on_epoch after epoch {epoch}"
                break
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - t0
        phase["train"] = train_seconds - phase["validation"]
        t_phase = time.perf_counter()

        accuracies: list[float] = []
        float_acc = 0.0
        activity: dict[str, Any] = {}
        details: dict[str, list[float]] = {}
        if status == "ok" or (status == "stopped" and evaluate_stopped):
            accuracies, float_acc, activity = evaluate_on_chip(
                model,
                x_eval_in,
                y_eval,
                eval_instances=eval_instances,
                seed=seed,
                calibration=x_first,
                device=dev,
                task=task,
                details=details,
                prefixed=prefixed,
            )
            if not all(math.isfinite(a) for a in accuracies):
                status, reason = "diverged", "evaluation produced non-finite outputs"
        test_accuracies: list[float] = []
        test_float: float | None = None
        if status != "diverged" and test_instances > 0:
            x_test, y_test = cap_samples(
                *_tensors(dataset, "test", t_steps, data_root, shape), max_eval_samples
            )
            test_accuracies, test_float, _ = evaluate_on_chip(
                model,
                x_test,
                y_test,
                eval_instances=test_instances,
                seed=seed,
                device=dev,
                measure_activity=False,
                task=task,
            )
        phase["evaluate"] = time.perf_counter() - t_phase
    mean = sum(accuracies) / len(accuracies) if accuracies else 0.0
    std = (
        math.sqrt(sum((a - mean) ** 2 for a in accuracies) / len(accuracies))
        if len(set(accuracies)) > 1
        else 0.0
    )

    checkpoint = None
    config = {
        "dataset": dataset,
        "chip": getattr(chip, "name", None),
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "schedule": schedule,
        "eval_instances": eval_instances,
        "max_train_samples": max_train_samples,
        "train_samples": int(len(y_tr)),
        "val_fraction": val_fraction,
        "eval_split": SELECTION_SPLIT,
        "eval_samples": int(len(y_eval)),
        "device": str(dev),
        "threads": threads,
        "draws_ahead": draws_ahead,
        "phase_seconds": phase,
    }
    t_phase = time.perf_counter()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if status != "diverged":
            checkpoint = str(out / "model.pt")
            torch.save(model.state_dict(), checkpoint)
    phase["save"] = time.perf_counter() - t_phase
    common: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "activity": activity,
        "epochs_run": epochs_run,
        "train_seconds": train_seconds,
        "history": tuple(history),
        "checkpoint": checkpoint,
        "config": config,
        "metric": task.metric,
        "test_accuracies": tuple(test_accuracies),
        "test_float_accuracy": test_float,
    }
    if task.metric == "accuracy":
        result = TrainResult(
            accuracy_mean=mean,
            accuracy_std=std,
            accuracies=tuple(accuracies),
            float_accuracy=float_acc,
            **common,
        )
    else:
        events = details.get("aee_events", [])
        baseline = mean_flow_baseline(y_tr, y_eval, x_eval)
        result = TrainResult(
            accuracy_mean=None,
            accuracy_std=None,
            accuracies=(),
            float_accuracy=None,
            aee_mean=mean if accuracies else None,
            aee_std=std if accuracies else None,
            aees=tuple(accuracies),
            float_aee=float_acc if accuracies else None,
            aee_events_mean=sum(events) / len(events) if events else None,
            baseline_aee=baseline["aee"],
            baseline_aee_events=baseline["aee_events"],
            **common,
        )
    if out_dir is not None:
        (Path(out_dir) / "metrics.json").write_text(
            json.dumps(result.to_dict(), indent=2, default=_json_default)
        )
    return result


def _ratio(sums: list[float] | None) -> float:
    return sums[0] / sums[1] if sums and sums[1] else float("nan")


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    raise TypeError(type(v).__name__)


def _activity_dict(
    input_rates: tuple[float, ...],
    output_rates: tuple[float, ...],
    occupancy: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    try:
        from neuronas.hardware import Activity

        return dict(
            Activity(
                input_rates=input_rates,
                output_rates=output_rates,
                source="measured",
                row_group_occupancy=occupancy,
            ).to_dict()
        )
    except ImportError:  # the cost model's Activity is not importable: the same JSON form
        d: dict[str, Any] = {
            "source": "measured",
            "input_rates": list(input_rates),
            "output_rates": list(output_rates),
        }
        if occupancy is not None:
            d["row_group_occupancy"] = list(occupancy)
        return d


def chip_instance_seed(seed: int, k: int) -> int:
    """The seed of chip instance ``k`` of a training seeded ``seed``: its programming variation,
    stuck cells and read-noise stream (every array's, :meth:`SpikingNet.resample_chip_instance`)
    and the input encoding's draws on its pass.  Instance k is the same chip wherever it is
    evaluated (the search, the export), so its numbers can be reproduced."""
    return int(seed) * 7919 + int(k)


@contextmanager
def _seeded_pass(seed: int, device: torch.device) -> Iterator[None]:
    """torch's global generator seeded for one evaluation pass (the rate encoding's Bernoulli
    draws), restored afterwards so that evaluating never shifts anyone else's random stream."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def evaluate_on_chip(
    model: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eval_instances: int = 5,
    seed: int = 0,
    calibration: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    measure_activity: bool = True,
    task: Task | None = None,
    details: dict[str, list[float]] | None = None,
    prefixed: bool = False,
) -> tuple[list[float], float, dict[str, Any]]:
    """(the task's metric per chip instance, its float value, measured activity dict) on
    ``x, y``: accuracy for a classifier (``task`` None), AEE (px) for flow.  ``details``, when
    given, receives every measure of the task per chip instance (flow: ``aee``, ``aee_events``).

    Instance k is :func:`chip_instance_seed` ``(seed, k)``: evaluating the same model on the same
    samples again gives the same per-instance accuracies (read noise included).  The activity
    (spike rates and row-group occupancy per weighted layer) is measured during the first chip
    instance's pass, the only one with the probes on (``measure_activity=False``: no probes, an
    empty dict).  ``prefixed``: ``x`` holds the model's input-prefix outputs
    (:meth:`SpikingNetwork.apply_input_prefix`, classification only); ``calibration`` stays the
    raw frames."""
    dev = torch.device(device)
    task = task or TASKS["classification"]
    details = {} if details is None else details
    if calibration is not None:
        model.calibrate(calibration.to(dev).transpose(0, 1))
    model.set_hardware_awareness(0.0)
    with _seeded_pass(chip_instance_seed(seed, 0), dev):
        float_acc = _measure(model, x, y, dev, task, prefixed=prefixed)[task.metric]
    model.set_hardware_awareness(1.0)
    measured: list[dict[str, float]] = []
    noisy = model.device_model.noisy
    for k in range(max(1, eval_instances)):
        model.resample_chip_instance(chip_instance_seed(seed, k))
        if k == 0 and measure_activity:
            model.reset_probes()
            model.probing = True
        if k > 0 and not noisy:
            measured.append(measured[0])  # an ideal device: every instance is the same chip
            continue
        with _seeded_pass(chip_instance_seed(seed, k), dev):
            measured.append(_measure(model, x, y, dev, task, prefixed=prefixed))
        model.probing = False
    for name in measured[0]:
        details[name] = [m[name] for m in measured]
    accuracies = details[task.metric]
    if not measure_activity:
        return accuracies, float_acc, {}
    inp, outp = model.activity_rates()
    return accuracies, float_acc, _activity_dict(inp, outp, model.row_group_occupancy())


def confidence_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """``(mean, half_width)``: the two-sided Student-t interval of the mean of ``values`` (chip
    instances drawn independently) at ``confidence``; half_width 0 for identical values and
    NaN for a single one (no spread to estimate)."""
    from scipy.stats import t as student_t

    n = len(values)
    if n == 0:
        raise ValueError("confidence_interval: no values")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


def load_model(
    arch: ArchSpec, chip: Any, checkpoint_path: str | Path, hardware_awareness: float = 1.0
) -> Any:
    """Rebuild ``arch`` for ``chip`` and load a checkpoint (``weights_only=True``); the model is
    returned in eval mode at ``hardware_awareness`` (1: the chip)."""
    from neuronas.snn import build

    model = build(arch, _resolve_chip(chip))
    state = torch.load(Path(checkpoint_path), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.set_hardware_awareness(hardware_awareness)
    model.eval()
    return model
