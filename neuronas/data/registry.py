"""The datasets neuronas knows by name, what each looks like, and the checks done on a request.

Nothing here imports torch, tonic or any loader module (they import this one): ``neuronas
datasets`` and the search (which needs only the shapes) stay fast, and there is no import cycle.
A path instead of a name is a user's own dataset folder, described by its ``dataset.yaml``
(:mod:`neuronas.data.folder`).  :func:`neuronas.data.load_dataset` does the loading.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Sequence
from pathlib import Path

from neuronas.data.folder import looks_like_folder, read_folder_info
from neuronas.data.info import SPLITS, DatasetInfo, cache_dir, fmt_shape
from neuronas.errors import DataError

__all__ = [
    "DATASETS",
    "SPLITS",
    "DatasetInfo",
    "cache_dir",
    "check_input_shape",
    "check_request",
    "dataset_info",
    "downsampled_shape",
    "list_datasets",
]


#: more frames per sample than any chip runs; beyond it framing only wastes memory
_MAX_T = 10_000

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
            name="flow-events",
            input_shape=(4, 32, 32),
            num_classes=0,
            sensor_size=(32, 32, 2),
            description=(
                "optical flow: 1,536 smooth random textures under random affine motion (shift, "
                "rotation, scale) before a simulated 32x32 DVS, with analytic [2, 32, 32] flow; "
                "Spike-FlowNet's split coding (each timestep: ON/OFF of a bin of the sample's "
                "first half and of its second half); built offline, cached; 1280/256 split"
            ),
            source="built-in",
            task="flow",
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


def dataset_info(name: str | Path | DatasetInfo) -> DatasetInfo:
    """Look a dataset up by name, or read a dataset folder's ``dataset.yaml`` when given a path.

    An unknown name lists the known ones and a near match.
    """
    if isinstance(name, DatasetInfo):
        return name
    if isinstance(name, Path):
        return read_folder_info(name)
    if isinstance(name, str) and name in DATASETS:
        return DATASETS[name]
    if isinstance(name, str) and name and looks_like_folder(name):
        return read_folder_info(name)
    raise DataError(
        f"unknown dataset {name!r}{_suggest(str(name))} (known: {', '.join(DATASETS)}; "
        "or a folder holding dataset.yaml)"
    )


def check_request(split: str, timesteps: int) -> None:
    """The split and timesteps of a load request, checked before anything is read."""
    if split not in SPLITS:
        raise DataError(f"split: got {split!r}, must be one of {', '.join(SPLITS)}")
    if (
        isinstance(timesteps, bool)
        or not isinstance(timesteps, int)
        or not 1 <= timesteps <= _MAX_T
    ):
        raise DataError(f"timesteps: got {timesteps!r}, must be an integer in [1, {_MAX_T}]")


def downsampled_shape(native: Sequence[int], factor: int) -> tuple[int, ...]:
    """The input shape a downsampling ``factor`` gives, the same rule for 1-D and 2-D inputs.

    Every spatial axis (H and W of ``[C, H, W]``; F of ``[F]``) is divided by ``factor``,
    rounding down (an axis never goes below 1); channels are kept.  Such a shape always passes
    :func:`check_input_shape`.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise DataError(f"downsample: got {factor!r}, must be an integer >= 1")
    dims = tuple(int(d) for d in native)
    if len(dims) == 3:
        return (dims[0], max(1, dims[1] // factor), max(1, dims[2] // factor))
    if len(dims) == 1:
        return (max(1, dims[0] // factor),)
    raise DataError(f"input shape {fmt_shape(dims)}: must be [C, H, W] or [F]")


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
        shape = tuple(operator.index(s) for s in arch_input_shape)
        if any(isinstance(s, bool) for s in arch_input_shape):
            raise TypeError
    except TypeError:
        raise DataError(
            f"{what} {arch_input_shape!r} is not a list of integers; dataset "
            f"'{info.name}' gives {fmt_shape(native)} per timestep"
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
        allowed = f"{fmt_shape(native)} or [{native[0]}, h, w] with h <= {native[1]}, w <= {native[2]} (downsampled)"
    else:
        allowed = f"{fmt_shape(native)} or [f] with f <= {native[0]} (downsampled)"
    raise DataError(
        f"{what} {fmt_shape(shape)} does not match dataset '{info.name}', "
        f"whose frames are {fmt_shape(native)} per timestep; allowed: {allowed}"
    )
