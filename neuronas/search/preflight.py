"""The data preflight: one batch of the dataset through one candidate, before the first trial.

A search whose data cannot be read (no ``--data-root``, a root that is not there, files missing
or unreadable) or cannot be framed at the shape the space's candidates take would otherwise fail
every trial the same way.  :func:`preflight` finds that out first, in about a second: for every
input shape the space feeds its candidates (:meth:`SearchSpace.input_shapes`) it opens both
splits and frames their first samples, then builds one seeded candidate and runs a batch through
it.  What it finds is one :class:`~neuronas.errors.DataError` line naming the dataset, the data
root and what to do (exit 2); no trial is started, and for a new run nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuronas.errors import DataError, NeuronasError

__all__ = ["preflight"]

#: samples in the preflight batch (fewer when the split is smaller)
BATCH = 2


def _check_files(info: Any, data_root: str | None) -> None:
    """Both splits of a tonic dataset where tonic reads them, else the loader's one line."""
    from neuronas.data.layouts import check_files

    for split in ("train", "test"):
        try:
            check_files(info, split, data_root)
        except DataError as exc:
            raise DataError(f"{exc}; no trial was run") from None


def _where(info: Any, data_root: str | None) -> str:
    if info.is_folder or info.builtin or data_root is None:
        return f"dataset '{info.name}'"
    return f"dataset '{info.name}' under data root '{Path(data_root).expanduser()}'"


def preflight(
    space: Any,
    chip: Any,
    dataset: str,
    *,
    data_root: str | None,
    input_shape: Sequence[int] | None = None,
    num_outputs: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Check that a search of ``space`` on ``dataset`` can feed its candidates; one line if not.

    Raises :class:`~neuronas.errors.DataError` naming the dataset, the data root and what to do.
    Returns what was checked: ``{"shapes": [...], "samples": {split: n}, "arch": name}``.
    """
    import numpy as np

    from neuronas.data import dataset_info, load_dataset
    from neuronas.search.draw import RandomTrial

    info = dataset_info(dataset)
    if info.tonic_class:
        _check_files(info, data_root)
    where = _where(info, data_root)
    shapes = space.input_shapes(input_shape)
    t_steps = _min_timesteps(space.input.timesteps)
    batches: dict[tuple[int, ...], Any] = {}
    sizes: dict[str, int] = {}
    for shape in shapes:
        for split in ("train", "test"):
            try:
                ds = load_dataset(info, split, t_steps, data_root=data_root, input_shape=shape)
                n = len(ds)
                if n == 0:
                    raise DataError(f"the {split} split holds no samples")
                frames = [ds[i][0] for i in range(min(BATCH, n))]
            except NeuronasError as exc:
                raise DataError(
                    f"{where}: {exc}; no trial was run -- fix the files (or --data-root) and "
                    "run the same command again"
                ) from None
            except Exception as exc:  # noqa: BLE001 - a reader's own failure, as one line
                first = (str(exc).splitlines() or [""])[0]
                raise DataError(
                    f"{where}: the first {split} samples cannot be read at input shape "
                    f"{list(shape)}: {type(exc).__name__}: {first}; no trial was run"
                ) from None
            sizes[split] = n
            want = (t_steps, *shape)
            got = tuple(frames[0].shape)
            if got != want:
                raise DataError(
                    f"{where}: the {split} samples frame to {list(got)}, the space's candidates "
                    f"take [T, {', '.join(map(str, shape))}] = {list(want)}; set the space's "
                    "input.shape / input.downsample to what the dataset gives; no trial was run"
                )
            if split == "train":
                batches[shape] = frames
    # one seeded candidate, built and run on a batch of its own input shape (a space that
    # cannot make one is the trials' business: each such trial is recorded as invalid)
    rng = np.random.default_rng(seed)
    try:
        arch = space.sample(
            RandomTrial(rng), chip, input_shape=input_shape, num_outputs=num_outputs
        )
    except NeuronasError:
        return {"shapes": [list(s) for s in shapes], "samples": sizes, "arch": None}
    if tuple(arch.input.shape) in batches:
        _forward(arch, chip, batches[tuple(arch.input.shape)], where)
    return {"shapes": [list(s) for s in shapes], "samples": sizes, "arch": arch.name}


def _min_timesteps(dim: Any) -> int:
    if isinstance(dim, int):
        return dim
    if isinstance(dim, list):
        return int(min(dim))
    return int(dim.low)


def _forward(arch: Any, chip: Any, frames: list[Any], where: str) -> None:
    """Build ``arch`` and run the batch through it (timesteps cut to the frames' own)."""
    import dataclasses

    import torch

    from neuronas.snn.build import build

    t_steps = int(frames[0].shape[0])
    arch = dataclasses.replace(arch, input=dataclasses.replace(arch.input, timesteps=t_steps))
    x = torch.stack(list(frames), dim=1)  # [T, B, ...]
    try:
        model = build(arch, chip)
        with torch.no_grad():
            out = model(x)
    except NeuronasError as exc:
        raise DataError(f"{where}: a candidate cannot be built for its batch: {exc}") from None
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise DataError(
            f"{where}: a batch of shape {list(x.shape)} does not go through candidate "
            f"{arch.name} (input {list(arch.input.shape)}): {first}; no trial was run"
        ) from None
    if isinstance(out, torch.Tensor) and not bool(torch.isfinite(out).all()):
        raise DataError(f"{where}: candidate {arch.name} gives non-finite outputs on a batch")
