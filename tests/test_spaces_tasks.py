"""The shipped per-task spaces (gesture, nmnist, audio) searched on tiny files in the real tonic
layouts; 1-D downsampling honoured; the data preflight; reasons in show; an all-failed search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _search_helpers import FAST, cli, trials_of
from _tonic_files import gesture_root, nmnist_root, shd_root, shd_sample, write_shd_h5

from neuronas.data import downsampled_shape
from neuronas.search.draw import RandomTrial
from neuronas.search.space import load_space, space_from_dict
from neuronas.snn.build import build

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def test_shipped_task_spaces_validate() -> None:
    files = [str(SPACES / f"{n}.yaml") for n in ("gesture", "nmnist", "audio")]
    res = cli(["validate", *files, "--chip", "rram-adcless-65nm"], Path.cwd(), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("OK ") == 3


def test_audio_downsample_bins_channels_and_is_the_networks_width() -> None:
    space = load_space("audio")
    assert space.input_shapes() == [(350,), (175,), (100,)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        trial = RandomTrial(rng)
        arch = space.sample(trial, None)
        d = trial.params["downsample"]
        assert arch.input.shape == downsampled_shape((700,), d)
        seen.add(d)
        first = build(arch).layers[0]
        assert first.weight.shape[1] == 700 // d  # the first crossbar's rows
    assert seen == {2, 4, 7}


def test_1d_downsample_larger_than_the_input_is_refused() -> None:
    space = space_from_dict(
        {"dataset": "shd", "input": {"downsample": [2, 64]}, "families": {"mlp": {}}}
    )
    space.check()  # 700 channels: 64 is fine
    bad = space.model_copy(update={"input": space.input.model_copy(update={"shape": [32]})})
    with pytest.raises(Exception, match=r"input.downsample: got 64, more than the input's 32"):
        bad.check()


@pytest.mark.parametrize(
    ("space", "make"), [("audio", shd_root), ("nmnist", nmnist_root), ("gesture", gesture_root)]
)
def test_shipped_space_searches_its_dataset_files(tmp_path: Path, space: str, make) -> None:
    root = make(tmp_path / "data")
    res = cli(
        [
            "search",
            "--space",
            space,
            "--data-root",
            str(root),
            "--trials",
            "2",
            "--name",
            "r",
            *FAST,
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    trials = trials_of(tmp_path / "runs" / "r")
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
    assert len(done) == 2 and not [t for t in done if t.state.name == "FAIL"], res.stdout
    for t in done:
        shape = t.user_attrs["arch"]["input"]["shape"]
        if space == "audio":
            # downsampling honoured: the recorded factor is the built model's input width
            assert shape == [700 // t.params["downsample"]]
            if t.user_attrs.get("trained"):
                sd = torch.load(tmp_path / "runs" / "r" / "trials" / f"{t.number:04d}" / "model.pt")
                assert sd["layers.0.weight"].shape[1] == shape[0]


def test_resume_with_data_root_in_a_second_process(tmp_path: Path) -> None:
    root = shd_root(tmp_path / "data")
    args = ["search", "--space", "audio", "--data-root", str(root), "--name", "r", *FAST]
    first = cli([*args, "--trials", "1"], tmp_path)
    assert first.returncode == 0, first.stderr
    again = cli([*args, "--trials", "2"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    done = [t for t in trials_of(tmp_path / "runs" / "r") if t.state.name == "COMPLETE"]
    assert len(done) == 2


def _one_line(res) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_preflight_no_data_root_and_a_root_that_is_not_there(tmp_path: Path) -> None:
    base = ["search", "--space", "audio", "--trials", "2", "--name", "r", *FAST]
    line = _one_line(cli(base, tmp_path))
    assert "dataset 'shd'" in line and "--data-root DIR" in line and "no trial was run" in line
    assert "neuronas datasets shd --data-root DIR --download" in line
    assert "--download (" not in line  # no flag the search lacks
    line = _one_line(cli([*base, "--data-root", str(tmp_path / "nowhere")], tmp_path))
    assert f"data root '{tmp_path / 'nowhere'}' does not exist" in line
    assert not (tmp_path / "runs").exists()  # nothing written, no trial


def test_preflight_missing_files(tmp_path: Path) -> None:
    root = shd_root(tmp_path / "data")
    (root / "SHD" / "shd_test.h5").unlink()
    res = cli(
        ["search", "--space", "audio", "--trials", "2", "--data-root", str(root), *FAST], tmp_path
    )
    line = _one_line(res)
    assert "dataset 'shd' (test split) is not under data root" in line
    assert str(root / "SHD" / "shd_test.h5") in line
    assert not (tmp_path / "runs").exists()


def test_preflight_wrong_shape_and_unframable_files(tmp_path: Path) -> None:
    root = nmnist_root(tmp_path / "data", per_class=1)
    # a space whose input.shape the dataset cannot serve
    space = tmp_path / "s.yaml"
    space.write_text(
        "dataset: nmnist\ninput: {shape: [2, 40, 40]}\nfamilies: {mlp: {}}\nmapping: {adc_kind: [sa]}\n"
    )
    args = ["search", "--space", str(space), "--trials", "2", "--data-root", str(root), *FAST]
    line = _one_line(cli(args, tmp_path))
    assert "input.shape [2, 40, 40] does not match dataset 'nmnist'" in line
    # the first sample's events are outside the 34x34 sensor: they cannot be framed
    bad = root / "NMNIST" / "Train" / "0" / "00000.bin"
    bad.write_bytes(bytes([60, 3, 0, 0, 10]) * 4)
    args = ["search", "--space", "nmnist", "--trials", "2", "--data-root", str(root), *FAST]
    line = _one_line(cli(args, tmp_path))
    assert f"dataset 'nmnist' under data root '{root}'" in line and "out of the 34x34" in line
    assert "no trial was run" in line
    assert not (tmp_path / "runs").exists()


def test_resume_preflight_with_a_wrong_root_runs_no_trial(tmp_path: Path) -> None:
    root = shd_root(tmp_path / "data")
    args = ["search", "--space", "audio", "--name", "r", *FAST]
    assert cli([*args, "--trials", "1", "--data-root", str(root)], tmp_path).returncode == 0
    line = _one_line(cli([*args, "--trials", "3", "--data-root", str(tmp_path)], tmp_path))
    assert "dataset 'shd' (train split) is not under data root" in line
    assert len(trials_of(tmp_path / "runs" / "r")) == 1


def test_every_trial_failing_exits_2_and_show_gives_the_reasons(tmp_path: Path) -> None:
    # the preflight reads the first samples; the third has a negative time: every training fails
    rng = np.random.default_rng(3)
    samples = [shd_sample(rng, c % 20) for c in range(6)]
    t, u, label = samples[2]
    t[0] = -0.5
    write_shd_h5(tmp_path / "data" / "SHD" / "shd_train.h5", samples)
    write_shd_h5(tmp_path / "data" / "SHD" / "shd_test.h5", samples[:2])
    args = ["search", "--space", "audio", "--trials", "2", "--name", "r"]
    res = cli([*args, "--data-root", str(tmp_path / "data"), *FAST], tmp_path)
    line = _one_line(res)
    assert line.startswith(
        "neuronas search: error: all 2 finished trial(s) of run runs/r failed (2 x:"
    )
    assert "shd_train.h5 sample 2: event 0 has time" in line
    assert "trained 0," in res.stdout and "failed 2" in res.stdout
    show = cli(["show", "r"], tmp_path)
    assert show.returncode == 0
    assert "why trials were rejected, stopped or failed" in show.stdout
    assert "   2 x failed (#0, 1): DataError:" in show.stdout


def test_trial_reasons_group_by_kind_and_count() -> None:
    import optuna
    from optuna.trial import TrialState, create_trial

    from neuronas._cli.show import reason_lines, trial_reasons

    def trial(state, status, reason):
        return create_trial(
            state=state,
            values=[0.0] if state == TrialState.COMPLETE else None,
            distributions={},
            params={},
            user_attrs={"status": status, "reason": reason},
        )

    study = optuna.create_study()
    for v in (1.5, 2.25, 30.0):
        study.add_trial(
            trial(TrialState.COMPLETE, "infeasible", f"energy_uj {v} > hard budget 1 (+{v}%)")
        )
    study.add_trial(trial(TrialState.FAIL, "failed", "RuntimeError: boom"))
    study.add_trial(trial(TrialState.COMPLETE, "ok", ""))
    groups = trial_reasons(study.trials)
    assert [(s, len(n)) for s, _, n in groups] == [("infeasible", 3), ("failed", 1)]
    lines = reason_lines(study.trials)
    assert lines[0].startswith("   3 x infeasible (#0, 1, 2): energy_uj 1.5 > hard budget 1")
    assert trial_reasons(study.trials, failed_only=True)[0][1] == "RuntimeError: boom"
