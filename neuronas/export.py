"""Export a run's feasible Pareto front as files a hardware team can use.

``neuronas export RUN --out DIR`` writes::

    DIR/report.md              read this first: chip, space, budgets, the front, cost breakdowns
    DIR/pareto.csv             one row per front member (objectives, every cost metric, margins)
    DIR/pareto.png             accuracy against each cost objective: front, other trained, rejected
    DIR/01_trial0012/          one folder per member, best accuracy first
        arch.yaml              the architecture (ArchSpec YAML; ``neuronas cost`` / ``train`` read it)
        metrics.json           accuracy mean +- std over chip instances, measured activity, the
                               full CostReport (per layer, per component), budget margins
        model.pt               the trained state_dict (``torch.load(..., weights_only=True)``)
        weights.safetensors    the same tensors as safetensors (no pickle)
        model.nir              a NIR graph with the weights as the chip holds them (see below)

NIR mapping (``nir`` 1.0 primitives; simulation time step ``dt = 1e-4 s`` per timestep, the
convention snnTorch's importer assumes):

* fc -> ``Affine`` (a ``Flatten`` first when the input is spatial); conv -> ``Conv2d``.  The
  weights are the **quantized** weights the crossbar stores, de-quantized (integer level x the
  learned step), i.e. what a digital or ideal array computes.  The per-row-group ADC / sense
  amplifier conversion of partial sums has no NIR primitive; each layer's converter is listed
  in the graph's metadata instead.
* ``lif`` (v <- v + (x - v) / tau, hard reset to 0) -> ``LIF(tau = tau * dt, r = 1,
  v_leak = 0, v_threshold)``: forward-Euler with step dt reproduces it exactly.
* ``if`` -> ``IF(r = 1, v_threshold)``.
* ``ld_lif`` (v <- max(v - d, 0) + x) has no NIR primitive: it is exported as ``IF`` with the
  linear decay ``d`` folded into the preceding layer's bias (v <- v - d + x).  This is exact
  while the membrane stays >= d before the decay and lets the membrane fall below rest
  otherwise (the clamp at rest is lost); the metadata says so.
* soft reset (subtract the threshold) has no NIR primitive either; such networks are exported
  with NIR's reset-to-``v_reset`` and flagged in the metadata.
* max pooling of binary spikes is an OR: ``AvgPool2d(k)`` followed by a memoryless
  ``LIF(tau = dt, r = 1, v_threshold = 0.5 / k^2)`` fires iff any input of the window spiked
  (exact for binary inputs).  Average pooling is ``AvgPool2d``.
* the readout (last weighted layer) has no neuron: the graph's output is its per-timestep
  output current, like neuronas' own network.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

from neuronas.errors import SearchError

__all__ = ["NIR_DT_S", "export_run", "to_nir"]

#: seconds per network timestep in exported NIR graphs (snnTorch's importer assumes 1e-4)
NIR_DT_S = 1e-4


# --------------------------------------------------------------------------------------------
# NIR


def chip_weights(layer: Any) -> tuple[Any, Any]:
    """(weight, bias) numpy arrays as the chip holds them: quantized levels x step."""
    import torch

    with torch.no_grad():
        # the same step the layer's own chip path uses (initialised on first use if never set)
        layer._ensure_weight_step()
        q = layer._quantized() * layer._w_step()
        w = q.reshape(
            layer.weight.shape
            if layer.weight.dim() == 2
            else (layer.fan_out, *layer.weight.shape[1:])
        )
        b = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(layer.fan_out)
    return w.cpu().numpy().astype("float32"), b.cpu().numpy().astype("float32")


def to_nir(model: Any, arch: Any) -> Any:
    """A ``nir.NIRGraph`` of ``model`` (a :class:`neuronas.snn.SpikingNetwork` of ``arch``)."""
    import nir
    import numpy as np

    if arch.input.encoding == "rate":
        raise SearchError(
            "NIR export: rate-encoded inputs (Bernoulli sampling) have no NIR primitive; export archs with events or direct encoding"
        )
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(arch.input.shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    shape: tuple[int, ...] = tuple(arch.input.shape)
    shapes = arch.shapes()
    neuron = arch.neuron
    dt = NIR_DT_S
    notes: list[str] = []
    converters: list[str] = []
    resolved = {r.index: r for r in arch.resolved()}

    def add(name: str, node: Any) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, layer in enumerate(arch.layers):
        mod = model.layers[i]
        out_shape = tuple(shapes[i])
        if layer.kind == "pool":
            k, s, p = layer.kernel, layer.stride, layer.pad
            add(
                f"pool{i}",
                nir.AvgPool2d(
                    kernel_size=np.array([k, k]), stride=np.array([s, s]), padding=np.array([p, p])
                ),
            )
            if layer.pool == "max":
                ones = np.ones(out_shape, dtype=np.float32)
                add(
                    f"pool{i}_or",
                    nir.LIF(
                        tau=dt * ones, r=ones, v_leak=0 * ones, v_threshold=(0.5 / (k * k)) * ones
                    ),
                )
            shape = out_shape
            continue
        r = resolved[i]
        converters.append(
            f"layer {i}: {r.adc_kind}"
            + (f" {r.adc_bits}-bit" if r.adc_kind in ("sar", "flash") else "")
            + f", {r.weight_bits}-bit weights, {r.rows}x{r.cols} arrays"
        )
        w, b = chip_weights(mod)
        if not r.is_readout and neuron.model == "ld_lif":
            b = b - np.float32(neuron.decay_step)
        if layer.kind == "fc":
            if len(shape) == 3:
                add(
                    f"flatten{i}",
                    nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1),
                )
            add(f"fc{i}", nir.Affine(weight=w.reshape(layer.out, -1), bias=b))
        elif layer.kind == "conv":
            add(
                f"conv{i}",
                nir.Conv2d(
                    input_shape=(shape[1], shape[2]),
                    weight=w,
                    stride=layer.stride,
                    padding=layer.pad,
                    dilation=1,
                    groups=1,
                    bias=b,
                ),
            )
        else:
            raise SearchError(
                f"NIR export: layer {i} kind {layer.kind} has no NIR mapping in neuronas yet"
            )
        if not r.is_readout:
            ones = np.ones(out_shape, dtype=np.float32)
            thr = float(neuron.threshold) * ones
            if neuron.model == "lif":
                add(
                    f"lif{i}",
                    nir.LIF(
                        tau=float(neuron.tau) * dt * ones, r=ones, v_leak=0 * ones, v_threshold=thr
                    ),
                )
            else:
                add(f"if{i}", nir.IF(r=ones, v_threshold=thr))
        shape = out_shape
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((prev, "output"))
    if neuron.model == "ld_lif":
        notes.append(
            f"ld_lif exported as IF with the linear decay {neuron.decay_step} folded into the bias; the clamp at rest is not represented"
        )
    if neuron.reset == "soft":
        notes.append(
            "soft reset (subtract threshold) is not representable in NIR; exported with reset to v_reset = 0"
        )
    if any(layer.kind == "pool" and layer.pool == "max" for layer in arch.layers):
        notes.append(
            "max pooling of binary spikes exported as AvgPool2d + memoryless LIF(tau = dt, threshold 0.5/k^2) = OR of the window"
        )
    metadata = {
        "producer": "neuronas",
        "dt_s": dt,
        "timesteps": int(arch.input.timesteps),
        "neuron_model": neuron.model,
        "converters": "; ".join(converters),
        "notes": " | ".join(notes) if notes else "exact",
        "arch_json": arch.to_json(),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(model: Any, arch: Any, path: Path) -> None:
    import nir

    nir.write(str(path), to_nir(model, arch))


# --------------------------------------------------------------------------------------------
# the export


def _checkpoint(run: Any, t: Any) -> Path | None:
    rel = t.user_attrs.get("trial_dir")
    if rel:
        p = run.run_dir / rel / "model.pt"
        if p.is_file():
            return p
    ck = t.user_attrs.get("checkpoint")
    if ck and Path(ck).is_file():
        return Path(ck)
    return None


def _load_model(arch: Any, chip: Any, ckpt: Path) -> Any:
    try:
        from neuronas.train import load_model

        return load_model(arch, chip, ckpt)
    except ImportError:  # pragma: no cover - the trainer module always ships with neuronas
        import torch

        from neuronas.snn import build

        model = build(arch, chip)
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        return model


def _member_metrics(run: Any, t: Any, arch: Any) -> dict[str, Any]:
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
        },
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


def export_run(run: Any, out: Path, *, nir: bool = True, plot: bool = True) -> dict[str, Any]:
    """Write the front of ``run`` (an opened :class:`~neuronas.search.study.Run`) under ``out``."""
    from neuronas.search.study import count_trials, front_trials
    from neuronas.spec import ArchSpec

    cfg = run.config
    trials = run.study.get_trials(deepcopy=False)
    front = front_trials(run.study, list(cfg.objectives), trials)
    c = count_trials(run.study, trials)
    if not front:
        raise SearchError(
            f"run {run.run_dir} has no trained candidate within every hard budget yet ({c.finished} finished: "
            f"{c.infeasible} rejected untrained, {c.trained} trained, {c.failed} failed); nothing to export -- "
            f"run more trials (neuronas search --name {run.run_dir.name} --trials N)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    members = []
    for rank, t in enumerate(front, 1):
        d = out / f"{rank:02d}_trial{t.number:04d}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        arch = ArchSpec.from_dict(t.user_attrs["arch"])
        (d / "arch.yaml").write_text(arch.to_yaml())
        metrics = _member_metrics(run, t, arch)
        files = ["arch.yaml", "metrics.json"]
        ckpt = _checkpoint(run, t)
        nir_note = ""
        if ckpt is not None:
            import torch
            from safetensors.torch import save_file

            shutil.copyfile(ckpt, d / "model.pt")
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            save_file(
                {
                    k: v.detach().contiguous()
                    for k, v in state.items()
                    if isinstance(v, torch.Tensor)
                },
                str(d / "weights.safetensors"),
            )
            files += ["model.pt", "weights.safetensors"]
            if nir:
                model = _load_model(arch, run.chip, ckpt)
                model.eval()
                try:
                    write_nir(model, arch, d / "model.nir")
                    files.append("model.nir")
                    nir_note = to_nir_notes(arch)
                except SearchError as exc:  # a layer or encoding NIR cannot express: say so, go on
                    nir_note = f"no model.nir: {exc}"
        else:
            nir_note = (
                "no checkpoint found (trained on another machine?): weights and NIR not exported"
            )
        metrics["files"] = files
        metrics["nir_notes"] = nir_note
        (d / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        members.append(
            {"rank": rank, "trial": t, "dir": d, "arch": arch, "metrics": metrics, "files": files}
        )
    _write_csv(run, members, out / "pareto.csv")
    png = None
    if plot:
        png = out / "pareto.png"
        _plot(run, trials, front, png)
    report = out / "report.md"
    report.write_text(_report(run, trials, members, png))
    return {
        "out": str(out),
        "report": str(report),
        "members": [str(m["dir"]) for m in members],
        "png": str(png) if png else None,
    }


def to_nir_notes(arch: Any) -> str:
    notes = []
    if arch.neuron.model == "ld_lif":
        notes.append("LD-LIF exported as IF + bias (clamp at rest not represented)")
    if arch.neuron.reset == "soft":
        notes.append("soft reset exported as reset to 0")
    kinds = {r.adc_kind for r in arch.resolved()}
    if kinds - {"digital"}:
        notes.append(
            f"partial-sum conversion ({', '.join(sorted(kinds - {'digital'}))}) not in NIR (listed in metadata)"
        )
    return "; ".join(notes) or "exact"


# --------------------------------------------------------------------------------------------
# pareto.csv, the plot, the report

_METRICS = ("energy_uj", "latency_us", "area_mm2", "memory_kb")


def _describe(arch_dict: dict[str, Any]) -> str:
    from neuronas._cli.show import describe_arch

    return describe_arch(arch_dict)


def _write_csv(run: Any, members: list[dict[str, Any]], path: Path) -> None:
    budgets = list(run.chip.budgets.items())
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "rank",
                "trial",
                "folder",
                "arch",
                "accuracy",
                "accuracy_std",
                *_METRICS,
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
                    _describe(ua["arch"]),
                    _f(ua.get("accuracy")),
                    _f(ua.get("accuracy_std")),
                    *[_f(met.get(k)) for k in _METRICS],
                    *[_f(margins.get(b)) for b in budgets],
                    _f((ua.get("train") or {}).get("train_seconds")),
                ]
            )


def _f(v: Any) -> str:
    if v is None:
        return ""
    return f"{float(v):.6g}"


def _plot(run: Any, trials: list[Any], front: list[Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = run.config
    costs = [o for o in cfg.objectives if o != "accuracy"] or ["energy_uj"]
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.2), squeeze=False)
    front_ids = {t.number for t in front}
    budgets = run.chip.budgets.items()
    for ax, metric in zip(axes[0], costs, strict=False):
        groups: dict[str, tuple[list[float], list[float], str, str]] = {
            "rejected untrained (prior cost)": ([], [], "x", "#bbbbbb"),
            "trained, over budget": ([], [], "s", "#e8a33d"),
            "trained, feasible": ([], [], "o", "#7aa6d6"),
        }
        for t in trials:
            ua = t.user_attrs
            met = ua.get("metrics") or {}
            if metric not in met:
                continue
            st = ua.get("status")
            if st in ("infeasible", "incompatible"):
                groups["rejected untrained (prior cost)"][0].append(met[metric])
                groups["rejected untrained (prior cost)"][1].append(0.0)
            elif st == "infeasible_measured" and ua.get("accuracy") is not None:
                groups["trained, over budget"][0].append(met[metric])
                groups["trained, over budget"][1].append(100 * ua["accuracy"])
            elif st == "ok" and t.number not in front_ids:
                groups["trained, feasible"][0].append(met[metric])
                groups["trained, feasible"][1].append(100 * ua["accuracy"])
        for label, (xs, ys, marker, color) in groups.items():
            if xs:
                ax.scatter(
                    xs,
                    ys,
                    marker=marker,
                    color=color,
                    s=22,
                    label=f"{label} ({len(xs)})",
                    alpha=0.8,
                )
        fx = [(t.user_attrs["metrics"][metric], 100 * t.user_attrs["accuracy"]) for t in front]
        fx.sort()
        if fx:
            # markers only: a line through a 3-objective front projected on two axes would zigzag
            ax.scatter(
                [p[0] for p in fx],
                [p[1] for p in fx],
                marker="o",
                color="#c0392b",
                s=46,
                zorder=3,
                label=f"Pareto front ({len(fx)})",
            )
            for t in front:
                ax.annotate(
                    str(t.number),
                    (t.user_attrs["metrics"][metric], 100 * t.user_attrs["accuracy"]),
                    textcoords="offset points",
                    xytext=(4, 3),
                    fontsize=7,
                )
        if metric in budgets:
            b = budgets[metric]
            ax.axvline(
                b.limit,
                color="k",
                ls="--" if b.hard else ":",
                lw=1,
                label=f"{'hard' if b.hard else 'soft'} budget {b.limit:g}",
            )
        ax.set_xscale("log")
        ax.set_xlabel(metric)
        ax.set_ylabel("accuracy (%) [rejected candidates drawn at 0]")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{run.space.name} on {run.chip.name} ({cfg.dataset}, {cfg.sampler}, {len(trials)} trials)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(float(v), spec)


def _report(run: Any, trials: list[Any], members: list[dict[str, Any]], png: Path | None) -> str:
    from neuronas.search.study import count_trials

    cfg = run.config
    chip = run.chip
    c = count_trials(run.study, trials)
    budgets = chip.budgets.items()
    tech = chip.technology
    per = chip.periphery
    screen = run.study.user_attrs.get("prescreen") or {}
    L: list[str] = []
    L.append(f"# neuronas search report: {run.run_dir.name}\n")
    L.append(
        f"The feasible Pareto front of a search of **{run.space.name}** on chip **{chip.name}** for "
        f"**{cfg.dataset}**, objectives {', '.join(cfg.objectives)}. {len(members)} member(s); "
        "each folder holds `arch.yaml`, `metrics.json`, the weights and `model.nir`.\n"
    )
    L.append("## Chip\n")
    L.append(f"- {chip.description or chip.name}")
    L.append(
        f"- {tech.node_nm:g} nm, {tech.supply_v:g} V, {tech.clock_mhz:g} MHz, {tech.device.kind} cells "
        f"(up to {tech.device.bits_per_cell_max} bit/cell, programming sigma {tech.device.program_sigma:g}, read noise {tech.device.read_noise_sigma:g})"
    )
    L.append(
        f"- converters: {', '.join(per.adc_kinds)} ({per.adc_bits_min}..{per.adc_bits_max} bits, {per.columns_per_adc} columns per ADC); "
        f"neuron units: {', '.join(per.neuron_unit.models)}; arrays up to {chip.capacity.array_rows_max}x{chip.capacity.array_cols_max}, {chip.capacity.arrays} on chip\n"
    )
    L.append("### Budgets (per inference)\n")
    if budgets:
        L.append("| metric | limit | kind | rejected untrained | best front member | verdict |")
        L.append("|---|---|---|---|---|---|")
        rejected = _rejections(trials)
        for m, b in budgets.items():
            vals = [mm["trial"].user_attrs["metrics"][m] for mm in members]
            best_margin = max(((v - b.limit) / b.limit for v in vals), default=None)
            closest = max(vals) if vals else None
            verdict = _verdict(rejected.get(m, 0), best_margin, b.hard)
            L.append(
                f"| {m} | {b.limit:g} | {'hard' if b.hard else 'soft'} | {rejected.get(m, 0)} | "
                f"{_fmt(closest)} ({'' if best_margin is None else f'{100 * best_margin:+.0f}%'}) | {verdict} |"
            )
        L.append(
            "\n*best front member*: the front's value closest to the limit and its margin (value - limit) / limit; "
            "a budget **binds** when it rejected candidates and the front runs up against it (within 25%).\n"
        )
    else:
        L.append("The chip sets no budgets.\n")
    L.append("## Search\n")
    L.append(
        f"- space: {run.space.name} ({run.space.description}); sampler {cfg.sampler}, seed {cfg.seed}"
    )
    L.append(
        f"- fidelity: {cfg.epochs} epoch(s) per candidate"
        + (f", at most {cfg.max_train_samples} training samples" if cfg.max_train_samples else "")
        + f"; accuracy = mean +- std over {cfg.eval_instances} noisy chip instances"
    )
    if screen:
        L.append(
            f"- before the search, {screen.get('feasible', 0)} of {screen.get('buildable', 0)} random candidates "
            f"({100 * screen.get('feasible_share', 0):.0f}%) fitted every hard budget at the prior spike rate"
        )
    L.append(
        f"- {c.finished} finished trials: {c.trained} trained, **{c.infeasible} rejected untrained** (over a hard budget, "
        f"priced in milliseconds), {c.infeasible_measured} over budget once their measured spike rates were priced, "
        f"{c.pruned} stopped early, {c.failed} failed"
        + (f", {c.interrupted} interrupted and retried" if c.interrupted else "")
    )
    proposals = [t.system_attrs.get("neuronas:proposal") for t in trials]
    proposals = [p for p in proposals if p]
    if proposals:
        guided = sum(1 for p in proposals if p.get("how") == "expected hypervolume improvement")
        L.append(
            f"- the cost-guided sampler priced {sum(int(p.get('drawn', 0)) for p in proposals)} random candidates "
            f"({sum(int(p.get('candidates', 0)) for p in proposals)} within every hard budget and not tried before) "
            f"to propose {len(proposals)} trials: {len(proposals) - guided} at random among those, then {guided} by "
            f"expected hypervolume improvement"
        )
    secs_train = sum(
        float((t.user_attrs.get("seconds") or {}).get("train", 0.0) or 0.0) for t in trials
    )
    secs_rej = sum(
        float((t.user_attrs.get("seconds") or {}).get("wall", 0.0) or 0.0)
        for t in trials
        if t.user_attrs.get("status") in ("infeasible", "incompatible")
    )
    L.append(
        f"- time: {secs_train:.0f} s training; {secs_rej:.2f} s on all rejected candidates together\n"
    )
    L.append("## Pareto front\n")
    if png is not None:
        L.append(f"![Pareto front]({png.name})\n")
    L.append(
        "| # | trial | architecture | accuracy | energy_uj | latency_us | area_mm2 | memory_kb | folder |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|")
    for mm in members:
        ua = mm["trial"].user_attrs
        met = ua.get("metrics") or {}
        acc = f"{100 * ua['accuracy']:.1f} +- {100 * (ua.get('accuracy_std') or 0):.1f}%"
        L.append(
            f"| {mm['rank']} | {mm['trial'].number} | `{_describe(ua['arch'])}` | {acc} | {_fmt(met.get('energy_uj'))} | "
            f"{_fmt(met.get('latency_us'))} | {_fmt(met.get('area_mm2'))} | {_fmt(met.get('memory_kb'))} | `{mm['dir'].name}/` |"
        )
    L.append("")
    L.append(
        "Architecture shorthand: layers (`mp2` max-pool 2, `fc64`, `c16k3` conv 16 channels 3x3), `T` timesteps, "
        "neuron, `w` weight bits, converter (`SA` 1-bit sense amplifier, `sar4` 4-bit SAR ADC, `dig` digital CIM), "
        "crossbar rows x cols, `OS` output-stationary.\n"
    )
    L.append("## Cost breakdown per member\n")
    for mm in members:
        ua = mm["trial"].user_attrs
        cost = ua.get("cost") or {}
        L.append(f"### {mm['rank']}. trial {mm['trial'].number}: `{_describe(ua['arch'])}`\n")
        act = (ua.get("train") or {}).get("activity") or {}
        if act.get("input_rates"):
            L.append(
                "Measured spike rates per weighted layer (input): "
                + ", ".join(f"{r:.3f}" for r in act["input_rates"])
                + "\n"
            )
        comps = cost.get("components") or {}
        total = sum(float(v) for v in comps.values()) or 1.0
        if comps:
            L.append("| component | energy_uj | share |")
            L.append("|---|---|---|")
            for k, v in sorted(comps.items(), key=lambda kv: -float(kv[1])):
                L.append(f"| {k} | {_fmt(v)} | {100 * float(v) / total:.1f}% |")
            L.append("")
        layers = cost.get("layers") or []
        if layers:
            keys = [
                k
                for k in (
                    "index",
                    "kind",
                    "arrays",
                    "utilisation",
                    "energy_uj",
                    "latency_us",
                    "area_mm2",
                    "memory_kb",
                )
                if k in layers[0]
            ]
            L.append("| " + " | ".join(keys) + " |")
            L.append("|" + "---|" * len(keys))
            for lay in layers:
                L.append(
                    "| "
                    + " | ".join(
                        _fmt(lay[k])
                        if isinstance(lay.get(k), (int, float)) and not isinstance(lay.get(k), bool)
                        else str(lay.get(k))
                        for k in keys
                    )
                    + " |"
                )
            L.append("")
        extra = []
        for k in ("pipelined", "arrays", "utilisation", "sops"):
            if k in cost:
                extra.append(f"{k} {cost[k] if not isinstance(cost[k], float) else _fmt(cost[k])}")
        if extra:
            L.append("Totals: " + ", ".join(extra) + "\n")
        notes = mm["metrics"].get("nir_notes")
        if notes:
            L.append(f"NIR: {notes}\n")
    L.append("## Files\n")
    L.append("- `pareto.csv`: the front as a table; `pareto.png`: the plot above")
    L.append(
        "- per member: `arch.yaml` (`neuronas cost --arch arch.yaml --chip ...` re-prices it), `metrics.json`, "
        "`model.pt` (`torch.load(path, weights_only=True)`), `weights.safetensors`, `model.nir` "
        "(`nir.read`; e.g. `snntorch.import_nir.import_from_nir`)"
    )
    L.append(
        f"- NIR graphs use dt = {NIR_DT_S:g} s per timestep; weights are the quantized values the arrays hold; "
        "see the graph metadata for converters and approximations (LD-LIF, soft reset)\n"
    )
    return "\n".join(L) + "\n"


def _rejections(trials: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        if t.user_attrs.get("status") not in ("infeasible", "infeasible_measured"):
            continue
        for v in t.user_attrs.get("violations") or []:
            if v.get("hard"):
                out[v["metric"]] = out.get(v["metric"], 0) + 1
    return out


def _verdict(rejected: int, best_margin: float | None, hard: bool) -> str:
    if best_margin is None:
        return "-"
    if best_margin > 0:
        return "soft: exceeded by front members (reported to the sampler, not enforced)"
    near = best_margin > -0.25
    if rejected and near:
        return "**binds**"
    if rejected:
        return f"rejects candidates; front stays {100 * -best_margin:.0f}% below"
    if near:
        return "front close to it, rejected none"
    return "slack"
