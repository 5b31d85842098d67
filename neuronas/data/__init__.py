"""Spiking datasets by name or folder: the built-in ``digits-events`` and ``flow-events``, tonic's
datasets from a data root, and a user's own recordings in a documented folder layout.

>>> from neuronas.data import load_dataset
>>> train = load_dataset("digits-events", "train", timesteps=8)
>>> x, y = train.tensors()          # x: [1437, 8, 2, 32, 32] float32, y: [1437]
>>> train.info.task                 # 'classification' ('flow': targets are [2, H, W] float32)

Importing this package is cheap (no torch, no tonic); :func:`load_dataset` imports them.
"""

from neuronas.data.info import SPLITS, TASKS, DatasetInfo, cache_dir
from neuronas.data.loading import load_dataset
from neuronas.data.registry import (
    DATASETS,
    check_input_shape,
    dataset_info,
    downsampled_shape,
    list_datasets,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "TASKS",
    "DatasetInfo",
    "cache_dir",
    "check_input_shape",
    "dataset_info",
    "downsampled_shape",
    "list_datasets",
    "load_dataset",
]
