"""tonic's datasets read from a local data root, never downloaded unless asked.

tonic's dataset classes download whenever their own ``_check_exists`` fails, and that check wants
the downloaded archive next to the extracted files (and, for N-MNIST, at least 10,000 of them).
neuronas checks instead that the *extracted* files tonic reads are where tonic reads them, and
then lets tonic's own class read them: the file walking, the native decoders and the labels are
tonic's.  Only with ``download=True`` is tonic's original check-then-download path used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from neuronas.data.framing import EventFramer, LazyFramedDataset
from neuronas.data.info import DatasetInfo
from neuronas.data.layouts import FETCH_NOTES, LAYOUTS, missing_files, where
from neuronas.errors import DataError

__all__ = ["load_tonic_dataset"]


def _offline_class(cls: type, name: str) -> type:
    """tonic's class with its download path closed: the files were checked by neuronas."""

    def _check_exists(self: Any) -> bool:
        return True

    def download(self: Any) -> None:  # pragma: no cover - unreachable after _check_exists
        raise DataError(f"dataset '{name}' is not present and download=False")

    # the same class name: tonic puts the files under save_to/<class name>/
    return type(cls.__name__, (cls,), {"_check_exists": _check_exists, "download": download})


def load_tonic_dataset(
    info: DatasetInfo,
    split: str,
    timesteps: int,
    *,
    data_root: str | os.PathLike[str] | None,
    download: bool,
    input_shape: tuple[int, ...],
    binarize: bool = True,
) -> LazyFramedDataset:
    """One split of a tonic dataset, framed on access (see ``neuronas.data.load_dataset``)."""
    import tonic.datasets

    name = info.name
    fetch = FETCH_NOTES.get(name) or (
        "or pass --download (download=True) to fetch it"
        + (f" ({info.download_size})" if info.download_size else "")
    )
    if data_root is None:
        expected = " and ".join(f"DIR/{f}" for f in info.files)
        raise DataError(
            f"dataset '{name}' is read from a local data root: pass --data-root DIR "
            f"(data_root=DIR) with {expected}, {fetch}"
        )
    root = Path(data_root).expanduser()
    expected = " and ".join(str(root / f) for f in info.files)
    if root.exists() and not root.is_dir():
        raise DataError(f"data root '{root}' is a file, must be a directory holding {expected}")
    cls = getattr(tonic.datasets, info.tonic_class or "")
    # files already in place are used as they are, even with --download: tonic's own check
    # would fetch the archive again when only the extracted files were kept
    if download and (not root.is_dir() or missing_files(name, split, root) is not None):
        try:
            root.mkdir(parents=True, exist_ok=True)
            source = cls(save_to=str(root), train=split == "train")
        except DataError:
            raise
        except Exception as exc:  # network, disk or archive failures, as tonic raises them
            raise DataError(
                f"dataset '{name}': downloading into '{root}' failed: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
    else:
        if not root.is_dir():
            raise DataError(
                f"data root '{root}' does not exist; dataset '{name}' expects {expected}; "
                f"create it and put the files there, {fetch}"
            )
        missing = missing_files(name, split, root)
        if missing is not None:
            raise DataError(
                f"dataset '{name}' ({split} split) not found under data root '{root}': "
                f"expected {missing}, as tonic.datasets.{cls.__name__} reads it; put the "
                f"files there, {fetch}"
            )
        try:
            source = _offline_class(cls, name)(save_to=str(root), train=split == "train")
        except DataError:
            raise
        except Exception as exc:  # a corrupt or foreign file where tonic looks
            raise DataError(
                f"dataset '{name}' ({split} split) under '{root}' cannot be read by "
                f"tonic.datasets.{cls.__name__}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
    if len(source) == 0:
        raise DataError(
            f"dataset '{name}' ({split} split) under '{root}' has no samples; expected "
            f"{where(LAYOUTS[name][split], root)}"
        )
    framer = EventFramer(info.sensor_size, timesteps, input_shape, binarize=binarize)
    return LazyFramedDataset(source, framer, info, split)
