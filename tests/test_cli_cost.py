"""``neuronas cost`` / ``neuronas validate`` through the real command line (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def neuronas(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronas", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _chip(tmp_path: Path, edit) -> Path:
    d = yaml.safe_load((REPO / "constraints/rram-adcless-65nm.yaml").read_text())
    edit(d)
    p = tmp_path / "chip.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _arch(tmp_path: Path, edit=None, name: str = "arch.yaml") -> Path:
    d = yaml.safe_load((REPO / "experiments/archs/digits-cnn.yaml").read_text())
    if edit:
        edit(d)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


def test_cost_prints_a_breakdown() -> None:
    p = neuronas("cost", "experiments/archs/digits-cnn.yaml", "--chip", "rram-adcless-65nm")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    for needle in (
        "digits-cnn on rram-adcless-65nm",
        "activity (prior)",
        "pipelined across timesteps",
        "conv1",
        "pool0",
        "membrane",
        "conversion",
        "energy_uj",
        "margin",
        "feasible",
    ):
        assert needle in out, needle


def test_cost_json_activity_and_preset_names(tmp_path: Path) -> None:
    act = tmp_path / "metrics.json"
    act.write_text(
        json.dumps(
            {
                "activity": {
                    "source": "measured",
                    "input_rates": [0.2, 0.05, 0.1],
                    "output_rates": [0.05, 0.1, 0.0],
                }
            }
        )
    )
    p = neuronas("cost", "digits-cnn", "--activity-file", str(act), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["activity"]["source"] == "measured" and d["chip"] == "rram-adcless-65nm"
    assert set(d["margins"]) == {"memory_kb", "area_mm2", "latency_us", "energy_uj"}
    p2 = neuronas("cost", "digits-cnn", "digits-mlp", "--activity", "1", "--json")
    both = json.loads(p2.stdout)
    assert [x["arch"] for x in both] == ["digits-cnn", "digits-mlp"]
    assert both[0]["activity"]["source"] == "dense"


def test_cost_all_prices_every_shipped_arch_on_every_chip() -> None:
    from neuronas.config import list_presets

    p = neuronas("cost", "--all")
    assert p.returncode == 0, p.stderr
    for chip in list_presets("chip"):
        for arch in list_presets("arch"):
            assert any(line.startswith(chip) and arch in line for line in p.stdout.splitlines()), (
                chip,
                arch,
            )


def test_validate_reports_each_file(tmp_path: Path) -> None:
    bad = _chip(tmp_path, lambda d: d["budgets"].update(energy_uj=0))
    p = neuronas(
        "validate",
        "constraints/rram-adcless-65nm.yaml",
        "experiments/archs/vgg9-cifar10.yaml",
        str(bad),
    )
    assert p.returncode == 2
    assert "OK   constraints/rram-adcless-65nm.yaml: chip rram-adcless-65nm" in p.stdout
    assert "OK   experiments/archs/vgg9-cifar10.yaml: architecture vgg9-cifar10" in p.stdout
    assert f"FAIL {bad}: budgets.energy_uj.limit: got 0" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr
    ok = neuronas("validate", *[str(x) for x in sorted((REPO / "constraints").glob("*.yaml"))])
    assert ok.returncode == 0, ok.stdout
    other = tmp_path / "other.yaml"
    other.write_text("foo: 1\n")
    p = neuronas("validate", str(other))
    assert p.returncode == 2 and "not a chip, architecture or search-space file" in p.stdout


# each bad input: exit status 2 and one line naming the file, the field, the value, what is allowed
def test_missing_file() -> None:
    _one_line_error(neuronas("cost", "nowhere/arch.yaml"), "nowhere/arch.yaml", "no such file")
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", "nowhere.yaml"), "nowhere.yaml", "no such file"
    )
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", "rram-adcles-65nm"),
        "did you mean rram-adcless-65nm",
    )


def test_yaml_syntax_error(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\ntechnology: {node_nm: 65\n")
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", str(p)), str(p), "YAML syntax error at line"
    )


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    chip = _chip(tmp_path, lambda d: d["periphery"].update(adc_bitz=3))
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", str(chip)),
        str(chip),
        "periphery.adc_bitz",
        "unknown key",
        "known keys here:",
        "adc_bits_max",
    )
    arch = _arch(tmp_path, lambda d: d["mapping"].update(adc_bitz=3))
    _one_line_error(
        neuronas("cost", str(arch)),
        str(arch),
        "mapping.adc_bitz: unknown key; known keys here:",
        "adc_bits",
    )


def test_wrong_types(tmp_path: Path) -> None:
    chip = _chip(tmp_path, lambda d: d["technology"].update(supply_v="high"))
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", str(chip)),
        str(chip),
        "technology.supply_v",
        '"high"',
    )
    arch = _arch(tmp_path, lambda d: d["input"].update(timesteps="eight"))
    _one_line_error(neuronas("cost", str(arch)), str(arch), "input.timesteps", '"eight"', "integer")


@pytest.mark.parametrize("value", [0, -2.5])
def test_zero_or_negative_budget(tmp_path: Path, value: float) -> None:
    chip = _chip(tmp_path, lambda d: d["budgets"].update(area_mm2=value))
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", str(chip)),
        str(chip),
        "budgets.area_mm2",
        f"got {value}",
        "greater than 0",
    )


def test_adc_bits_outside_the_chip_range(tmp_path: Path) -> None:
    arch = _arch(tmp_path, lambda d: d["mapping"].update(adc_kind="sar", adc_bits=3))
    _one_line_error(
        neuronas("cost", str(arch), "--chip", "rram-sar-32nm"),
        str(arch),
        "adc_bits: 3",
        "outside chip rram-sar-32nm's range 4..8",
    )
    # --fit maps it onto the chip instead
    assert neuronas("cost", str(arch), "--chip", "rram-sar-32nm", "--fit").returncode == 0
    chip = _chip(tmp_path, lambda d: d["periphery"].update(adc_bits_min=3, adc_bits_max=1))
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", str(chip)),
        str(chip),
        "adc_bits_min (3) must be <= adc_bits_max (1)",
    )


def test_crossbars_must_be_positive(tmp_path: Path) -> None:
    arch = _arch(tmp_path, lambda d: d["mapping"].update(rows=0))
    _one_line_error(neuronas("cost", str(arch)), str(arch), "mapping.rows: got 0", ">= 1")
    chip = _chip(tmp_path, lambda d: d["capacity"].update(array_cols_max=-128))
    _one_line_error(
        neuronas("cost", "digits-cnn", "--chip", str(chip)),
        str(chip),
        "capacity.array_cols_max: got -128",
        "greater than 0",
    )


def test_layer_shapes_that_do_not_chain(tmp_path: Path) -> None:
    def edit(d):
        d["layers"].insert(
            5, {"kind": "conv", "out": 8, "kernel": 7, "padding": 0}
        )  # 7x7 on a 4x4 map

    arch = _arch(tmp_path, edit)
    _one_line_error(
        neuronas("cost", str(arch)), str(arch), "layers[5].kernel: got 7", "do not chain"
    )


def test_bad_activity(tmp_path: Path) -> None:
    _one_line_error(
        neuronas("cost", "digits-cnn", "--activity", "1.5"), "--activity: got 1.5", "[0, 1]"
    )
    act = tmp_path / "act.json"
    act.write_text(json.dumps({"input_rates": [0.1, 0.1]}))
    _one_line_error(
        neuronas("cost", "digits-cnn", "--activity-file", str(act)),
        str(act),
        "input_rates",
        "got 2 rates",
    )


def test_the_cost_model_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import neuronas.hardware as hw\n"
        "from neuronas.spec import ArchSpec\n"
        "arch = ArchSpec.from_yaml('experiments/archs/vgg9-cifar10.yaml')\n"
        "chip = hw.load_chip('rram-sar-32nm')\n"
        "r = hw.estimate(hw.fit_to_chip(arch, chip), chip, 0.2)\n"
        "assert r.energy_uj > 0\n"
        "import neuronas._cli.cost, neuronas._cli.validate\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr
