"""One shape rule for 1-D (audio) and 2-D (camera) inputs: the native shape, or a smaller one with
the same channels, served by downsampling; anything else is an error naming both shapes."""

from __future__ import annotations

import pytest

from neuronas.data import check_input_shape, downsampled_shape
from neuronas.errors import DataError


@pytest.mark.parametrize(
    ("dataset", "shape"),
    [
        ("shd", [700]),
        ("shd", [350]),
        ("shd", (1,)),
        ("digits-events", [2, 32, 32]),
        ("digits-events", [2, 16, 8]),
        ("dvsgesture", (2, 32, 32)),
        ("flow-events", [4, 16, 16]),
    ],
)
def test_native_or_smaller_shapes_are_served(dataset: str, shape: list[int]) -> None:
    assert check_input_shape(dataset, shape) == tuple(shape)


@pytest.mark.parametrize(
    ("dataset", "shape", "allowed"),
    [
        ("shd", [701], r"\[700\] or \[f\] with f <= 700"),
        ("shd", [0], r"\[700\] or \[f\] with f <= 700"),
        ("shd", [2, 350], r"\[700\] or \[f\] with f <= 700"),
        ("shd", [350, 1], r"\[700\] or \[f\] with f <= 700"),
        ("shd", [2, 32, 32], r"\[700\] or \[f\] with f <= 700"),
        ("digits-events", [2048], r"\[2, 32, 32\] or \[2, h, w\] with h <= 32, w <= 32"),
        ("digits-events", [1, 32, 32], r"\[2, 32, 32\] or \[2, h, w\] with h <= 32, w <= 32"),
        ("digits-events", [2, 33, 32], r"\[2, 32, 32\] or \[2, h, w\] with h <= 32, w <= 32"),
    ],
)
def test_other_shapes_name_both(dataset: str, shape: list[int], allowed: str) -> None:
    with pytest.raises(DataError) as err:
        check_input_shape(dataset, shape, what="input.shape")
    msg = str(err.value)
    native = "[700]" if dataset == "shd" else "[2, 32, 32]"
    assert f"input.shape [{', '.join(map(str, shape))}] does not match dataset '{dataset}'" in msg
    assert f"whose frames are {native} per timestep" in msg
    assert __import__("re").search(allowed, msg), msg


@pytest.mark.parametrize("shape", [[2.5], [True], ["350"], None])
def test_shapes_must_be_integers(shape: object) -> None:
    with pytest.raises(DataError, match=r"is not a list of integers; dataset 'shd' gives \[700\]"):
        check_input_shape("shd", shape)  # type: ignore[arg-type]


def test_a_downsampling_factor_divides_every_spatial_axis_1d_and_2d_alike() -> None:
    assert downsampled_shape((700,), 2) == (350,)
    assert downsampled_shape((700,), 3) == (233,)
    assert downsampled_shape((2, 128, 128), 4) == (2, 32, 32)
    assert downsampled_shape((2, 34, 34), 1) == (2, 34, 34)
    assert downsampled_shape((2, 34, 34), 100) == (2, 1, 1)
    for native, factor in (((700,), 3), ((2, 35, 35), 2)):
        assert check_input_shape(
            "shd" if len(native) == 1 else "pokerdvs", downsampled_shape(native, factor)
        )
    with pytest.raises(DataError, match=r"downsample: got 0, must be an integer >= 1"):
        downsampled_shape((700,), 0)
