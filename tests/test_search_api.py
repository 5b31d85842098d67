"""The curated public API, the settings object, and what a trial stores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from neuronas.errors import ConfigError
from neuronas.search.trials import jsonable
from neuronas.settings import FULL_TRAINING, SCREENING, TrialSettings, identity_fields


def test_public_api_imports_without_torch_or_optuna() -> None:
    code = (
        "import sys, neuronas\n"
        "names = ['estimate', 'load_chip', 'load_space', 'ArchSpec', 'create_or_resume', "
        "'open_run', 'run_search', 'export_run', 'TrialSettings', 'SCREENING']\n"
        "assert all(callable(getattr(neuronas, n)) or n == 'SCREENING' for n in names)\n"
        "assert set(names) <= set(neuronas.__all__)\n"
        "print(sorted(m for m in ('torch', 'optuna', 'ray') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_public_api_prices_an_architecture(repo_root: Path) -> None:
    import neuronas

    arch = neuronas.ArchSpec.from_yaml(next((repo_root / "experiments" / "archs").glob("*.yaml")))
    report = neuronas.estimate(arch, neuronas.load_chip("rram-adcless-65nm"))
    assert report.energy_uj > 0 and math.isfinite(report.latency_us)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = neuronas.no_such_name  # type: ignore[attr-defined]


def test_jsonable_keeps_nan_in_text_and_drops_nan_numbers() -> None:
    stored = jsonable(
        {"reason": "loss is NaN after epoch 2", "loss": float("nan"), "inf": math.inf, "ok": [1.5]}
    )
    assert stored["reason"] == "loss is NaN after epoch 2"
    assert stored["loss"] is None and stored["inf"] == math.inf and stored["ok"] == [1.5]
    assert jsonable("NaN in a plain string") == "NaN in a plain string"
    nested = jsonable({"history": [{"note": "NaN", "v": float("nan")}], 3: (1, "NaNa")})
    assert nested == {"history": [{"note": "NaN", "v": None}], "3": [1, "NaNa"]}


def test_settings_cross_processes_as_json() -> None:
    s = SCREENING.replace(dataset="digits-events", out_dir="/tmp/x", proxy_reference=(0.5, 1.0))
    back = TrialSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    # a subset (old callers, stored runs): the rest takes the defaults; unknown keys ignored
    part = TrialSettings.from_dict({"epochs": 1, "lr": None, "from_a_newer_version": 1})
    assert (
        part.epochs == 1 and part.lr == FULL_TRAINING.lr and part.batch_size == SCREENING.batch_size
    )
    with pytest.raises(AttributeError):
        s.epochs = 2  # type: ignore[misc]


def test_the_search_screens_with_its_recorded_defaults() -> None:
    # what `neuronas search` has trained with since the benchmarks were recorded: changing any
    # of these moves every run and benchmark (benchmarks/RESULTS.md)
    assert (SCREENING.epochs, SCREENING.batch_size, SCREENING.lr, SCREENING.eval_instances) == (
        3,
        32,
        3e-2,
        3,
    )
    assert (FULL_TRAINING.batch_size, FULL_TRAINING.lr, FULL_TRAINING.eval_instances) == (
        64,
        1e-2,
        5,
    )
    # the run identity: exactly the settings that change what a trial's numbers mean
    assert set(identity_fields()) == {
        "dataset",
        "seed",
        "epochs",
        "batch_size",
        "lr",
        "schedule",
        "eval_instances",
        "max_train_samples",
        "max_eval_samples",
        "activity_prior",
    }


def test_cli_and_trainer_take_their_defaults_from_the_settings() -> None:
    import inspect

    from neuronas.cli import build_parser
    from neuronas.train import train_candidate

    sig = inspect.signature(train_candidate).parameters
    assert (
        sig["lr"].default == FULL_TRAINING.lr
        and sig["batch_size"].default == FULL_TRAINING.batch_size
    )
    search = build_parser(only="search").parse_args(["search"])
    assert search.epochs is None and search.lr is None  # None: a resumed run keeps its own
    help_text = build_parser(only="search").format_help() + _search_help()
    assert f"default {SCREENING.epochs})" in help_text and f"default {SCREENING.lr:g})" in help_text


def _search_help() -> str:
    from neuronas.cli import build_parser

    parser = build_parser(only="search")
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return sub.choices["search"].format_help()  # type: ignore[attr-defined]


def test_sampler_registry_names_every_sampler_in_the_cli() -> None:
    from neuronas.search.samplers import SAMPLER_FACTORIES, SAMPLERS

    assert tuple(SAMPLER_FACTORIES) == SAMPLERS and SAMPLERS[0] == "guided"
    text = _search_help()
    for name in SAMPLERS:
        assert name in text


@pytest.mark.slow
def test_a_search_end_to_end_through_the_public_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the README's "In Python" example, at the tests' tiny fidelity
    from _search_helpers import TINY_SPACE

    import neuronas

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY_SPACE)
    fast = {"epochs": 1, "max_train_samples": 32, "max_eval_samples": 32, "eval_instances": 1}
    run = neuronas.create_or_resume({"name": "demo", "space": "tiny.yaml", "trials": 3, **fast})
    summary = neuronas.run_search(run, progress=False)
    assert summary["counts"]["finished"] == 3
    out = neuronas.export_run("demo", tmp_path / "runs" / "demo" / "export", nir=False)
    assert (tmp_path / "runs" / "demo" / "export" / "report.md").is_file()
    assert len(out["members"]) == len(summary["front"])
    again = neuronas.open_run("demo")
    assert again.config.trials == 3 and len(again.study.get_trials()) >= 3


def test_a_registered_sampler_is_used_by_a_new_run(tmp_path: Path) -> None:
    import optuna

    from neuronas.search import samplers
    from neuronas.search.run import create_or_resume

    made: list[int] = []

    def factory(run: object, seed: int, workers: int) -> object:
        made.append(seed)
        return optuna.samplers.RandomSampler(seed=seed)

    samplers.register_sampler("my-random", factory)
    try:
        assert "my-random" in samplers.SAMPLERS
        run = create_or_resume({"name": "reg", "sampler": "my-random", "seed": 4}, root=tmp_path)
        assert isinstance(samplers.make_sampler(run), optuna.samplers.RandomSampler)
        assert made == [4]
    finally:
        del samplers.SAMPLER_FACTORIES["my-random"]
        samplers.SAMPLERS = tuple(samplers.SAMPLER_FACTORIES)
    with pytest.raises(ConfigError, match="known samplers: guided"):
        create_or_resume({"name": "reg2", "sampler": "my-random"}, root=tmp_path)
