"""Export a run's feasible Pareto front as files a hardware team can use.

``neuronas export RUN --out DIR`` writes (``--trials N ...``: those trials instead of the
front, each marked on or off it)::

    DIR/report.md              read this first: chip, space, budgets, the front, cost breakdowns
    DIR/pareto.csv             one row per front member (objectives, every cost metric, margins)
    DIR/pareto.png             accuracy against each cost objective: front, other trained, rejected
    DIR/chip.yaml              the chip priced against (``neuronas cost ... --chip chip.yaml``)
    DIR/run.json               the run's configuration (sampler, seed, epochs, ...), no absolute paths
    DIR/01_trial0012/          one folder per member, best accuracy first
        arch.yaml              the architecture (ArchSpec YAML; ``neuronas cost`` / ``train`` read it)
        metrics.json           the search's (validation) accuracy it was selected by; the
                               validation and test accuracy over --instances chip instances
                               with their intervals (the test split is read only here, after
                               the front is chosen); measured activity, the full CostReport
                               (per layer, per component), budget margins
        model.pt               the trained state_dict (``torch.load(..., weights_only=True)``)
        weights.safetensors    the same tensors as safetensors (no pickle)
        model.nir              a NIR graph with the weights as the chip holds them and the
                               converters of fc and conv layers (:mod:`neuronas.snn.nir`)
        model_ideal.nir        the same with exact sums (when they differ: a digital CIM
                               macro's network, smaller)
        chip/                  the chip programming package (:mod:`neuronas.export.chip`)

Safety: ``DIR`` must be absent or empty unless ``overwrite`` (which replaces it whole: no stale
member folders survive).  Everything is written into a temporary sibling folder that is moved into
place only once complete, so a failure leaves ``DIR`` as it was.  Files get the permissions the
user's umask allows (as ``cp`` would), and no file holds an absolute path of the run.

The parts: :mod:`.member` (one member's folder, ``pareto.csv``), :mod:`.report`
(``report.md``), :mod:`.plot` (``pareto.png``), :mod:`.chip` (``chip/``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuronas.errors import ExportError, SearchError
from neuronas.settings import REPORT

__all__ = ["check_out", "check_report_options", "chosen_trials", "export_run"]


def check_report_options(instances: int, confidence: float) -> None:
    """Refuse chip-instance counts and confidence levels an interval cannot be made of."""
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 2:
        raise ExportError(
            f"--instances: got {instances!r}, must be an integer >= 2 (an interval needs a spread)"
        )
    if not 0.0 < confidence < 1.0:
        raise ExportError(f"--confidence: got {confidence!r}, must be in (0, 1), e.g. 0.95")


def chosen_trials(run: Any, trials: list[Any], numbers: Sequence[int]) -> list[Any]:
    """The trials numbered ``numbers`` (in that order, each once) of ``run``, for an export
    of chosen trials: each must be trained and within every hard budget with its measured spike
    rates (status ``ok``, what the front is chosen among); else a one-line
    :class:`SearchError` naming the trial, its status and the trials that qualify."""
    from neuronas.search.pareto import eligible_for_front

    by_number = {t.number: t for t in trials}
    ok = [t.number for t in trials if eligible_for_front(t)]
    out: list[Any] = []
    for n in dict.fromkeys(numbers):
        t = by_number.get(n)
        if t is None or n not in ok:
            what = (
                "does not exist"
                if t is None
                else f"has status {t.user_attrs.get('status') or t.state.name}"
            )
            raise SearchError(
                f"--trials: trial {n} of run {Path(run.run_dir).name} {what}; only trained trials "
                f"within every hard budget can be exported: {ok or 'none yet'}"
            )
        out.append(t)
    return out


def check_out(out: Path, overwrite: bool = False) -> None:
    """Refuse an ``out`` that cannot become the export folder, in one line."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            where = "" if p == out else f" ({p} is a file)"
            raise ExportError(
                f"--out {out}: not a folder{where}; give a new or empty folder's path"
            )
        if p.exists():
            break
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        n = sum(1 for _ in out.iterdir())
        raise ExportError(
            f"--out {out}: the folder is not empty ({n} entr{'y' if n == 1 else 'ies'}); "
            "pass --overwrite to replace it, or give a new folder"
        )


def _check_not_inside(out: Path, run_dir: Path) -> None:
    """Refuse an ``out`` that holds the run or the current folder: replacing it would delete them."""
    target = out.resolve()
    for what, p in (("the run", run_dir.resolve()), ("the current folder", Path.cwd().resolve())):
        if p == target or target in p.parents:
            raise ExportError(
                f"--out {out}: holds {what} ({p}), which the export would replace; give a new folder"
            )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _open_permissions(root: Path) -> None:
    """Give every folder and file what the umask allows: mkdtemp makes 0700 and some writers
    (safetensors) 0600, which a colleague could not read."""
    mask = _umask()
    root.chmod(0o777 & ~mask)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            Path(dirpath, name).chmod(0o777 & ~mask)
        for name in filenames:
            Path(dirpath, name).chmod(0o666 & ~mask)


