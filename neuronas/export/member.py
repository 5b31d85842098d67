"""One front member's folder: ``arch.yaml``, ``metrics.json``, the weights and ``model.nir``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from neuronas.errors import ExportError, NeuronasError, SearchError
from neuronas.settings import REPORT
from neuronas.spec import ArchSpec

__all__ = [
    "METRICS",
    "checkpoint_path",
    "fmt_number",
    "interval_text",
    "member_metrics",
    "report_accuracy",
    "write_csv",
    "write_member",
]

#: cost metrics shown per member (pareto.csv, the report's front table)
METRICS = ("energy_uj", "latency_us", "area_mm2", "memory_kb")


def checkpoint_path(run: Any, t: Any) -> Path | None:
    """The trial's ``model.pt``: under the run folder (relative, so a moved run still finds it),
    else the absolute path recorded by an older run."""
    rel = t.user_attrs.get("trial_dir")
    if rel:
        p = run.run_dir / rel / "model.pt"
        if p.is_file():
            return p
    ck = t.user_attrs.get("checkpoint")
    if ck and Path(ck).is_file():
        return Path(ck)
    return None


def member_metrics(run: Any, t: Any) -> dict[str, Any]:
    """What ``metrics.json`` holds besides the file list (plain JSON values, no paths)."""
    ua = t.user_attrs
    train = ua.get("train") or {}
    split = ua.get("accuracy_split") or run.config.accuracy_split
    budgets = {m: {"limit": b.limit, "hard": b.hard} for m, b in run.chip.budgets.items().items()}
    return {
        "trial": t.number,
        "arch_key": ua.get("arch_key"),
        "objectives": dict(zip(run.config.objectives, t.values, strict=False)),
        "accuracy": {
            # the search's own figures: what it selected the front by
            "split": split,
            "test_used_for_selection": split == "test",
            "mean": ua.get("accuracy"),
            "std": ua.get("accuracy_std"),
            "per_instance": train.get("accuracies"),
            "float": train.get("float_accuracy"),
            "instances": run.config.eval_instances,
            # the export's measurement of the chosen front (set by write_member: report_accuracy)
            "interval": None,
            "validation": None,
            "test": None,
            "nir": None,  # model.nir's own accuracy on the test split (set when it is written)
            "nir_ideal": None,  # model_ideal.nir's (exact sums; written when the two differ)
            "test_samples": None,  # how many test samples these accuracies count
        },
        **(
            {
                "aee": {
                    "mean": ua.get("aee"),
                    "std": ua.get("aee_std"),
                    "per_instance": train.get("aees"),
                    "float": train.get("float_aee"),
                    "events_mean": train.get("aee_events_mean"),
                    "baseline_mean_flow": train.get("baseline_aee"),
                    "baseline_mean_flow_events": train.get("baseline_aee_events"),
                    "instances": run.config.eval_instances,
                    "unit": "px",
                }
            }
            if ua.get("aee") is not None
            else {}
        ),
        "activity": train.get("activity"),
        "cost": ua.get("cost"),
        "metrics": ua.get("metrics"),
        "prior_metrics": ua.get("prior_metrics"),
        "margins": ua.get("margins"),
        "violations": ua.get("violations"),
        "budgets": budgets,
        "training": {k: train.get(k) for k in ("status", "epochs_run", "train_seconds")},
        "history": ua.get("history"),
        "chip": run.chip.name,
        "dataset": run.config.dataset,
    }


def _read_state(ckpt: Path, trial: int) -> dict[str, Any]:
    """The checkpoint as a weights-only state_dict; anything else is refused in one line (a
    truncated, empty or pickled-object file is never copied into the export)."""
    import torch

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file; all mean "unreadable"
        text = str(exc).strip()
        why = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise ExportError(
            f"{ckpt}: trial {trial}'s checkpoint is not a readable weights-only state_dict "
            f"({type(exc).__name__}: {why[:160]}); retrain the trial or delete the file"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(
            f"{ckpt}: trial {trial}'s checkpoint holds {type(state).__name__}, expected a state_dict "
            "of tensors; retrain the trial or delete the file"
        )
    return state


def _load_model(arch: ArchSpec, chip: Any, state: dict[str, Any], ckpt: Path, trial: int) -> Any:
    from neuronas.snn import build

    model = build(arch, chip)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ExportError(
            f"{ckpt}: trial {trial}'s checkpoint does not fit its architecture ({first[:160]})"
        ) from None
    model.set_hardware_awareness(1.0)
    model.eval()
    return model


def _test_split(run: Any, arch: ArchSpec, cache: dict[Any, Any] | None = None) -> tuple[Any, Any]:
    """The test samples the search evaluated the member on (the first ``max_eval_samples``);
    ``cache`` keeps them for the next member of the same export."""
    import torch

    from neuronas.data import check_input_shape, load_dataset

    cfg = run.config
    shape = tuple(check_input_shape(cfg.dataset, arch.input.shape))
    key = (cfg.dataset, arch.input.timesteps, shape, cfg.data_root, cfg.max_eval_samples)
    cache = {} if cache is None else cache
    if key not in cache:
        ds = load_dataset(
            cfg.dataset, "test", arch.input.timesteps, data_root=cfg.data_root, input_shape=shape
        )
        if hasattr(ds, "tensors"):
            x, y = ds.tensors()
        else:  # tonic datasets: materialise only what is evaluated
            n = len(ds) if cfg.max_eval_samples is None else min(len(ds), cfg.max_eval_samples)
            items = [ds[i] for i in range(n)]
            x = torch.stack([torch.as_tensor(a, dtype=torch.float32) for a, _ in items])
            targets = [b for _, b in items]
            y = (
                torch.stack([torch.as_tensor(b) for b in targets])
                if torch.is_tensor(targets[0])
                else torch.tensor(targets)
            )
        y = torch.as_tensor(y)
        # class indices as int64, flow fields as float32
        x, y = torch.as_tensor(x).float(), (y.float() if y.is_floating_point() else y.long())
        if cfg.max_eval_samples is not None:
            x, y = x[: cfg.max_eval_samples], y[: cfg.max_eval_samples]
        cache[key] = (x, y)
    return cache[key]


def _validation_split(run: Any, arch: ArchSpec) -> tuple[Any, Any]:
    """The validation samples the search measured the member's chip accuracy on (the trainer's
    split for the run's seed and caps)."""
    from neuronas.data import check_input_shape
    from neuronas.train import validation_tensors

    cfg = run.config
    s = cfg.trial_settings()
    return validation_tensors(
        cfg.dataset,
        arch.input.timesteps,
        seed=s.seed,
        shape=tuple(check_input_shape(cfg.dataset, arch.input.shape)),
        data_root=cfg.data_root,
        val_fraction=s.val_fraction,
        max_train_samples=s.max_train_samples,
        max_eval_samples=s.max_eval_samples,
    )


