"""Chip files: strict loading, the shipped presets, compatibility checks."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from neuronas.config import list_presets, preset_dir
from neuronas.errors import ConfigError
from neuronas.hardware import Chip, chip_problems, estimate, load_chip
from neuronas.hardware.chip import fit_to_chip
from neuronas.spec import ArchSpec

CHIPS = list_presets("chip")
ARCHS = list_presets("arch")
REQUIRED = {
    "rram-adcless-65nm",
    "rram-adcless-65nm-tight",
    "rram-hpadc-65nm",
    "sram-ldlif-65nm",
    "digital-cim-40nm",
    "spikesim-rram-64",
    "rram-sar-32nm",
}


def test_required_presets_are_shipped() -> None:
    assert set(CHIPS) >= REQUIRED
    assert {"digits-mlp", "digits-cnn", "vgg9-cifar10", "dvsgesture-cnn", "spike-flownet"} <= set(
        ARCHS
    )


@pytest.mark.parametrize("name", CHIPS)
def test_every_chip_prices_every_arch(name: str) -> None:
    chip = load_chip(name)
    assert chip.name == name
    for arch_name in ARCHS:
        arch = ArchSpec.from_yaml(preset_dir("arch") / f"{arch_name}.yaml")
        fitted = fit_to_chip(arch, chip)
        assert chip_problems(fitted, chip) == []
        for activity in (None, 0.05, 1.0):
            r = estimate(fitted, chip, activity)
            assert math.isfinite(r.energy_uj) and r.energy_uj > 0
            assert math.isfinite(r.latency_us) and r.latency_us > 0
            assert set(r.margins()) == set(chip.budgets.items())


@pytest.mark.parametrize("name", CHIPS)
def test_every_number_in_a_preset_cites_its_source(name: str) -> None:
    # a numeric value on a line with no comment is an uncited constant
    text = (preset_dir("chip") / f"{name}.yaml").read_text()
    for i, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0]
        if re.match(r"\s*[a-z_]+:\s*-?[0-9.]+(e-?[0-9]+)?\s*$", body) and "#" not in line:
            # a budget block or a leaf under a commented parent line is allowed when its parent says why
            assert line.strip().startswith(
                ("memory_kb", "area_mm2", "latency_us", "energy_uj", "adc_bits_min", "adc_bits_max")
            ), f"{name}.yaml:{i}: {line.strip()}"


def test_default_chip_splits_small_networks() -> None:
    chip = load_chip("rram-adcless-65nm")
    tight = load_chip("rram-adcless-65nm-tight")
    small = ArchSpec.from_yaml(preset_dir("arch") / "digits-cnn.yaml")
    big = ArchSpec.from_yaml(preset_dir("arch") / "dvsgesture-cnn.yaml")
    assert estimate(small, chip).feasible
    assert not estimate(big, chip).feasible
    assert not estimate(small, tight).feasible
    assert chip.budgets.hard_metrics and chip.budgets.soft_metrics == ("latency_us",)


def _chip_dict() -> dict:
    return yaml.safe_load((preset_dir("chip") / "rram-adcless-65nm.yaml").read_text())


def _load(tmp_path: Path, d: dict) -> Chip:
    p = tmp_path / "chip.yaml"
    p.write_text(yaml.safe_dump(d))
    return load_chip(p)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (
            lambda d: d["technology"].update(foo=1),
            r"technology\.foo: unknown key; known keys here: clock_mhz, device, node_nm, supply_v",
        ),
        (
            lambda d: d["technology"].update(clock_mhz="fast"),
            r"technology\.clock_mhz: got \"fast\"",
        ),
        (
            lambda d: d["budgets"].update(energy_uj=0),
            r"budgets\.energy_uj\.limit: got 0, input should be greater than 0",
        ),
        (lambda d: d["budgets"].update(area_mm2=-1.5), r"budgets\.area_mm2\.limit: got -1.5"),
        (
            lambda d: d["budgets"].update(latency_us={"limit": 5, "hard": "maybe"}),
            r"budgets\.latency_us\.hard",
        ),
        (
            lambda d: d["capacity"].update(array_rows_max=0),
            r"capacity\.array_rows_max: got 0, input should be greater than 0",
        ),
        (lambda d: d["capacity"].update(arrays=-3), r"capacity\.arrays: got -3"),
        (
            lambda d: d["periphery"].update(adc_bits_min=4, adc_bits_max=2),
            r"adc_bits_min \(4\) must be <= adc_bits_max \(2\)",
        ),
        (
            lambda d: d["periphery"].update(adc_kinds=["sar", "sigma-delta"]),
            r"periphery\.adc_kinds\[1\]: got \"sigma-delta\"",
        ),
        (
            lambda d: d["technology"]["device"].update(program_sigma=1.5),
            r"device\.program_sigma: got 1.5",
        ),
        (
            lambda d: d.update(overrides={"adc_energy": 1.0}),
            r"unknown constant 'adc_energy'; known constants: .*adc_energy_pj",
        ),
        (
            lambda d: d.update(overrides={"sa_energy_pj": -1.0}),
            r"'sa_energy_pj' must be a finite number in \[0, ",
        ),
        (lambda d: d.pop("capacity"), r"capacity: required field is missing"),
        (
            lambda d: d["periphery"].update(max_active_rows=0),
            r"periphery\.max_active_rows: got 0, input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_chip_files_give_one_line_naming_file_field_value(
    tmp_path: Path, edit, pattern: str
) -> None:
    d = _chip_dict()
    edit(d)
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, d)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path / "chip.yaml") + ": ")
    assert re.search(pattern, msg), msg


def test_unknown_preset_suggests_near_match() -> None:
    with pytest.raises(ConfigError, match="did you mean rram-adcless-65nm"):
        load_chip("rram-adcles-65nm")


def test_budget_forms() -> None:
    d = _chip_dict()
    d["budgets"] = {"energy_uj": 2, "latency_us": {"limit": 50, "hard": False}}
    chip = Chip.model_validate(d)
    assert chip.budgets.energy_uj.limit == 2 and chip.budgets.energy_uj.hard
    assert chip.budgets.latency_us.hard is False
    assert chip.budgets.hard_metrics == ("energy_uj",)
    assert set(chip.budgets.items()) == {"energy_uj", "latency_us"}
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        chip.name = "x"


def test_chip_problems_and_fit() -> None:
    chip = load_chip("rram-sar-32nm")  # SAR 4..8 bits, 2 bits per cell, arrays up to 256
    arch = ArchSpec.from_dict(
        {
            "input": {"shape": [64], "timesteps": 4},
            "layers": [
                {"kind": "fc", "out": 32},
                {"kind": "fc", "out": 10, "override": {"adc_bits": 3}},
            ],
            "mapping": {"adc_kind": "sar", "adc_bits": 6, "rows": 512, "bits_per_cell": 3},
        }
    )
    problems = chip_problems(arch, chip)
    assert any(
        "layers[1].adc_bits: 3 is outside chip rram-sar-32nm's range 4..8" in p for p in problems
    )
    assert any("rows: 512 exceeds" in p for p in problems)
    assert any("bits_per_cell: 3 exceeds" in p for p in problems)
    fitted = fit_to_chip(arch, chip)
    assert chip_problems(fitted, chip) == []
    assert (
        fitted.mapping.rows == 256
        and fitted.mapping.bits_per_cell == 2
        and fitted.mapping.adc_bits == 6
    )
    adcless = ArchSpec.from_dict(
        {
            "input": {"shape": [8], "timesteps": 1},
            "layers": [{"kind": "fc", "out": 2}],
            "mapping": {"adc_kind": "sa", "adc_bits": 1},
        }
    )
    assert "adc_kind: sa is not available" in chip_problems(adcless, chip)[0]
    assert (
        fit_to_chip(adcless, load_chip("rram-hpadc-65nm")).mapping.adc_bits == 5
    )  # the paper's 5-bit flash


def test_technology_scaling_rule() -> None:
    # energy ∝ node·V², area ∝ node²: the same SA at 32 nm / 1.0 V vs 65 nm / 1.2 V
    k65 = load_chip("rram-adcless-65nm").constants
    k32 = load_chip("rram-sar-32nm").constants
    assert k32["sa_energy_pj"] == pytest.approx(k65["sa_energy_pj"] * (32 / 65) * (1.0 / 1.2) ** 2)
    assert k32["sa_area_um2"] == pytest.approx(k65["sa_area_um2"] * (32 / 65) ** 2)
    # ISAAC's ADC at 32 nm: 8 bits -> ~1.56 pJ per conversion and ~1,200 um^2
    from neuronas.hardware.components import adc_area_um2, adc_energy_pj

    assert adc_energy_pj("sar", 8, k32) == pytest.approx(1.5625, rel=0.01)
    assert adc_area_um2("sar", 8, k32) == pytest.approx(1200, rel=0.01)
    # NeuroSim's 65 nm 4-bit SAR anchor: ~169 fJ, 921 um^2
    assert adc_energy_pj("sar", 4, k65) == pytest.approx(0.169, rel=0.01)
    assert adc_area_um2("sar", 4, k65) == pytest.approx(921, rel=0.01)
