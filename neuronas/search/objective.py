"""One candidate, start to finish: price it, reject it untrained or train it, price it again.

:func:`evaluate` takes and returns plain, JSON-serialisable values only, so the same function
runs in the search process, in a local worker subprocess or on a Ray worker; it knows nothing
of Optuna (the study records what it returns, see :func:`neuronas.search.trials.record_result`).

The flow (DESIGN.md section 2):

1. ``chip_problems``: a candidate the chip cannot build at all (an ADC kind it lacks, bits out of
   range) is ``incompatible`` -- the space normally never proposes one.
2. ``estimate`` with the prior spike rate: any hard budget violated -> ``infeasible``, returned at
   once with its costs and margins, **never trained** (this is what makes the search fast).
3. ``train_candidate`` (few epochs, crossbar in the loop; chip accuracy on the validation split,
   never the test split); NaN / divergence -> ``failed``.
4. ``estimate`` again with the measured spike rates; a hard budget broken now ->
   ``infeasible_measured`` (trained, but not a front member); otherwise ``ok``.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuronas.settings import TrialSettings

__all__ = ["COST_METRICS", "evaluate", "load_chip_ref", "price"]

#: the cost metrics a chip may budget and a search may minimise
COST_METRICS: tuple[str, ...] = ("energy_uj", "latency_us", "area_mm2", "memory_kb")


@functools.lru_cache(maxsize=16)
def _chip_cached(key: str) -> Any:
    from neuronas.hardware import load_chip

    data = json.loads(key)
    if isinstance(data, str):
        return load_chip(data)
    from neuronas.config import parse_model
    from neuronas.hardware import Chip

    return parse_model(Chip, data, "chip (from the run's metadata)")


def load_chip_ref(chip_ref: Any) -> Any:
    """A Chip from a preset name, a file path, a plain dict (a dumped chip) or a Chip."""
    if hasattr(chip_ref, "periphery") and hasattr(chip_ref, "budgets"):
        return chip_ref
    if isinstance(chip_ref, Path):
        chip_ref = str(chip_ref)
    return _chip_cached(json.dumps(chip_ref, sort_keys=True))


def _budget_info(report: Any) -> tuple[dict[str, float], list[dict[str, Any]]]:
    margins = {k: float(v) for k, v in report.margins().items()}
    violations = [
        {
            "metric": v.metric,
            "value": float(v.value),
            "limit": float(v.limit),
            "margin": float(v.margin),
            "hard": bool(v.hard),
        }
        for v in report.violations
    ]
    return margins, violations


def price(arch_dict: dict[str, Any], chip_ref: Any, activity: Any = None) -> dict[str, Any]:
    """Cost of a candidate as plain values (no training): the first step of :func:`evaluate`."""
    from neuronas.hardware import chip_problems, estimate
    from neuronas.spec import ArchSpec

    arch = ArchSpec.from_dict(arch_dict)
    chip = load_chip_ref(chip_ref)
    problems = list(chip_problems(arch, chip))
    if problems:
        return {"compatible": False, "problems": problems}
    report = estimate(arch, chip, activity)
    margins, violations = _budget_info(report)
    return {
        "compatible": True,
        "problems": [],
        "feasible": bool(report.feasible),
        "cost": report.to_dict(),
        "metrics": {m: float(report.metric(m)) for m in COST_METRICS},
        "margins": margins,
        "violations": violations,
        "hard_violations": [v for v in violations if v["hard"]],
    }


def evaluate(
    arch_dict: dict[str, Any], chip_ref: Any, settings: TrialSettings | Mapping[str, Any]
) -> dict[str, Any]:
    """Evaluate one candidate; plain values in, plain values out (see the module docstring).

    ``settings``: a :class:`~neuronas.settings.TrialSettings`, or a dict of some of its fields
    (the rest take its defaults, the search's screening fidelity).

    Returns a dict with ``status`` in ``incompatible | infeasible | failed | stopped |
    proxy_rejected | infeasible_measured | ok``, ``trained`` (bool), ``reason``, ``prior`` (the
    first pricing: ``cost``, ``metrics``, ``margins``, ``violations``), ``measured`` (the same
    after training, or None), ``train`` (the trainer's result dict, or None),
    ``accuracy_mean`` / ``accuracy_std`` (a classifier's; None when untrained: the chip accuracy
    on the **validation** split held out of the training data, ``accuracy_split``; the test
    split is never read here), ``aee_mean`` / ``aee_std`` (an optical-flow network's, pixels, on
    the same split; None otherwise), and ``seconds`` spent pricing and training.
    """
    s = settings if isinstance(settings, TrialSettings) else TrialSettings.from_dict(settings)
    t0 = time.perf_counter()
    prior = price(arch_dict, chip_ref, s.activity_prior)
    t_price = time.perf_counter() - t0
    out: dict[str, Any] = {
        "status": "",
        "trained": False,
        "reason": "",
        "prior": prior,
        "measured": None,
        "train": None,
        "accuracy_mean": None,
        "accuracy_std": None,
        "aee_mean": None,
        "aee_std": None,
        "seconds": {"price": t_price, "train": 0.0, "total": t_price},
    }
    if not prior["compatible"]:
        out.update(status="incompatible", reason="; ".join(prior["problems"]))
        return out
    if not prior["feasible"]:
        worst = max(prior["hard_violations"], key=lambda v: v["margin"])
        out.update(
            status="infeasible",
            reason=f"{worst['metric']} {worst['value']:.4g} > hard budget {worst['limit']:.4g} "
            f"(+{100 * worst['margin']:.0f}%) at the prior spike rate; not trained",
        )
        return out

    from neuronas.spec import ArchSpec
    from neuronas.train import train_candidate

    arch = ArchSpec.from_dict(arch_dict)
    chip = load_chip_ref(chip_ref)
    q = s.proxy_quantile
    if q is not None:
        t_proxy = time.perf_counter()
        score = _proxy_score(arch, chip, s)
        out["proxy_score"] = score
        out["seconds"]["proxy"] = time.perf_counter() - t_proxy
        ref = sorted(float(v) for v in s.proxy_reference if math.isfinite(v))
        # filter only once a few trained candidates give the quantile some meaning
        if len(ref) >= 5 and score < ref[min(len(ref) - 1, int(float(q) * len(ref)))]:
            out.update(
                status="proxy_rejected",
                reason=f"training-free score {score:.4g} below the {q:g}-quantile of the {len(ref)} trained candidates' scores; not trained",
            )
            out["seconds"]["total"] = time.perf_counter() - t0
            return out
    # a classifier's hopelessness test; a flow network (metric AEE) is never stopped by it
    threshold = s.min_accuracy_after_first_epoch if arch.task == "classification" else None
    # successive halving ranks by validation accuracy (neuronas.search.fidelity): classifiers
    # only; a flow network (AEE, lower is better) trains its full epochs
    rung = (
        s.halving_epochs
        if s.halving_epochs is not None
        and 0 < s.halving_epochs < s.epochs
        and arch.task == "classification"
        else None
    )
    # the successive-halving decision at the rung (neuronas.search.fidelity), once made
    halving: dict[str, Any] = {}

    def on_epoch(epoch: int, val_accuracy: float) -> bool:
        if rung is not None and epoch + 1 == rung:
            from neuronas.search.fidelity import promote

            point = [float(val_accuracy), *s.halving_costs]
            halving.update(
                rung_epochs=int(rung),
                rung_accuracy=float(val_accuracy),
                promoted=promote(
                    point,
                    s.halving_reference,
                    eta=s.halving_eta,
                    min_trials=s.halving_min_trials,
                    bound=s.halving_bound,
                ),
                competitors=len(s.halving_reference),
            )
            if not halving["promoted"]:
                return True
        # screening: a candidate that has learned nothing after its first epoch is hopeless
        return threshold is not None and epoch <= 1 and val_accuracy < float(threshold)

    kwargs: dict[str, Any] = {
        "epochs": int(s.epochs),
        "seed": int(s.seed),
        "data_root": s.data_root,
        "batch_size": int(s.batch_size),
        "schedule": s.schedule,
        "eval_instances": int(s.eval_instances),
        "device": s.device,
        "out_dir": Path(s.out_dir) if s.out_dir else None,
        "max_train_samples": s.max_train_samples,
        "on_epoch": on_epoch if threshold is not None or rung is not None else None,
        # a candidate halving stops is not evaluated on the chip: it never enters the front
        "evaluate_stopped": not (rung is not None and threshold is None),
        "progress": bool(s.progress),
        "lr": float(s.lr),
        "val_fraction": float(s.val_fraction),
    }
    if s.max_eval_samples is not None:
        kwargs["max_eval_samples"] = int(s.max_eval_samples)
    t1 = time.perf_counter()
    try:
        result = train_candidate(arch, chip, s.dataset, **kwargs)
    except FloatingPointError as exc:  # a diverged run the trainer did not catch itself
        out.update(status="failed", trained=True, reason=f"training diverged: {exc}")
        out["seconds"].update(train=time.perf_counter() - t1, total=time.perf_counter() - t0)
        return out
    train = result.to_dict()
    out["train"] = train
    out["trained"] = True
    out["accuracy_split"] = train["config"]["eval_split"]
    out["seconds"]["train"] = time.perf_counter() - t1
    metric = str(train.get("metric") or "accuracy")
    scores = {
        f"{metric}_mean": train.get(f"{metric}_mean"),
        f"{metric}_std": train.get(f"{metric}_std"),
    }
    if halving:
        out["fidelity"] = {
            **halving,
            "epochs": int(train["epochs_run"]),
            "full": int(train["epochs_run"]) == int(s.epochs),
        }
    if train["status"] == "stopped" and halving and not halving["promoted"]:
        out.update(
            status="stopped",
            reason=f"successive halving: validation accuracy {halving['rung_accuracy']:.3f} "
            f"after {rung} of {s.epochs} epochs, with its priced costs, not in the best "
            f"1/{s.halving_eta} of the {halving['competitors'] + 1} candidates so far",
        )
        if train["accuracies"]:  # evaluated anyway (--min-accuracy asks for it)
            out.update(accuracy_mean=train["accuracy_mean"], accuracy_std=train["accuracy_std"])
    elif train["status"] == "diverged" or not _finite(train.get(f"{metric}_mean")):
        out.update(
            status="failed",
            reason=train.get("reason") or "training diverged (non-finite loss or accuracy)",
        )
    elif train["status"] == "stopped":
        out.update(
            status="stopped",
            reason=train.get("reason")
            or f"stopped early: validation accuracy below {threshold} after the first epoch",
            **scores,
        )
    else:
        from neuronas.hardware import Activity

        measured = price(arch_dict, chip, Activity.from_dict(train["activity"]))
        out["measured"] = measured
        out.update({k: float(v) for k, v in scores.items() if v is not None})
        if measured["feasible"]:
            out["status"] = "ok"
        else:
            worst = max(measured["hard_violations"], key=lambda v: v["margin"])
            out.update(
                status="infeasible_measured",
                reason=f"{worst['metric']} {worst['value']:.4g} > hard budget {worst['limit']:.4g} "
                f"with the measured spike rates (the prior was optimistic)",
            )
    del arch
    out["seconds"]["total"] = time.perf_counter() - t0
    return out


def _proxy_score(arch: Any, chip: Any, settings: TrialSettings) -> float:
    """SAHD score on a fixed batch of training samples (see :mod:`neuronas.search.proxy`)."""
    from neuronas.data import load_dataset
    from neuronas.search.proxy import sahd_score

    ds = load_dataset(
        settings.dataset,
        "train",
        arch.input.timesteps,
        data_root=settings.data_root,
        input_shape=arch.input.shape,  # a downsampled (or space-given) input, as trained
    )
    # the first proxy_batch samples only: a tonic or folder split frames on access, and
    # framing all of it (ds.tensors()) would cost more than the score saves
    import torch

    x = torch.stack([ds[i][0] for i in range(min(int(settings.proxy_batch), len(ds)))])
    return sahd_score(arch, x.transpose(0, 1), chip=chip, seed=int(settings.seed))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
