"""Bad input to `neuronas search`: one line on stderr, status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

from _search_helpers import cli, write_space


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_unknown_space_lists_known_and_suggests(tmp_path: Path) -> None:
    msg = _one_line_error(
        cli(["search", "--space", "digits-smal", "--quiet"], tmp_path, timeout=120)
    )
    assert "did you mean digits-small" in msg and "events-large" in msg


def test_unknown_chip_lists_known_and_suggests(tmp_path: Path) -> None:
    msg = _one_line_error(
        cli(["search", "--chip", "rram-adcless-65", "--quiet"], tmp_path, timeout=120)
    )
    assert "did you mean rram-adcless-65nm" in msg
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("study.db"))


def test_unknown_objective(tmp_path: Path) -> None:
    msg = _one_line_error(
        cli(["search", "--objectives", "accuracy", "energy", "--quiet"], tmp_path, timeout=120)
    )
    assert "energy" in msg and "energy_uj" in msg


def test_space_that_never_fits_names_the_tightest_budget(tmp_path: Path) -> None:
    from neuronas.config import resolve_preset

    chip = (resolve_preset("rram-adcless-65nm", "chip")).read_text()
    start = chip.index("budgets:")
    chip = chip[:start] + "budgets:\n  memory_kb: 1000\n  energy_uj: 0.000001\n  area_mm2: 1000\n"
    (tmp_path / "tight.yaml").write_text(chip)
    space = write_space(tmp_path)
    msg = _one_line_error(
        cli(
            ["search", "--space", str(space), "--chip", "tight.yaml", "--quiet"],
            tmp_path,
            timeout=120,
        )
    )
    assert "all" in msg and "break a hard budget" in msg and "tightest is energy_uj" in msg


def test_unreachable_storage_url(tmp_path: Path) -> None:
    msg = _one_line_error(
        cli(
            ["search", "--storage", "postgresql://127.0.0.1:1/x", "--name", "pg", "--quiet"],
            tmp_path,
            timeout=120,
        )
    )
    assert "cannot open the study storage" in msg and "postgresql://127.0.0.1:1/x" in msg


def test_show_of_missing_run(tmp_path: Path) -> None:
    (tmp_path / "runs" / "real").mkdir(parents=True)
    msg = _one_line_error(cli(["show", "nope"], tmp_path, timeout=120))
    assert "no run here" in msg
