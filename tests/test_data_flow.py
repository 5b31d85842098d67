"""flow-events: determinism, the analytic flow against the motion and the rendered scene, events
that move the way the flow says, the cache, and the (frames, flow) pairs load_dataset gives."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neuronas.data import dataset_info, load_dataset
from neuronas.data import flow as flow_mod
from neuronas.data.flow import (
    FLOW_PARAMS,
    build_flow_events,
    flow_events,
    flow_field,
    make_textures,
    motion_renderer,
)
from neuronas.data.framing import EventFramer

SMALL = dataclasses.replace(FLOW_PARAMS, n_samples=12, n_train=8)
TRANSLATION = dataclasses.replace(SMALL, max_rotation_rad=0.0, max_scale=0.0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One private cache for this module: the full set is built once (~20 s)."""
    tmp_path = tmp_path_factory.mktemp("flow-cache")
    old = os.environ.get("NEURONAS_CACHE_DIR")
    os.environ["NEURONAS_CACHE_DIR"] = str(tmp_path / "cache")
    flow_mod.clear_memory_cache()
    try:
        yield tmp_path / "cache"
    finally:
        flow_mod.clear_memory_cache()
        if old is None:
            os.environ.pop("NEURONAS_CACHE_DIR", None)
        else:
            os.environ["NEURONAS_CACHE_DIR"] = old


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    a, b, c = build_flow_events(1, SMALL), build_flow_events(1, SMALL), build_flow_events(2, SMALL)
    assert np.array_equal(a.events, b.events) and np.array_equal(a.motion, b.motion)
    assert a.key == b.key != c.key
    assert not np.array_equal(a.motion, c.motion)
    per_sample = np.diff(a.offsets)
    assert per_sample.min() > 20 and 300 < per_sample.mean() < 3000
    for i in range(len(a)):
        ev = a.sample(i)
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].max() < SMALL.duration_us
        assert ev["x"].max() < 32 and ev["y"].max() < 32


def test_flow_field_is_the_motion() -> None:
    # pure translation: every pixel moves by (tx, ty)
    f = flow_field(np.array([[2.5, -1.25, 0.0, 1.0]]), 32)
    assert f.shape == (1, 2, 32, 32) and f.dtype == np.float32
    assert np.allclose(f[0, 0], 2.5) and np.allclose(f[0, 1], -1.25)
    # pure rotation by θ about the centre c = 15.5: a pixel r to the right of c moves to
    # c + r (cos θ, sin θ); the flow is r (cos θ - 1, sin θ)
    theta = 0.1
    f = flow_field(np.array([[0.0, 0.0, theta, 1.0]]), 32)[0]
    r = 31 - 15.5  # pixel x = 31, y = 15 is 15.5 right of c and 0.5 above
    assert f[0, 15, 31] == pytest.approx(r * (np.cos(theta) - 1) + 0.5 * np.sin(theta), abs=1e-5)
    assert f[1, 15, 31] == pytest.approx(r * np.sin(theta) - 0.5 * (np.cos(theta) - 1), abs=1e-5)
    # pure scale: flow = (s - 1)(p - c), zero length at the centre, largest at the corners
    f = flow_field(np.array([[0.0, 0.0, 0.0, 1.1]]), 32)[0]
    assert f[0, 0, 0] == pytest.approx(0.1 * -15.5) and f[1, 31, 31] == pytest.approx(0.1 * 15.5)


def test_the_rendered_scene_moves_as_the_flow_says() -> None:
    # the ground truth is checked against the renderer the sensor sees: after the whole
    # motion, the point seen at p at the start is seen at p + flow(p)
    params = dataclasses.replace(SMALL, n_samples=3)
    tex = make_textures(np.random.default_rng(0), 3, params)
    motion = np.array([[3.0, -2.0, 0.0, 1.0], [0.0, 0.0, 0.08, 1.0], [1.0, 1.0, -0.05, 1.08]])
    render = motion_renderer(tex, motion, params, 10)
    first, last = render(0), render(10)
    flow = flow_field(motion, 32)
    # integer translation (3, -2): the pixel seen at (x, y) is at (x + 3, y - 2), exactly
    assert np.allclose(last[0, 0:30, 3:32], first[0, 2:32, 0:29], atol=1e-5)
    assert not np.allclose(last[0], first[0], atol=0.05)
    # rotation, and everything at once: on a linear ramp texture, bilinear sampling is exact, so
    # the last frame sampled at p + flow(p) must equal the first frame at p to float precision
    u = np.arange(params.texture_px, dtype=np.float32)
    ramp = (0.1 + 0.01 * u[None, :] + 0.004 * u[:, None])[None].repeat(3, axis=0)
    render = motion_renderer(ramp, motion, params, 10)
    first, last = render(0), render(10)
    ys, xs = np.mgrid[6:26, 6:26]
    for n in (1, 2):
        tx, ty = xs + flow[n, 0, ys, xs], ys + flow[n, 1, ys, xs]
        x0, y0 = np.floor(tx).astype(int), np.floor(ty).astype(int)
        fx, fy = tx - x0, ty - y0
        img = last[n]
        warped = (
            img[y0, x0] * (1 - fx) * (1 - fy)
            + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy
            + img[y0 + 1, x0 + 1] * fx * fy
        )
        assert np.abs(warped - first[n, ys, xs]).max() < 1e-4
        assert np.abs(last[n, ys, xs] - first[n, ys, xs]).mean() > 0.002  # it did move


