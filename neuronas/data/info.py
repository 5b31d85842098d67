"""What a dataset is (shape, task, classes, where its files are) and where built data is cached.

The one module every other part of ``neuronas.data`` may import: it imports none of them, which is
what keeps the registry and the loaders free of import cycles.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SPLITS",
    "TASKS",
    "DatasetInfo",
    "atomic_write",
    "cache_dir",
    "fmt_shape",
    "not_there",
]

SPLITS = ("train", "test")

#: what a sample's target is: a class index, or a dense [2, H, W] pixel displacement
TASKS = ("classification", "flow")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset gives the network, and where its files must be.

    ``input_shape`` is the shape of one timestep of a framed sample: ``(C, H, W)`` for event
    cameras (C = polarity channels, OFF then ON) or ``(F,)`` for 1-D sensors (SHD's 700
    cochlea channels).  ``sensor_size`` is tonic's ``(W, H, P)``.  ``task`` says what the target
    of a sample is: a class index (``num_classes`` of them) for ``classification``; for ``flow``
    a float32 ``[2, H, W]`` pixel displacement (x then y) over the sample, at the input's
    resolution (``num_classes`` is 0).  ``files`` says, relative to the data root, which files or
    folders tonic reads (empty for built-in datasets; the folder for a user's own dataset).
    """

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    sensor_size: tuple[int, int, int]
    description: str
    source: str = "tonic"
    files: tuple[str, ...] = ()
    tonic_class: str | None = None
    download_size: str = ""
    task: str = "classification"
    classes: tuple[str, ...] = ()
    span_us: int | None = None

    @property
    def builtin(self) -> bool:
        return self.source == "built-in"

    @property
    def is_folder(self) -> bool:
        """A user's own dataset folder (``dataset.yaml`` + ``train/`` + ``test/``)."""
        return self.source == "folder"

    def target_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        """One sample's target: ``()`` for a class index, ``(2, h, w)`` for flow at ``input_shape``."""
        if self.task != "flow":
            return ()
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        return (2, int(shape[-2]), int(shape[-1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "sensor_size": list(self.sensor_size),
            "description": self.description,
            "source": self.source,
            "files": list(self.files),
            "tonic_class": self.tonic_class,
        }


def cache_dir() -> Path:
    """Where built datasets are cached: ``$NEURONAS_CACHE_DIR``, else ``~/.cache/neuronas``."""
    env = os.environ.get("NEURONAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuronas"


def not_there(path: Path) -> str:
    """Why an absent path is absent: a link that leads nowhere reads differently from nothing."""
    if path.is_symlink():
        return "is a symbolic link that leads nowhere (a loop or a dangling link)"
    return "does not exist"


def fmt_shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def atomic_write(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` to a temporary file, then rename: several workers may build at once, and a
    reader must never see half a file.  A read-only cache is no reason to fail (not kept)."""
    import numpy as np

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache should be readable
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
