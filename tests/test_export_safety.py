"""Export safety on a real tiny search: the output folder, permissions, bad checkpoints, paths.

Each case is a real run (SQLite study, trained checkpoints) exported through the CLI or
``export_run``; the error cases assert the one-line message and that nothing was written.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _search_helpers import FAST, cli, env, write_space

from neuronas.errors import ExportError


@pytest.fixture(scope="module")
def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``runs/safe``: a 3-trial search whose front has trained members."""
    tmp = tmp_path_factory.mktemp("export_safety")
    space = write_space(tmp)
    args = ["search", "--space", str(space), "--trials", "3", "--name", "safe", "--seed", "1"]
    r = cli([*args, *FAST], tmp)
    assert r.returncode == 0, r.stderr
    return tmp


def _copy_run(run_root: Path, dest: Path) -> Path:
    """A private copy of the run (tests that damage it must not touch the shared one)."""
    shutil.copytree(run_root / "runs", dest / "runs")
    return dest


def _export(root: Path, out: Path, **kw: object) -> dict:
    from neuronas.export import export_run
    from neuronas.search.study import open_run

    return export_run(open_run(root / "runs" / "safe"), out, **kw)


def _front_checkpoint(root: Path) -> Path:
    """The checkpoint of the run's first front member (one the export must read)."""
    from neuronas.export.member import checkpoint_path
    from neuronas.search.study import front_trials, open_run

    run = open_run(root / "runs" / "safe")
    front = front_trials(run.study, list(run.config.objectives))
    ckpt = checkpoint_path(run, front[0])
    assert ckpt is not None
    return ckpt


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _no_leftovers(parent: Path) -> None:
    left = [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert not left, left


def test_non_empty_out_is_refused_and_overwrite_replaces_it_whole(run_root: Path) -> None:
    out = run_root / "exp_overwrite"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = cli(["export", "safe", "--out", str(out)], run_root)
    line = _one_line_error(r)
    assert str(out) in line and "--overwrite" in line and "not empty" in line
    assert (out / "notes.txt").read_text() == "mine"  # refused: untouched
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    # a stale member folder from an earlier, larger front must not survive an overwrite
    (out / "09_trial0099").mkdir()
    (out / "09_trial0099" / "arch.yaml").write_text("stale")
    r = cli(["export", "safe", "--out", str(out), "--overwrite"], run_root)
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert "notes.txt" not in names and "09_trial0099" not in names
    assert {"report.md", "pareto.csv", "pareto.png"} <= set(names)
    members = [n for n in names if n[:2].isdigit()]
    assert members and all((out / m / "arch.yaml").is_file() for m in members)
    _no_leftovers(run_root)


def test_an_empty_existing_out_is_used(run_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    res = _export(run_root, out, plot=False, nir=False)
    assert Path(res["report"]).is_file() and res["members"]
    _no_leftovers(tmp_path)


def test_out_that_is_a_file_or_under_a_file_is_one_line(run_root: Path) -> None:
    f = run_root / "afile.txt"
    f.write_text("keep")
    line = _one_line_error(cli(["export", "safe", "--out", str(f)], run_root))
    assert str(f) in line and "not a folder" in line
    under = f / "sub" / "exp"
    line = _one_line_error(cli(["export", "safe", "--out", str(under)], run_root))
    assert str(under) in line and f"{f} is a file" in line
    assert f.read_text() == "keep"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param("truncate", id="truncated"),
        pytest.param("hostile", id="hostile-pickle"),
        pytest.param("not-a-state-dict", id="tensor-not-dict"),
    ],
)
def test_a_bad_checkpoint_is_named_and_nothing_is_written(
    run_root: Path, tmp_path: Path, content: object
) -> None:
    import torch

    root = _copy_run(run_root, tmp_path)
    bad = _front_checkpoint(root)
    marker = tmp_path / "pwned"
    if content == "truncate":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif content == "hostile":

        class Evil:
            def __reduce__(self):  # runs os.system on an unsafe load
                return (os.system, (f"touch {marker}",))

        bad.write_bytes(pickle.dumps({"layers.0.weight": Evil()}))
    elif content == "not-a-state-dict":
        torch.save(torch.zeros(3), bad)
    else:
        bad.write_bytes(content)  # type: ignore[arg-type]
    # an earlier export stays as it was when the new one fails
    out = tmp_path / "exp"
    out.mkdir()
    (out / "previous.txt").write_text("earlier export")
    with pytest.raises(ExportError) as exc:
        _export(root, out, overwrite=True, plot=False)
    msg = str(exc.value)
    assert "\n" not in msg and str(bad) in msg and "checkpoint" in msg
    assert not marker.exists(), "the hostile pickle ran"
    assert sorted(p.name for p in out.iterdir()) == ["previous.txt"]
    _no_leftovers(tmp_path)