def interval_text(instances: int, confidence: float) -> str:
    """How the export's accuracy intervals are computed (metrics.json and the report say it)."""
    return (
        f"{100 * confidence:g}% two-sided Student-t interval of the mean chip accuracy over "
        f"{instances} chip instances (device noise fixed per instance, seeded from the run's seed "
        "and the instance number): chip-to-chip variation, not the sampling error of the finite "
        "evaluation set"
    )


def report_accuracy(
    run: Any,
    arch: ArchSpec,
    model: Any,
    cache: dict[Any, Any],
    *,
    instances: int,
    confidence: float,
    task: Any = None,
) -> dict[str, Any]:
    """The chosen member's chip accuracy (``task``: a :class:`neuronas.tasks.Task`; None: a
    classifier's accuracy, the flow task: AEE in px) on the validation and the test split over ``instances``
    chip instances (instance k: :func:`neuronas.train.chip_instance_seed` of the run's seed and
    k, as in the search, so the first ``eval_instances`` validation figures repeat the search's),
    each with its mean, interval and per-instance values.  The only place the test split's
    labels are read, after the front is chosen."""
    from neuronas.train import confidence_interval, evaluate_on_chip

    seed = run.config.trial_settings().seed
    out: dict[str, Any] = {}
    for split, (x, y) in (
        ("validation", _validation_split(run, arch)),
        ("test", _test_split(run, arch, cache)),
    ):
        per, float_acc, _ = evaluate_on_chip(
            model, x, y, eval_instances=instances, seed=seed, measure_activity=False, task=task
        )
        mean, half = confidence_interval(per, confidence)
        out[split] = {
            "mean": mean,
            "low": mean - half,
            "high": mean + half,
            "half_width": half,
            "per_instance": per,
            "instances": len(per),
            "samples": int(len(y)),
            "float": float_acc,
        }
    return out


