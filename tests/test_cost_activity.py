"""Measured activity into the cost model: rates through pooling layers, row-group occupancy."""

from __future__ import annotations

import json

import pytest

from neuronas.errors import ConfigError
from neuronas.hardware import Activity, estimate, load_chip
from neuronas.spec import ArchSpec

CHIP = load_chip("rram-adcless-65nm")

# conv -> max pool 2x2 -> conv -> avg pool 2x2 -> fc readout (3 weighted layers)
POOLED = ArchSpec.from_dict(
    {
        "name": "pooled",
        "input": {"shape": [2, 8, 8], "timesteps": 2},
        "layers": [
            {"kind": "conv", "out": 4, "kernel": 3},
            {"kind": "pool", "kernel": 2, "pool": "max"},
            {"kind": "conv", "out": 4, "kernel": 3},
            {"kind": "pool", "kernel": 2, "pool": "avg"},
            {"kind": "fc", "out": 3},
        ],
        "mapping": {"adc_kind": "sa", "adc_bits": 1},
    }
)


def test_measured_rates_map_onto_pool_layers() -> None:
    # what the trainer records: each weighted layer's input (after its pool) and output (before it)
    act = Activity((0.2, 0.303, 0.05), (0.12, 0.05, 0.0), "measured")
    r = estimate(POOLED, CHIP, act)
    kinds = [(layer.kind, layer.input_rate, layer.output_rate) for layer in r.layers]
    assert [k for k, _, _ in kinds] == ["conv", "pool", "conv", "pool", "fc"]
    # the max pool reads conv0's spikes (0.12) and emits what conv1 was measured to read (0.303),
    # not 1 - (1 - 0.12)^4 = 0.40 and not 0.303 as its input
    assert kinds[1][1:] == pytest.approx((0.12, 0.303))
    assert kinds[3][1:] == pytest.approx((0.05, 0.05))
    assert kinds[2][1:] == pytest.approx((0.303, 0.05))
    # the weighted layers are priced with their own measured inputs
    other = estimate(POOLED, CHIP, Activity((0.2, 0.5, 0.05), (0.12, 0.05, 0.0), "measured"))
    assert r.layers[2].sops / other.layers[2].sops == pytest.approx(0.303 / 0.5)
    assert r.layers[0].sops == pytest.approx(other.layers[0].sops)


def test_a_pool_in_front_of_the_first_layer_is_undone() -> None:
    arch = ArchSpec.from_dict(
        {
            "input": {"shape": [1, 8, 8], "timesteps": 1},
            "layers": [{"kind": "pool", "kernel": 2, "pool": "max"}, {"kind": "fc", "out": 4}],
            "mapping": {"adc_kind": "sa", "adc_bits": 1},
        }
    )
    r = estimate(arch, CHIP, Activity((0.4375,), (0.0,), "measured"))
    pool = r.layers[0]
    # 1 - (1 - x)^4 = 0.4375 -> x = 1 - 0.5625^(1/4) = 0.13397
    assert pool.input_rate == pytest.approx(1 - 0.5625**0.25, rel=1e-9)
    assert pool.output_rate == pytest.approx(0.4375)


def test_output_rates_derived_from_the_next_layers_input() -> None:
    # only input rates known: conv0 emits what the max pool turns into conv1's 0.4375
    r = estimate(POOLED, CHIP, Activity((0.2, 0.4375, 0.05), None, "measured"))
    assert r.layers[0].output_rate == pytest.approx(1 - 0.5625**0.25)
    assert r.layers[2].output_rate == pytest.approx(0.05)  # through an average pool
    assert r.layers[4].output_rate == 0.0


# one fc layer (the readout): 64 inputs on 16-row arrays = 4 row groups, 8 outputs x 1-bit
# weights x a differential pair = 16 columns; a 1-bit SA per column, T = 2
ONE = ArchSpec.from_dict(
    {
        "name": "one",
        "input": {"shape": [64], "timesteps": 2},
        "layers": [{"kind": "fc", "out": 8}],
        "precision": {"weight_bits": 1, "membrane_bits": 8},
        "mapping": {
            "adc_kind": "sa",
            "adc_bits": 1,
            "rows": 16,
            "cols": 16,
            "bits_per_cell": 1,
            "signed_scheme": "differential",
        },
    }
)


def test_measured_row_group_occupancy_by_hand() -> None:
    sa_pj = CHIP.constants["sa_energy_pj"]
    prior = estimate(ONE, CHIP, Activity((0.1,), (0.0,), "measured"))
    # independence: 4 groups x (1 - 0.9^16) = 3.2589 active groups per read, x 16 columns x 2 reads
    assert prior.layers[0].conversions == pytest.approx(4 * (1 - 0.9**16) * 16 * 2)
    # measured: half the row groups hold a spike -> 2 active groups per read -> 64 conversions
    occ = estimate(ONE, CHIP, Activity((0.1,), (0.0,), "measured", (0.5,)))
    assert occ.layers[0].conversions == pytest.approx(64.0)
    assert occ.components["conversion"] == pytest.approx(64 * sa_pj * 1e-6)
    # the bitline precharge follows the active groups too; the driven rows (rate x cells) do not
    e_prior, e_occ = prior.components["arrays"], occ.components["arrays"]
    assert e_occ < e_prior
    full = estimate(ONE, CHIP, Activity((0.1,), (0.0,), "measured", (1.0,)))
    per_group = (full.components["arrays"] - e_occ) / (4 - 2)
    assert e_prior == pytest.approx(e_occ + per_group * (4 * (1 - 0.9**16) - 2), rel=1e-9)


def test_occupancy_round_trips_and_is_checked(tmp_path) -> None:
    act = Activity((0.1, 0.2), (0.3, 0.0), "measured", (0.25, 0.5))
    d = act.to_dict()
    assert d["row_group_occupancy"] == [0.25, 0.5]
    back = Activity.from_dict(json.loads(json.dumps(d)))
    assert back == act
    # absent when not measured, so older readers keep working
    assert "row_group_occupancy" not in Activity((0.1,), None, "measured").to_dict()
    with pytest.raises(
        ConfigError,
        match=r"activity.row_group_occupancy: got 1 values, must have one per weighted layer",
    ):
        Activity((0.1, 0.2), None, "measured", (0.5,))
    with pytest.raises(
        ConfigError,
        match=r"activity.row_group_occupancy\[0\]: got 1.5, must be a number in \[0, 1\]",
    ):
        Activity((0.1,), None, "measured", (1.5,))
    # a report carries the occupancy it priced with
    r = estimate(ONE, CHIP, Activity((0.1,), (0.0,), "measured", (0.5,)))
    assert r.to_dict()["activity"]["row_group_occupancy"] == [0.5]
