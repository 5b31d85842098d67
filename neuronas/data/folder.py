"""A user's own event recordings: a folder in neuronas' documented layout, strictly validated.

::

    PATH/dataset.yaml       name, task (classification | flow), sensor {width, height, polarities}
                            or {channels} (audio spikes), classes [...] (classification), span_us
    PATH/train/*.npy        one sample each: structured events x, y, t (µs), p (audio: x = channel,
    PATH/test/*.npy         y = 0, p = 0), sorted by t, inside the sensor and [0, span_us]
    PATH/{train,test}/labels.csv       "file,label" header, one row per sample (classification)
    PATH/{train,test}/NAME.flow.npy    float32 [2, H, W] pixel displacement (x, y) over NAME (flow)

Every file is checked when a split is opened, so a bad file is one line naming it, the field, the
value and what is allowed -- never a traceback in the middle of training.  Only numpy here: the
registry reads ``dataset.yaml`` through this module without importing torch or tonic.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuronas.data.info import SPLITS, TASKS, DatasetInfo, not_there
from neuronas.errors import DataError, NeuronasError

__all__ = [
    "FOLDER_EVENT_DTYPE",
    "FolderSamples",
    "looks_like_folder",
    "read_folder_info",
    "scan_split",
]

#: events as served from a folder: wide enough for any sensor dataset.yaml may declare
FOLDER_EVENT_DTYPE = np.dtype([("x", np.int32), ("y", np.int32), ("t", np.int64), ("p", np.int8)])

_REQUIRED = {
    "classification": ("name", "task", "sensor", "classes", "span_us"),
    "flow": ("name", "task", "sensor", "span_us"),
}
_OPTIONAL = ("description",)
_CAMERA_KEYS = ("width", "height", "polarities")
_AUDIO_KEYS = ("channels",)
_MAX_YAML_BYTES = 1 << 20  # a dataset description, not data
_MAX_SIDE = 4096  # pixels per sensor side; int32 events and [2, H, W] flow files stay sane
_MAX_CHANNELS = 100_000


def looks_like_folder(name: str) -> bool:
    """True when ``name`` is meant as a path rather than a dataset name."""
    return "/" in name or "\\" in name or name.startswith((".", "~")) or Path(name).is_dir()


def _int_field(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DataError(f"{where}: got {value!r}, must be an integer in [{low}, {high}]")
    return value


def _read_yaml(path: Path) -> Any:
    from neuronas.config import load_yaml

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; dataset.yaml must be a YAML file")
    if size > _MAX_YAML_BYTES:
        raise DataError(f"{path}: {size} bytes, a dataset.yaml is at most {_MAX_YAML_BYTES}")
    try:
        return load_yaml(path)
    except NeuronasError as exc:
        raise DataError(str(exc)) from None


_INFO_MEMO: dict[str, tuple[tuple[int, int], DatasetInfo]] = {}


def read_folder_info(path: str | Path) -> DatasetInfo:
    """Read and check ``PATH/dataset.yaml``; the samples are checked when a split is opened.

    Remembered per file while it is unchanged: a search asks for the shapes of every candidate.
    """
    spec = Path(path).expanduser() / "dataset.yaml"
    try:
        st = spec.stat()
        memo = _INFO_MEMO.get(str(spec))
        if memo is not None and memo[0] == (st.st_mtime_ns, st.st_size):
            return memo[1]
    except OSError:
        st = None  # the checks below say what is wrong
    info = _read_folder_info(path)
    if st is not None:
        _INFO_MEMO[str(spec)] = ((st.st_mtime_ns, st.st_size), info)
    return info


def _read_folder_info(path: str | Path) -> DatasetInfo:
    root = Path(path).expanduser()
    try:
        is_dir = root.is_dir()
        exists = is_dir or root.exists()
    except OSError as exc:  # a symlink loop, a path too long
        raise DataError(f"dataset folder '{root}': {exc.__class__.__name__}: {exc}") from None
    if not exists:
        raise DataError(
            f"dataset folder '{root}' {not_there(root)}; a dataset is a known name (see "
            "`neuronas datasets`) or a folder holding dataset.yaml, train/ and test/"
        )
    if not is_dir:
        raise DataError(f"dataset folder '{root}' is a file, must be a folder holding dataset.yaml")
    spec = root / "dataset.yaml"
    if not spec.exists():
        raise DataError(
            f"dataset folder '{root}' has no dataset.yaml (keys: name, task, sensor, classes, "
            "span_us; see the README's Datasets section)"
        )
    data = _read_yaml(spec)
    if not isinstance(data, dict):
        raise DataError(
            f"{spec}: must be a mapping of name, task, sensor, ..., got {type(data).__name__}"
        )
    task = data.get("task")
    if task not in TASKS:
        raise DataError(f"{spec}: task: got {task!r}, must be one of {', '.join(TASKS)}")
    required = _REQUIRED[task]
    missing = [k for k in required if k not in data]
    if missing:
        raise DataError(
            f"{spec}: missing key(s) {', '.join(missing)} (a {task} dataset needs {', '.join(required)})"
        )
    extra = sorted(str(k) for k in data if k not in required and k not in _OPTIONAL)
    if extra:
        allowed = ", ".join((*required, *_OPTIONAL))
        raise DataError(
            f"{spec}: unknown key(s) {', '.join(extra)} for a {task} dataset (allowed: {allowed})"
        )
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{spec}: name: got {name!r}, must be a non-empty string")
    description = data.get("description", f"own {task} event data from {root}")
    if not isinstance(description, str):
        raise DataError(f"{spec}: description: got {description!r}, must be a string")
    span_us = _int_field(data["span_us"], f"{spec}: span_us", 1, 2**62)

    sensor = data["sensor"]
    keys = set(sensor) if isinstance(sensor, dict) else None
    if keys == set(_CAMERA_KEYS):
        width = _int_field(sensor["width"], f"{spec}: sensor.width", 1, _MAX_SIDE)
        height = _int_field(sensor["height"], f"{spec}: sensor.height", 1, _MAX_SIDE)
        pols = _int_field(sensor["polarities"], f"{spec}: sensor.polarities", 1, 2)
        input_shape: tuple[int, ...] = (pols, height, width)
        sensor_size = (width, height, pols)
    elif keys == set(_AUDIO_KEYS):
        channels = _int_field(sensor["channels"], f"{spec}: sensor.channels", 1, _MAX_CHANNELS)
        if task == "flow":
            raise DataError(
                f"{spec}: sensor: a flow dataset needs a camera {{width, height, polarities}}, got {{channels}}"
            )
        input_shape = (channels,)
        sensor_size = (channels, 1, 1)
    else:
        got = sorted(str(k) for k in sensor) if isinstance(sensor, dict) else repr(sensor)
        raise DataError(
            f"{spec}: sensor: got {got}, must be {{width, height, polarities}} (camera) or {{channels}} (audio)"
        )

    classes: tuple[str, ...] = ()
    if task == "classification":
        raw = data["classes"]
        if not isinstance(raw, list) or len(raw) < 2:
            raise DataError(
                f"{spec}: classes: got {raw!r}, must be a list of at least 2 class names"
            )
        for c in raw:
            if isinstance(c, bool) or not isinstance(c, (str, int)):
                raise DataError(f"{spec}: classes: {c!r} is not a name (string or integer)")
        classes = tuple(str(c) for c in raw)
        dup = sorted({c for c in classes if classes.count(c) > 1})
        if dup:
            raise DataError(f"{spec}: classes: {', '.join(dup)} listed more than once")
    return DatasetInfo(
        name=name,
        input_shape=input_shape,
        num_classes=len(classes),
        sensor_size=sensor_size,
        description=description,
        source="folder",
        files=(str(root),),
        task=task,
        classes=classes,
        span_us=span_us,
    )


def _load_npy(path: Path) -> np.ndarray:
    try:
        if not path.is_file():
            raise DataError(f"{path}: not a regular file")
        return np.load(path, allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:  # truncated, foreign, a loop of symlinks
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(
            f"{path}: cannot be read as a .npy array ({exc.__class__.__name__}: {first})"
        ) from None


def check_events(events: np.ndarray, path: Path, info: DatasetInfo) -> np.ndarray:
    """One sample's events, checked against the sensor and span; returned as FOLDER_EVENT_DTYPE."""
    names = events.dtype.names
    if names is None or set(names) != {"x", "y", "t", "p"} or events.ndim != 1:
        got = f"fields {', '.join(names)}" if names else f"dtype {events.dtype}"
        raise DataError(
            f"{path}: got {got} with shape {list(events.shape)}, must be a 1-D structured array "
            "with integer fields x, y, t (µs), p"
        )
    for field in ("x", "y", "t", "p"):
        if events.dtype[field].kind not in "iu":
            raise DataError(
                f"{path}: field {field} has dtype {events.dtype[field]}, must be an integer type"
            )
    audio = len(info.input_shape) == 1
    w, h, pols = info.sensor_size
    limits = {"x": w, "y": h, "p": pols}
    for field, size in limits.items():
        col = events[field]
        bad = np.flatnonzero((col < 0) | (col >= size))
        if bad.size:
            i = int(bad[0])
            if audio:
                allowed = f"[0, {size - 1}] (channels)" if field == "x" else "0 for audio spikes"
            else:
                allowed = f"[0, {size - 1}]"
            raise DataError(
                f"{path}: event {i} is out of the sensor: {field} = {int(col[i])}, must be {allowed}"
            )
    t = events["t"]
    bad = np.flatnonzero((t < 0) | (t > int(info.span_us or 0)))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: event {i} has t = {int(t[i])} µs, must be in [0, {info.span_us}] (span_us)"
        )
    if t.size > 1:
        back = np.flatnonzero(np.diff(t) < 0)
        if back.size:
            i = int(back[0]) + 1
            raise DataError(
                f"{path}: times are not sorted: event {i} has t = {int(t[i])} µs after "
                f"t = {int(t[i - 1])} µs; sort each sample by t"
            )
    out = np.empty(events.shape[0], dtype=FOLDER_EVENT_DTYPE)
    for field in ("x", "y", "t", "p"):
        out[field] = events[field]
    return out


