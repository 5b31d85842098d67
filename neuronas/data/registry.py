"""The datasets neuronas knows by name, what each looks like, and the checks done on a request.

Nothing here imports torch or tonic: ``neuronas datasets`` and the search (which needs only the
shapes) stay fast.  :func:`load_dataset` imports the heavy parts when it is called.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronas.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from neuronas.data.framing import FramedDataset, LazyFramedDataset

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

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset gives the network, and where its files must be.

    ``input_shape`` is the shape of one timestep of a framed sample: ``(C, H, W)`` for event
    cameras (C = 2 polarity channels, OFF then ON) or ``(F,)`` for 1-D sensors (SHD's 700
    cochlea channels).  ``sensor_size`` is tonic's ``(W, H, P)``.  ``files`` says, relative to
    the data root, which files or folders tonic reads (empty for built-in datasets).
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

    @property
    def builtin(self) -> bool:
        return self.source == "built-in"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "sensor_size": list(self.sensor_size),
            "description": self.description,
            "source": self.source,
            "files": list(self.files),
            "tonic_class": self.tonic_class,
        }


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="digits-events",
            input_shape=(2, 32, 32),
            num_classes=10,
            sensor_size=(32, 32, 2),
            description=(
                "scikit-learn's 1,797 handwritten digits moved in three saccades before a "
                "simulated 32x32 DVS (N-MNIST's recipe); built offline, cached; 80/20 split"
            ),
            source="built-in",
        ),
        DatasetInfo(
            name="nmnist",
            input_shape=(2, 34, 34),
            num_classes=10,
            sensor_size=(34, 34, 2),
            description="N-MNIST: MNIST recorded by an ATIS in saccades (Orchard et al. 2015)",
            files=("NMNIST/Train/<0..9>/*.bin", "NMNIST/Test/<0..9>/*.bin"),
            tonic_class="NMNIST",
            download_size="~1 GB",
        ),
        DatasetInfo(
            name="shd",
            input_shape=(700,),
            num_classes=20,
            sensor_size=(700, 1, 1),
            description="Spiking Heidelberg Digits: spoken digits through a cochlea model, 700 channels",
            files=("SHD/shd_train.h5", "SHD/shd_test.h5"),
            tonic_class="SHD",
            download_size="~0.5 GB",
        ),
        DatasetInfo(
            name="dvsgesture",
            input_shape=(2, 128, 128),
            num_classes=11,
            sensor_size=(128, 128, 2),
            description="IBM DVS Gesture: 11 hand and arm gestures on a DVS128 (tonic's cut version)",
            files=(
                "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy",
                "DVSGesture/ibmGestureTest/user<NN>_<lighting>/<label>.npy",
            ),
            tonic_class="DVSGesture",
            download_size="~2.5 GB",
        ),
        DatasetInfo(
            name="pokerdvs",
            input_shape=(2, 35, 35),
            num_classes=4,
            sensor_size=(35, 35, 2),
            description="POKER-DVS: card pips (clubs, hearts, diamonds, spades) flipped before a DVS",
            files=(
                "POKERDVS/pips_train/<..cl|..he|..di|..sp>/*.npy",
                "POKERDVS/pips_test/<..cl|..he|..di|..sp>/*.npy",
            ),
            tonic_class="POKERDVS",
        ),
    )
}


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts, built-in first."""
    return list(DATASETS)


def _suggest(name: str) -> str:
    def squash(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    by_squash = {squash(n): n for n in DATASETS}
    if squash(name) in by_squash:
        return f"; did you mean '{by_squash[squash(name)]}'?"
    close = difflib.get_close_matches(squash(name), list(by_squash), n=1, cutoff=0.5)
    if not close:
        close = [n for s, n in by_squash.items() if squash(name) and squash(name) in s][:1]
        return f"; did you mean '{close[0]}'?" if close else ""
    return f"; did you mean '{by_squash[close[0]]}'?"


def dataset_info(name: str | DatasetInfo) -> DatasetInfo:
    """Look a dataset up by name; an unknown name lists the known ones and a near match."""
    if isinstance(name, DatasetInfo):
        return name
    if not isinstance(name, str) or name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}{_suggest(str(name))} (known: {', '.join(DATASETS)})"
        )
    return DATASETS[name]


