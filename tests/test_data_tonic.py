"""tonic datasets from a local data root: tiny files written in each dataset's native format and
read back through tonic's own dataset classes (tonic 1.7), framed, downsampled; and the errors a
person sees when the files are not there.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tonic.transforms as tt
from _tonic_files import write_nmnist_bin, write_shd_h5

from neuronas.data import load_dataset
from neuronas.errors import DataError

T = 4


def _frames(events: np.ndarray, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """What tonic's ToFrame makes of events we know: the reference for the loaded frames."""
    return tt.ToFrame(sensor_size=sensor_size, n_time_bins=T)(events).astype(np.float32)


# --- N-MNIST: 40-bit events in Train/<digit>/*.bin ---------------------------------------------


def _random_events(rng: np.random.Generator, n: int, w: int, h: int, span_us: int) -> dict:
    return {
        "x": rng.integers(0, w, n),
        "y": rng.integers(0, h, n),
        "t": np.sort(rng.integers(0, span_us, n)),
        "p": rng.integers(0, 2, n),
    }


@pytest.fixture
def nmnist_root(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    written: dict = {}
    for split, folder, per_class in (("train", "Train", 2), ("test", "Test", 1)):
        for digit in (0, 1, 2):
            for k in range(per_class):
                ev = _random_events(rng, 200, 34, 34, 300_000)
                path = tmp_path / "NMNIST" / folder / str(digit) / f"{k:05d}.bin"
                write_nmnist_bin(path, **ev)
                written[(split, digit, k)] = ev
    return tmp_path, written


def test_nmnist_native_bin_files_through_tonic(nmnist_root: tuple[Path, dict]) -> None:
    root, written = nmnist_root
    train = load_dataset("nmnist", "train", T, data_root=root, binarize=False)
    test = load_dataset("nmnist", "test", T, data_root=root)
    assert len(train) == 6 and len(test) == 3
    assert [train[i][1] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    # tonic decoded exactly what was written
    ev = train.events(3)  # digit 1, second file
    src = written[("train", 1, 1)]
    for field in "xytp":
        assert np.array_equal(ev[field], src[field]), field
    frames, label = train[3]
    assert frames.shape == (T, 2, 34, 34) and label == 1
    assert np.array_equal(frames.numpy(), _frames(ev, (34, 34, 2)))
    # default frames are binary spikes
    x, y = test.tensors()
    assert x.shape == (3, T, 2, 34, 34) and y.tolist() == [0, 1, 2]
    assert set(np.unique(x.numpy())) == {0.0, 1.0}


def test_nmnist_timestamps_past_the_23_bit_range_use_overflow_events(tmp_path: Path) -> None:
    # the ATIS clock wraps every 2^23 us... tonic's reader adds 2^13 per y == 240 marker event
    path = tmp_path / "NMNIST" / "Test" / "7" / "00000.bin"
    write_nmnist_bin(
        path,
        x=np.array([1, 0, 2]),
        y=np.array([1, 240, 3]),
        t=np.array([10, 0, 20]),
        p=np.array([1, 0, 0]),
    )
    ds = load_dataset("nmnist", "test", 2, data_root=tmp_path)
    ev = ds.events(0)
    assert ev["t"].tolist() == [10, 20 + 2**13]
    assert ds[0][1] == 7


# --- SHD: HDF5 with ragged spikes/times (s) and spikes/units ------------------------------------


@pytest.fixture
def shd_root(tmp_path: Path) -> tuple[Path, list]:
    rng = np.random.default_rng(1)
    samples = []
    for label in (3, 17, 3):
        n = 300
        samples.append((np.sort(rng.uniform(0, 0.8, n)), rng.integers(0, 700, n), label))
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", samples)
    write_shd_h5(tmp_path / "SHD" / "shd_test.h5", samples[:1])
    return tmp_path, samples


def test_shd_hdf5_through_tonic(shd_root: tuple[Path, list]) -> None:
    root, samples = shd_root
    train = load_dataset("shd", "train", T, data_root=root, binarize=False)
    assert len(train) == 3
    frames, label = train[1]
    assert frames.shape == (T, 700) and label == 17
    t_s, units, _ = samples[1]
    expected = np.zeros(len(units), dtype=np.dtype([("t", int), ("x", int), ("p", int)]))
    expected["t"] = (t_s.astype(np.float32).astype(np.float64) * 1e6).astype(int)
    expected["x"] = units
    ref = _frames(expected, (700, 1, 1)).reshape(T, 700)
    assert np.array_equal(frames.numpy(), ref)
    assert len(load_dataset("shd", "test", T, data_root=root)) == 1


def test_shd_downsampled_channels(shd_root: tuple[Path, list]) -> None:
    root, samples = shd_root
    ds = load_dataset("shd", "train", T, data_root=root, input_shape=(350,), binarize=False)
    frames, _ = ds[0]
    assert frames.shape == (T, 350)
    # channel pairs merge: unit u lands on u // 2; nothing lands where no unit was
    units = samples[0][1]
    assert set(np.nonzero(frames.numpy().sum(0))[0]) <= set((units // 2).tolist())
    # a factor that does not divide 700 follows tonic's Downsample: unit u -> int(u * 233 / 700)
    odd = load_dataset("shd", "train", T, data_root=root, input_shape=[233], binarize=False)
    frames, _ = odd[0]
    assert frames.shape == (T, 233)
    expected = set((units * (233 / 700)).astype(int).tolist())
    assert set(np.nonzero(frames.numpy().sum(0))[0]) <= expected
    assert len(set(np.nonzero(frames.numpy().sum(0))[0])) >= len(expected) - 1  # last event


# --- DVS Gesture: tonic's cut version, userNN_lighting/<label>.npy of (x, y, p, t_ms) -----------


@pytest.fixture
def gesture_root(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    files = {
        ("ibmGestureTrain", "user01_fluorescent", 0),
        ("ibmGestureTrain", "user01_fluorescent", 10),
        ("ibmGestureTrain", "user02_led", 4),
        ("ibmGestureTest", "user24_natural", 7),
    }
    for split, user, label in sorted(files):
        n = 500
        ev = np.stack(
            [
                rng.integers(0, 128, n),
                rng.integers(0, 128, n),
                rng.integers(0, 2, n),
                np.sort(rng.integers(0, 1_500, n)),  # milliseconds
            ],
            axis=1,
        ).astype(np.int64)
        ev[0] = (127, 64, 1, 0)  # a known first event
        path = tmp_path / "DVSGesture" / split / user / f"{label}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, ev)
    return tmp_path


def test_dvsgesture_npy_through_tonic_and_downsampled(gesture_root: Path) -> None:
    full = load_dataset("dvsgesture", "train", T, data_root=gesture_root)
    assert len(full) == 3
    assert sorted(full[i][1] for i in range(3)) == [0, 4, 10]
    frames, _ = full[0]
    assert frames.shape == (T, 2, 128, 128)
    assert full.events(0)["t"][-1] % 1000 == 0  # ms -> us by tonic
    small = load_dataset("dvsgesture", "train", T, data_root=gesture_root, input_shape=(2, 32, 32))
    frames, _ = small[0]
    assert frames.shape == (T, 2, 32, 32)
    # the known first event (x=127, y=64, ON, t=0) is at (31, 16) after 128 -> 32
    assert frames[0, 1, 16, 31] == 1.0
    test = load_dataset("dvsgesture", "test", T, data_root=gesture_root)
    assert len(test) == 1 and test[0][1] == 7


# --- POKER-DVS: pips_<split>/<..class>/*.npy of (t, x, y, p) -------------------------------------


def test_pokerdvs_npy_through_tonic(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for cls in ("cl", "he", "di", "sp"):
        ev = np.stack(
            [
                np.sort(rng.integers(0, 20_000, 100)),
                rng.integers(0, 35, 100),
                rng.integers(0, 35, 100),
                rng.integers(0, 2, 100),
            ],
            axis=1,
        )
        path = tmp_path / "POKERDVS" / "pips_test" / f"rec_{cls}" / "0.npy"
        path.parent.mkdir(parents=True)
        np.save(path, ev)
    ds = load_dataset("pokerdvs", "test", T, data_root=tmp_path)
    assert sorted(ds[i][1] for i in range(len(ds))) == [0, 1, 2, 3]
    assert ds[0][0].shape == (T, 2, 35, 35)


# --- absent files: a message that says where they go, and nothing downloaded ---------------------


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("nmnist", "NMNIST/Train/*/*.bin"),
        ("shd", "SHD/shd_train.h5"),
        ("dvsgesture", "DVSGesture/ibmGestureTrain/user*_*/*.npy"),
        ("pokerdvs", "POKERDVS/pips_train/*/*.npy"),
    ],
)
def test_missing_files_say_where_they_go_and_nothing_is_downloaded(
    tmp_path: Path, name: str, where: str
) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(name, "train", T, data_root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / where) in msg
    # the command that fetches them (the only one with --download), except where tonic cannot
    fetch = f"`neuronas datasets {name} --data-root DIR --download` fetches them once"
    assert (fetch in msg) != (name == "pokerdvs")  # tonic cannot fetch POKER-DVS
    assert "pass --download" not in msg and "download=True" not in msg
    assert "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # tonic was not let near the network or the disk


def test_no_data_root_and_a_data_root_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"pass --data-root DIR .*DIR/NMNIST/Train"):
        load_dataset("nmnist", "train", T)
    with pytest.raises(DataError, match=r"data root '.*nowhere' does not exist.*SHD/shd_train.h5"):
        load_dataset("shd", "train", T, data_root=tmp_path / "nowhere")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DataError, match="data root '.*afile' is a file, not a folder"):
        load_dataset("shd", "train", T, data_root=afile)


def test_one_split_present_the_other_missing(nmnist_root: tuple[Path, dict]) -> None:
    root, _ = nmnist_root
    import shutil

    shutil.rmtree(root / "NMNIST" / "Test")
    assert len(load_dataset("nmnist", "train", T, data_root=root)) == 6
    with pytest.raises(DataError, match=r"'nmnist' \(test split\).*NMNIST/Test/\*/\*\.bin"):
        load_dataset("nmnist", "test", T, data_root=root)


def test_a_corrupt_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "SHD" / "shd_train.h5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not hdf5")
    with pytest.raises(DataError, match=r"cannot be read by tonic.datasets.SHD"):
        load_dataset("shd", "train", T, data_root=tmp_path)


def test_arch_shape_that_does_not_fit_names_both(gesture_root: Path) -> None:
    with pytest.raises(DataError, match=r"\[2, 256, 256\].*'dvsgesture'.*\[2, 128, 128\]"):
        load_dataset("dvsgesture", "train", T, data_root=gesture_root, input_shape=(2, 256, 256))


def test_download_failures_are_data_errors(tmp_path: Path) -> None:
    # tonic's POKERDVS "download" copies an archive from its own package folder, which the PyPI
    # wheel does not ship: the real tonic path fails, offline, and the user gets one line
    with pytest.raises(
        DataError, match=r"'pokerdvs': downloading into .* failed: FileNotFoundError"
    ):
        load_dataset("pokerdvs", "train", T, data_root=tmp_path, download=True)


def test_download_is_not_needed_when_the_files_are_there(nmnist_root: tuple[Path, dict]) -> None:
    # tonic's own check wants train.zip too and would fetch ~1 GB again; neuronas uses the files
    root, _ = nmnist_root
    ds = load_dataset("nmnist", "train", T, data_root=root, download=True)
    assert len(ds) == 6
    assert not (root / "NMNIST" / "train.zip").exists()


# --- damaged files: one line naming the file, never a traceback or a wrong label ----------------


def _nmnist_one_good(root: Path) -> None:
    rng = np.random.default_rng(4)
    for split in ("Train", "Test"):
        write_nmnist_bin(
            root / "NMNIST" / split / "1" / "good.bin", **_random_events(rng, 30, 34, 34, 1000)
        )


def _read_all(root: Path, name: str, split: str = "train") -> None:
    ds = load_dataset(name, split, T, data_root=root)
    for i in range(len(ds)):
        ds[i]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"\x01\x02\x03\x04\x05\x06\x07",
            r"bad.bin: 7 bytes is not a whole number of 5-byte N-MNIST events",
        ),
        (b"", r"bad.bin: empty file, an N-MNIST recording holds 5-byte events"),
        (
            b"\xff" * 50,
            r"bad.bin: event 0 is out of the 34x34 sensor: x = 255, must be in \[0, 33\]",
        ),
    ],
    ids=["truncated", "empty", "garbage"],
)
def test_damaged_nmnist_bin_files(tmp_path: Path, content: bytes, expected: str) -> None:
    _nmnist_one_good(tmp_path)
    bad = tmp_path / "NMNIST" / "Train" / "2" / "bad.bin"
    bad.parent.mkdir()
    bad.write_bytes(content)
    with pytest.raises(DataError, match=expected) as err:
        _read_all(tmp_path, "nmnist")
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    assert (
        len(load_dataset("nmnist", "test", T, data_root=tmp_path)) == 1
    )  # the other split is fine


