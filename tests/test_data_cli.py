"""``neuronas datasets``: the listing, describing one dataset, and bad input (status 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data_tonic import write_nmnist_bin

from neuronas.cli import main


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NEURONAS_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "neuronas", "datasets", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_lists_every_dataset_with_shape_classes_and_where(capsys: pytest.CaptureFixture) -> None:
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for line in (
        "digits-events  2x32x32         10  built in",
        "nmnist         2x34x34         10  DATA_ROOT/NMNIST/Train/<0..9>/*.bin",
        "shd            700             20  DATA_ROOT/SHD/shd_train.h5",
        "dvsgesture     2x128x128       11  DATA_ROOT/DVSGesture/ibmGestureTrain/",
    ):
        assert line in out


def test_listing_with_a_data_root_says_what_is_present(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_nmnist_bin(
        tmp_path / "NMNIST" / "Test" / "3" / "0.bin",
        *(np.array([1]), np.array([2]), np.array([5]), np.array([1])),
    )
    assert main(["datasets", "--data-root", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["nmnist"]["present"] == {"train": False, "test": True}
    assert rows["shd"]["present"] == {"train": False, "test": False}
    assert rows["digits-events"]["input_shape"] == [2, 32, 32]


def test_describe_a_tonic_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    for folder in ("Train", "Test"):
        for digit in (4, 9):
            t = np.sort(rng.integers(0, 100_000, 50))
            write_nmnist_bin(
                tmp_path / "NMNIST" / folder / str(digit) / "0.bin",
                rng.integers(0, 34, 50),
                rng.integers(0, 34, 50),
                t,
                rng.integers(0, 2, 50),
            )
    args = ["datasets", "nmnist", "--data-root", str(tmp_path), "-T", "5", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    train = out["splits"]["train"]
    assert train["samples"] == 2 and train["frame_shape"] == [5, 2, 34, 34]
    assert train["events_per_sample"] == 50.0 and train["classes_seen"] == 2
    assert 0 < train["input_rate"] <= 50 / (5 * 2 * 34 * 34)  # at most one spike per event


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["nmist"],
            "unknown dataset 'nmist'; did you mean 'nmnist'? (known: digits-events, flow-events, nmnist",
        ),
        (["shd"], "pass --data-root DIR (data_root=DIR) with DIR/SHD/shd_train.h5"),
        (["dvsgesture", "--data-root", "{tmp}/none"], "data root '{tmp}/none' does not exist"),
        (["nmnist", "--data-root", "{tmp}"], "expected {tmp}/NMNIST/Train/*/*.bin"),
        (
            ["digits-events", "-T", "100000"],
            "timesteps: got 100000, must be an integer in [1, 10000]",
        ),
        (["{tmp}/mine/"], "dataset folder '{tmp}/mine' does not exist; a dataset is a known name"),
        (
            ["digits-events", "--input-shape", "1", "28", "28"],
            "--input-shape [1, 28, 28] does not match dataset 'digits-events', whose frames are "
            "[2, 32, 32]",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    res = _run([a.format(tmp=tmp_path) for a in args], tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("neuronas datasets: error: ")
    assert expected.format(tmp=tmp_path) in lines[0]
