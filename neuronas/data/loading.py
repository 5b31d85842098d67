"""``load_dataset``: one entry point that hands a request to the loader of its dataset.

This module imports the registry and (lazily, when called) the loaders; none of them imports it,
so the dispatch adds no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from neuronas.data.info import DatasetInfo
from neuronas.data.registry import check_input_shape, check_request, dataset_info

if TYPE_CHECKING:  # pragma: no cover
    from neuronas.data.framing import FramedDataset, LazyFramedDataset

__all__ = ["load_dataset"]


def load_dataset(
    name: str | Path | DatasetInfo,
    split: str,
    timesteps: int,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = False,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    binarize: bool = True,
) -> FramedDataset | LazyFramedDataset:
    """A ``torch.utils.data.Dataset`` of ``(frames, target)``: frames float32 ``[T, C, H, W]`` (or ``[T, F]``).

    ``name`` is a dataset name (``neuronas datasets`` lists them) or the path of a dataset
    folder (``dataset.yaml``, ``train/``, ``test/``; see :mod:`neuronas.data.folder`).

    Events are framed with ``tonic.transforms.ToFrame(n_time_bins=timesteps)``: each sample's
    span from first to last event is cut into T equal bins.  With ``binarize`` (default) a pixel
    that saw any event of a polarity in a bin is 1, else 0 -- the chip's word lines carry binary
    spikes, and the cost model's input rate is the mean of these frames; ``binarize=False``
    keeps tonic's event counts.  ``input_shape`` (see :func:`check_input_shape`) downsamples.

    The target follows ``dataset.info.task``: an ``int`` class index for ``classification``; for
    ``flow`` a float32 ``[2, h, w]`` tensor, the pixel displacement (x, y) over the sample,
    downsampled like the events (block-averaged, and scaled by the same factor per axis).

    Built-in datasets (``digits-events``, ``flow-events``; ``seed`` picks their noise
    realisation) also have ``.tensors() -> (X [N, T, ...], targets [N, ...])``.  The tonic
    datasets are read from ``data_root`` and never downloaded unless ``download=True``.
    """
    info = dataset_info(name)
    check_request(split, timesteps)
    shape = check_input_shape(info, input_shape) if input_shape is not None else info.input_shape
    if info.name == "digits-events" and info.builtin:
        from neuronas.data.digits import load_digits_events

        return load_digits_events(split, timesteps, input_shape=shape, seed=seed, binarize=binarize)
    if info.name == "flow-events" and info.builtin:
        from neuronas.data.flow import load_flow_events

        return load_flow_events(split, timesteps, input_shape=shape, seed=seed, binarize=binarize)
    if info.is_folder:
        from neuronas.data.folder import scan_split
        from neuronas.data.framing import EventFramer, LazyFramedDataset

        source = scan_split(info, split)
        framer = EventFramer(info.sensor_size, timesteps, shape, binarize=binarize)
        return LazyFramedDataset(source, framer, info, split)
    from neuronas.data.tonic_sets import load_tonic_dataset

    return load_tonic_dataset(
        info,
        split,
        timesteps,
        data_root=data_root,
        download=download,
        input_shape=shape,
        binarize=binarize,
    )
