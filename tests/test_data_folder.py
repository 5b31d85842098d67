"""A user's own event data: ``load_dataset(PATH)`` on tiny dataset folders written here in the
documented layout (dataset.yaml, train/ and test/ with one structured-event .npy per sample,
labels.csv or NAME.flow.npy), and one one-line DataError per way such a folder can be wrong.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tonic.transforms as tt
import yaml

from neuronas.data import check_input_shape, dataset_info, load_dataset
from neuronas.errors import DataError

T = 3
EVENTS = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def _events(rng: np.random.Generator, n: int, w: int, h: int, pols: int, span: int) -> np.ndarray:
    ev = np.zeros(n, dtype=EVENTS)
    ev["x"] = rng.integers(0, w, n)
    ev["y"] = rng.integers(0, h, n)
    ev["t"] = np.sort(rng.integers(0, span + 1, n))
    ev["p"] = rng.integers(0, pols, n)
    return ev


def write_folder(
    root: Path,
    *,
    task: str = "classification",
    sensor: dict | None = None,
    classes: list | None = None,
    span_us: int = 10_000,
    samples: dict[str, list[str]] | None = None,
    seed: int = 0,
) -> Path:
    """A dataset folder in the documented layout; camera 8 x 6 by default.  For flow, each
    sample's field is a known function of position (x displacement = column / 4, y = -row / 2)."""
    sensor = sensor or {"width": 8, "height": 6, "polarities": 2}
    rng = np.random.default_rng(seed)
    spec: dict = {"name": "mine", "task": task, "sensor": sensor, "span_us": span_us}
    if task == "classification":
        spec["classes"] = classes if classes is not None else ["left", "right", "up"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if "channels" in sensor:
        w, h, pols = sensor["channels"], 1, 1
    else:
        w, h, pols = sensor["width"], sensor["height"], sensor["polarities"]
    samples = samples or {"train": ["left", "right", "up", "left"], "test": ["up", "right"]}
    for split, labels in samples.items():
        d = root / split
        d.mkdir()
        rows = ["file,label"]
        for i, label in enumerate(labels):
            name = f"rec{i:02d}.npy"
            np.save(d / name, _events(rng, 40, w, h, pols, span_us))
            rows.append(f"{name},{label}")
            if task == "flow":
                ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
                np.save(d / f"rec{i:02d}.flow.npy", np.stack([xs / 4 + i, -ys / 2]))
        if task == "classification":
            (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _ref_frames(events: np.ndarray, sensor_size: tuple[int, int, int]) -> np.ndarray:
    return (tt.ToFrame(sensor_size=sensor_size, n_time_bins=T)(events) > 0).astype(np.float32)


# --- happy paths ---------------------------------------------------------------------------------


def test_camera_classification_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "cam")
    info = dataset_info(str(root))
    assert (info.name, info.task, info.source) == ("mine", "classification", "folder")
    assert info.input_shape == (2, 6, 8) and info.num_classes == 3
    assert info.classes == ("left", "right", "up") and info.sensor_size == (8, 6, 2)
    train = load_dataset(str(root), "train", T)
    assert len(train) == 4 and train.info.task == "classification"
    assert [train[i][1] for i in range(4)] == [0, 1, 2, 0]
    frames, _ = train[1]
    raw = np.load(root / "train" / "rec01.npy")
    assert frames.shape == (T, 2, 6, 8)
    assert np.array_equal(frames.numpy(), _ref_frames(raw, (8, 6, 2)))
    x, y = load_dataset(root, "test", T).tensors()  # a Path works as well as a str
    assert x.shape == (2, T, 2, 6, 8) and y.tolist() == [2, 1]


def test_camera_folder_downsampled_like_any_dataset(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "cam")
    assert check_input_shape(str(root), [2, 3, 4]) == (2, 3, 4)
    ds = load_dataset(str(root), "train", T, input_shape=(2, 3, 4), binarize=False)
    frames, _ = ds[0]
    assert frames.shape == (T, 2, 3, 4)
    raw = np.load(root / "train" / "rec00.npy")
    down = tt.Downsample(sensor_size=(8, 6, 2), target_size=(4, 3))(raw)
    ref = tt.ToFrame(sensor_size=(4, 3, 2), n_time_bins=T)(down)
    assert np.array_equal(frames.numpy(), ref.astype(np.float32))
    # downsampling merges pixels but drops no event (tonic's time bins leave out the last one)
    full, _ = load_dataset(str(root), "train", T, binarize=False)[0]
    assert frames.sum() == full.sum() >= 39
    with pytest.raises(DataError, match=r"\[1, 3, 4\] does not match dataset 'mine'.*\[2, 6, 8\]"):
        load_dataset(str(root), "train", T, input_shape=(1, 3, 4))


def test_audio_classification_folder_and_its_downsampling(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "audio",
        sensor={"channels": 40},
        classes=["yes", "no"],
        samples={"train": ["yes", "no", "no"], "test": ["yes"]},
    )
    info = dataset_info(str(root))
    assert info.input_shape == (40,) and info.sensor_size == (40, 1, 1)
    ds = load_dataset(str(root), "train", T, binarize=False)
    frames, label = ds[1]
    assert frames.shape == (T, 40) and label == 1
    raw = np.load(root / "train" / "rec01.npy")
    assert frames.sum() >= raw.size - 1  # tonic's time bins leave out the last event
    assert set(np.nonzero(frames.numpy().sum(0))[0]) == set(raw["x"].tolist())
    half = load_dataset(str(root), "train", T, input_shape=[20], binarize=False)
    frames, _ = half[1]
    assert frames.shape == (T, 20)
    assert set(np.nonzero(frames.numpy().sum(0))[0]) == set((raw["x"] // 2).tolist())
    with pytest.raises(DataError, match=r"\[2, 20\] does not match dataset 'mine'.*\[40\]"):
        load_dataset(str(root), "train", T, input_shape=[2, 20])


def test_flow_folder_gives_flow_targets_scaled_with_the_input(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "flow",
        task="flow",
        sensor={"width": 8, "height": 8, "polarities": 2},
        samples={"train": ["", "", ""], "test": [""]},
    )
    info = dataset_info(str(root))
    assert info.task == "flow" and info.num_classes == 0 and info.classes == ()
    full = load_dataset(str(root), "train", T)
    frames, flow = full[2]
    assert frames.shape == (T, 2, 8, 8)
    assert flow.dtype.is_floating_point and flow.shape == (2, 8, 8)
    assert np.array_equal(flow.numpy(), np.load(root / "train" / "rec02.flow.npy"))
    small = load_dataset(str(root), "train", T, input_shape=(2, 4, 4))
    frames, flow = small[2]
    assert frames.shape == (T, 2, 4, 4) and flow.shape == (2, 4, 4)
    # columns 2j, 2j+1 merge into j: mean x-displacement (2j + 0.5) / 4 + 2 sensor pixels, halved
    j = np.arange(4)
    assert np.allclose(flow[0].numpy(), ((2 * j + 0.5) / 4 + 2) / 2)
    i = np.arange(4)[:, None]
    assert np.allclose(flow[1].numpy(), np.broadcast_to(-(2 * i + 0.5) / 2 / 2, (4, 4)))
    x, y = small.tensors()
    assert x.shape == (3, T, 2, 4, 4) and y.shape == (3, 2, 4, 4) and y.dtype.is_floating_point


def test_datasets_cli_describes_a_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "cam")
    res = subprocess.run(
        [sys.executable, "-m", "neuronas", "datasets", str(root), "-T", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    import json

    out = json.loads(res.stdout)
    assert out["dataset"]["task"] == "classification" and out["dataset"]["num_classes"] == 3
    assert out["splits"]["train"]["samples"] == 4 and out["splits"]["test"]["samples"] == 2
    assert out["splits"]["train"]["frame_shape"] == [2, 2, 6, 8]


# --- malformed folders: one line each, naming the file, the field and what is allowed ----------


def _put(path: str, data: Callable[[Path], object]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        value = data(root)
        if isinstance(value, np.ndarray):
            np.save(root / path, value)
        else:
            (root / path).write_text(str(value))

    return edit


def _yaml(**changes: object) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        spec = yaml.safe_load((root / "dataset.yaml").read_text())
        for k, v in changes.items():
            if v is None:
                spec.pop(k)
            else:
                spec[k] = v
        (root / "dataset.yaml").write_text(yaml.safe_dump(spec))

    return edit


def _events_with(**fields: object) -> Callable[[Path], np.ndarray]:
    def make(root: Path) -> np.ndarray:
        ev = np.load(root / "train" / "rec00.npy")
        for k, v in fields.items():
            ev[k][3] = v
        return ev

    return make


def _unsorted(root: Path) -> np.ndarray:
    ev = np.load(root / "train" / "rec00.npy")
    ev["t"][5], ev["t"][6] = ev["t"][6] + 1, ev["t"][5]
    return ev


def _float_t(root: Path) -> np.ndarray:
    ev = np.load(root / "train" / "rec00.npy")
    out = np.zeros(ev.size, dtype=[("x", "i2"), ("y", "i2"), ("t", "f8"), ("p", "i1")])
    for k in "xytp":
        out[k] = ev[k]
    return out


CLASSIFICATION_CASES = {
    "missing labels.csv": (
        lambda r: (r / "train" / "labels.csv").unlink(),
        r"train/labels.csv: missing; a classification split needs labels.csv",
    ),
    "labels.csv header": (
        _put("train/labels.csv", lambda r: "rec00.npy,left\n"),
        r"labels.csv: line 1: got 'rec00.npy,left', must be the header 'file,label'",
    ),
    "unknown class": (
        _put("train/labels.csv", lambda r: "file,label\nrec00.npy,down\n"),
        r"labels.csv: line 2: label 'down' is not a class of dataset 'mine' \(classes: left, right, up\)",
    ),
    "a sample without a label": (
        _put("train/labels.csv", lambda r: "file,label\nrec00.npy,left\nrec01.npy,up\n"),
        r"labels.csv: no label for .*train/rec02.npy and 1 more",
    ),
    "a label for no file": (
        _put("train/labels.csv", lambda r: "file,label\nrec09.npy,left\n"),
        r"labels.csv: line 2: file 'rec09.npy' is not a sample in",
    ),
    "a sample labelled twice": (
        _put("train/labels.csv", lambda r: "file,label\nrec00.npy,left\nrec00,up\n"),
        r"labels.csv: line 3: file 'rec00' is labelled twice",
    ),
    "x out of the sensor": (
        _put("train/rec00.npy", _events_with(x=8)),
        r"rec00.npy: event 3 is out of the sensor: x = 8, must be \[0, 7\]",
    ),
    "negative y": (
        _put("train/rec00.npy", _events_with(y=-1)),
        r"rec00.npy: event 3 is out of the sensor: y = -1, must be \[0, 5\]",
    ),
    "polarity 2": (
        _put("train/rec00.npy", _events_with(p=2)),
        r"rec00.npy: event 3 is out of the sensor: p = 2, must be \[0, 1\]",
    ),
    "unsorted times": (
        _put("train/rec00.npy", _unsorted),
        r"rec00.npy: times are not sorted: event 6 has t = \d+ µs after t = \d+ µs",
    ),
    "time past span_us": (
        _put("train/rec00.npy", lambda r: _events_with(t=10_001)(r)),
        r"rec00.npy: event 3 has t = 10001 µs, must be in \[0, 10000\] \(span_us\)",
    ),
    "float times": (
        _put("train/rec00.npy", _float_t),
        r"rec00.npy: field t has dtype float64, must be an integer type",
    ),
    "no fields": (
        _put("train/rec00.npy", lambda r: np.zeros((5, 4), dtype=np.int64)),
        r"rec00.npy: got dtype int64 with shape \[5, 4\], must be a 1-D structured array with integer fields x, y, t",
    ),
    "a field missing": (
        _put(
            "train/rec00.npy", lambda r: np.zeros(3, dtype=[("x", "i2"), ("y", "i2"), ("t", "i8")])
        ),
        r"rec00.npy: got fields x, y, t with shape \[3\], must be a 1-D structured array",
    ),
    "garbage .npy": (
        _put("train/rec01.npy", lambda r: "not numpy at all"),
        r"rec01.npy: cannot be read as a .npy array \(ValueError",
    ),
    "no samples": (
        lambda r: [p.unlink() for p in (r / "test").glob("*.npy")],
        r"test: no samples; expected one .npy of structured events per sample",
    ),
    "no test folder": (
        lambda r: __import__("shutil").rmtree(r / "test"),
        r"dataset folder '.*' has no test/ folder",
    ),
    "a flow file in a classification set": (
        _put("test/rec00.flow.npy", lambda r: np.zeros((2, 6, 8), np.float32)),
        r"rec00.flow.npy: a flow field in a classification dataset",
    ),
    "missing key": (
        _yaml(classes=None),
        r"dataset.yaml: missing key\(s\) classes \(a classification dataset needs name, task, sensor, classes, span_us\)",
    ),
    "extra key": (
        _yaml(fps=30),
        r"dataset.yaml: unknown key\(s\) fps for a classification dataset \(allowed: name, task",
    ),
    "unknown task": (
        _yaml(task="segmentation"),
        r"dataset.yaml: task: got 'segmentation', must be one of classification, flow",
    ),
    "sensor keys": (
        _yaml(sensor={"width": 8, "height": 6}),
        r"dataset.yaml: sensor: got \['height', 'width'\], must be \{width, height, polarities\}",
    ),
    "sensor size": (
        _yaml(sensor={"width": 0, "height": 6, "polarities": 2}),
        r"dataset.yaml: sensor.width: got 0, must be an integer in \[1, 4096\]",
    ),
    "three polarities": (
        _yaml(sensor={"width": 8, "height": 6, "polarities": 3}),
        r"dataset.yaml: sensor.polarities: got 3, must be an integer in \[1, 2\]",
    ),
    "span_us not an integer": (
        _yaml(span_us="10ms"),
        r"dataset.yaml: span_us: got '10ms', must be an integer",
    ),
    "one class": (
        _yaml(classes=["only"]),
        r"dataset.yaml: classes: got \['only'\], must be a list of at least 2 class names",
    ),
    "duplicate class": (
        _yaml(classes=["a", "b", "a"]),
        r"dataset.yaml: classes: a listed more than once",
    ),
    "yaml not a mapping": (
        _put("dataset.yaml", lambda r: "- just\n- a list\n"),
        r"dataset.yaml: must be a mapping of name, task, sensor, ..., got list",
    ),
    "no dataset.yaml": (
        lambda r: (r / "dataset.yaml").unlink(),
        r"dataset folder '.*' has no dataset.yaml \(keys: name, task, sensor, classes, span_us",
    ),
}


@pytest.mark.parametrize("case", list(CLASSIFICATION_CASES))
def test_malformed_classification_folder(tmp_path: Path, case: str) -> None:
    edit, expected = CLASSIFICATION_CASES[case]
    root = write_folder(tmp_path / "cam")
    load_dataset(str(root), "train", T)  # well-formed before the edit
    edit(root)
    with pytest.raises(DataError) as err:
        for split in ("train", "test"):
            load_dataset(str(root), split, T)
    msg = str(err.value)
    assert "\n" not in msg
    assert __import__("re").search(expected, msg), msg


FLOW_CASES = {
    "flow of the wrong shape": (
        _put("train/rec01.flow.npy", lambda r: np.zeros((2, 8, 6), np.float32)),
        r"rec01.flow.npy: got float32 with shape \[2, 8, 6\], must be float32 \[2, 8, 8\]",
    ),
    "flow as float64": (
        _put("train/rec01.flow.npy", lambda r: np.zeros((2, 8, 8))),
        r"rec01.flow.npy: got float64 with shape \[2, 8, 8\], must be float32 \[2, 8, 8\]",
    ),
    "NaN flow": (
        _put("train/rec01.flow.npy", lambda r: np.full((2, 8, 8), np.nan, np.float32)),
        r"rec01.flow.npy: holds NaN or infinite displacements, must be finite",
    ),
    "missing flow": (
        lambda r: (r / "train" / "rec02.flow.npy").unlink(),
        r"train/rec02.flow.npy: missing; every sample of a flow dataset needs its float32 \[2, H, W\]",
    ),
    "flow without a sample": (
        lambda r: (r / "train" / "rec02.npy").unlink(),
        r"train/rec02.flow.npy: no sample rec02.npy for this flow field",
    ),
    "labels in a flow set": (
        _put("test/labels.csv", lambda r: "file,label\n"),
        r"labels.csv: a flow dataset has no labels",
    ),
    "classes in a flow set": (
        _yaml(classes=["a", "b"]),
        r"dataset.yaml: unknown key\(s\) classes for a flow dataset \(allowed: name, task, sensor, span_us",
    ),
    "an audio flow set": (
        _yaml(sensor={"channels": 8}),
        r"dataset.yaml: sensor: a flow dataset needs a camera",
    ),
}


@pytest.mark.parametrize("case", list(FLOW_CASES))
def test_malformed_flow_folder(tmp_path: Path, case: str) -> None:
    edit, expected = FLOW_CASES[case]
    root = write_folder(
        tmp_path / "flow",
        task="flow",
        sensor={"width": 8, "height": 8, "polarities": 2},
        samples={"train": ["", "", ""], "test": [""]},
    )
    load_dataset(str(root), "train", T)
    edit(root)
    with pytest.raises(DataError) as err:
        for split in ("train", "test"):
            load_dataset(str(root), split, T)
    msg = str(err.value)
    assert "\n" not in msg
    assert __import__("re").search(expected, msg), msg


def test_audio_events_must_sit_on_row_0_and_polarity_0(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "audio",
        sensor={"channels": 40},
        classes=["yes", "no"],
        samples={"train": ["yes", "no"], "test": ["no"]},
    )
    ev = np.load(root / "train" / "rec00.npy")
    ev["y"][0] = 1
    np.save(root / "train" / "rec00.npy", ev)
    with pytest.raises(
        DataError, match=r"event 0 is out of the sensor: y = 1, must be 0 for audio spikes"
    ):
        load_dataset(str(root), "train", T)


def test_paths_that_are_not_dataset_folders(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"dataset folder '.*nowhere' does not exist; a dataset is a known name"
    ):
        dataset_info(str(tmp_path / "nowhere"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"is a file, must be a folder holding dataset.yaml"):
        dataset_info(str(tmp_path / "afile"))
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"'.*loop' is a symbolic link that leads nowhere \(a loop"):
        dataset_info(str(loop))


def test_datasets_cli_describes_a_flow_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from neuronas.cli import main

    root = write_folder(
        tmp_path / "flow",
        task="flow",
        sensor={"width": 8, "height": 8, "polarities": 2},
        samples={"train": ["", "", ""], "test": [""]},
    )
    assert main(["datasets", str(root), "-T", "2", "--input-shape", "2", "4", "4", "--json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    assert out["dataset"]["task"] == "flow" and out["dataset"]["input_shape"] == [2, 8, 8]
    train = out["splits"]["train"]
    assert train["frame_shape"] == [2, 2, 4, 4] and "classes_seen" not in train
    flows = np.stack([np.load(root / "train" / f"rec{i:02d}.flow.npy") for i in range(3)])
    halved = flows.reshape(3, 2, 4, 2, 4, 2).mean(axis=(3, 5)) / 2
    assert train["mean_flow_px"] == pytest.approx(np.sqrt((halved**2).sum(1)).mean(), rel=1e-5)
