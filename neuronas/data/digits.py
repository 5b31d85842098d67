"""``digits-events``: scikit-learn's handwritten digits as DVS recordings, built offline.

scikit-learn ships the 1,797 8x8 digits of the UCI "Optical Recognition of Handwritten Digits"
set inside the package, so nothing is downloaded.  Each digit is upscaled (bilinear, 8 -> 24
pixels), normalised to a peak intensity of 1, and recorded by the simulated sensor of
:mod:`neuronas.data.dvs` while it makes N-MNIST's three-saccade triangle (300 ms).  The events are
built once per seed and cached under :func:`~neuronas.data.registry.cache_dir`, keyed by a hash of
every parameter that shapes them; binary frames are cached there too (bit-packed, per T and
shape), and the last framed tensors are kept in memory.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuronas.data.dvs import EVENT_DTYPE, DVSParams, bilinear_upscale, simulate_saccades
from neuronas.data.info import atomic_write, cache_dir
from neuronas.data.registry import DATASETS

__all__ = [
    "DIGITS_PARAMS",
    "DigitsEvents",
    "build_digits_events",
    "digits_events",
    "load_digits_events",
]

#: bump when the recipe changes in a way the parameters below do not capture
_RECIPE_VERSION = 1
_UPSCALE = 3  # 8x8 -> 24x24, leaving an 8-pixel margin for the saccades on the 32x32 sensor
_TEST_FRACTION = 0.2
_SPLIT_SEED = 0  # the split is fixed: test accuracies stay comparable across sensor seeds

#: the sensor used for digits-events (nominal threshold 0.4 and black level 0.2 give ~2.9k
#: events per digit, close to N-MNIST's ~4k on a 34x34 sensor, and build in a few seconds)
DIGITS_PARAMS = DVSParams(
    sensor_px=32,
    saccade_us=100_000,
    step_us=4_000,
    threshold=0.4,
    threshold_mismatch=0.1,
    black_level=0.2,
    background_hz=0.2,
)


@dataclass(frozen=True)
class DigitsEvents:
    """Every digit's events back to back (sample i is ``events[offsets[i]:offsets[i+1]]``)."""

    events: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    train_index: np.ndarray
    test_index: np.ndarray
    key: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sample(self, i: int) -> np.ndarray:
        return self.events[self.offsets[i] : self.offsets[i + 1]]

    def split_index(self, split: str) -> np.ndarray:
        return self.train_index if split == "train" else self.test_index


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def _cache_key(seed: int, params: DVSParams) -> str:
    # scikit-learn's digits are the fixed UCI set; not hashing them spares a cached run the
    # seconds it takes to import sklearn.datasets
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {
                "recipe": _RECIPE_VERSION,
                "seed": seed,
                "upscale": _UPSCALE,
                "test_fraction": _TEST_FRACTION,
                "split_seed": _SPLIT_SEED,
                "params": params.to_dict(),
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:16]


def build_digits_events(
    seed: int = 0, params: DVSParams = DIGITS_PARAMS, *, progress: bool | None = False
) -> DigitsEvents:
    """Record all 1,797 digits (no cache); deterministic for ``seed``."""
    from sklearn.model_selection import train_test_split

    images, labels = _digits()
    up = bilinear_upscale(images, _UPSCALE)
    up /= np.maximum(up.max(axis=(1, 2), keepdims=True), 1e-9)
    events, offsets = simulate_saccades(
        up.astype(np.float32), params, np.random.default_rng(seed), progress=progress
    )
    train_index, test_index = train_test_split(
        np.arange(labels.size), test_size=_TEST_FRACTION, stratify=labels, random_state=_SPLIT_SEED
    )
    return DigitsEvents(
        events=events,
        offsets=offsets,
        labels=labels,
        train_index=np.sort(train_index),
        test_index=np.sort(test_index),
        key=_cache_key(seed, params),
    )


#: what np.load raises on a truncated, foreign or half-written .npz
_UNREADABLE = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile)