def nir_accuracy(
    run: Any, arch: ArchSpec, graph: Any, cache: dict[Any, Any] | None = None
) -> float | None:
    """The NIR graph's own test accuracy, run by NIR's definitions (ideal cells; the converters
    the graph represents): what another framework computes from it.  None for a dense task."""
    from neuronas.snn.nir import run_graph

    if arch.task != "classification":
        return None
    x, y = _test_split(run, arch, cache)
    correct = 0
    for i in range(0, len(y), 256):
        out = run_graph(graph, x[i : i + 256].transpose(0, 1)).mean(0)
        correct += int((out.reshape(out.shape[0], -1).argmax(-1) == y[i : i + 256]).sum())
    return correct / max(1, len(y))


def _check_chip_package(
    run: Any, arch: ArchSpec, state: dict[str, Any], package: Path, cache: dict[Any, Any]
) -> dict[str, Any]:
    """Rebuild every layer from the package and compare it with the member's chip mode on an
    ideal device, on the first test samples: what metrics.json records as the package's check."""
    from neuronas.export.chip import check_package
    from neuronas.snn import build

    try:
        x, _ = _test_split(run, arch, cache)
    except NeuronasError as exc:
        return {"checked": False, "why": str(exc)}
    ideal = build(arch, None)  # the same weights and converters, no device noise
    ideal.load_state_dict(state)
    ideal.set_hardware_awareness(1.0)
    ideal.eval()
    sample = x[:8].transpose(0, 1)
    deviation = check_package(ideal, arch, package, sample)
    return {"checked": True, "samples": int(sample.shape[1]), "max_relative_deviation": deviation}


