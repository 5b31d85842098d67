"""``flow-events``: dense optical flow from textures moving before the simulated DVS, built offline.

Each sample is a smooth random texture (white noise blurred by a Gaussian, stretched to [0, 1])
that moves under one affine motion for the sample's 100 ms: a shift ``(tx, ty)``, a rotation
``theta`` and a scale ``s`` about the sensor's centre c, all growing linearly in time, so a point
that starts at q is at ``M_τ(q) = c + s_τ R(θ τ) (q - c) + τ (tx, ty)`` with ``s_τ = 1 + (s - 1) τ``
at fraction τ of the sample.  The sensor of :mod:`neuronas.data.dvs` records it (each step
renders ``I_τ(p) = texture(M_τ⁻¹(p))``, exactly, by bilinear sampling of the texture), and the
ground truth is analytic: the flow at pixel p is ``M_1(p) - p``, the displacement in pixels over
the whole sample of the point seen at p when the sample starts, as ``[2, H, W]`` float32 (x then
y; x along columns, y along rows, the frames' layout).

Input representation: Spike-FlowNet's split coding (Lee et al., ECCV 2020, and its code's
``former_inputs_on/off``, ``latter_inputs_on/off``): a sample framed at T timesteps is cut into 2T
temporal bins, and timestep t carries 4 channels, the ON and OFF events of bin t (the "former"
half of the sample) and of bin t + T (the "latter" half).  Each timestep thus shows the scene at
two moments half a sample apart, which is what a feed-forward spiking encoder needs to see
motion: with 2 channels (one bin per timestep) the direction of motion is only in the order of
the timesteps, and spiking encoder-decoders of the flow space stayed at the mean-flow baseline
(benchmarks/RESULTS.md, "Issue 12: flow at screening fidelity").

Deterministic for a seed; the motions and events are cached under
:func:`~neuronas.data.info.cache_dir`, keyed by a hash of every parameter.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuronas.data.dvs import EVENT_DTYPE, DVSParams, record
from neuronas.data.info import atomic_write, cache_dir
from neuronas.data.registry import DATASETS

__all__ = [
    "FLOW_PARAMS",
    "FlowEvents",
    "FlowParams",
    "build_flow_events",
    "clear_memory_cache",
    "flow_events",
    "flow_field",
    "load_flow_events",
    "make_textures",
    "motion_renderer",
    "split_coding",
]

#: bump when the recipe changes in a way the parameters below do not capture
_RECIPE_VERSION = 1


@dataclass(frozen=True)
class FlowParams:
    """Everything that shapes ``flow-events`` (all of it goes into the cache key)."""

    #: 1,280 training samples: a 3-epoch screening sees ~3,500 of them, what a spiking
    #: encoder-decoder needs to move away from the mean flow (it did not in 3 epochs of 256)
    n_samples: int = 1536
    n_train: int = 1280
    duration_us: int = 100_000
    #: largest shift per axis over the sample, pixels (uniform in [-max, max])
    max_shift_px: float = 4.0
    #: largest rotation over the sample, radians (~5.7 degrees: <= 2.2 px at the sensor's corners)
    max_rotation_rad: float = 0.1
    #: largest relative scale change over the sample (s uniform in [1 - max, 1 + max])
    max_scale: float = 0.1
    #: the texture's side, pixels; it must cover every point the sensor sees during the motion
    texture_px: int = 64
    #: Gaussian blur of the texture's white noise (σ, pixels): edges a few pixels wide, so a
    #: moving texture gives events along its gradients rather than pixel-sized flicker
    texture_blur_px: float = 1.0
    sensor: DVSParams = field(
        default_factory=lambda: DVSParams(
            sensor_px=32,
            step_us=2_000,
            threshold=0.15,
            threshold_mismatch=0.1,
            black_level=0.2,
            background_hz=0.2,
        )
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FLOW_PARAMS = FlowParams()


@dataclass(frozen=True)
class FlowEvents:
    """Every sample's events back to back, and its motion ``(tx, ty, theta, s)``."""

    events: np.ndarray
    offsets: np.ndarray
    motion: np.ndarray  # [N, 4] float64
    n_train: int
    sensor_px: int
    key: str

    def __len__(self) -> int:
        return int(self.motion.shape[0])

    def sample(self, i: int) -> np.ndarray:
        return self.events[self.offsets[i] : self.offsets[i + 1]]

    def split_index(self, split: str) -> np.ndarray:
        n = len(self)
        return np.arange(self.n_train) if split == "train" else np.arange(self.n_train, n)

    def flows(self) -> np.ndarray:
        """The analytic flow of every sample, ``[N, 2, H, W]`` float32."""
        return flow_field(self.motion, self.sensor_px)


def _centre(sensor_px: int) -> float:
    return (sensor_px - 1) / 2.0