def _portable(value: Any, run_dir: Path) -> Any:
    """An absolute path made relative to the run folder (or reduced to its name): the export
    must not depend on, or reveal, where the run lived."""
    if isinstance(value, str) and os.path.isabs(value):
        p = Path(value)
        try:
            return str(Path(run_dir.name) / p.relative_to(run_dir))
        except ValueError:
            return p.name
    return value


def _run_summary(run: Any) -> dict[str, Any]:
    """``run.json``: the run's configuration (what produced this front), without absolute paths;
    the space and chip are stored whole elsewhere (``chip.yaml``; the space in the study)."""
    run_dir = Path(run.run_dir)
    cfg = run.config.to_dict()
    cfg.pop("space_dict", None)
    cfg.pop("chip_dict", None)
    cfg["run_dir"] = run_dir.name
    return {k: _portable(v, run_dir) for k, v in cfg.items()}


def _write_all(
    run: Any,
    trials: list[Any],
    front: list[Any],
    chosen: list[Any],
    out: Path,
    *,
    nir: bool,
    plot: bool,
    chip_package: bool,
    instances: int,
    confidence: float,
) -> dict[str, Any]:
    from neuronas.export.member import write_csv, write_member
    from neuronas.export.report import render_report

    members = []
    data_cache: dict[Any, Any] = {}  # the test samples, loaded once for every member
    on_front = {t.number for t in front}
    for rank, t in enumerate(chosen, 1):
        d = out / f"{rank:02d}_trial{t.number:04d}"
        d.mkdir()
        members.append(
            {
                "rank": rank,
                "on_front": t.number in on_front,
                **write_member(
                    run,
                    t,
                    d,
                    nir=nir,
                    chip_package=chip_package,
                    data_cache=data_cache,
                    instances=instances,
                    confidence=confidence,
                ),
            }
        )
    write_csv(run, members, out / "pareto.csv")
    import yaml

    # the chip as loaded: the printed commands re-price members on exactly this chip, wherever
    # the run's chip file went
    (out / "chip.yaml").write_text(
        yaml.safe_dump(run.chip.model_dump(mode="json"), sort_keys=False)
    )
    (out / "run.json").write_text(json.dumps(_run_summary(run), indent=2, default=str) + "\n")
    png = None
    if plot:
        from neuronas.export.plot import plot_front

        png = out / "pareto.png"
        plot_front(run, trials, front, png)
    (out / "report.md").write_text(
        render_report(
            run, trials, members, png, front=front, instances=instances, confidence=confidence
        )
    )
    return {"members": [m["dir"].name for m in members], "png": png.name if png else None}


def export_run(
    run: Any,
    out: Path,
    *,
    nir: bool = True,
    plot: bool = True,
    overwrite: bool = False,
    chip_package: bool = True,
    instances: int = REPORT.instances,
    confidence: float = REPORT.confidence,
    trial_numbers: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Write the front of ``run`` (an opened :class:`~neuronas.search.study.Run`) under ``out``.

    The front is chosen from the search's stored (validation-split) accuracies; only then is
    each member evaluated on the validation and the test split over ``instances`` chip
    instances, with a ``confidence`` Student-t interval.  ``trial_numbers``: export these
    trials instead (each trained and within every hard budget, :func:`chosen_trials`); the
    report and ``pareto.csv`` say which of them are on the front.
    Returns ``{"out", "report", "members", "png"}`` (paths under ``out``).
    """
    from neuronas.search.study import count_trials, front_trials

    check_report_options(instances, confidence)
    out = Path(out)
    check_out(out, overwrite)
    _check_not_inside(out, Path(run.run_dir))
    cfg = run.config
    trials = run.study.get_trials(deepcopy=False)
    front = front_trials(run.study, list(cfg.objectives), trials)
    chosen = front if trial_numbers is None else chosen_trials(run, trials, trial_numbers)
    if not chosen:
        c = count_trials(run.study, trials)
        raise SearchError(
            f"run {run.run_dir} has no trained candidate within every hard budget yet ({c.finished} finished: "
            f"{c.infeasible} rejected untrained, {c.trained} trained, {c.failed} failed); nothing to export -- "
            f"run more trials (neuronas search --name {run.run_dir.name} --trials N)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    old: Path | None = None
    try:
        res = _write_all(
            run,
            trials,
            front,
            chosen,
            tmp,
            nir=nir,
            plot=plot,
            chip_package=chip_package,
            instances=instances,
            confidence=confidence,
        )
        _open_permissions(tmp)
        if out.exists():
            # out is empty or overwrite was given: moved aside, so that the new export takes its
            # place in one rename and nothing of the old one survives
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(old / "previous")
        tmp.rename(out)
    except BaseException:
        if old is not None and not out.exists():
            (old / "previous").rename(out)  # the failure left the old export as it was
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return {
        "out": str(out),
        "report": str(out / "report.md"),
        "members": [str(out / m) for m in res["members"]],
        "png": str(out / res["png"]) if res["png"] else None,
    }
