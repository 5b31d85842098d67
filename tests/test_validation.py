"""Every field finite and in range; spaces that validate can be searched; CLI arguments checked."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from neuronas.cli import main
from neuronas.config import parse_model
from neuronas.errors import ConfigError, NeuronasError
from neuronas.hardware import chip_problems, load_chip
from neuronas.hardware.chip import Chip
from neuronas.search.space import load_space
from neuronas.spec import ArchSpec

REPO = Path(__file__).resolve().parents[1]
CHIP = yaml.safe_load((REPO / "constraints" / "rram-adcless-65nm.yaml").read_text())
SPACE = yaml.safe_load((REPO / "search_spaces" / "digits-small.yaml").read_text())
ARCH = yaml.safe_load((REPO / "experiments" / "archs" / "digits-mlp.yaml").read_text())

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _dev(d: dict[str, Any]) -> dict[str, Any]:
    return d["technology"]["device"]


# ---------------------------------------------------------------------------------------------
# chip files


@pytest.mark.parametrize(
    "mutate,field",
    [
        (
            lambda d: _dev(d).update(cell_area_um2=float("inf")),
            "technology.device.cell_area_um2: got inf",
        ),
        (
            lambda d: _dev(d).update(read_energy_fj=1e308),
            "technology.device.read_energy_fj: got 1e+308",
        ),
        (
            lambda d: _dev(d).update(read_energy_fj=10**20),
            "technology.device.read_energy_fj: got 100000000000000000000",
        ),
        (
            lambda d: _dev(d).update(read_latency_ns=float("nan")),
            "technology.device.read_latency_ns: got nan",
        ),
        (
            lambda d: _dev(d).update(write_latency_ns=True),
            "technology.device.write_latency_ns: got true, a YAML boolean",
        ),
        (
            lambda d: _dev(d).update(on_off_ratio="12"),
            'technology.device.on_off_ratio: got "12", text is not a number',
        ),
        (
            lambda d: d["periphery"].update(tile_buffer_kb=1e20),
            "periphery.tile_buffer_kb: got 1e+20",
        ),
        (lambda d: d["capacity"].update(sram_kb=float("inf")), "capacity.sram_kb: got inf"),
        (
            lambda d: d["capacity"].update(dram_energy_pj_per_bit=1e300),
            "capacity.dram_energy_pj_per_bit",
        ),
        (
            lambda d: d["capacity"].update(dram_bandwidth_gbps=float("inf")),
            "capacity.dram_bandwidth_gbps",
        ),
        (lambda d: d["capacity"].update(arrays=True), "capacity.arrays: got true"),
        (lambda d: d["capacity"].update(arrays=10**20), "capacity.arrays"),
        (lambda d: d["budgets"].update(energy_uj=1e308), "budgets.energy_uj.limit: got 1e+308"),
        (
            lambda d: d["budgets"].update(area_mm2={"limit": float("nan")}),
            "budgets.area_mm2.limit: got nan",
        ),
        (
            lambda d: d.update(overrides={"sa_energy_pj": float("inf")}),
            "overrides.sa_energy_pj: got inf",
        ),
        (
            lambda d: d.update(overrides={"sa_energy_pj": 1e20}),
            "'sa_energy_pj' must be a finite number in [0, 1e+09]",
        ),
        (
            lambda d: d.update(overrides={"sa_energy_pj": True}),
            "overrides: got {...}, a YAML boolean",
        ),
        (
            lambda d: d["activity"].update(default_rate=float("nan")),
            "activity.default_rate: got nan",
        ),
        (lambda d: d.update(name=["a"]), 'name: got ["a"]'),
    ],
)
def test_chip_numbers_are_finite_and_in_range(mutate: Any, field: str) -> None:
    d = copy.deepcopy(CHIP)
    mutate(d)
    with pytest.raises(ConfigError) as info:
        parse_model(Chip, d, "chip.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("chip.yaml: ") and field in msg


def test_chip_yaml_infinity_is_refused_from_a_file(tmp_path: Path) -> None:
    text = (REPO / "constraints" / "rram-adcless-65nm.yaml").read_text()
    p = tmp_path / "c.yaml"
    p.write_text(text.replace("cell_area_um2: 0.1", "cell_area_um2: .inf", 1))
    with pytest.raises(
        ConfigError, match=r"cell_area_um2: got inf, input should be a finite number"
    ):
        load_chip(p)


# ---------------------------------------------------------------------------------------------
# architecture files


@pytest.mark.parametrize(
    "mutate,field",
    [
        (
            lambda d: d["layers"][0].update(stride=0),
            "layers[0].stride: got 0, must be an integer >= 1",
        ),
        (
            lambda d: d["layers"][0].update(kernel=0),
            "layers[0].kernel: got 0, must be an integer >= 1",
        ),
        (lambda d: d["layers"][1].update(out=-3), "layers[1].out: got -3"),
        (lambda d: d["layers"][1].update(out=0), "layers[1].out: got 0"),
        (lambda d: d["layers"][1].update(out=10**20), "layers[1].out: got 100000000000000000000"),
        (lambda d: d["input"].update(shape=[2, 10**9, 32]), "input.shape[1]: got 1000000000"),
        (lambda d: d["neuron"].update(tau=1e308), "neuron.tau: got 1e+308, must be <= 1000000.0"),
        (lambda d: d["neuron"].update(threshold=float("nan")), "neuron.threshold: got nan"),
        (lambda d: d["precision"].update(weight_bits=True), "precision.weight_bits: got true"),
        (lambda d: d.update(name=["x"] * 1000), 'name: got ["x", "x"'),
        (lambda d: d.update(name="n" * 300), 'name: got "nnn'),
        (lambda d: d.update(layers=[{"kind": "fc", "out": 2}] * 1025), 'layers: got "1025 layers"'),
    ],
)
def test_arch_fields_in_range(mutate: Any, field: str) -> None:
    d = copy.deepcopy(ARCH)
    mutate(d)
    with pytest.raises(ConfigError) as info:
        ArchSpec.from_dict(d)
    msg = str(info.value)
    assert "\n" not in msg and field in msg and len(msg) < 250


def test_deconv_chain_cannot_grow_without_bound() -> None:
    d = {
        "input": {"shape": [1, 8, 8], "timesteps": 1},
        "layers": [{"kind": "deconv", "out": 1, "kernel": 2, "stride": 64}] * 4,
        "task": "dense",
    }
    with pytest.raises(
        ConfigError, match=r"layers\[2\]\.stride: got 64, the deconv output would be"
    ):
        ArchSpec.from_dict(d)


def test_dated_name_is_text_and_cost_json_is_strict(tmp_path: Path, capsys: Any) -> None:
    text = (REPO / "experiments" / "archs" / "digits-mlp.yaml").read_text()
    p = tmp_path / "a.yaml"
    p.write_text(text.replace("name: digits-mlp", "name: 2024-01-01", 1))
    assert main(["cost", str(p), "--json"]) == 0
    report = json.loads(
        capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    assert report["file"] == str(p) and report["energy_uj"] > 0


def test_strict_json_names_a_non_finite_value() -> None:
    from neuronas._cli.cost import strict_json

    with pytest.raises(NeuronasError, match=r"non-finite number at layers\[1\]\.energy_uj"):
        strict_json({"layers": [{"energy_uj": 1.0}, {"energy_uj": float("inf")}]})


# ---------------------------------------------------------------------------------------------
# search-space files


def _space_error(tmp_path: Path, mutate: Any) -> str:
    d = copy.deepcopy(SPACE)
    mutate(d)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(NeuronasError) as info:
        load_space(p)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(p))
    return msg


def _cnn(d: dict[str, Any]) -> dict[str, Any]:
    return d["families"]["cnn"]


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (
            lambda d: _cnn(d).update(stride=0),
            "families.cnn.stride: got 0, 0 is out of range: values must be integers in 1..64",
        ),
        (
            lambda d: d["families"]["mlp"].update(depth={"low": 1, "high": 1e20}),
            "families.mlp.depth",
        ),
        (
            lambda d: d["families"]["mlp"].update(depth={"low": 1, "high": 100000}),
            "100000 is out of range",
        ),
        (
            lambda d: d.update(per_layer={"weight_bits": []}),
            "per_layer.weight_bits: got [], value: an empty list",
        ),
        (
            lambda d: d["input"].update(downsample=1000),
            "input.downsample: got 1000, 1000 is out of range",
        ),
        (
            lambda d: d["input"].update(downsample=[2, 48]),
            "input.downsample: got 48, larger than the input's 32x32",
        ),
        (lambda d: _cnn(d).update(hidden=-5), "families.cnn.hidden: got -5"),
        (
            lambda d: d.update(outputs=1),
            "outputs: got 1, input should be greater than or equal to 2",
        ),
        (lambda d: d.update(outputs=5), "outputs: got 5, dataset digits-events has 10 classes"),
        (lambda d: d["input"].update(shape=[3, 32, 32]), "input.shape"),
        (lambda d: d["neuron"].update(threshold=float("nan")), "neuron.threshold: got nan"),
        (lambda d: d["neuron"].update(tau=[2.0, float("inf")]), "neuron.tau"),
        (
            lambda d: d["precision"].update(weight_bits=[-1, 4]),
            "precision.weight_bits: got [-1, 4], -1 is out of range",
        ),
        (
            lambda d: d["mapping"].update(crossbar=[True, 64]),
            "mapping.crossbar: got [true, 64], a YAML boolean",
        ),
        (lambda d: d["mapping"].update(adc_bits={"low": 1, "high": 6}), "mapping.adc_bits"),
        (lambda d: d.update(activity_prior=float("inf")), "activity_prior: got inf"),
        (lambda d: d.update(name=20240101, dataset="shd"), "name: got 20240101"),
        (
            lambda d: d.update(dataset="shd"),
            "families.cnn: a cnn needs a [C, H, W] input, dataset shd gives [700]",
        ),
        (lambda d: d.update(dataset="nope"), "dataset: unknown dataset"),
    ],
)
def test_space_fields_in_range(tmp_path: Path, mutate: Any, expected: str) -> None:
    assert expected in _space_error(tmp_path, mutate)


def test_space_input_shape_is_used(tmp_path: Path) -> None:
    d = copy.deepcopy(SPACE)
    d["input"] = {"shape": [2, 16, 16], "timesteps": 4}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    space = load_space(p)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    # the search passes the dataset's shape; the space's own, smaller, shape wins
    arch = space.sample(study.ask(), None, input_shape=(2, 32, 32), num_outputs=10)
    assert arch.input.shape == (2, 16, 16)


def test_space_check_names_the_dimension_the_chip_empties(tmp_path: Path) -> None:
    d = copy.deepcopy(SPACE)
    d["mapping"]["crossbar"] = [512, 1024]
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    space = load_space(p)  # fine without a chip
    with pytest.raises(
        NeuronasError,
        match=r"mapping\.crossbar \[512, 1024\] -- chip rram-adcless-65nm's arrays are at most 256",
    ):
        space.check(load_chip("rram-adcless-65nm"))


@pytest.mark.parametrize("space_name", ["digits-small", "events-large"])
@pytest.mark.parametrize("chip_name", ["rram-adcless-65nm", "rram-hpadc-65nm", "digital-cim-40nm"])
def test_a_space_that_checks_samples_buildable_candidates(space_name: str, chip_name: str) -> None:
    space, chip = load_space(space_name), load_chip(chip_name)
    space.check(chip)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(1))
    for _ in range(20):
        arch = space.sample(study.ask(), chip, input_shape=(2, 32, 32), num_outputs=10)
        assert not chip_problems(arch, chip)


# ---------------------------------------------------------------------------------------------
# the validate command


def test_validate_with_chip_checks_spaces_and_archs(tmp_path: Path, capsys: Any) -> None:
    d = copy.deepcopy(SPACE)
    d["mapping"]["crossbar"] = [512]
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(d))
    rc = main(["validate", str(p), "digits-mlp.yaml", "--chip", "rram-hpadc-65nm"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 2
    assert out[0].startswith(f"FAIL {p}: ") and "mapping.crossbar [512]" in out[0]
    assert out[1].startswith("FAIL digits-mlp.yaml: no such file")
    arch = REPO / "experiments" / "archs" / "digits-mlp.yaml"
    assert main(["validate", str(arch), "--chip", "rram-hpadc-65nm"]) == 2
    assert (
        "layers[1].adc_kind: sa is not available on chip rram-hpadc-65nm" in capsys.readouterr().out
    )
    assert main(["validate", str(arch), str(REPO / "search_spaces" / "digits-small.yaml")]) == 0


# ---------------------------------------------------------------------------------------------
# command-line arguments


def _cli_error(capsys: Any, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "flags,expected",
    [
        (["--batch-size", "0"], "--batch-size: got 0"),
        (["--batch-size", "-1"], "--batch-size: got -1"),
        (["--device", "bogus"], "--device: got 'bogus', must be auto, cpu, cuda or cuda:N"),
        (["--lr", "nan"], "--lr: got nan"),
        (["--lr", "-1"], "--lr: got -1.0"),
        (["--seed", "-1"], "--seed: got -1"),
        (["--seed", str(2**32)], "--seed: got 4294967296"),
        (["--epochs", "0"], "--epochs: got 0"),
        (["--eval-instances", "0"], "--eval-instances: got 0"),
        (["--threads", "0"], "--threads: got 0"),
        (["--max-train-samples", "0"], "--max-train-samples: got 0"),
        (["--fit"], "--fit: needs --chip"),
    ],
)
def test_train_arguments(capsys: Any, flags: list[str], expected: str) -> None:
    assert expected in _cli_error(capsys, ["train", "digits-mlp", *flags])


def test_train_out_must_be_a_folder(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert "is not a folder" in _cli_error(capsys, ["train", "digits-mlp", "--out", str(f)])
    err = _cli_error(capsys, ["train", "digits-mlp", "--out", str(f / "sub" / "dir")])
    assert f"lies under {str(f)!r}, which is a file" in err
    assert f.read_text() == "x"


def test_train_on_a_chip_without_the_archs_converter_needs_fit(capsys: Any) -> None:
    err = _cli_error(capsys, ["train", "digits-mlp", "--chip", "rram-hpadc-65nm"])
    assert (
        "layers[1].adc_kind: sa is not available on chip rram-hpadc-65nm" in err
        and "pass --fit" in err
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "digits-mlp", "--epoch", "2"],
        ["cost", "digits-mlp", "--js"],
        ["validate", "x.yaml", "--chi", "rram-adcless-65nm"],
    ],
)
def test_no_option_abbreviations(capsys: Any, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
