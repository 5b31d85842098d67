"""digits-events: the simulated DVS, determinism, event sanity, shapes, split and the disk cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from neuronas.data import check_input_shape, dataset_info, load_dataset
from neuronas.data import digits as digits_mod
from neuronas.data.dvs import EVENT_DTYPE, DVSParams, bilinear_upscale, simulate_saccades
from neuronas.errors import DataError


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """One full build of the 1,797 digits into a private cache, shared by this module."""
    where = tmp_path_factory.mktemp("neuronas-cache")
    old = os.environ.get("NEURONAS_CACHE_DIR")
    os.environ["NEURONAS_CACHE_DIR"] = str(where)
    digits_mod._EVENTS_MEMO.clear()
    digits_mod._FRAMES_MEMO.clear()
    try:
        yield where
    finally:
        digits_mod._EVENTS_MEMO.clear()
        digits_mod._FRAMES_MEMO.clear()
        if old is None:
            os.environ.pop("NEURONAS_CACHE_DIR", None)
        else:
            os.environ["NEURONAS_CACHE_DIR"] = old


def _some_digits(n: int = 12) -> np.ndarray:
    from sklearn.datasets import load_digits

    up = bilinear_upscale(load_digits().images[:n] / 16.0, 3)
    return (up / up.max(axis=(1, 2), keepdims=True)).astype(np.float32)


# --- the simulated sensor ----------------------------------------------------------------------


def test_bilinear_upscale_keeps_constant_images_and_interpolates_between_pixels() -> None:
    flat = np.full((1, 8, 8), 0.3)
    assert np.allclose(bilinear_upscale(flat, 3), 0.3)
    ramp = np.tile(np.arange(8.0), (8, 1))[None]
    up = bilinear_upscale(ramp, 3)
    assert up.shape == (1, 24, 24)
    # output pixel 4's centre sits at input coordinate (4 + 0.5) / 3 - 0.5 = 1.0 exactly
    assert up[0, 0, 4] == pytest.approx(1.0)
    # and pixel 5's at 1.3333: a third of the way from input 1 to input 2
    assert up[0, 0, 5] == pytest.approx(4 / 3)


def test_same_seed_same_events_other_seed_other_events() -> None:
    images = _some_digits()
    params = DVSParams(step_us=4_000, threshold=0.4, black_level=0.2)
    a, off_a = simulate_saccades(images, params, np.random.default_rng(7))
    b, off_b = simulate_saccades(images, params, np.random.default_rng(7))
    c, _ = simulate_saccades(images, params, np.random.default_rng(8))
    assert a.dtype == EVENT_DTYPE
    assert np.array_equal(off_a, off_b)
    assert np.array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)


def test_a_still_image_emits_only_background_activity() -> None:
    images = _some_digits(4)
    still = DVSParams(saccade_vertices_px=((4.0, 4.0),) * 3, background_hz=0.0)
    events, offsets = simulate_saccades(images, still, np.random.default_rng(0))
    assert events.size == 0 and offsets[-1] == 0
    noisy = DVSParams(saccade_vertices_px=((4.0, 4.0),) * 3, background_hz=50.0)
    events, _ = simulate_saccades(images, noisy, np.random.default_rng(0))
    # 50 Hz x 0.3 s x 1,024 pixels x 4 images = 61,440 expected; Poisson sd ~ 250
    assert abs(events.size - 61_440) < 2_000


def test_brightening_pixels_fire_on_and_darkening_pixels_fire_off() -> None:
    # a bright bar entering from the left: pixels it covers brighten (ON), none darken before
    # it leaves, so over the first leg (moving right) the leading edge is ON, trailing edge OFF
    bar = np.zeros((1, 24, 24), dtype=np.float32)
    bar[:, :, 10:14] = 1.0
    params = DVSParams(
        saccade_vertices_px=((0.0, 4.0), (8.0, 4.0), (0.0, 4.0)),
        background_hz=0.0,
        threshold_mismatch=0.0,
        step_us=2_000,
    )
    events, _ = simulate_saccades(bar, params, np.random.default_rng(0))
    first_leg = events[events["t"] < params.saccade_us]
    on, off = first_leg[first_leg["p"] == 1], first_leg[first_leg["p"] == 0]
    assert on.size > 0 and off.size > 0
    # the leading (right) edge of a bar moving right is further right than its trailing edge
    assert on["x"].mean() > off["x"].mean()
    # vertically the bar fills rows 4..27: no event outside them
    assert first_leg["y"].min() >= 4 and first_leg["y"].max() <= 28
    # one full dark -> white transition crosses log(1 / 0.1) / 0.2 = 11.5 levels: 11 ON events
    # at a pixel the bar fully covers during the leg (x = 18 is covered from offset 5 to 8)
    at = on[(on["x"] == 18) & (on["y"] == 15)]
    assert at.size == 11


# --- the built dataset -------------------------------------------------------------------------


def test_events_are_sane(cache: Path) -> None:
    data = digits_mod.digits_events(0)
    assert len(data) == 1797
    assert data.events.dtype == EVENT_DTYPE
    counts = np.diff(data.offsets)
    assert counts.min() > 1_000  # every digit is seen
    duration = digits_mod.DIGITS_PARAMS.duration_us
    for i in (0, 1, 500, 1796):
        ev = data.sample(i)
        assert np.all(np.diff(ev["t"]) >= 0), "timestamps sorted within a sample"
        assert set(np.unique(ev["p"])) == {0, 1}, "both polarities"
        assert ev["x"].min() >= 0 and ev["x"].max() < 32
        assert ev["y"].min() >= 0 and ev["y"].max() < 32
        assert ev["t"].min() >= 0 and ev["t"].max() < duration
    # ON and OFF balance over a closed saccade path (what brightens darkens again)
    assert 0.4 < data.events["p"].mean() < 0.6


def test_split_is_fixed_stratified_and_disjoint(cache: Path) -> None:
    data = digits_mod.digits_events(0)
    train, test = data.train_index, data.test_index
    assert len(train) == 1437 and len(test) == 360
    assert not set(train) & set(test)
    assert sorted(np.concatenate([train, test])) == list(range(1797))
    per_class = np.bincount(data.labels[test], minlength=10)
    assert per_class.min() >= 35 and per_class.max() <= 37  # 20 % of ~180 per class


def test_load_dataset_shapes_and_tensors(cache: Path) -> None:
    train = load_dataset("digits-events", "train", 6)
    test = load_dataset("digits-events", "test", 6)
    x, y = train.tensors()
    assert x.shape == (1437, 6, 2, 32, 32) and str(x.dtype) == "torch.float32"
    assert y.shape == (1437,) and str(y.dtype) == "torch.int64"
    assert len(test) == 360
    frames, label = test[3]
    assert frames.shape == (6, 2, 32, 32) and isinstance(label, int)
    # binary spikes by default; every timestep carries events of both polarities
    assert set(np.unique(x[:50].numpy())) == {0.0, 1.0}
    assert (x[:50].sum(dim=(2, 3, 4)) > 0).all()
    assert 0.05 < float(x.mean()) < 0.3
    # the frames are the sample's own events: sum of counts equals events framed by tonic
    counts = load_dataset("digits-events", "test", 6, binarize=False)
    events = counts.events(3)
    c, _ = counts[3]
    assert 0.95 * events.size <= float(c.sum()) <= events.size


def test_downsampled_input_shape(cache: Path) -> None:
    small = load_dataset("digits-events", "test", 4, input_shape=(2, 16, 16))
    x, _ = small.tensors()
    assert x.shape == (360, 4, 2, 16, 16)
    with pytest.raises(DataError, match=r"\[2, 40, 40\].*\[2, 32, 32\]"):
        load_dataset("digits-events", "test", 4, input_shape=(2, 40, 40))


def test_learnable_by_a_linear_classifier(cache: Path) -> None:
    """The dataset carries the digit: a ridge classifier on 3 binary frames gets > 90 %."""
    from sklearn.linear_model import RidgeClassifier

    xtr, ytr = load_dataset("digits-events", "train", 3).tensors()
    xte, yte = load_dataset("digits-events", "test", 3).tensors()
    clf = RidgeClassifier(alpha=100.0).fit(xtr.flatten(1).numpy(), ytr.numpy())
    assert clf.score(xte.flatten(1).numpy(), yte.numpy()) > 0.9


def test_cache_is_written_once_and_reused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digits_mod.digits_events(0)
    files = sorted(cache.glob("digits-events-*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    before = digits_mod.digits_events(0)
    digits_mod._EVENTS_MEMO.clear()

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although the cache file was there")

    monkeypatch.setattr(digits_mod, "build_digits_events", no_build)
    again = digits_mod.digits_events(0)
    assert np.array_equal(again.events, before.events)
    assert np.array_equal(again.test_index, before.test_index)
    assert files[0].stat().st_mtime_ns == stamp


def test_binary_frames_are_cached_on_disk_and_reused(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neuronas.data.framing as framing

    first = load_dataset("digits-events", "test", 5).tensors()[0].clone()
    assert len(list(cache.glob("digits-frames-*-T5-2x32x32.npz"))) == 1
    digits_mod._FRAMES_MEMO.clear()

    class NoFraming:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("framed again although the frames were cached")

    monkeypatch.setattr(framing, "EventFramer", NoFraming)
    again = load_dataset("digits-events", "test", 5).tensors()[0]
    assert torch_equal(again, first)
    # counts are not binary: they are framed afresh, never read from the binary cache
    digits_mod._FRAMES_MEMO.clear()
    with pytest.raises(AssertionError, match="framed again"):
        load_dataset("digits-events", "test", 5, binarize=False)


def torch_equal(a, b) -> bool:  # type: ignore[no-untyped-def]
    return bool((a == b).all()) and a.shape == b.shape


def test_a_corrupt_or_foreign_cache_file_is_not_used(cache: Path, tmp_path: Path) -> None:
    good = digits_mod.digits_events(0)
    path = cache / f"digits-events-{good.key}.npz"
    assert digits_mod._read_cache(path, good.key) is not None
    assert digits_mod._read_cache(path, "0123456789abcdef") is None  # another recipe's key
    broken = tmp_path / path.name
    broken.write_bytes(path.read_bytes()[:1000])  # a build killed while writing
    assert digits_mod._read_cache(broken, good.key) is None
    broken.write_bytes(b"not an npz file")
    assert digits_mod._read_cache(broken, good.key) is None


def test_the_cache_key_follows_the_sensor_parameters() -> None:
    base = digits_mod._cache_key(0, digits_mod.DIGITS_PARAMS)
    assert base == digits_mod._cache_key(0, digits_mod.DIGITS_PARAMS)
    assert base != digits_mod._cache_key(1, digits_mod.DIGITS_PARAMS)
    other = DVSParams(threshold=0.3)
    assert base != digits_mod._cache_key(0, other)


# --- the shape check the trainer calls ---------------------------------------------------------


def test_check_input_shape() -> None:
    assert check_input_shape("digits-events", [2, 32, 32]) == (2, 32, 32)
    assert check_input_shape(dataset_info("dvsgesture"), (2, 32, 32)) == (2, 32, 32)
    assert check_input_shape("shd", [350]) == (350,)
    with pytest.raises(DataError) as err:
        check_input_shape("digits-events", (1, 28, 28))
    assert "[1, 28, 28]" in str(err.value) and "[2, 32, 32]" in str(err.value)
    with pytest.raises(DataError, match=r"\[2048\].*\[2, 32, 32\]"):
        check_input_shape("digits-events", (2048,))
    with pytest.raises(DataError, match=r"\[2, 32, 32\].*'shd'.*\[700\]"):
        check_input_shape("shd", (2, 32, 32))
    with pytest.raises(DataError, match="unknown dataset"):
        check_input_shape("mnist", (2, 32, 32))


def test_bad_requests() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'digits'.*did you mean 'digits-events'"):
        load_dataset("digits", "train", 4)
    with pytest.raises(
        DataError, match="known: digits-events, flow-events, nmnist, shd, dvsgesture"
    ):
        dataset_info("cifar10")
    with pytest.raises(DataError, match="did you mean 'dvsgesture'"):
        dataset_info("DVS-Gesture")
    with pytest.raises(DataError, match="split: got 'valid'"):
        load_dataset("digits-events", "valid", 4)
    with pytest.raises(DataError, match="timesteps: got 0"):
        load_dataset("digits-events", "train", 0)
    with pytest.raises(
        DataError, match=r"timesteps: got 100000, must be an integer in \[1, 10000\]"
    ):
        load_dataset("digits-events", "train", 100_000)