def test_a_symlink_loop_in_nmnist(tmp_path: Path) -> None:
    _nmnist_one_good(tmp_path)
    loop = tmp_path / "NMNIST" / "Train" / "1" / "loop.bin"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match=r"loop.bin: cannot be read \(OSError: .*[Ss]ymbolic links"):
        _read_all(tmp_path, "nmnist")


def test_a_data_root_that_loops(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(
        DataError, match=r"data root '.*loop' is a symbolic link that leads nowhere"
    ):
        load_dataset("shd", "train", T, data_root=loop)


def test_an_nmnist_folder_that_is_not_a_digit(tmp_path: Path) -> None:
    # tonic takes the label from the folder name's last character: Train/12 would be class 2
    _nmnist_one_good(tmp_path)
    rng = np.random.default_rng(5)
    write_nmnist_bin(
        tmp_path / "NMNIST" / "Train" / "12" / "a.bin", **_random_events(rng, 30, 34, 34, 1000)
    )
    with pytest.raises(
        DataError, match=r"Train/12: folder '12' is not an N-MNIST class; .*folders 0 \.\. 9"
    ):
        load_dataset("nmnist", "train", T, data_root=tmp_path)


def _shd_sample(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray, int]:
    return np.sort(rng.uniform(0, 0.5, 50)), rng.integers(0, 700, 50), label


def test_shd_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "SHD" / "shd_train.h5"
    write_shd_h5(path, [_shd_sample(np.random.default_rng(6), 1)])
    with h5py.File(path, "a") as f:
        del f["labels"]
    with pytest.raises(
        DataError, match=r"shd_train.h5: no labels in the HDF5 file; SHD's layout has"
    ):
        load_dataset("shd", "train", T, data_root=tmp_path)


def test_shd_label_out_of_its_20_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", [_shd_sample(rng, 3), _shd_sample(rng, 25)])
    with pytest.raises(
        DataError,
        match=r"shd_train.h5: labels\[1\] = 25, must be in \[0, 19\] \(20 classes of 'shd'\)",
    ):
        load_dataset("shd", "train", T, data_root=tmp_path)


@pytest.mark.parametrize(("bad", "shown"), [(np.nan, "nan s"), (-0.25, "-0.25 s")])
def test_shd_nan_or_negative_times(tmp_path: Path, bad: float, shown: str) -> None:
    rng = np.random.default_rng(8)
    t, u, label = _shd_sample(rng, 4)
    t[0] = bad
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", [_shd_sample(rng, 1), (t, u, label)])
    ds = load_dataset("shd", "train", T, data_root=tmp_path)
    assert ds[0][0].shape == (T, 700)  # the good sample reads
    with pytest.raises(DataError) as err:
        ds[1]
    msg = str(err.value)
    assert "shd_train.h5 sample 1: event 0 has time " + shown + ", must be finite and >= 0" in msg
    assert "\n" not in msg


def test_damaged_file_through_the_cli_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    _nmnist_one_good(tmp_path)
    (tmp_path / "NMNIST" / "Test" / "1" / "junk.bin").write_bytes(b"\xff" * 20)
    res = subprocess.run(
        [sys.executable, "-m", "neuronas", "datasets", "nmnist", "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "junk.bin: event 0 is out of the 34x34 sensor" in lines[0], (
        res.stderr
    )
