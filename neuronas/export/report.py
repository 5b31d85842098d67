"""``report.md``: what a person reads first.  One function per section, each returning its lines."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from neuronas.settings import REPORT
from neuronas.snn.nir import NIR_DT_S

__all__ = ["render_report"]


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(float(v), spec)


def render_report(
    run: Any,
    trials: list[Any],
    members: list[dict[str, Any]],
    png: Path | None,
    *,
    front: list[Any] | None = None,
    instances: int = REPORT.instances,
    confidence: float = REPORT.confidence,
) -> str:
    """The whole ``report.md`` of an export: of the feasible Pareto front ``front`` (None: the
    members are the front), or of chosen trials (``members`` with ``on_front`` False)."""
    lines: list[str] = []
    front = [mm["trial"] for mm in members] if front is None else front
    for section in (
        _title(run, members, front),
        _chip(run),
        _budgets(run, trials, front),
        _search(run, trials),
        _honesty(run, instances, confidence),
        _front(members, png),
        _members(members),
        _files(members),
    ):
        lines += section
    return "\n".join(lines) + "\n"


def _title(run: Any, members: list[dict[str, Any]], front: list[Any]) -> list[str]:
    cfg = run.config
    numbers = {t.number for t in front}
    what = "The feasible Pareto front"
    if {mm["trial"].number for mm in members} != numbers:
        on = [mm["trial"].number for mm in members if mm["trial"].number in numbers]
        what = (
            f"Trials chosen for export (`neuronas export --trials`; on the front: "
            f"{', '.join(map(str, on)) or 'none'}; the front is trials "
            f"{', '.join(str(t.number) for t in front)})"
        )
    return [
        f"# neuronas search report: {run.run_dir.name}\n",
        f"{what} of a search of **{run.space.name}** on chip **{run.chip.name}** for "
        f"**{cfg.dataset}**, objectives {', '.join(cfg.objectives)}. {len(members)} member(s); "
        "each folder holds `arch.yaml`, `metrics.json`, the weights, `model.nir` and the chip "
        "programming package `chip/`.\n",
    ]


def _chip(run: Any) -> list[str]:
    chip = run.chip
    tech, per = chip.technology, chip.periphery
    return [
        "## Chip\n",
        f"- {chip.description or chip.name}",
        f"- {tech.node_nm:g} nm, {tech.supply_v:g} V, {tech.clock_mhz:g} MHz, {tech.device.kind} cells "
        f"(up to {tech.device.bits_per_cell_max} bit/cell, programming sigma {tech.device.program_sigma:g}, "
        f"read noise {tech.device.read_noise_sigma:g})",
        f"- converters: {', '.join(per.adc_kinds)} ({per.adc_bits_min}..{per.adc_bits_max} bits, "
        f"{per.columns_per_adc} columns per ADC); neuron units: {', '.join(per.neuron_unit.models)}; "
        f"arrays up to {chip.capacity.array_rows_max}x{chip.capacity.array_cols_max}, "
        f"{chip.capacity.arrays} on chip\n",
    ]


def _rejections(trials: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        if t.user_attrs.get("status") not in ("infeasible", "infeasible_measured"):
            continue
        for v in t.user_attrs.get("violations") or []:
            if v.get("hard"):
                out[v["metric"]] = out.get(v["metric"], 0) + 1
    return out


def _verdict(rejected: int, best_margin: float | None) -> str:
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


def _budgets(run: Any, trials: list[Any], front: list[Any]) -> list[str]:
    budgets = run.chip.budgets.items()
    lines = ["### Budgets (per inference)\n"]
    if not budgets:
        return [*lines, "The chip sets no budgets.\n"]
    screen = run.study.user_attrs.get("prescreen") or {}
    screened = int(screen.get("buildable") or 0)
    over_screen = screen.get("broken") or {}
    lines += [
        f"| metric | limit | kind | over it: of {screened} priced before the search | rejected trials | "
        "best front member | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    rejected = _rejections(trials)
    for m, b in budgets.items():
        vals = [t.user_attrs["metrics"][m] for t in front]
        best_margin = max(((v - b.limit) / b.limit for v in vals), default=None)
        closest = max(vals) if vals else None
        margin = "" if best_margin is None else f"{100 * best_margin:+.0f}%"
        priced_over = int(over_screen.get(m, 0))
        lines.append(
            f"| {m} | {b.limit:g} | {'hard' if b.hard else 'soft'} | "
            f"{priced_over if b.hard and screen else '-'} | {rejected.get(m, 0)} | "
            f"{_fmt(closest)} ({margin}) | {_verdict(priced_over + rejected.get(m, 0), best_margin)} |"
        )
    lines.append(
        "\n*over it*: candidates priced at the prior spike rate that break the (hard) budget, among the "
        "random candidates priced before the search, and trials rejected untrained or over budget once "
        "measured; *best front member*: the front's value closest to the limit and its margin "
        "(value - limit) / limit.  A budget **binds** when candidates were over it and the front runs "
        "up against it (within 25%).\n"
    )
    return lines


def _search(run: Any, trials: list[Any]) -> list[str]:
    from neuronas.search.study import count_trials

    cfg = run.config
    c = count_trials(run.study, trials)
    screen = run.study.user_attrs.get("prescreen") or {}
    lines = [
        "## Search\n",
        f"- space: {run.space.name} ({run.space.description}); sampler {cfg.sampler}, seed {cfg.seed}",
        f"- fidelity: {cfg.epochs} epoch(s) per candidate"
        + (f", at most {cfg.max_train_samples} training samples" if cfg.max_train_samples else "")
        + f"; accuracy = chip accuracy on the {cfg.accuracy_split} split, mean +- std over "
        f"{cfg.eval_instances} noisy chip instances",
    ]
    if screen:
        lines.append(
            f"- before the search, {screen.get('feasible', 0)} of {screen.get('buildable', 0)} random candidates "
            f"({100 * screen.get('feasible_share', 0):.0f}%) fitted every hard budget at the prior spike rate"
        )
    lines.append(
        f"- {c.finished} finished trials: {c.trained} trained, **{c.infeasible} rejected untrained** (over a hard "
        f"budget, priced in milliseconds), {c.infeasible_measured} over budget once their measured spike rates "
        f"were priced, {c.pruned} stopped early, {c.failed} failed"
        + (f", {c.interrupted} interrupted and retried" if c.interrupted else "")
    )
    proposals = [p for p in (t.system_attrs.get("neuronas:proposal") for t in trials) if p]
    if proposals:
        guided = sum(1 for p in proposals if p.get("how") == "expected hypervolume improvement")
        lines.append(
            f"- the cost-guided sampler priced {sum(int(p.get('drawn', 0)) for p in proposals)} random candidates "
            f"({sum(int(p.get('candidates', 0)) for p in proposals)} within every hard budget and not tried "
            f"before) to propose {len(proposals)} trials: {len(proposals) - guided} at random among those, "
            f"then {guided} by expected hypervolume improvement"
        )
    secs_train = sum(
        float((t.user_attrs.get("seconds") or {}).get("train", 0.0) or 0.0) for t in trials
    )
    secs_rej = sum(
        float((t.user_attrs.get("seconds") or {}).get("wall", 0.0) or 0.0)
        for t in trials
        if t.user_attrs.get("status") in ("infeasible", "incompatible")
    )
    lines.append(
        f"- time: {secs_train:.0f} s training; {secs_rej:.2f} s on all rejected candidates together\n"
    )
    return lines


def _honesty(run: Any, instances: int, confidence: float) -> list[str]:
    """Which split chose the front and which reports it."""
    from neuronas.export.member import interval_text

    split = run.config.accuracy_split
    if split == "test":
        chosen = (
            "**This run selected its front by chip accuracy on the test split** (it was made "
            "before selection moved to the validation split): its test accuracies below are "
            "optimistic, the front having been chosen on them."
        )
    else:
        chosen = (
            f"Every selection of the search (the objective, the sampler, early stopping, the "
            f"front) used chip accuracy on the {split} split held out of the training data. "
            "**The test split was not used for selection**: it was read only by this export, "
            "after the front was chosen."
        )
    return [
        "## Accuracy: selection and report\n",
        chosen + "\n",
        f"Each member is then measured on the validation and the test split over {instances} "
        f"chip instances; intervals: {interval_text(instances, confidence)}.\n",
    ]


def _interval(acc: dict[str, Any] | None, px: bool = False) -> str:
    """A measured split's mean [interval]: accuracy in %, or AEE in pixels (``px``)."""
    if not acc or acc.get("mean") is None:
        return "-"
    if px:
        return f"{acc['mean']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}] px"
    return f"{_pct(acc['mean'])} [{_pct(acc['low'])}, {_pct(acc['high'])}]"


