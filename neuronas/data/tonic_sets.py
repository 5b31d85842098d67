"""tonic's datasets read from a local data root, never downloaded unless asked.

tonic's dataset classes download whenever their own ``_check_exists`` fails, and that check wants
the downloaded archive next to the extracted files (and, for N-MNIST, at least 10,000 of them).
neuronas checks instead that the *extracted* files tonic reads are where tonic reads them, and
then lets tonic's own class read them: the file walking, the native decoders and the labels are
tonic's.  Only with ``download=True`` is tonic's original check-then-download path used.

tonic trusts its files; neuronas does not.  When a split is opened, what is cheap to check is
checked (N-MNIST's class folders and file sizes, SHD's HDF5 keys and labels); each sample tonic
decodes is checked when it is read (inside the sensor, times finite and >= 0, a known class).  A
bad file is one DataError naming it, never a traceback or a silently wrong label.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from neuronas.data.framing import EventFramer, LazyFramedDataset
from neuronas.data.info import DatasetInfo
from neuronas.data.layouts import LAYOUTS, check_files, missing_files, where
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
    cls = getattr(tonic.datasets, info.tonic_class or "")
    root = None if data_root is None else Path(data_root).expanduser()
    # files already in place are used as they are, even with --download: tonic's own check
    # would fetch the archive again when only the extracted files were kept
    if (
        download
        and root is not None
        and not root.is_file()
        and missing_files(name, split, root) is not None
    ):
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
        root = check_files(info, split, data_root)
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
    checked = CheckedSource(source, info, root / LAYOUTS[name][split].path)
    if len(checked) == 0:
        raise DataError(
            f"dataset '{name}' ({split} split) under '{root}' has no samples; expected "
            f"{where(LAYOUTS[name][split], root)}"
        )
    framer = EventFramer(info.sensor_size, timesteps, input_shape, binarize=binarize)
    return LazyFramedDataset(checked, framer, info, split)


#: what reading a corrupt or foreign file through tonic raises
_READ_ERRORS = (OSError, ValueError, KeyError, IndexError, EOFError, TypeError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class CheckedSource:
    """A tonic dataset whose files were checked at opening and whose samples are checked as read.

    ``self[i]`` gives ``(events, label)`` like tonic's class, or raises a one-line DataError
    naming the file (and sample) that is wrong.
    """

    def __init__(self, source: Any, info: DatasetInfo, location: Path) -> None:
        self.source = source
        self.info = info
        self.location = location
        if info.name == "nmnist":
            self._check_nmnist_files()
        elif info.name == "shd":
            self._check_shd_file()

    def __len__(self) -> int:
        try:
            return len(self.source)
        except _READ_ERRORS as exc:
            raise DataError(f"{self.location}: cannot be read ({_first_line(exc)})") from None

    def where(self, index: int) -> str:
        """The file holding sample ``index`` (and the sample's position in it, for SHD)."""
        data = getattr(self.source, "data", None)
        if isinstance(data, list) and index < len(data) and isinstance(data[index], str):
            return data[index]
        return f"{self.location} sample {index}"

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        try:
            # a NaN time becomes a huge negative integer in tonic's cast; the check below says so
            with np.errstate(invalid="ignore"):
                events, label = self.source[index]
        except _READ_ERRORS as exc:
            raise DataError(f"{self.where(index)}: cannot be read ({_first_line(exc)})") from None
        self._check_sample(index, events, int(label))
        return events, int(label)

    def _check_sample(self, index: int, events: np.ndarray, label: int) -> None:
        info = self.info
        if not 0 <= label < info.num_classes:
            raise DataError(
                f"{self.where(index)}: label {label}, must be in [0, {info.num_classes - 1}] "
                f"({info.num_classes} classes of '{info.name}')"
            )
        if events.size == 0:
            raise DataError(f"{self.where(index)}: holds no events")
        w, h, pols = info.sensor_size
        limits = {"x": w, "y": h, "p": pols} if "y" in (events.dtype.names or ()) else {"x": w}
        for field, size in limits.items():
            col = events[field]
            bad = np.flatnonzero((col < 0) | (col >= size))
            if bad.size:
                i = int(bad[0])
                raise DataError(
                    f"{self.where(index)}: event {i} is out of the {w}x{h} sensor: "
                    f"{field} = {int(col[i])}, must be in [0, {size - 1}] (a corrupt or foreign file?)"
                )
        t = events["t"]
        bad = np.flatnonzero(t < 0)
        if bad.size:
            i = int(bad[0])
            raw = self._raw_time(index, i)
            raise DataError(
                f"{self.where(index)}: event {i} has time {raw}, must be finite and >= 0"
            )

    def _raw_time(self, index: int, i: int) -> str:
        """The time as stored (SHD keeps seconds as floats; a NaN became a huge negative int)."""
        if self.info.name != "shd":
            return f"{int(self.source[index][0]['t'][i])} µs"
        import h5py

        with h5py.File(self.location, "r") as f:
            return f"{float(f['spikes/times'][index][i])!r} s"

    def _check_nmnist_files(self) -> None:
        """tonic takes a .bin's label from the last character of its folder: Train/12 is read
        as 2, so every folder holding .bin files must be one digit; every file a whole number of
        5-byte events, and readable (a symlink loop is not)."""
        for path in self.source.data:
            folder = os.path.basename(os.path.dirname(path))
            if folder not in {str(d) for d in range(10)}:
                raise DataError(
                    f"{os.path.dirname(path)}: folder '{folder}' is not an N-MNIST class; "
                    "the .bin files must be in folders 0 .. 9 (the folder names the label)"
                )
            try:
                size = os.stat(path).st_size
            except OSError as exc:
                raise DataError(f"{path}: cannot be read ({_first_line(exc)})") from None
            if size == 0:
                raise DataError(f"{path}: empty file, an N-MNIST recording holds 5-byte events")
            if size % 5:
                raise DataError(
                    f"{path}: {size} bytes is not a whole number of 5-byte N-MNIST events "
                    "(truncated or not an N-MNIST file)"
                )

    def _check_shd_file(self) -> None:
        import h5py

        try:
            with h5py.File(self.location, "r") as f:
                missing = [k for k in ("spikes/times", "spikes/units", "labels") if k not in f]
                if missing:
                    raise DataError(
                        f"{self.location}: no {', '.join(missing)} in the HDF5 file; SHD's "
                        "layout has spikes/times, spikes/units, labels and extra/keys"
                    )
                labels = np.asarray(f["labels"][()])
                n_times, n_units = len(f["spikes/times"]), len(f["spikes/units"])
        except DataError:
            raise
        except _READ_ERRORS as exc:
            raise DataError(f"{self.location}: cannot be read ({_first_line(exc)})") from None
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise DataError(
                f"{self.location}: labels has dtype {labels.dtype} and shape "
                f"{list(labels.shape)}, must be 1-D integers"
            )
        if not n_times == n_units == labels.size:
            raise DataError(
                f"{self.location}: {n_times} spikes/times rows, {n_units} spikes/units rows and "
                f"{labels.size} labels, must be one of each per sample"
            )
        bad = np.flatnonzero((labels < 0) | (labels >= self.info.num_classes))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{self.location}: labels[{i}] = {int(labels[i])}, must be in "
                f"[0, {self.info.num_classes - 1}] ({self.info.num_classes} classes of '{self.info.name}')"
            )
