"""Where each tonic dataset's files must be under a data root (no torch, no tonic here)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronas.data.info import not_there
from neuronas.errors import DataError

__all__ = [
    "FETCH_NOTES",
    "LAYOUTS",
    "Layout",
    "check_files",
    "fetch_hint",
    "missing_files",
    "where",
]


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


#: datasets tonic cannot download: what to do instead of `neuronas datasets NAME --download`
FETCH_NOTES: dict[str, str] = {
    "pokerdvs": (
        "get pips_train.tar.gz and pips_test.tar.gz from "
        "http://www2.imse-cnm.csic.es/caviar/POKERDVS.html and extract them there "
        "(tonic 1.7 cannot download POKER-DVS)"
    ),
}


def fetch_hint(info: Any) -> str:
    """How to get tonic dataset ``info``'s files: the command that downloads them once (the
    only one that does: a search or training never downloads), or what to do where tonic cannot."""
    note = FETCH_NOTES.get(info.name)
    if note:
        return note
    size = f" ({info.download_size})" if info.download_size else ""
    return f"`neuronas datasets {info.name} --data-root DIR --download` fetches them once{size}"


def check_files(info: Any, split: str, data_root: str | os.PathLike[str] | None) -> Path:
    """The data root, once ``split`` of tonic dataset ``info`` is under it where tonic reads it;
    else a one-line :class:`~neuronas.errors.DataError` saying what is missing, where it goes
    and how to get it (:func:`fetch_hint`).  Nothing is read or downloaded."""
    name = info.name
    hint = fetch_hint(info)
    if data_root is None:
        expected = " and ".join(f"DIR/{f}" for f in info.files)
        raise DataError(
            f"dataset '{name}' is read from files under a data root and none was given: pass "
            f"--data-root DIR (data_root=DIR) with {expected}; {hint}"
        )
    root = Path(data_root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else not_there(root)
        expected = " and ".join(str(root / f) for f in info.files)
        raise DataError(
            f"dataset '{name}': data root '{root}' {what}; give --data-root the folder holding "
            f"{expected}; {hint}"
        )
    missing = missing_files(name, split, root)
    if missing is not None:
        raise DataError(
            f"dataset '{name}' ({split} split) is not under data root '{root}': expected "
            f"{missing}; put the files there or give --data-root the folder that holds them; "
            f"{hint}"
        )
    return root
