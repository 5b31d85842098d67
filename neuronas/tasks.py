"""What each learning task trains on and is judged by: readout, loss, metric, which way is better.

The trainer (:mod:`neuronas.train`) and the search (objectives, samplers, export) dispatch here
instead of assuming a classifier.  Two tasks, named as :attr:`DatasetInfo.task` names them:

- ``classification``: targets are class indices; the readout's per-timestep output averaged over
  the timesteps gives the logits; loss cross-entropy; metric **accuracy** (maximised).
- ``flow``: targets are dense pixel displacements ``[2, h, w]`` (x then y) over the sample; the
  network is an ``ArchSpec`` of ``task: dense`` whose readout (the decoder's last layer, no
  neuron) has 2 channels at the input's resolution; its output current averaged over the
  timesteps is the flow field (Spike-FlowNet accumulates its decoder's output over the time bins
  the same way; Lee et al., "Spike-FlowNet", ECCV 2020).  Loss: the mean endpoint error (a
  Charbonnier-smoothed L2 norm per pixel, so its gradient is finite at zero error); metric
  **AEE**, the average endpoint error in pixels (minimised), over all pixels (``aee``, the
  objective) and over the pixels that saw at least one event (``aee_events``, the measure of
  Spike-FlowNet's and EV-FlowNet's MVSEC tables).

Nothing here imports torch at module level: the search reads directions and labels without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neuronas.errors import DataError, NeuronasError

if TYPE_CHECKING:
    import torch

__all__ = [
    "METRICS",
    "TASKS",
    "Metric",
    "Task",
    "aee",
    "batch_sums",
    "check_task",
    "event_mask",
    "mean_flow_baseline",
    "quality_metric",
    "readout",
    "task_loss",
    "task_of",
]


@dataclass(frozen=True)
class Metric:
    """A quality measure a search can optimise."""

    name: str
    direction: str  # "maximize" | "minimize"
    #: axis and table label
    label: str
    #: what an untrained (rejected) candidate is told: the worst value, so samplers steer away
    untrained: float


@dataclass(frozen=True)
class Task:
    """A dataset task: what ``ArchSpec.task`` it needs and the metric that judges it."""

    name: str
    arch_task: str
    metric: str
    #: further measures recorded per evaluation (not objectives)
    extra: tuple[str, ...] = ()


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", "maximize", "accuracy (%)", 0.0),
    # 1e30 like an unpriceable cost: the pessimistic value of a minimised objective
    "aee": Metric("aee", "minimize", "AEE (px)", 1e30),
}

TASKS: dict[str, Task] = {
    "classification": Task("classification", "classification", "accuracy"),
    "flow": Task("flow", "dense", "aee", extra=("aee_events",)),
}


def task_of(dataset: Any) -> Task:
    """The task of a dataset (a name, a folder path or a ``DatasetInfo``)."""
    from neuronas.data import dataset_info

    info = dataset_info(dataset)
    return TASKS[info.task]


def quality_metric(objectives: Sequence[str]) -> str | None:
    """The quality metric among a run's objectives (``accuracy`` or ``aee``), None when the run
    optimises costs only."""
    return next((o for o in objectives if o in METRICS), None)


def check_task(arch: Any, dataset: Any) -> Task:
    """The dataset's task, after checking that ``arch`` can be trained on it: a classifier's
    readout has one output per class; a flow network is ``task: dense`` with a ``[2, h, w]``
    readout at its input's resolution.  Raises a one-line error naming the field otherwise."""
    from neuronas.data import dataset_info

    info = dataset_info(dataset)
    task = TASKS[info.task]
    name = arch.name or "the architecture"
    out = list(arch.output_shape)
    if arch.task != task.arch_task:
        raise NeuronasError(
            f"task: {name} is a {arch.task} network with output {out}; dataset {info.name} is a "
            f"{info.task} dataset, which needs task: {task.arch_task}"
        )
    if task.name == "classification":
        if len(out) != 1:
            raise NeuronasError(
                f"layers[-1]: {name} has output {out}; a classifier's readout gives one value per "
                "class (end with an fc layer)"
            )
        if arch.num_outputs != info.num_classes:
            raise DataError(
                f"layers[-1].out: {name} has {arch.num_outputs} outputs but dataset {info.name} "
                f"has {info.num_classes} classes; set the readout's out to {info.num_classes}"
            )
        return task
    want = list(info.target_shape(arch.input.shape))
    if out != want:
        raise DataError(
            f"layers[-1]: {name}'s readout gives {out}, dataset {info.name}'s flow at input "
            f"{list(arch.input.shape)} is {want}; end the decoder with a 2-channel layer at the "
            "input's resolution"
        )
    return task


