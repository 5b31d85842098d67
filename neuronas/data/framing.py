"""Events -> frames with tonic's transforms, and the torch datasets that serve them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tonic.transforms as tt
import torch
import torch.utils.data

from neuronas.data.info import DatasetInfo
from neuronas.errors import DataError

__all__ = ["EventFramer", "FramedDataset", "LazyFramedDataset"]

#: refuse to materialise more than this in one ``.tensors()`` call (float32 bytes)
MAX_TENSOR_BYTES = 4 * 2**30


class EventFramer:
    """tonic events -> float32 frames ``[T, C, H, W]`` (or ``[T, F]`` for 1-D sensors).

    Composes ``tonic.transforms.Downsample`` (only when the requested shape is smaller than the
    sensor) and ``tonic.transforms.ToFrame(n_time_bins=T)``; events are sorted by time first
    because ToFrame's bins are found by binary search on ``t``.
    """

    def __init__(
        self,
        sensor_size: tuple[int, int, int],
        timesteps: int,
        input_shape: Sequence[int],
        *,
        binarize: bool = True,
    ) -> None:
        self.timesteps = timesteps
        self.input_shape = tuple(int(s) for s in input_shape)
        self.binarize = binarize
        w, h, p = sensor_size
        if len(self.input_shape) == 3:
            target_w, target_h = self.input_shape[2], self.input_shape[1]
        else:
            target_w, target_h = self.input_shape[0], 1
        steps: list[Callable[[np.ndarray], Any]] = []
        if (target_w, target_h) != (w, h):
            steps.append(tt.Downsample(sensor_size=sensor_size, target_size=(target_w, target_h)))
        self.frame_size = (target_w, target_h, p)
        self.sensor_size = (w, h, p)
        steps.append(tt.ToFrame(sensor_size=self.frame_size, n_time_bins=timesteps))
        self.transform = tt.Compose(steps)

    def flow(self, flow: np.ndarray) -> np.ndarray:
        """A sensor-resolution flow field ``[2, H, W]`` at the frames' resolution ``[2, h, w]``.

        ``tonic.transforms.Downsample`` sends pixel x to ``int(x * w / W)``; the flow of a frame
        pixel is the mean over the sensor pixels that land on it (the same float expression picks
        them), and a displacement of d sensor pixels is d * w / W frame pixels (likewise in y).
        """
        w, h = self.frame_size[:2]
        if (w, h) == self.sensor_size[:2]:
            return np.asarray(flow, dtype=np.float32)
        factor = np.asarray((w, h)) / self.sensor_size[:2]

        def block_mean(n_in: int, n_out: int, f: float) -> np.ndarray:
            m = np.zeros((n_out, n_in))
            m[(np.arange(n_in) * f).astype(np.int64), np.arange(n_in)] = 1.0
            return m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)

        mx = block_mean(self.sensor_size[0], w, float(factor[0]))
        my = block_mean(self.sensor_size[1], h, float(factor[1]))
        out = np.einsum("yh,chw,xw->cyx", my, np.asarray(flow, dtype=np.float64), mx)
        out[0] *= factor[0]
        out[1] *= factor[1]
        return out.astype(np.float32)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        if events.size > 1 and np.any(np.diff(events["t"]) < 0):
            events = events[np.argsort(events["t"], kind="stable")]
        frames = np.asarray(self.transform(events))
        frames = frames.reshape(self.timesteps, *self.input_shape)
        if self.binarize:
            return (frames > 0).astype(np.float32)
        return frames.astype(np.float32)


class FramedDataset(torch.utils.data.Dataset):
    """Framed samples held in memory: ``(frames [T, ...] float32, target)``.

    The target is an ``int`` label (``info.task == "classification"``) or a float32 ``[2, h, w]``
    flow tensor (``"flow"``).  ``.tensors()`` gives the whole split as ``(X [N, T, ...],
    y [N] int64 or [N, 2, h, w] float32)`` so a trainer can batch by slicing, without a DataLoader.
    """

    def __init__(
        self,
        frames: torch.Tensor,
        labels: torch.Tensor,
        info: DatasetInfo,
        split: str,
        events: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        self.frames = frames
        self.labels = labels
        self.info = info
        self.split = split
        self._events = events

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if self.info.task == "flow":
            return self.frames[index], self.labels[index]
        return self.frames[index], int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames, self.labels

    def events(self, index: int) -> np.ndarray:
        """The raw tonic-style events of sample ``index`` (before framing)."""
        if self._events is None:
            raise DataError(f"dataset '{self.info.name}' keeps no raw events")
        return self._events(index)

    @property
    def targets(self) -> list[Any]:
        if self.info.task == "flow":
            return list(self.labels)
        return [int(v) for v in self.labels]

    def __repr__(self) -> str:
        return (
            f"FramedDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, "
            f"frames={tuple(self.frames.shape[1:])})"
        )


class LazyFramedDataset(torch.utils.data.Dataset):
    """Events framed on access: ``(frames [T, ...] float32, target)``, the target as in
    :class:`FramedDataset`.  ``source[i]`` gives ``(events, label or sensor-resolution flow)``."""

    def __init__(self, source: Any, framer: EventFramer, info: DatasetInfo, split: str) -> None:
        self.source = source
        self.framer = framer
        self.info = info
        self.split = split

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        events, target = self.source[index]
        frames = torch.from_numpy(self.framer(events))
        if self.info.task == "flow":
            return frames, torch.from_numpy(self.framer.flow(target))
        return frames, int(target)

    def events(self, index: int) -> np.ndarray:
        return self.source[index][0]

    def tensors(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame every sample into one tensor (refused beyond 4 GiB: use a DataLoader then)."""
        n = len(self)
        nbytes = n * self.framer.timesteps * int(np.prod(self.framer.input_shape)) * 4
        if nbytes > MAX_TENSOR_BYTES:
            raise DataError(
                f"dataset '{self.info.name}' {self.split} split would take "
                f"{nbytes / 2**30:.1f} GiB as one tensor (limit 4 GiB); use fewer samples "
                "(max_train_samples), a smaller input_shape or timesteps, or a DataLoader"
            )
        x = torch.empty((n, self.framer.timesteps, *self.framer.input_shape), dtype=torch.float32)
        target = self.info.target_shape(self.framer.input_shape)
        y = torch.empty((n, *target), dtype=torch.float32 if target else torch.int64)
        indices: Any = range(n)
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"framing {self.info.name} {self.split}", unit="sample")
        for i in indices:
            x[i], y[i] = self[i]
        return x, y

    def __repr__(self) -> str:
        return (
            f"LazyFramedDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, "
            f"frames={(self.framer.timesteps, *self.framer.input_shape)})"
        )