def check_flow(flow: np.ndarray, path: Path, info: DatasetInfo) -> np.ndarray:
    shape = (2, info.input_shape[-2], info.input_shape[-1])
    if flow.dtype != np.float32 or flow.shape != shape:
        raise DataError(
            f"{path}: got {flow.dtype} with shape {list(flow.shape)}, must be float32 "
            f"{list(shape)} (x then y pixel displacement per sensor pixel)"
        )
    if not np.isfinite(flow).all():
        raise DataError(f"{path}: holds NaN or infinite displacements, must be finite")
    return flow


@dataclass(frozen=True)
class FolderSamples:
    """One split of a dataset folder: ``samples[i] -> (events, target)``; a class index, or the
    native-resolution flow field.  Files are re-read on access (already checked at opening)."""

    info: DatasetInfo
    split: str
    files: tuple[Path, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        path = self.files[index]
        events = check_events(_load_npy(path), path, self.info)
        if self.info.task == "flow":
            flow_path = _flow_path(path)
            return events, check_flow(_load_npy(flow_path), flow_path, self.info)
        return events, self.labels[index]


def _flow_path(sample: Path) -> Path:
    return sample.with_name(sample.name[: -len(".npy")] + ".flow.npy")


def _read_labels(split_dir: Path, samples: Sequence[Path], info: DatasetInfo) -> tuple[int, ...]:
    path = split_dir / "labels.csv"
    if not path.is_file():
        raise DataError(
            f"{path}: missing; a classification split needs labels.csv with a 'file,label' "
            "header and one row per .npy sample"
        )
    by_name = {p.name: p for p in samples}
    index = {c: i for i, c in enumerate(info.classes)}
    labels: dict[str, int] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM is fine
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    if not rows or [c.strip() for c in rows[0]] != ["file", "label"]:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise DataError(f"{path}: line 1: got {got!r}, must be the header 'file,label'")
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise DataError(f"{path}: line {line}: got {len(row)} fields, must be 'file,label'")
        file, label = row[0].strip(), row[1].strip()
        name = file if file.endswith(".npy") else file + ".npy"
        if name not in by_name:
            raise DataError(f"{path}: line {line}: file '{file}' is not a sample in {split_dir}")
        if name in labels:
            raise DataError(f"{path}: line {line}: file '{file}' is labelled twice")
        if label not in index:
            raise DataError(
                f"{path}: line {line}: label '{label}' is not a class of dataset '{info.name}' "
                f"(classes: {', '.join(info.classes)})"
            )
        labels[name] = index[label]
    unlabelled = [p.name for p in samples if p.name not in labels]
    if unlabelled:
        more = f" and {len(unlabelled) - 1} more" if len(unlabelled) > 1 else ""
        raise DataError(
            f"{path}: no label for {split_dir / unlabelled[0]}{more}; add a 'file,label' row"
        )
    return tuple(labels[p.name] for p in samples)


def scan_split(info: DatasetInfo, split: str) -> FolderSamples:
    """Open one split of a dataset folder, checking every file it holds."""
    if split not in SPLITS:
        raise DataError(f"split: got {split!r}, must be one of {', '.join(SPLITS)}")
    root = Path(info.files[0])
    split_dir = root / split
    try:
        if not split_dir.is_dir():
            raise DataError(
                f"dataset folder '{root}' has no {split}/ folder (one .npy of events per sample)"
            )
        entries = sorted(split_dir.iterdir())
        samples = [
            p for p in entries if p.name.endswith(".npy") and not p.name.endswith(".flow.npy")
        ]
        flows = [p for p in entries if p.name.endswith(".flow.npy")]
    except OSError as exc:
        raise DataError(
            f"{split_dir}: cannot be listed ({exc.__class__.__name__}: {exc})"
        ) from None
    if not samples:
        raise DataError(
            f"{split_dir}: no samples; expected one .npy of structured events per sample"
        )
    if info.task == "flow":
        if (split_dir / "labels.csv").exists():
            raise DataError(
                f"{split_dir / 'labels.csv'}: a flow dataset has no labels (each sample has NAME.flow.npy)"
            )
        names = {p.name for p in samples}
        for f in flows:
            if f.name[: -len(".flow.npy")] + ".npy" not in names:
                raise DataError(
                    f"{f}: no sample {f.name[: -len('.flow.npy')]}.npy for this flow field"
                )
        for p in samples:
            if not _flow_path(p).exists():
                raise DataError(
                    f"{_flow_path(p)}: missing; every sample of a flow dataset needs its "
                    "float32 [2, H, W] flow field"
                )
        labels: tuple[int, ...] = tuple(-1 for _ in samples)
    else:
        if flows:
            raise DataError(
                f"{flows[0]}: a flow field in a classification dataset (task: classification)"
            )
        labels = _read_labels(split_dir, samples, info)
    out = FolderSamples(info, split, tuple(samples), labels)
    for i in range(len(out)):
        _ = out[i]  # every file checked now, not in the middle of training
    return out
