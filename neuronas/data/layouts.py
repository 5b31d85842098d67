"""Where each tonic dataset's files must be under a data root (no torch, no tonic here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["FETCH_NOTES", "LAYOUTS", "Layout", "missing_files", "where"]


@dataclass(frozen=True)
class Layout:
    """Where tonic reads one split: a folder of files matching ``pattern``, or one file."""

    path: str  # relative to the data root (tonic's save_to); the first part is tonic's class name
    pattern: str | None  # glob inside the folder; None: ``path`` is a single file
    origin: str  # what puts it there, for the error message


LAYOUTS: dict[str, dict[str, Layout]] = {
    "nmnist": {
        "train": Layout("NMNIST/Train", "*/*.bin", "extracted from N-MNIST's train.zip"),
        "test": Layout("NMNIST/Test", "*/*.bin", "extracted from N-MNIST's test.zip"),
    },
    "shd": {
        "train": Layout("SHD/shd_train.h5", None, "unzipped from shd_train.h5.zip"),
        "test": Layout("SHD/shd_test.h5", None, "unzipped from shd_test.h5.zip"),
    },
    "dvsgesture": {
        "train": Layout(
            "DVSGesture/ibmGestureTrain", "user*_*/*.npy", "extracted from ibmGestureTrain.tar.gz"
        ),
        "test": Layout(
            "DVSGesture/ibmGestureTest", "user*_*/*.npy", "extracted from ibmGestureTest.tar.gz"
        ),
    },
    "pokerdvs": {
        "train": Layout("POKERDVS/pips_train", "*/*.npy", "extracted from pips_train.tar.gz"),
        "test": Layout("POKERDVS/pips_test", "*/*.npy", "extracted from pips_test.tar.gz"),
    },
}


def where(layout: Layout, root: Path) -> str:
    full = root / layout.path
    return str(full / layout.pattern) if layout.pattern else str(full)


def missing_files(name: str, split: str, root: Path) -> str | None:
    """None when the split's files are where tonic reads them, else what is expected there."""
    layout = LAYOUTS[name][split]
    full = root / layout.path
    if layout.pattern is None:
        present = full.is_file()
    else:
        present = full.is_dir() and next(full.glob(layout.pattern), None) is not None
    return None if present else f"{where(layout, root)} ({layout.origin})"


#: datasets tonic cannot download: what to do instead of --download
FETCH_NOTES: dict[str, str] = {
    "pokerdvs": (
        "or get pips_train.tar.gz and pips_test.tar.gz from "
        "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html and extract them there "
        "(tonic 1.7 cannot download POKER-DVS)"
    ),
}
