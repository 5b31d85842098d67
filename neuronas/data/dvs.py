"""A simulated DVS pixel array watching still images move in saccades (pure numpy).

This is how N-MNIST was made from MNIST (Orchard et al., "Converting static image datasets to
spiking neuromorphic datasets using saccades", Front. Neurosci. 9:437, 2015): an ATIS camera on a
pan-tilt unit looked at each digit on a monitor while it made three ~100 ms saccades tracing a
triangle, and every pixel emitted an ON/OFF event whenever its log intensity had changed by a
contrast threshold since its last event.  Here the motion is the image's, the camera is simulated:

* each pixel keeps a reference log intensity; when the current log intensity exceeds it by the
  pixel's ON threshold an ON event is emitted and the reference moves up by that threshold (and
  likewise for OFF), several events per step when the change is large;
* between simulation steps the log intensity is taken to change linearly, so each event gets the
  sub-step time at which its level is crossed (microsecond timestamps, not a step grid);
* thresholds differ from pixel to pixel (fixed-pattern mismatch of the comparators) and a little
  background activity (leak / shot-noise events at random times) is added, both seeded.

Everything is vectorised over the batch of images and the pixels; the only Python loop is over
simulation steps (a few hundred), which is what keeps 1,797 digits to a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["EVENT_DTYPE", "DVSParams", "bilinear_upscale", "record", "simulate_saccades"]

#: tonic-style structured events: pixel column, pixel row, time (µs), polarity (1 = ON, 0 = OFF).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


@dataclass(frozen=True)
class DVSParams:
    """The simulated sensor and the saccade path.

    The saccade vertices are offsets (x, y) in pixels of the image's top-left corner on the
    sensor; the image moves along them in straight lines, ``saccade_us`` per leg, and returns to
    the first vertex.  N-MNIST's path was (0, 0) -> (3.5, 7) -> (7, 0) -> (0, 0) in ~105 ms legs
    (tonic.datasets.nmnist.stabilize, ported from Orchard's code); ours is the same triangle fitted
    to the 8-pixel margin a 24-pixel digit leaves on a 32-pixel sensor.
    """

    sensor_px: int = 32
    saccade_vertices_px: tuple[tuple[float, float], ...] = ((0.5, 0.5), (4.0, 7.5), (7.5, 0.5))
    saccade_us: int = 100_000
    step_us: int = 1_000
    #: nominal log-intensity contrast threshold; DVS128 / ATIS pixels are set to ~10-30 %
    #: contrast (Lichtsteiner et al., IEEE JSSC 43(2), 2008: ~15 % minimum contrast).
    threshold: float = 0.2
    #: relative per-pixel threshold mismatch (σ/θ); Lichtsteiner et al. 2008 report ~2.1 %
    #: contrast σ, i.e. ~10 % of a 20 % threshold.
    threshold_mismatch: float = 0.1
    #: luminance of a black pixel relative to white (monitor black level): keeps log finite and
    #: bounds the events per edge to ~log(1/0.1)/0.2 ≈ 11.
    black_level: float = 0.1
    #: background-activity rate per pixel; DVS leak events are ~0.1-1 Hz per pixel indoors.
    background_hz: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def duration_us(self) -> int:
        return self.saccade_us * len(self.saccade_vertices_px)


def bilinear_upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Upscale a batch ``[N, h, w]`` by an integer factor with bilinear interpolation.

    Pixel centres are aligned the way image libraries do it (half-pixel convention, edges
    clamped), written as two small interpolation matrices so the whole batch is one einsum.
    """

    def matrix(n: int) -> np.ndarray:
        out = n * factor
        centres = (np.arange(out) + 0.5) / factor - 0.5
        centres = np.clip(centres, 0, n - 1)
        lo = np.floor(centres).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        frac = centres - lo
        m = np.zeros((out, n))
        m[np.arange(out), lo] += 1 - frac
        m[np.arange(out), hi] += frac
        return m

    _, h, w = images.shape
    return np.einsum("yh,nhw,xw->nyx", matrix(h), images, matrix(w))


def _path(params: DVSParams, n_steps: int) -> np.ndarray:
    """Offset (x, y) of the image at each step boundary 0..n_steps (piecewise linear, closed)."""
    verts = np.asarray(params.saccade_vertices_px + params.saccade_vertices_px[:1], dtype=float)
    t = np.arange(n_steps + 1) * params.step_us / params.saccade_us
    leg = np.minimum(t.astype(int), len(verts) - 2)
    frac = (t - leg)[:, None]
    return verts[leg] * (1 - frac) + verts[leg + 1] * frac


def _render(images: np.ndarray, offset: np.ndarray, sensor_px: int) -> np.ndarray:
    """Place ``[N, h, w]`` images at a sub-pixel offset on a black ``sensor_px`` square."""
    n, h, w = images.shape
    ox, oy = float(offset[0]), float(offset[1])
    ix, iy = int(np.floor(ox)), int(np.floor(oy))
    fx, fy = ox - ix, oy - iy
    # separable bilinear shift: the image spreads over one more column and row
    shifted_x = np.zeros((n, h, w + 1), dtype=images.dtype)
    shifted_x[:, :, :w] += (1 - fx) * images
    shifted_x[:, :, 1:] += fx * images
    shifted = np.zeros((n, h + 1, w + 1), dtype=images.dtype)
    shifted[:, :h] += (1 - fy) * shifted_x
    shifted[:, 1:] += fy * shifted_x
    canvas = np.zeros((n, sensor_px, sensor_px), dtype=images.dtype)
    y1, x1 = min(iy + h + 1, sensor_px), min(ix + w + 1, sensor_px)
    canvas[:, iy:y1, ix:x1] = shifted[:, : y1 - iy, : x1 - ix]
    return canvas


def simulate_saccades(
    images: np.ndarray,
    params: DVSParams,
    rng: np.random.Generator,
    *,
    progress: bool | None = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Record a batch of images ``[N, h, w]`` (intensities in [0, 1]) with the simulated sensor.

    Returns ``(events, offsets)``: one structured array of :data:`EVENT_DTYPE` holding every
    sample's events back to back, each sample's sorted by time, and ``offsets`` ``[N + 1]`` so
    that sample i is ``events[offsets[i]:offsets[i + 1]]``.
    """
    images = np.asarray(images, dtype=np.float32)
    s = params.sensor_px
    margin_x = s - images.shape[2]
    margin_y = s - images.shape[1]
    for vx, vy in params.saccade_vertices_px:
        if not (0 <= vx <= margin_x and 0 <= vy <= margin_y):
            raise ValueError(f"saccade vertex {(vx, vy)} moves the image off the sensor")
    n_steps = params.duration_us // params.step_us
    path = _path(params, n_steps)
    return record(
        lambda step: _render(images, path[step], s),
        images.shape[0],
        n_steps,
        params,
        rng,
        progress=progress,
        desc="recording digits with the simulated DVS",
    )


def record(
    render: Callable[[int], np.ndarray],
    n: int,
    n_steps: int,
    params: DVSParams,
    rng: np.random.Generator,
    *,
    progress: bool | None = False,
    desc: str = "recording with the simulated DVS",
) -> tuple[np.ndarray, np.ndarray]:
    """Record ``n`` scenes with the simulated sensor: ``render(k)`` gives their intensities in
    [0, 1] as ``[n, sensor_px, sensor_px]`` at step boundary k (0..n_steps, ``step_us`` apart).

    The sensor has adapted to ``render(0)`` before the recording starts.  Returns ``(events,
    offsets)`` as :func:`simulate_saccades` does; the recording lasts ``n_steps * step_us``.
    """
    s = params.sensor_px
    duration_us = n_steps * params.step_us

    # fixed-pattern threshold mismatch: one sensor, the same for every recording
    theta = params.threshold * (1 + params.threshold_mismatch * rng.standard_normal((2, s, s)))
    theta = np.maximum(theta, 0.25 * params.threshold).astype(np.float32)
    theta_off, theta_on = theta[0], theta[1]

    def log_lum(frame: np.ndarray) -> np.ndarray:
        return np.log(np.float32(params.black_level) + np.float32(1 - params.black_level) * frame)

    prev = log_lum(render(0)).reshape(n, -1)
    ref = prev.copy()  # the sensor has adapted to the still scene before the motion
    th_on, th_off = theta_on.reshape(-1), theta_off.reshape(-1)
    chunks: list[tuple[np.ndarray, ...]] = []
    steps: Iterable[int] = range(1, n_steps + 1)
    if progress is not False:
        from tqdm import tqdm

        steps = tqdm(
            steps,
            desc=desc,
            unit="step",
            disable=None if progress is None else not progress,
            leave=False,
        )
    for step in steps:
        cur = log_lum(render(step)).reshape(n, -1)
        change = cur - ref
        # only the few pixels that cross a threshold are touched after this (sparse from here)
        hit_n, hit_px = np.nonzero((change >= th_on) | (change <= -th_off))
        if hit_n.size == 0:
            prev = cur
            continue
        d = change[hit_n, hit_px]
        on = d > 0
        th = np.where(on, th_on[hit_px], th_off[hit_px])
        sign = np.where(on, 1.0, -1.0).astype(np.float32)
        count = np.floor(np.abs(d) / th).astype(np.int64)
        ref_h, prev_h = ref[hit_n, hit_px], prev[hit_n, hit_px]
        span = cur[hit_n, hit_px] - prev_h
        # the k-th event of a pixel in this step fires when the (linearly changing) log
        # intensity reaches ref + k * threshold; its time is that fraction of the step
        rep = np.repeat(np.arange(count.size), count)
        k = np.arange(rep.size) - np.repeat(np.cumsum(count) - count, count) + 1
        level = ref_h[rep] + sign[rep] * k * th[rep]
        safe_span = np.where(span != 0, span, 1.0)[rep]
        frac = np.clip((level - prev_h[rep]) / safe_span, 0.0, 1.0)
        t = (step - 1) * params.step_us + frac * params.step_us
        chunks.append((hit_n[rep], hit_px[rep] % s, hit_px[rep] // s, t, on[rep].astype(np.int8)))
        ref[hit_n, hit_px] = ref_h + sign * count * th
        prev = cur

    # background activity: Poisson events at uniform times, random polarity
    lam = params.background_hz * duration_us * 1e-6 * s * s
    n_bg = np.asarray(rng.poisson(lam, size=n), dtype=np.int64)
    bg_n = np.repeat(np.arange(n), n_bg)
    total = int(n_bg.sum())
    chunks.append(
        (
            bg_n,
            rng.integers(0, s, total),
            rng.integers(0, s, total),
            rng.uniform(0, duration_us, total),
            rng.integers(0, 2, total),
        )
    )

    sample, x, y, t, p = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
    t_us = np.floor(t).astype(np.int64)
    order = np.argsort(sample * (duration_us + 1) + t_us, kind="stable")
    events = np.empty(order.size, dtype=EVENT_DTYPE)
    events["x"], events["y"] = x[order], y[order]
    events["t"], events["p"] = t_us[order], p[order]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(sample, minlength=n), out=offsets[1:])
    return events, offsets