def test_a_bad_checkpoint_through_the_cli_leaves_no_folder(run_root: Path, tmp_path: Path) -> None:
    root = _copy_run(run_root, tmp_path)
    bad = _front_checkpoint(root)
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "exp"
    line = _one_line_error(cli(["export", "safe", "--out", str(out)], root))
    assert str(bad) in line
    assert not out.exists()
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_files_get_the_permissions_the_umask_allows(run_root: Path, umask: int) -> None:
    out = run_root / f"exp_umask_{umask:o}"
    code = (
        f"import os, sys; os.umask({umask}); from neuronas.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, "export", "safe", "--out", str(out), "--no-nir"],
        cwd=run_root,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    seen = set()
    for dirpath, _, filenames in os.walk(out):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o777 & ~umask, dirpath
        for name in filenames:
            mode = stat.S_IMODE(os.stat(Path(dirpath, name)).st_mode)
            assert mode == 0o666 & ~umask, (name, oct(mode))
            seen.add(name)
    assert {"weights.safetensors", "model.pt", "metrics.json", "mapping.json"} <= seen


def test_no_file_holds_an_absolute_path_and_a_moved_run_exports(
    run_root: Path, tmp_path: Path
) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(run_root / "runs" / "safe", moved / "runs" / "safe")
    out = tmp_path / "exp"
    res = _export(moved, out, plot=False)
    assert res["members"]
    summary = json.loads((out / "run.json").read_text())
    assert summary["run_dir"] == "safe" and summary["space"] == "tiny.yaml"
    for p in out.rglob("*"):
        if p.suffix in (".json", ".md", ".csv", ".yaml"):
            text = p.read_text()
            for root in (str(run_root), str(tmp_path), str(Path.home())):
                assert root not in text, (p.relative_to(out), root)
    for d in res["members"]:
        files = json.loads((Path(d) / "metrics.json").read_text())["files"]
        assert "model.pt" in files, "the moved run's checkpoints were found through relative paths"


def test_trained_members_load_and_run_in_the_stock_importers(run_root: Path) -> None:
    """Trained members (lif and if, sense-amplifier arrays, pooling + fc):

    * ``model.nir`` (the converters as comparator banks into memoryless LIF nodes) reproduces
      the member's chip mode on an ideal device to float rounding, through the unpatched
      importers of Norse 1.1 and snnTorch 1.0 (IF neurons as an integrating ``CubaLIF``, see
      ``test_export.py``), nirtorch (NIR's LIF, IF and CubaLIF supplied: nirtorch maps no
      neurons) and neuronas' reader;
    * ``model_ideal.nir`` (exact sums) runs a batch in the same importers, and they agree."""
    import nir
    import torch
    from test_export import NIRTORCH_WITH_BIAS, run_nirtorch, run_norse, run_snntorch

    from neuronas.snn import build
    from neuronas.snn.nir import run_graph
    from neuronas.spec import ArchSpec

    def nirtorch_run(g: object, xs: torch.Tensor) -> torch.Tensor:
        return run_nirtorch(g, xs, NIRTORCH_WITH_BIAS)

    out = run_root / "exp_importers"
    res = _export(run_root, out, plot=False)
    models = set()
    for d in map(Path, res["members"]):
        meta = json.loads((d / "metrics.json").read_text())
        assert "model.nir" in meta["files"] and "model_ideal.nir" in meta["files"]
        acc = meta["accuracy"]
        assert acc["nir"] is not None and acc["nir_ideal"] is not None
        graph = nir.read(str(d / "model.nir"))
        ideal = nir.read(str(d / "model_ideal.nir"))
        model = graph.metadata["neuron_model"]
        models.add(model)
        shape = tuple(int(s) for s in graph.nodes["input"].input_type["input"])
        x = (torch.rand((3, 5, *shape), generator=torch.Generator().manual_seed(0)) < 0.3).float()
        n_out = int(np.prod(graph.nodes["output"].output_type["output"]))
        runners = [run_graph, run_norse, nirtorch_run, run_snntorch]

        # model.nir is the chip's network
        arch = ArchSpec.from_yaml(d / "arch.yaml")
        chip_mode = build(arch, None)  # ideal device
        chip_mode.load_state_dict(torch.load(d / "model.pt", weights_only=True))
        chip_mode.set_hardware_awareness(1.0)
        chip_mode.eval()
        with torch.no_grad():
            want = chip_mode(x).reshape(3, 5, -1)
        tol = 1e-5 * float(want.abs().max())
        for run in runners:
            got = run(graph, x).detach().reshape(3, 5, -1)
            assert float((got - want).abs().max()) <= tol, run

        # model_ideal.nir loads in every stock importer
        results = [r(ideal, x).detach().reshape(3, 5, -1) for r in runners]
        for y in results:
            assert y.shape == (3, 5, n_out) and torch.isfinite(y).all()
        for y in results[1:]:  # the importers agree with each other
            assert torch.allclose(y, results[0], atol=1e-5), (y - results[0]).abs().max()
    assert models


def test_every_command_the_report_prints_works(run_root: Path) -> None:
    import re

    out = run_root / "exp_commands"
    res = _export(run_root, out, plot=False)
    report = Path(res["report"]).read_text()
    assert "NIR graph" in report and "pJ per synaptic operation" in report
    assert "inferences/s" in report and "energy-delay product" in report and "bottleneck" in report
    blocks = re.findall(r"```\n(.*?)```", report, flags=re.S)
    commands = [ln for b in blocks for ln in b.splitlines() if ln.startswith("neuronas ")]
    assert len(commands) >= 3
    for c in commands:
        r = cli(c.split()[1:], out)
        assert r.returncode == 0, (c, r.stderr[-1000:])
    for d in map(Path, res["members"]):
        acc = json.loads((d / "metrics.json").read_text())["accuracy"]
        assert acc["nir"] is not None and 0.0 <= acc["nir"] <= 1.0
        assert acc["test_samples"] == 64  # FAST: --max-eval-samples 64, as the search evaluated
        # the trained member's chip package, rebuilt layer by layer, is its chip mode
        pkg = json.loads((d / "metrics.json").read_text())["chip_package"]
        assert pkg["checked"] and pkg["samples"] == 8
        assert pkg["max_relative_deviation"] < 1e-5
    assert "at 95% from the 64 test samples" in report


def test_budget_table_counts_every_priced_candidate(run_root: Path) -> None:
    """The tiny space breaks the default chip's hard budgets often before training (see
    _search_helpers): the report counts those priced candidates, not only rejected trials."""
    from neuronas.search.study import open_run

    run = open_run(run_root / "runs" / "safe")
    broken = run.study.user_attrs["prescreen"]["broken"]
    assert sum(broken.values()) > 0
    report = Path(_export(run_root, run_root / "exp_budgets", plot=False, nir=False)["report"])
    rows = {
        cells[0]: cells
        for line in report.read_text().splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 7
    }
    for metric, b in run.chip.budgets.items().items():
        assert metric in rows
        if b.hard:
            assert rows[metric][3] == str(broken.get(metric, 0))
            if broken.get(metric, 0):
                assert rows[metric][6] != "slack"


def test_the_plot_draws_and_counts_every_priced_trial(run_root: Path, tmp_path: Path) -> None:
    import re

    from neuronas.export.plot import plot_front
    from neuronas.search.study import front_trials, open_run

    run = open_run(run_root / "runs" / "safe")
    trials = run.study.get_trials(deepcopy=False)
    front = front_trials(run.study, list(run.config.objectives), trials)
    labels = plot_front(run, trials, front, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000
    counts = {}
    for lab in labels:
        m = re.match(r"(.*) \((\d+)(, \d+ distinct points)?\)$", lab)
        if m and "budget" not in lab:
            counts[m.group(1)] = int(m.group(2))
    priced = [
        t for t in trials if (t.user_attrs.get("metrics") or {}) and t.user_attrs.get("status")
    ]
    assert counts["Pareto front (trial numbers)"] == len(front)
    assert sum(counts.values()) == len(priced)
    budgets = run.chip.budgets.items()
    drawn = [m for m in run.config.objectives if m in budgets]
    assert all(any(f"budget ({m})" in lab for lab in labels) for m in drawn)


def test_out_holding_the_run_is_refused_even_with_overwrite(run_root: Path) -> None:
    run_dir = run_root / "runs" / "safe"
    before = sorted(p.name for p in run_dir.iterdir())
    for out in (run_dir, run_root / "runs"):
        with pytest.raises(ExportError) as exc:
            _export(run_root, out, overwrite=True, plot=False)
        assert "holds the run" in str(exc.value) and "\n" not in str(exc.value)
    assert sorted(p.name for p in run_dir.iterdir()) == before
    _no_leftovers(run_root / "runs")


def test_trials_exports_chosen_trials_and_names_one_it_cannot(run_root: Path) -> None:
    """``--trials``: the chosen trials, marked on or off the front; a trial that does not exist
    or was not trained within every budget is named in one line, and nothing is written."""
    from neuronas.search.study import front_trials, open_run

    run = open_run(run_root / "runs" / "safe")
    trials = run.study.get_trials(deepcopy=False)
    front = {t.number for t in front_trials(run.study, list(run.config.objectives))}
    ok = [t.number for t in trials if t.user_attrs.get("status") == "ok"]
    res = _export(run_root, run_root / "exp_chosen", plot=False, nir=False, trial_numbers=ok[:1])
    assert [Path(d).name for d in res["members"]] == [f"01_trial{ok[0]:04d}"]
    rows = (run_root / "exp_chosen" / "pareto.csv").read_text().splitlines()
    assert rows[0].endswith(",on_front") and rows[1].endswith(f",{int(ok[0] in front)}")
    out = run_root / "exp_missing"
    r = cli(["export", "safe", "--out", str(out), "--trials", str(ok[0]), "999"], run_root)
    line = _one_line_error(r)
    assert "trial 999" in line and "does not exist" in line and str(ok[0]) in line
    assert not out.exists()
    _no_leftovers(run_root)
    other = [t for t in trials if t.user_attrs.get("status") != "ok"]
    if other:  # a rejected, stopped or failed trial is refused with its status
        r = cli(["export", "safe", "--out", str(out), "--trials", str(other[0].number)], run_root)
        assert f"has status {other[0].user_attrs.get('status')}" in _one_line_error(r)