def cache_dir() -> Path:
    """Where built datasets are cached: ``$NEURONAS_CACHE_DIR``, else ``~/.cache/neuronas``."""
    env = os.environ.get("NEURONAS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "neuronas"


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_input_shape(
    info_or_name: str | DatasetInfo,
    arch_input_shape: Sequence[int],
    *,
    what: str = "the architecture's input.shape",
) -> tuple[int, ...]:
    """Check that a network's input shape can be fed from a dataset; return the shape to load.

    Accepted: the dataset's own ``input_shape``, or a smaller spatial size with the same number
    of channels (``(C, h, w)`` with h <= H, w <= W; for 1-D sensors ``(f,)`` with f <= F), which
    :func:`load_dataset` serves by downsampling the events (``tonic.transforms.Downsample``)
    before framing.  Anything else raises :class:`DataError` naming both shapes.
    """
    info = dataset_info(info_or_name)
    native = tuple(info.input_shape)
    try:
        shape = tuple(int(s) for s in arch_input_shape)
    except (TypeError, ValueError):
        raise DataError(
            f"{what} {arch_input_shape!r} is not a list of integers; dataset "
            f"'{info.name}' gives {_fmt(native)} per timestep"
        ) from None
    if shape == native:
        return shape
    if len(shape) == 3 and len(native) == 3:
        ok = shape[0] == native[0] and 1 <= shape[1] <= native[1] and 1 <= shape[2] <= native[2]
    elif len(shape) == 1 and len(native) == 1:
        ok = 1 <= shape[0] <= native[0]
    else:
        ok = False
    if ok:
        return shape
    if len(native) == 3:
        allowed = f"{_fmt(native)} or [{native[0]}, h, w] with h <= {native[1]}, w <= {native[2]} (downsampled)"
    else:
        allowed = f"{_fmt(native)} or [f] with f <= {native[0]} (downsampled)"
    raise DataError(
        f"{what} {_fmt(shape)} does not match dataset '{info.name}', "
        f"whose frames are {_fmt(native)} per timestep; allowed: {allowed}"
    )


def _check_request(split: str, timesteps: int) -> None:
    if split not in SPLITS:
        raise DataError(f"split: got {split!r}, must be one of {', '.join(SPLITS)}")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise DataError(f"timesteps: got {timesteps!r}, must be an integer >= 1")


def load_dataset(
    name: str,
    split: str,
    timesteps: int,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = False,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    binarize: bool = True,
) -> FramedDataset | LazyFramedDataset:
    """A ``torch.utils.data.Dataset`` of ``(frames, label)``: frames float32 ``[T, C, H, W]`` (or ``[T, F]``).

    Events are framed with ``tonic.transforms.ToFrame(n_time_bins=timesteps)``: each sample's
    span from first to last event is cut into T equal bins.  With ``binarize`` (default) a pixel
    that saw any event of a polarity in a bin is 1, else 0 -- the chip's word lines carry binary
    spikes, and the cost model's input rate is the mean of these frames; ``binarize=False``
    keeps tonic's event counts.  ``input_shape`` (see :func:`check_input_shape`) downsamples.

    ``digits-events`` is built in (``seed`` picks the sensor's noise realisation; the split is
    fixed) and its object also has ``.tensors() -> (X [N, T, C, H, W], y [N])``.  The tonic
    datasets are read from ``data_root`` and never downloaded unless ``download=True``.
    """
    info = dataset_info(name)
    _check_request(split, timesteps)
    shape = check_input_shape(info, input_shape) if input_shape is not None else info.input_shape
    if info.builtin:
        from neuronas.data.digits import load_digits_events

        return load_digits_events(split, timesteps, input_shape=shape, seed=seed, binarize=binarize)
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