def _front(members: list[dict[str, Any]], png: Path | None) -> list[str]:
    off = [mm["trial"].number for mm in members if not mm.get("on_front", True)]
    lines = ["## Pareto front\n" if not off else "## Exported trials\n"]
    if off:
        lines.append(f"Not on the Pareto front (chosen with `--trials`): trials {off}.\n")
    if png is not None:
        lines.append(f"![Pareto front]({png.name})\n")
    lines += [
        "| # | trial | architecture | search accuracy or AEE (selected by) | validation (interval) | "
        "test (interval) | NIR graph | energy_uj | latency_us | area_mm2 | memory_kb | folder |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mm in members:
        ua = mm["trial"].user_attrs
        met = ua.get("metrics") or {}
        macc = mm["metrics"].get("accuracy") or {}
        flow = ua.get("aee") is not None
        measured = (mm["metrics"].get("aee") or {}) if flow else macc
        if flow:  # optical flow: AEE in pixels (lower is better)
            acc = (
                f"AEE {ua['aee']:.3f} +- {ua.get('aee_std') or 0:.3f} px "
                f"({ua.get('aee_split') or macc.get('split', '-')})"
            )
        else:
            acc = (
                f"{100 * ua['accuracy']:.1f} +- {100 * (ua.get('accuracy_std') or 0):.1f}% "
                f"({macc.get('split', '-')})"
            )
        lines.append(
            f"| {mm['rank']} | {mm['trial'].number} | `{mm['arch'].describe()}` | {acc} | "
            f"{_interval(measured.get('validation'), flow)} | "
            f"{_interval(measured.get('test'), flow)} | "
            f"{_pct((mm['metrics'].get('accuracy') or {}).get('nir'))} | "
            f"{_fmt(met.get('energy_uj'))} | {_fmt(met.get('latency_us'))} | {_fmt(met.get('area_mm2'))} | "
            f"{_fmt(met.get('memory_kb'))} | `{mm['dir'].name}/` |"
        )
    base = [mm["trial"].user_attrs.get("baseline_aee") for mm in members]
    base = [b for b in base if b is not None]
    if base:
        lines += [
            "",
            f"AEE: average endpoint error (px, lower is better) over all pixels of a split. "
            f"Predicting the training split's mean flow field on the search's split: AEE {max(base):.3f} px "
            f"(best member: {min(mm['trial'].user_attrs['aee'] for mm in members) / max(base):.2f}x).",
        ]
    lines += [
        "",
        "Architecture shorthand: layers (`mp2` max-pool 2, `fc64`, `c16k3` conv 16 channels 3x3), `T` timesteps, "
        "neuron, `w` weight bits, converter (`SA` 1-bit sense amplifier, `sar4` 4-bit SAR ADC, `dig` digital CIM), "
        "crossbar rows x cols, `OS` output-stationary.\n",
    ]
    return lines


def _cell(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _fmt(v)
    return str(v)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.1f}%"


def _split_line(name: str, acc: dict[str, Any] | None) -> str:
    if not acc:
        return ""
    per = acc.get("per_instance") or []
    spread = f", range {_pct(min(per))}..{_pct(max(per))}" if len(per) > 1 else ""
    n = int(acc.get("samples") or 0)
    if n:
        p = float(acc["mean"])
        half = 1.96 * math.sqrt(max(p * (1 - p), 0.25 / n) / n)
        spread += f"; +-{100 * half:.1f} points at 95% from the {n} {name} samples alone"
    return (
        f"- {name}: chip **{_interval(acc)}** over {acc.get('instances')} chip instances{spread}; "
        f"float (ideal crossbars) {_pct(acc.get('float'))}"
    )


def _accuracy(mm: dict[str, Any]) -> list[str]:
    acc = mm["metrics"].get("accuracy") or {}
    if acc.get("mean") is None:
        return []
    n = acc.get("instances") or 1
    nir_ideal = (
        f"; `model_ideal.nir` (exact sums, a digital macro) {_pct(acc['nir_ideal'])}"
        if acc.get("nir_ideal") is not None
        else ""
    )
    lines = [
        f"Accuracy. Selected by: chip {_pct(acc['mean'])} +- {_pct(acc.get('std') or 0)} on the "
        f"{acc.get('split', 'test')} split over {n} chip instance(s) (the search's figure); "
        f"NIR graph {_pct(acc.get('nir'))} on the test split (what another framework computes "
        "from `model.nir`: quantized weights, ideal cells, the converters of fc and conv layers as "
        f"comparator nodes){nir_ideal}. Measured at export:\n"
    ]
    measured = [_split_line(s, acc.get(s)) for s in ("validation", "test")]
    if any(measured):
        lines += [*(m for m in measured if m), ""]
    elif acc.get("not_measured"):
        lines.append(f"- not measured: {acc['not_measured']}\n")
    else:
        lines.append("- not measured (no checkpoint)\n")
    return lines


def _efficiency(cost: dict[str, Any]) -> list[str]:
    e, lat, sops = cost.get("energy_uj"), cost.get("latency_us"), cost.get("sops")
    if e is None or lat is None:
        return []
    figures = [
        f"{_fmt(e)} uJ and {_fmt(lat)} us per inference",
        f"{_fmt(1e6 / lat) if lat else '-'} inferences/s (one at a time)",
        f"{_fmt(e * 1e6 / sops) if sops else '-'} pJ per synaptic operation ({_fmt(sops)} SOPs)",
        f"energy-delay product {_fmt(e * lat)} uJ x us",
        f"{_fmt(cost.get('area_mm2'))} mm2, {cost.get('arrays', '-')} arrays on {cost.get('tiles', '-')} tile(s)",
    ]
    lines = ["Efficiency: " + "; ".join(figures) + "\n"]
    if cost.get("schedule"):
        lines.append(f"Latency: {cost['schedule']}.\n")
    return lines


def _converter(r: Any) -> str:
    if r.adc_kind == "sa":
        return "1-bit SA"
    if r.adc_kind == "digital":
        return "digital"
    return f"{r.adc_bits}-bit {r.adc_kind}"


def _layer_table(mm: dict[str, Any], cost: dict[str, Any]) -> list[str]:
    layers = cost.get("layers") or []
    if not layers:
        return []
    resolved = {r.index: r for r in mm["arch"].resolved()}
    packaged = {e["index"]: e for e in (mm.get("chip_mapping") or {}).get("layers", [])}
    slowest = max(layers, key=lambda lay: float(lay.get("stage_ns") or 0.0))
    lines = [
        "| layer | kind | converter | weights | arrays (R x C) | row x col groups | tiles | "
        "utilisation | energy_uj | stage_ns (array phase, neuron phase) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lay in layers:
        r = resolved.get(lay["index"])
        stage = f"{_fmt(lay.get('stage_ns'))} ({_fmt(lay.get('array_ns'))}, {_fmt(lay.get('neuron_ns'))})"
        if lay is slowest:
            stage = f"**{stage}** bottleneck"
        e = packaged.get(lay["index"])
        groups = tiles = "-"
        if e:
            groups = f"{e['row_groups']} x {e['col_groups']}"
            first, last = e["tiles"]["first"], e["tiles"]["last"]
            tiles = str(first) if first == last else f"{first}-{last}"
        conv = _converter(r) if r else "-"
        weights = f"{r.weight_bits}-bit, {r.signed_scheme}" if r else "-"
        arrays = f"{lay.get('arrays', '-')} ({r.rows} x {r.cols})" if r else "-"
        util = _pct(lay.get("utilisation")) if r else "-"
        lines.append(
            f"| {lay['index']} | {lay['kind']} | {conv} | {weights} | {arrays} | {groups} | {tiles} | "
            f"{util} | {_fmt(lay.get('energy_uj'))} | {stage} |"
        )
    return [*lines, ""]


def _breakdown(title: str, unit: str, comps: dict[str, Any]) -> list[str]:
    total = sum(float(v) for v in comps.values()) or 1.0
    lines = [f"| {title} | {unit} | share |", "|---|---|---|"]
    for k, v in sorted(comps.items(), key=lambda kv: -float(kv[1])):
        lines.append(f"| {k} | {_fmt(v)} | {100 * float(v) / total:.1f}% |")
    return [*lines, ""]


def _member(mm: dict[str, Any]) -> list[str]:
    ua = mm["trial"].user_attrs
    cost = ua.get("cost") or {}
    lines = [f"### {mm['rank']}. trial {mm['trial'].number}: `{mm['arch'].describe()}`\n"]
    lines += _accuracy(mm)
    lines += _efficiency(cost)
    act = (ua.get("train") or {}).get("activity") or {}
    if act.get("input_rates"):
        lines.append(
            "Measured spike rates per weighted layer (input): "
            + ", ".join(f"{r:.3f}" for r in act["input_rates"])
            + "\n"
        )
    lines += _layer_table(mm, cost)
    if cost.get("components"):
        lines += _breakdown("energy by component", "uJ", cost["components"])
    if cost.get("area_components"):
        lines += _breakdown("area by component", "mm2", cost["area_components"])
    pkg = mm["metrics"].get("chip_package") or {}
    if pkg.get("checked"):
        lines.append(
            f"Chip package (`{mm['dir'].name}/chip/`): every layer rebuilt from it alone matches the "
            f"chip mode (ideal device) to {pkg['max_relative_deviation']:.1e} of its largest output "
            f"on {pkg['samples']} test samples.\n"
        )
    notes = mm["metrics"].get("nir_notes")
    if notes:
        lines.append(f"NIR: {notes}\n")
    return lines


def _members(members: list[dict[str, Any]]) -> list[str]:
    lines = ["## Cost breakdown per member\n"]
    for mm in members:
        lines += _member(mm)
    return lines


def _files(members: list[dict[str, Any]]) -> list[str]:
    first = members[0]["dir"].name if members else "01_trialNNNN"
    return [
        "## Files\n",
        "- `pareto.csv`: the front as a table; `pareto.png`: the plot above; `chip.yaml`: the chip "
        "the search priced against (as loaded, every field)",
        "- per member: `arch.yaml`, `metrics.json`, `model.pt` (a state_dict for "
        "`torch.load(path, weights_only=True)`), `weights.safetensors`, `model.nir` (e.g. "
        "`norse.torch.from_nir(nir.read(path), dt=1e-4)`), `chip/` (what to program the arrays "
        "and converters with: `chip/README.md`)",
        f"- NIR graphs use dt = {NIR_DT_S:g} s per timestep; weights are the quantized values the arrays hold; "
        "see the graph metadata for converters and approximations (LD-LIF, soft reset)",
        "",
        "Re-price a member with its measured spike rates, or on another chip, from this folder:",
        "",
        "```",
        f"neuronas cost {first}/arch.yaml --chip chip.yaml --activity-file {first}/metrics.json",
        f"neuronas cost {first}/arch.yaml --chip chip.yaml --activity 1.0",
        f"neuronas validate chip.yaml {first}/arch.yaml",
        "```",
        "",
    ]
