"""Tiny files in the real on-disk layouts of tonic's datasets, for tests and benchmarks.

The writers produce the native formats tonic 1.7 reads (N-MNIST's 40-bit ATIS events, SHD's
HDF5, DVS Gesture's cut ``.npy`` files).  The ``*_root`` makers fill a data root with a few
samples per class whose events depend on the class (a blob at a class's place for the cameras,
a band of channels for audio), so a short search has something to learn; they are synthetic,
never a stand-in for the real recordings' difficulty.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_nmnist_bin(
    path: Path, x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray
) -> None:
    """N-MNIST's ATIS format: 5 bytes per event -- x, y, then polarity (bit 39) and a 23-bit
    microsecond timestamp, big-endian (Orchard's read_dataset.m / tonic.io.read_mnist_file)."""
    raw = np.zeros((x.size, 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p.astype(np.uint32) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def write_shd_h5(path: Path, samples: list[tuple[np.ndarray, np.ndarray, int]]) -> None:
    """SHD's layout (Cramer et al. 2020): spikes/times (s, float) and spikes/units (uint16) as
    variable-length rows, labels, and the extra/ group tonic reads on opening."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u, _) in enumerate(samples):
            times[i] = t.astype(np.float32)
            units[i] = u.astype(np.uint16)
        f.create_dataset("labels", data=np.array([s[2] for s in samples], dtype=np.uint16))
        keys = [f"digit-{i}".encode() for i in range(20)]
        f.create_dataset("extra/keys", data=np.array(keys))
        f.create_dataset("extra/speaker", data=np.arange(len(samples), dtype=np.uint16))


def shd_sample(rng: np.random.Generator, label: int, n: int = 300) -> tuple:
    """Spikes of a band of channels centred on the class's place in the 700, plus noise."""
    centre = 700 * (label + 0.5) / 20
    units = np.clip(np.round(rng.normal(centre, 12, n)), 0, 699).astype(np.int64)
    noise = rng.random(n) < 0.2
    units[noise] = rng.integers(0, 700, int(noise.sum()))
    return np.sort(rng.uniform(0, 0.8, n)), units, label


def shd_root(root: Path, per_class: int = 2, test_per_class: int = 1, seed: int = 0) -> Path:
    """``root/SHD/shd_{train,test}.h5`` with every one of the 20 classes."""
    rng = np.random.default_rng(seed)
    for name, k in (("shd_train.h5", per_class), ("shd_test.h5", test_per_class)):
        samples = [shd_sample(rng, c) for _ in range(k) for c in range(20)]
        write_shd_h5(root / "SHD" / name, samples)
    return root


def _blob(rng: np.random.Generator, label: int, classes: int, size: int, n: int) -> tuple:
    """Events of a blob at the class's place on a ring, drifting over the sample."""
    angle = 2 * np.pi * label / classes
    cx, cy = size / 2 + size / 3 * np.cos(angle), size / 2 + size / 3 * np.sin(angle)
    drift = np.linspace(-size / 10, size / 10, n)
    x = np.clip(np.round(rng.normal(cx + drift, size / 16)), 0, size - 1).astype(np.int64)
    y = np.clip(np.round(rng.normal(cy, size / 16, n)), 0, size - 1).astype(np.int64)
    return x, y, rng.integers(0, 2, n)


def nmnist_root(
    root: Path, per_class: int = 2, test_per_class: int = 1, seed: int = 0, n: int = 400
) -> Path:
    """``root/NMNIST/{Train,Test}/<digit>/*.bin`` for the 10 digits (34 x 34, ~300 ms)."""
    rng = np.random.default_rng(seed)
    for folder, k in (("Train", per_class), ("Test", test_per_class)):
        for digit in range(10):
            for i in range(k):
                x, y, p = _blob(rng, digit, 10, 34, n)
                t = np.sort(rng.integers(0, 300_000, n))
                write_nmnist_bin(root / "NMNIST" / folder / str(digit) / f"{i:05d}.bin", x, y, t, p)
    return root


def gesture_root(
    root: Path, per_class: int = 1, test_per_class: int = 1, seed: int = 0, n: int = 2000
) -> Path:
    """``root/DVSGesture/ibmGesture{Train,Test}/userNN_<lighting>/<label>.npy`` for the 11
    gestures: one file per gesture per user folder, events (x, y, p, t in ms) as tonic's cut
    version stores them, 128 x 128, ~1.5 s."""
    rng = np.random.default_rng(seed)
    user = 1
    for split, k in (("ibmGestureTrain", per_class), ("ibmGestureTest", test_per_class)):
        for _ in range(k):
            folder = root / "DVSGesture" / split / f"user{user:02d}_fluorescent"
            folder.mkdir(parents=True, exist_ok=True)
            for label in range(11):
                x, y, p = _blob(rng, label, 11, 128, n)
                t = np.sort(rng.integers(0, 1_500, n))
                np.save(folder / f"{label}.npy", np.stack([x, y, p, t], axis=1).astype(np.int64))
            user += 1
    return root