def test_events_move_the_way_of_the_translation() -> None:
    # the event image of the last third is the first third's shifted by ~0.65 of the sample's
    # translation (the thirds' centres are 0.65 of the span apart): cross-correlation finds it
    data = build_flow_events(3, TRANSLATION)
    s = 32
    for i in range(len(data)):
        ev = data.sample(i)
        imgs = []
        for lo, hi in ((0, 35_000), (65_000, 100_001)):
            e = ev[(ev["t"] >= lo) & (ev["t"] < hi)]
            img = np.zeros((s, s))
            np.add.at(img, (e["y"], e["x"]), 1.0)
            imgs.append(img - img.mean())
        cc = np.fft.ifft2(np.fft.fft2(imgs[1]) * np.conj(np.fft.fft2(imgs[0]))).real
        dy, dx = np.unravel_index(int(cc.argmax()), cc.shape)
        dx, dy = (dx - s if dx > s // 2 else dx), (dy - s if dy > s // 2 else dy)
        tx, ty = data.motion[i, :2]
        assert abs(dx - 0.65 * tx) <= 1.0 and abs(dy - 0.65 * ty) <= 1.0, (i, dx, dy, tx, ty)
        assert np.allclose(data.flows()[i, 0], tx) and np.allclose(data.flows()[i, 1], ty)


def test_load_dataset_gives_frames_and_flow_and_caches(cache: Path) -> None:
    info = dataset_info("flow-events")
    assert info.task == "flow" and info.num_classes == 0 and info.input_shape == (4, 32, 32)
    train = load_dataset("flow-events", "train", 4)
    test = load_dataset("flow-events", "test", 4)
    n = FLOW_PARAMS.n_train
    assert (len(train), len(test)) == (n, FLOW_PARAMS.n_samples - n) and train.info.task == "flow"
    x, y = train.tensors()
    assert x.shape == (n, 4, 4, 32, 32) and y.shape == (n, 2, 32, 32)
    assert set(np.unique(x.numpy())) == {0.0, 1.0}
    data = flow_events(0)
    assert np.array_equal(y.numpy(), data.flows()[:n])
    frames, flow = test[5]
    assert np.array_equal(flow.numpy(), data.flows()[n + 5])
    assert np.array_equal(test.events(5), data.sample(n + 5))
    # Spike-FlowNet's split coding: timestep t is bin t's ON/OFF, then bin t + 4's of 8 bins
    bins = EventFramer(info.sensor_size, 8, (2, 32, 32))(data.sample(n + 5))
    for t in range(4):
        assert np.array_equal(frames[t, :2].numpy(), bins[t])
        assert np.array_equal(frames[t, 2:].numpy(), bins[t + 4])
    cached = list(cache.glob("flow-events-*.npz"))
    assert [p.name for p in cached] == [f"flow-events-{data.key}.npz"]
    # a fresh process reads the cache: the same samples, not rebuilt
    flow_mod.clear_memory_cache()
    mtime = cached[0].stat().st_mtime_ns
    again = flow_events(0)
    assert np.array_equal(again.events, data.events) and cached[0].stat().st_mtime_ns == mtime
    # a truncated cache file is rebuilt, not a crash
    cached[0].write_bytes(cached[0].read_bytes()[:100])
    flow_mod.clear_memory_cache()
    assert np.array_equal(flow_events(0).events, data.events)


def test_downsampled_flow_is_scaled_with_the_input(cache: Path) -> None:
    full = load_dataset("flow-events", "test", 2)
    half = load_dataset("flow-events", "test", 2, input_shape=(4, 16, 16))
    frames, flow = half[0]
    assert frames.shape == (2, 4, 16, 16) and flow.shape == (2, 16, 16)
    # 2 x 2 blocks averaged, and displacements in half-size pixels
    ref = full[0][1].numpy().reshape(2, 16, 2, 16, 2).mean(axis=(2, 4)) / 2
    assert np.allclose(flow.numpy(), ref, atol=1e-5)
