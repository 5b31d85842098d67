"""One front member's folder: ``arch.yaml``, ``metrics.json``, the weights and ``model.nir``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from neuronas.errors import ExportError, NeuronasError, SearchError
from neuronas.spec import ArchSpec

__all__ = [
    "METRICS",
    "checkpoint_path",
    "fmt_number",
    "member_metrics",
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
    budgets = {m: {"limit": b.limit, "hard": b.hard} for m, b in run.chip.budgets.items().items()}
    return {
        "trial": t.number,
        "arch_key": ua.get("arch_key"),
        "objectives": dict(zip(run.config.objectives, t.values, strict=False)),
        "accuracy": {
            "mean": ua.get("accuracy"),
            "std": ua.get("accuracy_std"),
            "per_instance": train.get("accuracies"),
            "float": train.get("float_accuracy"),
            "instances": run.config.eval_instances,
            "nir": None,  # the NIR graph's own accuracy (set when model.nir is written)
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


def nir_accuracy(
    run: Any, arch: ArchSpec, graph: Any, cache: dict[Any, Any] | None = None
) -> float | None:
    """The NIR graph's own test accuracy, run by NIR's definitions (no converters, ideal cells):
    what another framework computes from ``model.nir``.  None for a dense task."""
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
) -> dict[str, Any]:
    """Write member ``t`` into the (new, empty) folder ``d``; its ``metrics.json`` content.
    ``data_cache``: test samples shared by the members of one export."""
    data_cache = {} if data_cache is None else data_cache
    arch = ArchSpec.from_dict(t.user_attrs["arch"])
    (d / "arch.yaml").write_text(arch.to_yaml())
    metrics = member_metrics(run, t)
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
        if nir or chip_package:
            model = _load_model(arch, run.chip, state, ckpt, t.number)
            if chip_package:
                from neuronas.export.chip import write_chip_package

                chip_mapping = write_chip_package(model, arch, run.chip, d / "chip")
                files.append("chip/")
                metrics["chip_package"] = _check_chip_package(
                    run, arch, state, d / "chip", data_cache
                )
            if nir:
                import nir as nir_lib

                from neuronas.snn.nir import nir_notes, to_nir

                try:
                    graph = to_nir(model, arch)
                except SearchError as exc:  # a layer or encoding NIR cannot express: say so, go on
                    nir_note = f"no model.nir: {exc}"
                else:
                    nir_lib.write(str(d / "model.nir"), graph)
                    files.append("model.nir")
                    nir_note = nir_notes(arch)
                    try:
                        metrics["accuracy"]["nir"] = nir_accuracy(run, arch, graph, data_cache)
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
    """``pareto.csv``: one row per member (objectives, cost metrics, budget margins)."""
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
                *METRICS,
                *[f"margin_{m}" for m in budgets],
                "trained_seconds",
            ]
        )
        for m in members:
            t = m["trial"]
            ua = t.user_attrs
            met = ua.get("metrics") or {}
            margins = ua.get("margins") or {}
            w.writerow(
                [
                    m["rank"],
                    t.number,
                    m["dir"].name,
                    m["arch"].describe(),
                    *[fmt_number(ua.get(q)) for q in quality],
                    *[fmt_number(met.get(k)) for k in METRICS],
                    *[fmt_number(margins.get(b)) for b in budgets],
                    fmt_number((ua.get("train") or {}).get("train_seconds")),
                ]
            )
