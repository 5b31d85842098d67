"""Bad input to `neuronas search`: one line on stderr, status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from _search_helpers import FAST, TINY_SPACE, cli, trials_of, write_space


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


BAD_FLAGS = [
    (["--seed", "-1"], "--seed"),
    (["--seed", "4294967296"], "--seed"),
    (["--startup-trials", "-1"], "--startup-trials"),
    (["--population", "-1"], "--population"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "0"], "--lr"),
    (["--lr", "-0.1"], "--lr"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "-5"], "--timeout"),
    (["--min-accuracy", "5"], "--min-accuracy"),
    (["--min-accuracy", "-0.1"], "--min-accuracy"),
    (["--proxy-quantile", "5"], "--proxy-quantile"),
    (["--proxy-quantile", "nan"], "--proxy-quantile"),
    (["--max-eval-samples", "0"], "--max-eval-samples"),
    (["--trials", "0"], "--trials"),
    (["--trials", "-3"], "--trials"),
    (["--workers", "0"], "--workers"),
    (["--name", ".."], "--name"),
    (["--name", "."], "--name"),
    (["--name", ""], "--name"),
    (["--name", "a/b"], "--name"),
    (["--name", "../escape"], "--name"),
    (["--name", ".hidden"], "--name"),
    (["--name", "x" * 101], "--name"),
    (["--storage", "sqlite://"], "in-memory"),
    (["--storage", "sqlite:///:memory:"], "in-memory"),
    (["--storage", "sqlite:///file:x?mode=memory&cache=shared"], "in-memory"),
]


@pytest.mark.parametrize(("args", "named"), BAD_FLAGS, ids=[" ".join(a)[:30] for a, _ in BAD_FLAGS])
def test_bad_search_flag_refused_before_the_run_exists(
    tmp_path: Path, args: list[str], named: str
) -> None:
    msg = _one_line_error(cli(["search", *args, "--quiet"], tmp_path, timeout=60))
    assert named in msg and "must be" in msg or "in-memory" in msg, msg
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_good_run_names_accepted() -> None:
    from neuronas.search.run import check_run_name

    for ok in ("a", "k9-moved", "big_run.2", "x" * 100):
        assert check_run_name(ok) == ok


def test_large_seed_stays_a_valid_sampler_seed_after_many_trials() -> None:
    from types import SimpleNamespace

    from neuronas.search.samplers import make_sampler

    run = SimpleNamespace(config=SimpleNamespace(sampler="random", seed=2**32 - 1, trials=10))
    sampler = make_sampler(run, n_existing=1000, worker_index=3)  # numpy would refuse > 2**32-1
    assert sampler is not None


@pytest.mark.slow
def test_grid_on_a_wide_log_range_is_refused_or_finishes_with_nothing_running(
    tmp_path: Path,
) -> None:

    huge = write_space(
        tmp_path, TINY_SPACE.replace("[16, 256]", "{low: 1, high: 1000000000, log: true}")
    )
    msg = _one_line_error(cli(["search", "--space", str(huge), "--sampler", "grid"], tmp_path))
    assert "families.mlp.width" in msg and "1000000000" in msg
    assert not (tmp_path / "runs").exists()
    # the widest range allowed: the grid sampler's run ends with its trials and none RUNNING
    widest = write_space(
        tmp_path, TINY_SPACE.replace("[16, 256]", "{low: 1, high: 65536, log: true}")
    )
    args = ["search", "--space", str(widest), "--sampler", "grid", "--name", "g", "--trials", "3"]
    r = cli([*args, *FAST], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "finished 3/3" in r.stdout
    states = [t.state.name for t in trials_of(tmp_path / "runs" / "g")]
    assert "RUNNING" not in states and "WAITING" not in states


@pytest.mark.slow
def test_grid_search_asked_for_more_trials_than_points_ends_when_the_grid_is_exhausted(
    tmp_path: Path,
) -> None:
    # Optuna's GridSampler calls study.stop() after its last point, which raises outside
    # study.optimize: the run used to exit 1 with a traceback once the grid ran out
    two_points = write_space(
        tmp_path,
        "name: two\ndataset: digits-events\ninput: {timesteps: 2, downsample: 4}\n"
        "families:\n  mlp: {depth: 1, width: [16, 32]}\nneuron: {model: lif}\n"
        "precision: {weight_bits: 2}\nmapping: {adc_kind: [sa], crossbar: 64}\n",
    )
    args = ["search", "--space", str(two_points), "--sampler", "grid", "--name", "g"]
    r = cli([*args, "--trials", "5", *FAST], tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "the grid is exhausted" in r.stdout
    trials = trials_of(tmp_path / "runs" / "g")
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states
    # every grid point evaluated once, nothing re-proposed to fill the 5 trials asked
    assert len(trials) == len({str(sorted(t.params.items())) for t in trials}) == 2
    # the same command again: nothing left to do, still exit 0
    r2 = cli([*args, "--trials", "5", *FAST], tmp_path, timeout=300)
    assert r2.returncode == 0, r2.stderr
    assert len(trials_of(tmp_path / "runs" / "g")) == 2
