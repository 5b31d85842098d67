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