def _rotation_scale(theta: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``s R(θ)`` as ``[..., 2, 2]`` acting on (x, y) column vectors."""
    c, s = np.cos(theta), np.sin(theta)
    return scale[..., None, None] * np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def flow_field(motion: np.ndarray, sensor_px: int) -> np.ndarray:
    """``M_1(p) - p`` at every pixel p for motions ``[N, 4]`` (tx, ty, theta, s): ``[N, 2, H, W]``."""
    motion = np.atleast_2d(np.asarray(motion, dtype=np.float64))
    c = _centre(sensor_px)
    ys, xs = np.mgrid[0:sensor_px, 0:sensor_px].astype(np.float64)
    rel = np.stack([xs - c, ys - c])  # [2, H, W]
    a = _rotation_scale(motion[:, 2], motion[:, 3])  # [N, 2, 2]
    moved = np.einsum("nij,jhw->nihw", a, rel) + motion[:, :2, None, None]
    return (moved - rel[None]).astype(np.float32)


def make_textures(rng: np.random.Generator, n: int, params: FlowParams) -> np.ndarray:
    """``n`` smooth random textures ``[n, texture_px, texture_px]`` in [0, 1] (min to max)."""
    side = params.texture_px
    noise = rng.standard_normal((n, side, side))
    freq = np.fft.fftfreq(side)
    sigma = params.texture_blur_px
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
    smooth = np.fft.ifft2(np.fft.fft2(noise) * gain).real
    lo = smooth.min(axis=(1, 2), keepdims=True)
    hi = smooth.max(axis=(1, 2), keepdims=True)
    return ((smooth - lo) / np.maximum(hi - lo, 1e-12)).astype(np.float32)


def motion_renderer(
    textures: np.ndarray, motion: np.ndarray, params: FlowParams, n_steps: int
) -> Callable[[int], np.ndarray]:
    """``render(k)``: every texture as the sensor sees it at step k of n_steps, ``[N, S, S]``:
    ``I_τ(p) = texture(M_τ⁻¹(p))`` with τ = k / n_steps, the texture's centre under the sensor's."""
    n, side = textures.shape[0], textures.shape[1]
    s = params.sensor.sensor_px
    c = _centre(s)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float64)
    rel = np.stack([xs.ravel() - c, ys.ravel() - c])  # [2, P]
    flat = textures.reshape(n, -1)
    # the texture's centre sits under the sensor's centre
    shift_to_tex = (side - 1) / 2.0

    def render(step: int) -> np.ndarray:
        tau = step / n_steps
        a = _rotation_scale(motion[:, 2] * tau, 1 + (motion[:, 3] - 1) * tau)
        inv = np.linalg.inv(a)  # [N, 2, 2]
        q = np.einsum("nij,njp->nip", inv, rel[None] - tau * motion[:, :2, None])
        u = np.clip(q[:, 0] + shift_to_tex, 0, side - 1.000001)
        v = np.clip(q[:, 1] + shift_to_tex, 0, side - 1.000001)
        iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        fu, fv = u - iu, v - iv
        base = iv * side + iu

        def at(offset: int) -> np.ndarray:
            return np.take_along_axis(flat, base + offset, axis=1)

        top = at(0) * (1 - fu) + at(1) * fu
        bottom = at(side) * (1 - fu) + at(side + 1) * fu
        return (top * (1 - fv) + bottom * fv).reshape(n, s, s).astype(np.float32)

    return render


def _check_params(params: FlowParams) -> None:
    s = params.sensor.sensor_px
    # the farthest a sensor pixel's pre-image can be from the centre during the motion
    reach = (np.hypot(s - 1, s - 1) / 2 + np.hypot(params.max_shift_px, params.max_shift_px)) / (
        1 - params.max_scale
    )
    if reach > (params.texture_px - 2) / 2:
        raise ValueError(
            f"texture_px {params.texture_px} does not cover the sensor's view during the motion "
            f"(needs > {2 * reach + 2:.0f})"
        )
    if params.duration_us % params.sensor.step_us:
        raise ValueError("duration_us must be a multiple of the sensor's step_us")
    if not 0 < params.n_train < params.n_samples:
        raise ValueError("n_train must be in (0, n_samples)")


def _cache_key(seed: int, params: FlowParams) -> str:
    blob = json.dumps(
        {"recipe": _RECIPE_VERSION, "seed": seed, "params": params.to_dict()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_flow_events(
    seed: int = 0, params: FlowParams = FLOW_PARAMS, *, progress: bool | None = False
) -> FlowEvents:
    """Draw the motions and textures, and record them (no cache); deterministic for ``seed``."""
    _check_params(params)
    rng = np.random.default_rng(seed)
    n = params.n_samples
    motion = np.stack(
        [
            rng.uniform(-params.max_shift_px, params.max_shift_px, n),
            rng.uniform(-params.max_shift_px, params.max_shift_px, n),
            rng.uniform(-params.max_rotation_rad, params.max_rotation_rad, n),
            rng.uniform(1 - params.max_scale, 1 + params.max_scale, n),
        ],
        axis=1,
    )
    textures = make_textures(rng, n, params)
    n_steps = params.duration_us // params.sensor.step_us
    events, offsets = record(
        motion_renderer(textures, motion, params, n_steps),
        n,
        n_steps,
        params.sensor,
        rng,
        progress=progress,
        desc="recording moving textures with the simulated DVS",
    )
    return FlowEvents(
        events=events,
        offsets=offsets,
        motion=motion,
        n_train=params.n_train,
        sensor_px=params.sensor.sensor_px,
        key=_cache_key(seed, params),
    )


_UNREADABLE = (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile)
_EVENTS_MEMO: dict[tuple[str, str], FlowEvents] = {}


def _read_cache(path: Path, key: str) -> FlowEvents | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            data = FlowEvents(
                events=z["events"],
                offsets=z["offsets"],
                motion=z["motion"],
                n_train=int(z["n_train"]),
                sensor_px=int(z["sensor_px"]),
                key=str(z["key"]),
            )
    except _UNREADABLE:
        return None  # truncated or foreign: rebuilt and overwritten
    if data.key != key or data.events.dtype != EVENT_DTYPE:
        return None
    return data


def flow_events(seed: int = 0, *, params: FlowParams = FLOW_PARAMS) -> FlowEvents:
    """The samples, from the disk cache when it has them, else built and cached."""
    key = _cache_key(seed, params)
    where = cache_dir()
    memo = _EVENTS_MEMO.get((str(where), key))
    if memo is not None:
        return memo
    path = where / f"flow-events-{key}.npz"
    data = _read_cache(path, key)
    if data is None:
        data = build_flow_events(seed, params, progress=None)
        atomic_write(
            path,
            {
                "events": data.events,
                "offsets": data.offsets,
                "motion": data.motion,
                "n_train": np.asarray(data.n_train),
                "sensor_px": np.asarray(data.sensor_px),
                "key": np.asarray(data.key),
            },
        )
    _EVENTS_MEMO[(str(where), key)] = data
    return data


_FRAMES_MEMO: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def clear_memory_cache() -> None:
    """Forget the samples and frames kept in this process (the disk cache stays)."""
    _EVENTS_MEMO.clear()
    _FRAMES_MEMO.clear()


def split_coding(frames: np.ndarray) -> np.ndarray:
    """Frames of 2T bins ``[N, 2T, P, h, w]`` -> ``[N, T, 2P, h, w]``: timestep t holds bin t's
    channels, then bin t + T's (Spike-FlowNet's former and latter events)."""
    t2 = frames.shape[1]
    if t2 % 2:
        raise ValueError(f"split coding needs an even number of bins, got {t2}")
    t = t2 // 2
    return np.concatenate([frames[:, :t], frames[:, t:]], axis=2)


def load_flow_events(
    split: str,
    timesteps: int,
    *,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    binarize: bool = True,
    params: FlowParams = FLOW_PARAMS,
):
    """The ``flow-events`` split: frames ``[T, 4, h, w]`` (Spike-FlowNet's split coding, see the
    module docstring: ON, OFF of bin t, then ON, OFF of bin t + T of 2T bins) and flow targets
    ``[2, h, w]``."""
    import torch

    from neuronas.data.framing import EventFramer, FramedDataset

    info = DATASETS["flow-events"]
    shape = tuple(input_shape) if input_shape is not None else info.input_shape
    data = flow_events(seed, params=params)
    memo_key = (data.key, timesteps, shape, binarize)
    cached = _FRAMES_MEMO.get(memo_key)
    if cached is None:
        # 2T bins of the sensor's polarities, paired into T timesteps of 2P channels
        bins = (info.sensor_size[2], *shape[1:])
        framer = EventFramer(info.sensor_size, 2 * timesteps, bins, binarize=binarize)
        frames = split_coding(np.stack([framer(data.sample(i)) for i in range(len(data))]))
        flows = np.stack([framer.flow(f) for f in data.flows()])
        cached = (torch.from_numpy(frames), torch.from_numpy(flows))
        _FRAMES_MEMO.clear()  # one framing at a time, as for digits-events
        _FRAMES_MEMO[memo_key] = cached
    frames_all, flows_all = cached
    split_index = data.split_index(split)
    index = torch.from_numpy(split_index)
    return FramedDataset(
        frames_all[index],
        flows_all[index],
        info,
        split,
        events=lambda i: data.sample(int(split_index[i])),
    )