def write_member(
    run: Any,
    t: Any,
    d: Path,
    *,
    nir: bool = True,
    chip_package: bool = True,
    data_cache: dict[Any, Any] | None = None,
    instances: int = REPORT.instances,
    confidence: float = REPORT.confidence,
) -> dict[str, Any]:
    """Write member ``t`` into the (new, empty) folder ``d``; its ``metrics.json`` content.
    ``data_cache``: test samples shared by the members of one export.  ``instances`` /
    ``confidence``: the chip instances and interval of the validation and test accuracy
    (:func:`report_accuracy`)."""
    data_cache = {} if data_cache is None else data_cache
    arch = ArchSpec.from_dict(t.user_attrs["arch"])
    (d / "arch.yaml").write_text(arch.to_yaml())
    metrics = member_metrics(run, t)
    metrics["accuracy"]["interval"] = interval_text(instances, confidence)
    files = ["arch.yaml", "metrics.json"]
    ckpt = checkpoint_path(run, t)
    nir_note = ""
    chip_mapping = None
    if ckpt is not None:
        import torch
        from safetensors.torch import save_file

        state = _read_state(ckpt, t.number)
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        # written from the validated tensors, not copied: only a plain state_dict leaves the run
        torch.save(tensors, d / "model.pt")
        save_file(tensors, str(d / "weights.safetensors"))
        files += ["model.pt", "weights.safetensors"]
        model = _load_model(arch, run.chip, state, ckpt, t.number)
        if arch.task == "classification":
            try:
                metrics["accuracy"].update(
                    report_accuracy(
                        run, arch, model, data_cache, instances=instances, confidence=confidence
                    )
                )
            except NeuronasError as exc:  # the data is not here: say so, go on
                metrics["accuracy"]["not_measured"] = str(exc)
            else:
                metrics["accuracy"]["test_samples"] = metrics["accuracy"]["test"]["samples"]
        elif "aee" in metrics:  # a flow network: the same measurement of its AEE (px)
            from neuronas.tasks import TASKS

            try:
                metrics["aee"].update(
                    report_accuracy(
                        run,
                        arch,
                        model,
                        data_cache,
                        instances=instances,
                        confidence=confidence,
                        task=TASKS["flow"],
                    )
                )
            except NeuronasError as exc:
                metrics["aee"]["not_measured"] = str(exc)
        if nir or chip_package:
            if chip_package:
                from neuronas.export.chip import write_chip_package

                chip_mapping = write_chip_package(model, arch, run.chip, d / "chip")
                files.append("chip/")
                metrics["chip_package"] = _check_chip_package(
                    run, arch, state, d / "chip", data_cache
                )
            if nir:
                import nir as nir_lib

                from neuronas.snn.nir import has_converters, nir_notes, to_nir

                try:
                    graph = to_nir(model, arch)
                except SearchError as exc:  # a layer or encoding NIR cannot express: say so, go on
                    nir_note = f"no model.nir: {exc}"
                else:
                    nir_lib.write(str(d / "model.nir"), graph)
                    files.append("model.nir")
                    ideal = None
                    if has_converters(arch):
                        # the same network with exact sums (a digital macro's): what the
                        # converters cost in accuracy, and a smaller graph
                        ideal = to_nir(model, arch, converters=False)
                        nir_lib.write(str(d / "model_ideal.nir"), ideal)
                        files.append("model_ideal.nir")
                    nir_note = nir_notes(arch)
                    try:
                        metrics["accuracy"]["nir"] = nir_accuracy(run, arch, graph, data_cache)
                        if ideal is not None:
                            metrics["accuracy"]["nir_ideal"] = nir_accuracy(
                                run, arch, ideal, data_cache
                            )
                        metrics["accuracy"]["test_samples"] = len(
                            _test_split(run, arch, data_cache)[1]
                        )
                    except NeuronasError as exc:  # the test data is not here: say so, go on
                        nir_note += f"; NIR accuracy not measured: {exc}"
    else:
        nir_note = "no checkpoint found (trained on another machine?): weights and NIR not exported"
    metrics["files"] = files
    metrics["nir_notes"] = nir_note
    (d / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    return {
        "trial": t,
        "dir": d,
        "arch": arch,
        "metrics": metrics,
        "files": files,
        "chip_mapping": chip_mapping,
    }


def fmt_number(v: Any) -> str:
    """A CSV cell: 6 significant digits, empty for a missing value."""
    if v is None:
        return ""
    return f"{float(v):.6g}"


def write_csv(run: Any, members: list[dict[str, Any]], path: Path) -> None:
    """``pareto.csv``: one row per member (the search's accuracy and the split it is on, the
    export's validation and test accuracy with their interval bounds, cost metrics, margins,
    and whether it is on the Pareto front: 0 for a trial chosen with ``--trials`` off it)."""
    budgets = list(run.chip.budgets.items())
    flow = any(m["trial"].user_attrs.get("aee") is not None for m in members)
    quality = (
        ("aee", "aee_std", "aee_events", "baseline_aee") if flow else ("accuracy", "accuracy_std")
    )
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "rank",
                "trial",
                "folder",
                "arch",
                *quality,
                "accuracy_split",
                "val_accuracy",
                "val_accuracy_low",
                "val_accuracy_high",
                "test_accuracy",
                "test_accuracy_low",
                "test_accuracy_high",
                *METRICS,
                *[f"margin_{m}" for m in budgets],
                "trained_seconds",
                "on_front",
            ]
        )
        for m in members:
            t = m["trial"]
            ua = t.user_attrs
            met = ua.get("metrics") or {}
            margins = ua.get("margins") or {}
            acc = m["metrics"].get("accuracy") or {}
            w.writerow(
                [
                    m["rank"],
                    t.number,
                    m["dir"].name,
                    m["arch"].describe(),
                    *[fmt_number(ua.get(q)) for q in quality],
                    acc.get("split", ""),
                    *[
                        fmt_number((acc.get(split) or {}).get(k))
                        for split in ("validation", "test")
                        for k in ("mean", "low", "high")
                    ],
                    *[fmt_number(met.get(k)) for k in METRICS],
                    *[fmt_number(margins.get(b)) for b in budgets],
                    fmt_number((ua.get("train") or {}).get("train_seconds")),
                    int(m.get("on_front", True)),
                ]
            )
