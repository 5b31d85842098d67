"""ArchSpec and its kin: round trips, hashing, shape chaining, per-layer overrides."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from neuronas.config import list_presets, preset_dir
from neuronas.errors import SpecError
from neuronas.spec import ArchSpec, InputSpec, LayerSpec, MappingSpec, NeuronSpec, PrecisionSpec

CNN = {
    "name": "t",
    "input": {"shape": [2, 16, 16], "timesteps": 4},
    "layers": [
        {"kind": "conv", "out": 8},
        {"kind": "pool", "kernel": 2},
        {
            "kind": "conv",
            "out": 16,
            "kernel": 5,
            "stride": 2,
            "override": {"adc_bits": 6, "weight_bits": 8},
        },
        {"kind": "fc", "out": 10},
    ],
    "mapping": {"adc_kind": "sar", "adc_bits": 4},
}


@pytest.mark.parametrize("name", list_presets("arch"))
def test_shipped_archs_round_trip_exactly(name: str, tmp_path: Path) -> None:
    arch = ArchSpec.from_yaml(preset_dir("arch") / f"{name}.yaml")
    assert ArchSpec.from_dict(arch.to_dict()) == arch
    assert ArchSpec.from_json(arch.to_json()) == arch
    p = tmp_path / "a.yaml"
    p.write_text(arch.to_yaml())
    again = ArchSpec.from_yaml(p)
    assert again == arch and hash(again) == hash(arch) and again.key == arch.key
    assert json.loads(arch.to_json()) == arch.to_dict()


def test_hash_and_key_follow_content() -> None:
    a, b = ArchSpec.from_dict(CNN), ArchSpec.from_dict(json.loads(json.dumps(CNN)))
    assert a == b and hash(a) == hash(b) and a.key == b.key and len(a.key) == 12
    c = a.with_(precision=PrecisionSpec(weight_bits=3))
    assert c != a and c.key != a.key
    assert len({a, b, c}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "x"  # type: ignore[misc]


def test_shapes_and_resolution() -> None:
    a = ArchSpec.from_dict(CNN)
    assert a.shapes() == ((8, 16, 16), (8, 8, 8), (16, 4, 4), (10,))
    conv0, conv2, fc = a.resolved()
    assert (conv0.fan_in, conv0.fan_out, conv0.positions) == (2 * 9, 8, 256)
    assert (conv2.fan_in, conv2.positions, conv2.stride, conv2.padding) == (8 * 25, 16, 2, 2)
    assert fc.fan_in == 16 * 4 * 4 and fc.is_readout and not conv0.is_readout
    # the per-layer override replaces only what it names
    assert (conv2.adc_bits, conv2.weight_bits, conv2.adc_kind) == (6, 8, "sar")
    assert (conv0.adc_bits, conv0.weight_bits) == (4, 4)
    assert a.num_outputs == 10


def test_deconv_shape() -> None:
    a = ArchSpec.from_dict(
        {
            "input": {"shape": [4, 8, 8], "timesteps": 2},
            "task": "dense",
            "layers": [{"kind": "deconv", "out": 2, "kernel": 4, "stride": 2, "padding": 1}],
        }
    )
    assert a.output_shape == (2, 16, 16)
    assert a.resolved()[0].positions == 256


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["layers"].insert(3, {"kind": "conv", "out": 4, "kernel": 9, "padding": 0}),
            "layers[3].kernel: got 9",
        ),
        (
            lambda d: (
                d["layers"].insert(3, {"kind": "pool", "kernel": 2})
                or d["layers"].insert(4, {"kind": "pool", "kernel": 4})
            ),
            "layers[4].kernel: got 4",
        ),
        (
            lambda d: d["layers"].insert(4, {"kind": "conv", "out": 4}),
            'layers[4].kind: got "conv" on a flat input',
        ),
        (lambda d: d["layers"].append({"kind": "pool"}), "the last layer must be the readout"),
        (
            lambda d: d["layers"][2]["override"].update(adc_kind="sa"),
            "layers[2].override.adc_bits: got 6, must be 1 when adc_kind is sa",
        ),
        (lambda d: d["layers"][0].update(out=0), "layers[0].out: got 0"),
        (
            lambda d: d["layers"][0].update(colour="red"),
            "layers[0].colour: unknown key; known keys here:",
        ),
        (
            lambda d: d["mapping"].update(adc_kind="sa"),
            "mapping.adc_bits: got 4, must be 1 when adc_kind is sa",
        ),
        (
            lambda d: d["mapping"].update(adc_kind="digital", adc_bits=3),
            "must be 0 when adc_kind is digital",
        ),
        (
            lambda d: d["input"].update(shape=[2, 16]),
            "input.shape: got [2, 16], must be [C, H, W] or [F]",
        ),
        (lambda d: d.pop("input"), "input: required field is missing"),
        (lambda d: d.update(layers=[]), "layers: got []"),
    ],
)
def test_bad_specs_name_the_field(edit, message: str) -> None:
    d = json.loads(json.dumps(CNN))
    edit(d)
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict(d)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_from_yaml_prefixes_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("input: {shape: [4], timesteps: 0}\nlayers: [{kind: fc, out: 2}]\n")
    with pytest.raises(
        SpecError, match=r"bad.yaml: input.timesteps: got 0, must be an integer >= 1"
    ):
        ArchSpec.from_yaml(p)


def test_constructors_validate() -> None:
    with pytest.raises(SpecError):
        MappingSpec(rows=-1)
    with pytest.raises(SpecError):
        NeuronSpec(model="izhikevich")  # type: ignore[arg-type]
    with pytest.raises(SpecError):
        InputSpec((2, 2, 2), timesteps=2, encoding="latency")  # type: ignore[arg-type]
    a = ArchSpec(InputSpec((16,), 2), (LayerSpec.fc(8), LayerSpec.fc(2)))
    assert a.resolved()[1].is_readout
    assert LayerSpec.maxpool(2).stride == 2 and LayerSpec.conv(4).pad == 1


# -- skip connections -----------------------------------------------------------------------

SKIP_LAYERS = [
    {"name": "stem", "kind": "conv", "out": 8},
    {"name": "b0a", "kind": "conv", "out": 8},
    {"name": "b0b", "kind": "conv", "out": 8, "skip": {"from": "stem", "op": "add"}},
    {"name": "p0", "kind": "pool", "kernel": 2},
    {"name": "b1a", "kind": "conv", "out": 4},
    {"kind": "conv", "out": 16, "skip": {"from": "p0", "op": "concat"}},
    {"kind": "fc", "out": 10},
]


def _skip_arch(**changes: dict) -> ArchSpec:
    """The skip network above with layers[i] updated by ``changes[f"l{i}"]``."""
    layers = [dict(layer) for layer in SKIP_LAYERS]
    for key, upd in changes.items():
        layers[int(key[1:])].update(upd)
    return ArchSpec.from_dict({"input": {"shape": [2, 16, 16], "timesteps": 4}, "layers": layers})


def test_skips_resolve_round_trip_and_describe() -> None:
    arch = _skip_arch()
    res = {r.index: r for r in arch.resolved()}
    assert (res[2].skip_from, res[2].skip_op, res[2].skip_shape) == (0, "add", (8, 16, 16))
    assert res[2].in_shape == (8, 16, 16) and res[2].fan_in == 8 * 9  # add: fan-in unchanged
    # concat: 4 channels of b1a then the 8 of p0, on 8 x 8; 12 x 3 x 3 rows
    assert (res[5].skip_from, res[5].skip_op) == (3, "concat")
    assert res[5].in_shape == (12, 8, 8) and res[5].fan_in == 12 * 9
    assert arch.skip_sources == frozenset({0, 3}) and arch.layer_index("p0") == 3
    assert ArchSpec.from_json(arch.to_json()) == arch
    assert arch.to_dict()["layers"][5]["skip"] == {"from": "p0", "op": "concat"}
    assert "c8k3(+stem)" in arch.describe() and "c16k3(cat:p0)" in arch.describe()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # an unknown source, with the named layers before it and a near match
        (
            {"l2": {"skip": {"from": "stme", "op": "add"}}},
            'layers[2].skip.from: got "stme", no layer has that name; named layers before it: '
            "stem, b0a; did you mean stem?",
        ),
        # a forward reference and a self reference
        (
            {"l2": {"skip": {"from": "p0", "op": "add"}}},
            'layers[2].skip.from: got "p0", that is layers[3], after this one; a skip must come '
            "from an earlier layer (the graph is feed-forward)",
        ),
        (
            {"l2": {"skip": {"from": "b0b", "op": "add"}}},
            'layers[2].skip.from: got "b0b", that is this layer itself; a skip must come from an '
            "earlier layer",
        ),
        # add: shapes must be equal (channels, then spatial)
        (
            {"l5": {"skip": {"from": "p0", "op": "add"}}},
            'layers[5].skip.from: got "p0", its output [8, 8, 8] differs from this layer\'s output '
            "[16, 8, 8]; an add needs equal shapes (or use op: concat)",
        ),
        (
            {"l5": {"out": 8, "skip": {"from": "stem", "op": "add"}}},
            'layers[5].skip.from: got "stem", its output [8, 16, 16] differs from this layer\'s '
            "output [8, 8, 8]",
        ),
        # concat: the same height x width, and like ranks
        (
            {"l5": {"skip": {"from": "stem", "op": "concat"}}},
            'layers[5].skip.from: got "stem", its output [8, 16, 16] is 16x16 but this layer\'s '
            "input [4, 8, 8] is 8x8; a concat needs the same height x width",
        ),
        # a bad op, a missing op, an unknown key, a skip that is not a mapping
        (
            {"l2": {"skip": {"from": "stem", "op": "mul"}}},
            'layers[2].skip.op: got "mul", must be one of add, concat',
        ),
        ({"l2": {"skip": {"from": "stem"}}}, "layers[2].skip.op: required field is missing"),
        (
            {"l2": {"skip": {"from": "stem", "op": "add", "scale": 2}}},
            "layers[2].skip.scale: unknown key; known keys here: from, op",
        ),
        (
            {"l2": {"skip": "stem"}},
            'layers[2].skip: got "stem", must be a mapping {from: LAYER_NAME, op: add | concat}',
        ),
        # names: unique and well formed; a pool takes no skip
        (
            {"l1": {"name": "stem"}},
            'layers[1].name: got "stem", already the name of layers[0]; layer names must be unique',
        ),
        (
            {"l1": {"name": "2nd"}},
            'layers[1].name: got "2nd", must be a letter then letters, digits, _ or -',
        ),
        (
            {"l3": {"skip": {"from": "stem", "op": "add"}}},
            'layers[3].skip: got {from: "stem", op: "add"}, a pool layer takes no skip',
        ),
    ],
)
def test_each_skip_error_is_one_line_naming_field_value_and_what_is_allowed(
    changes: dict, message: str
) -> None:
    with pytest.raises(SpecError) as e:
        _skip_arch(**changes)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(message), msg


def test_flat_and_spatial_cannot_be_concatenated() -> None:
    with pytest.raises(SpecError) as e:
        _skip_arch(l6={"skip": {"from": "stem", "op": "concat"}})
    assert str(e.value).startswith(
        'layers[6].skip.from: got "stem", its output [8, 16, 16] is 16x16 but this layer\'s input'
    )
    layers = [*SKIP_LAYERS[:6], {"name": "h", "kind": "fc", "out": 12}]
    layers += [{"kind": "fc", "out": 10, "skip": {"from": "p0", "op": "concat"}}]
    with pytest.raises(SpecError, match=r"are not both \[C, H, W\] or both flat"):
        ArchSpec.from_dict({"input": {"shape": [2, 16, 16], "timesteps": 4}, "layers": layers})


def test_a_skip_error_in_a_file_names_the_file(tmp_path) -> None:
    arch = _skip_arch().to_dict()
    arch["layers"][2]["skip"]["from"] = "nowhere"
    p = tmp_path / "res.yaml"
    import yaml

    p.write_text(yaml.safe_dump(arch))
    with pytest.raises(SpecError) as e:
        ArchSpec.from_yaml(p)
    assert str(e.value).startswith(f'{p}: layers[2].skip.from: got "nowhere", no layer has that')