# --------------------------------------------------------------------------------------------
# torch parts


def readout(out: torch.Tensor) -> torch.Tensor:
    """The prediction from the network's per-timestep output ``[T, B, ...]``: its mean over T
    (logits ``[B, classes]``, or a flow field ``[B, 2, h, w]``)."""
    return out.mean(0)


def _epe(pred: torch.Tensor, target: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Endpoint error per pixel ``[B, h, w]``: the length of the flow's error vector."""
    return ((pred - target) ** 2).sum(1).add(eps * eps).sqrt()


def task_loss(task: Task, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss of a batch (see the module docstring)."""
    import torch.nn.functional as F

    if task.name == "classification":
        return F.cross_entropy(pred, target)
    # Charbonnier (eps 1e-3 px): the endpoint error itself, with a finite gradient at zero
    return _epe(pred, target, 1e-3).mean()


def event_mask(frames: torch.Tensor) -> torch.Tensor:
    """``[B, h, w]``: True where a pixel saw at least one event (any timestep, any polarity) in
    frames ``[T, B, C, h, w]``."""
    return frames.abs().sum(dim=(0, 2)) > 0


def aee(pred: Any, target: Any, mask: Any = None) -> float:
    """Average endpoint error (pixels) of flow fields ``[N, 2, h, w]`` against ``target``: the
    mean over every pixel, or over the pixels where ``mask`` ``[N, h, w]`` is True (NaN when the
    mask keeps none).  Arrays or tensors."""
    import torch

    p = torch.as_tensor(pred, dtype=torch.float64)
    t = torch.as_tensor(target, dtype=torch.float64)
    if p.shape != t.shape or p.dim() != 4 or p.shape[1] != 2:
        raise ValueError(
            f"aee: prediction {list(p.shape)} and target {list(t.shape)} must both be [N, 2, h, w]"
        )
    epe = _epe(p, t)
    if mask is None:
        return float(epe.mean())
    m = torch.as_tensor(mask, dtype=torch.bool)
    return float(epe[m].mean()) if bool(m.any()) else float("nan")


def batch_sums(
    task: Task, pred: torch.Tensor, target: torch.Tensor, frames: torch.Tensor
) -> dict[str, tuple[float, float]]:
    """Per measure, ``(sum, count)`` over one batch, so that a split's value is the sum of the
    sums over the sum of the counts whatever the batching.  ``frames``: the batch's input
    ``[T, B, ...]`` (for the event mask)."""
    if task.name == "classification":
        correct = float((pred.argmax(-1) == target).sum())
        return {"accuracy": (correct, float(len(target)))}
    epe = _epe(pred.double(), target.double())
    mask = event_mask(frames)
    return {
        "aee": (float(epe.sum()), float(epe.numel())),
        "aee_events": (float(epe[mask].sum()), float(mask.sum())),
    }


def mean_flow_baseline(
    train_targets: Any, eval_targets: Any, eval_frames: Any = None
) -> dict[str, float]:
    """The AEE of predicting the training set's mean flow field for every sample of the
    evaluated split: what a flow network must beat (it knows the average motion, nothing of the
    sample).  ``eval_frames`` ``[N, T, C, h, w]`` adds the AEE over pixels with events."""
    import torch

    train = torch.as_tensor(train_targets, dtype=torch.float64)
    target = torch.as_tensor(eval_targets, dtype=torch.float64)
    pred = train.mean(0, keepdim=True).expand_as(target)
    out = {"aee": aee(pred, target)}
    if eval_frames is not None:
        mask = event_mask(torch.as_tensor(eval_frames).transpose(0, 1))
        out["aee_events"] = aee(pred, target, mask)
    return out