_EVENTS_MEMO: dict[tuple[str, int], DigitsEvents] = {}


def digits_events(seed: int = 0, *, params: DVSParams = DIGITS_PARAMS) -> DigitsEvents:
    """The digits' events, from the disk cache when it has them, else built and cached."""
    key = _cache_key(seed, params)
    where = cache_dir()
    memo_key = (str(where), seed)
    memo = _EVENTS_MEMO.get(memo_key)
    if memo is not None and memo.key == key:
        return memo
    path = where / f"digits-events-{key}.npz"
    data = _read_cache(path, key)
    if data is None:
        # a first use takes seconds: show a bar when someone is watching a terminal
        data = build_digits_events(seed, params, progress=None)
        _write_cache(path, data)
    _EVENTS_MEMO[memo_key] = data
    return data


def _read_cache(path: Path, key: str) -> DigitsEvents | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = DigitsEvents(
                events=z["events"],
                offsets=z["offsets"],
                labels=z["labels"],
                train_index=z["train_index"],
                test_index=z["test_index"],
                key=str(z["key"]),
            )
    except _UNREADABLE:
        return None  # a truncated or foreign file: rebuild (and overwrite) it
    if data.key != key or data.events.dtype != EVENT_DTYPE:
        return None
    return data


def _write_cache(path: Path, data: DigitsEvents) -> None:
    atomic_write(
        path,
        {
            "events": data.events,
            "offsets": data.offsets,
            "labels": data.labels,
            "train_index": data.train_index,
            "test_index": data.test_index,
            "key": np.asarray(data.key),
        },
    )


def _frame_all(data: DigitsEvents, timesteps: int, shape: tuple[int, ...], binarize: bool):
    """Every digit framed; binary frames are cached on disk bit-packed (~0.5 MB per timestep),
    since framing 1,797 samples through tonic takes seconds and every training process needs it."""
    from neuronas.data.framing import EventFramer

    info = DATASETS["digits-events"]
    tag = "x".join(str(s) for s in shape)
    path = cache_dir() / f"digits-frames-{data.key}-T{timesteps}-{tag}.npz"
    full = (len(data), timesteps, *shape)
    if binarize and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                packed = z["packed"]
            bits = np.unpackbits(packed, axis=-1, count=shape[-1])
            return bits.reshape(full).astype(np.float32)
        except _UNREADABLE:
            pass  # unreadable or another shape: frame again and overwrite
    framer = EventFramer(info.sensor_size, timesteps, shape, binarize=binarize)
    frames = np.stack([framer(data.sample(i)) for i in range(len(data))])
    if binarize:
        atomic_write(path, {"packed": np.packbits(frames.astype(np.uint8), axis=-1)})
    return frames


_FRAMES_MEMO: dict[tuple, tuple] = {}


def load_digits_events(
    split: str,
    timesteps: int,
    *,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    binarize: bool = True,
):
    """The ``digits-events`` split framed to ``[T, 2, H, W]`` (see ``load_dataset``)."""
    import torch

    from neuronas.data.framing import FramedDataset

    info = DATASETS["digits-events"]
    shape = tuple(input_shape) if input_shape is not None else info.input_shape
    data = digits_events(seed)
    memo_key = (data.key, timesteps, shape, binarize)
    cached = _FRAMES_MEMO.get(memo_key)
    if cached is None:
        frames = _frame_all(data, timesteps, shape, binarize)
        cached = (torch.from_numpy(frames), torch.from_numpy(data.labels.copy()))
        _FRAMES_MEMO.clear()  # one framing at a time: a search sweeping T must not pile them up
        _FRAMES_MEMO[memo_key] = cached
    frames_all, labels_all = cached
    index = torch.from_numpy(data.split_index(split))
    split_index = data.split_index(split)
    return FramedDataset(
        frames_all[index],
        labels_all[index],
        info,
        split,
        events=lambda i: data.sample(int(split_index[i])),
    )
