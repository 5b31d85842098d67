"""Search spaces: strict loading, define-by-run sampling, the chip's restrictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from neuronas.config import list_presets
from neuronas.errors import ConfigError, SearchError
from neuronas.hardware import chip_problems, load_chip
from neuronas.search.space import load_space, space_from_dict
from neuronas.search.study import _RandomTrial

optuna.logging.set_verbosity(optuna.logging.WARNING)

SHAPE, CLASSES = (2, 32, 32), 10


def _samples(space, chip, n=150, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed))
    out = []
    for _ in range(n):
        t = study.ask()
        out.append((t, space.sample(t, chip, input_shape=SHAPE, num_outputs=CLASSES)))
        study.tell(t, 0.0)
    return out


def test_presets_load_and_default_exists() -> None:
    names = list_presets("space")
    assert "digits-small" in names and len(names) >= 2
    for n in names:
        s = load_space(n)
        assert s.name == n


def test_unknown_space_lists_known_and_suggests() -> None:
    with pytest.raises(ConfigError) as e:
        load_space("digits-smal")
    msg = str(e.value)
    assert "did you mean digits-small" in msg and "events-large" in msg


def test_unknown_key_is_one_line_with_known_keys(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nfamilies:\n  mlp:\n    depht: 2\n")
    with pytest.raises(ConfigError) as e:
        load_space(p)
    msg = str(e.value)
    assert (
        "\n" not in msg and "families.mlp.depht" in msg and "unknown key" in msg and "depth" in msg
    )


def test_bad_range_names_the_rule(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("families:\n  mlp:\n    width: {low: 128, high: 32}\n")
    with pytest.raises(ConfigError, match="low <= high must hold, but got low=128, high=32"):
        load_space(p)


def test_empty_choice_is_rejected() -> None:
    with pytest.raises(ConfigError, match="empty list"):
        space_from_dict({"families": {"mlp": {}}, "precision": {"weight_bits": []}})


@pytest.mark.parametrize("chip_name", list_presets("chip"))
@pytest.mark.parametrize("space_name", list_presets("space"))
def test_every_sample_is_buildable_on_every_chip(space_name: str, chip_name: str) -> None:
    space, chip = load_space(space_name), load_chip(chip_name)
    try:
        space.restricted(chip)
    except SearchError:
        pytest.skip(f"{space_name} shares no converter with {chip_name}")
    for _, arch in _samples(space, chip, n=120):
        assert chip_problems(arch, chip) == [], arch.to_dict()
        if space.families.flow is not None:  # a flow readout: 2 channels at the input's size
            assert arch.task == "dense" and arch.output_shape == (2, *SHAPE[1:])
        else:
            assert arch.num_outputs == CLASSES


def test_chip_narrows_adc_kinds_so_incompatible_candidates_are_never_proposed() -> None:
    chip = load_chip("rram-adcless-65nm")
    assert tuple(chip.periphery.adc_kinds) == ("sa",)
    space = load_space("digits-small")
    kinds = {a.mapping.adc_kind for _, a in _samples(space, chip)}
    assert kinds == {"sa"}
    # without the chip the same space proposes other converters
    kinds_free = {a.mapping.adc_kind for _, a in _samples(space, None)}
    assert len(kinds_free) > 1


def test_chip_narrows_neuron_models_bits_and_arrays() -> None:
    base = load_chip("rram-adcless-65nm")
    per = base.periphery.model_copy(
        update={
            "adc_kinds": ("sar", "sa"),
            "adc_bits_min": 1,
            "adc_bits_max": 4,
            "neuron_unit": base.periphery.neuron_unit.model_copy(update={"models": ("if",)}),
        }
    )
    cap = base.capacity.model_copy(update={"array_rows_max": 128, "array_cols_max": 128})
    chip = base.model_copy(update={"periphery": per, "capacity": cap})
    space = load_space("digits-small")
    archs = [a for _, a in _samples(space, chip, n=200)]
    assert {a.neuron.model for a in archs} == {"if"}
    assert {a.mapping.rows for a in archs} <= {64, 128}
    sar_bits = {a.mapping.adc_bits for a in archs if a.mapping.adc_kind == "sar"}
    assert sar_bits and sar_bits <= {3, 4}
    assert all(chip_problems(a, chip) == [] for a in archs)


def test_space_without_a_converter_the_chip_has_says_so() -> None:
    space = space_from_dict(
        {"name": "sar-only", "families": {"mlp": {}}, "mapping": {"adc_kind": ["sar"]}}
    )
    with pytest.raises(SearchError, match="sar-only.*offers sa"):
        space.restricted(load_chip("rram-adcless-65nm"))


def test_conditional_parameters_follow_depth() -> None:
    space = load_space("digits-small")
    for t, arch in _samples(space, None, n=120):
        p = t.params
        if p.get("family") == "mlp":
            assert ("mlp.width_1" in p) == (p["mlp.depth"] == 2)
            assert "cnn.blocks" not in p
            hidden = [layer for layer in arch.layers if layer.kind == "fc"][:-1]
            assert len(hidden) == p["mlp.depth"]
        else:
            assert ("cnn.channels_1" in p) == (p["cnn.blocks"] == 2)
            assert sum(layer.kind == "conv" for layer in arch.layers) == p["cnn.blocks"]


def test_sampling_is_reproducible_with_a_seed() -> None:
    space = load_space("events-large")
    a = [arch.key for _, arch in _samples(space, None, n=30, seed=3)]
    b = [arch.key for _, arch in _samples(space, None, n=30, seed=3)]
    c = [arch.key for _, arch in _samples(space, None, n=30, seed=4)]
    assert a == b and a != c


def test_per_layer_precision_overrides_each_weighted_layer() -> None:
    space = load_space("events-large")
    seen = 0
    for t, arch in _samples(space, None, n=80):
        if t.params.get("per_layer"):
            seen += 1
            for i, r in enumerate(arch.resolved()):
                assert r.weight_bits == t.params[f"layer{i}.weight_bits"]
    assert seen > 0


def test_grid_lists_every_parameter_with_all_values() -> None:
    space = load_space("digits-small")
    chip = load_chip("rram-adcless-65nm")
    grid = space.grid(chip, input_shape=SHAPE, num_outputs=CLASSES)
    assert grid["mlp.width_1"] == [32, 64, 128]
    assert sorted(grid["cnn.kernel_1"]) == [3, 5]
    assert "adc_kind" not in grid  # a single choice on this chip is not a search dimension
    # every sampled parameter is in the grid, with a value the grid lists
    for t, _ in _samples(space, chip, n=60):
        for k, v in t.params.items():
            assert v in grid[k], (k, v)


def test_random_trial_respects_log_ranges() -> None:
    rng = np.random.default_rng(0)
    vals = [_RandomTrial(rng).suggest_int("w", 32, 512, log=True) for _ in range(500)]
    assert min(vals) >= 32 and max(vals) <= 512
    # log-uniform: the lower half of the log range holds about half the draws
    assert 0.35 < np.mean(np.array(vals) < 128) < 0.65


# -- the resnet family ------------------------------------------------------------------------


def test_resnet_blocks_carry_the_sampled_skip_from_their_input() -> None:
    space = load_space("digits-residual")
    chip = load_chip("rram-adcless-65nm")
    ops_seen: set[str] = set()
    for t, arch in _samples(space, chip, n=80):
        p = t.params
        blocks = p.get("resnet.blocks", 1)
        assert ("resnet.width_1" in p) == (blocks == 2)
        assert arch.layers[1].name == "stem"  # after the input's 2x max pool
        block_in = "stem"
        for i in range(blocks):
            op = p.get(f"resnet.skip_{i}", space.families.resnet.skip[0])
            second = arch.layers[arch.layer_index(f"b{i}b")]
            ops_seen.add(op)
            if op == "none":
                assert second.skip is None
            else:
                assert (second.skip.source, second.skip.op) == (block_in, op)
            block_in = f"b{i}p" if p.get(f"resnet.pool_{i}") == "max" else f"b{i}b"
        # every block keeps the trunk's channels, so each add is well formed
        for r in arch.resolved():
            if r.skip_op == "add":
                assert r.skip_shape == r.out_shape == (p["resnet.stem"], *r.out_shape[1:])
        assert chip_problems(arch, chip) == []
    assert ops_seen == {"add", "concat", "none"}


def test_resnet_concat_blocks_widen_the_second_conv_rows() -> None:
    space = load_space("digits-residual")
    for t, arch in _samples(space, None, n=60):
        for r in arch.resolved():
            if r.skip_op == "concat":
                block = arch.layers[r.index].name[1:-1]
                width = t.params[f"resnet.width_{block}"]
                assert r.in_shape[0] == width + t.params["resnet.stem"]
                assert r.fan_in == (width + t.params["resnet.stem"]) * r.kernel * r.kernel


def test_resnet_family_refuses_even_kernels_and_flat_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="4 is even: a residual block keeps its map size"):
        space_from_dict({"families": {"resnet": {"kernel": [3, 4]}}})
    with pytest.raises(ConfigError, match="is even"):
        space_from_dict({"families": {"resnet": {"kernel": {"low": 3, "high": 5}}}})
    space = space_from_dict({"name": "r", "families": {"resnet": {}}})
    with pytest.raises(SearchError, match=r"the resnet family needs a \[C, H, W\] input"):
        space.sample(_SeededTrialStub(), None, input_shape=(100,), num_outputs=10)


class _SeededTrialStub:
    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return low

    def suggest_categorical(self, name: str, choices: list) -> object:
        return choices[0]


def test_resnet_grid_lists_the_skip_of_every_block() -> None:
    space = load_space("digits-residual")
    grid = space.grid(None, input_shape=SHAPE, num_outputs=CLASSES)
    assert grid["resnet.skip_0"] == grid["resnet.skip_1"] == ["add", "concat", "none"]
    assert grid["resnet.stem"] == [8, 16]
