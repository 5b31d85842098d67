"""Spiking datasets by name: the built-in ``digits-events`` and tonic's datasets from a data root.

>>> from neuronas.data import load_dataset
>>> train = load_dataset("digits-events", "train", timesteps=8)
>>> x, y = train.tensors()          # x: [1437, 8, 2, 32, 32] float32, y: [1437]

Importing this package is cheap (no torch, no tonic); :func:`load_dataset` imports them.
"""

from neuronas.data.registry import (
    DATASETS,
    SPLITS,
    DatasetInfo,
    cache_dir,
    check_input_shape,
    dataset_info,
    list_datasets,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "cache_dir",
    "check_input_shape",
    "dataset_info",
    "list_datasets",
    "load_dataset",
]
