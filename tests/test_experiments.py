"""The experiments' claims, checked in direction on reduced settings (experiments/04, 05 and 06)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from neuronas.hardware import load_chip

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


def _load(filename: str) -> ModuleType:
    name = "neuronas_experiment_" + filename.split("_", 1)[0]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / filename)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def e05() -> ModuleType:
    return _load("05_dataflow.py")


@pytest.fixture(scope="module")
def e04() -> ModuleType:
    return _load("04_constrained_search.py")


# ---- 05: FlexSpIM's dataflow and operand-resolution claims -----------------------------------


def test_05_output_stationary_wins_when_the_network_overflows_the_arrays(e05: ModuleType) -> None:
    chip0 = load_chip(e05.CHIP)
    small = e05.compare(e05.base_arch(4), e05.chip_with(chip0, 16))
    assert small["ws"]["arrays"] > 16  # the network really is larger than the chip
    assert small["ws"]["offchip_uj"] > 0
    assert small["os"]["energy_uj"] < small["ws"]["energy_uj"]
    # and weight-stationary wins once the whole network fits, at one timestep
    big = e05.compare(e05.base_arch(1), e05.chip_with(chip0, 256))
    assert big["ws"]["offchip_uj"] == 0
    assert big["ws"]["energy_uj"] < big["os"]["energy_uj"]
    for r in (small, big):
        assert r["hybrid"]["energy_uj"] <= min(r["ws"]["energy_uj"], r["os"]["energy_uj"]) + 1e-12


def test_05_crossover_in_arrays_lies_between_overflow_and_fit(e05: ModuleType) -> None:
    chip0 = load_chip(e05.CHIP)
    xs = [16, 64, 96, 128, 256]
    res = [e05.compare(e05.base_arch(1), e05.chip_with(chip0, a)) for a in xs]
    x = e05.crossover(xs, [r["ws"]["energy_uj"] for r in res], [r["os"]["energy_uj"] for r in res])
    assert x is not None and 16 < x < res[0]["ws"]["arrays"] + 32
    assert e05.crossover([1, 2], [1.0, 1.0 / 3], [2.0, 4.0]) is None  # no change of winner: none


def test_05_without_sram_staging_timesteps_decide_and_hybrid_beats_both(e05: ModuleType) -> None:
    chip0 = load_chip(e05.CHIP)
    # both dataflows stream from DRAM: once per inference (OS) vs the overflow once per timestep (WS)
    t1 = e05.compare(e05.base_arch(1), e05.chip_with(chip0, 16, sram_kb=0))
    t16 = e05.compare(e05.base_arch(16), e05.chip_with(chip0, 16, sram_kb=0))
    assert t1["ws"]["energy_uj"] < t1["os"]["energy_uj"]
    assert t16["os"]["energy_uj"] < t16["ws"]["energy_uj"]
    # near the capacity boundary a per-layer mix beats both uniform dataflows
    edge = e05.compare(e05.base_arch(16), e05.chip_with(chip0, 96, sram_kb=0))
    assert edge["hybrid"]["energy_uj"] < 0.9 * min(edge["ws"]["energy_uj"], edge["os"]["energy_uj"])
    assert set(edge["hybrid_flows"]) == {"W", "O"}


def test_05_per_layer_resolution_saves_memory_and_energy(e05: ModuleType) -> None:
    chip0 = load_chip(e05.CHIP)
    for arrays in (16, 256):
        chip = e05.chip_with(chip0, arrays)
        v = {k: e05.compare(a, chip) for k, a in e05.resolution_variants(e05.base_arch(4)).items()}
        u8, per, u4 = (
            v["uniform 8-bit"]["hybrid"],
            v["per-layer 8/4/4/4/8"]["hybrid"],
            v["uniform 4-bit"]["hybrid"],
        )
        assert u4["memory_kb"] < per["memory_kb"] < u8["memory_kb"]
        assert u4["energy_uj"] <= per["energy_uj"] < u8["energy_uj"]


def test_05_serialised_output_stationary_is_never_cheaper(e05: ModuleType) -> None:
    chip0 = load_chip(e05.CHIP)
    r = e05.compare(e05.base_arch(16), e05.chip_with(chip0, 16))
    assert r["os"]["latency_serial_us"] > r["os"]["latency_us"]
    assert r["os"]["energy_serial_uj"] > r["os"]["energy_uj"]
    assert r["ws"]["energy_serial_uj"] == pytest.approx(
        r["ws"]["energy_uj"]
    )  # no OS layer: unchanged


# ---- 04: NeuroNAS's constrained-search claim -----------------------------------------------


def _trial(
    e04: ModuleType,
    n: int,
    acc: float | None,
    secs: float,
    prior_broken: tuple[str, ...],
    broken: tuple[str, ...],
    energy: float = 0.05,
    area: float = 0.2,
) -> object:
    costs = {"memory_kb": 5.0, "area_mm2": area, "latency_us": 10.0, "energy_uj": energy}
    return e04.Trial(
        number=n,
        arch=f"net{n}",
        trained=acc is not None,
        accuracy=acc,
        train_s=secs,
        prior=costs,
        measured=costs,
        broken_prior=prior_broken,
        broken=broken,
    )


def test_04_summary_counts_savings_and_skipped_training(e04: ModuleType) -> None:
    chip = load_chip(e04.CHIP)
    hw = e04.Search("hw", 0, [_trial(e04, 0, 0.6, 10.0, (), ()), _trial(e04, 1, 0.5, 8.0, (), ())])
    acc = e04.Search(
        "acc",
        0,
        [
            _trial(e04, 0, 0.7, 30.0, ("area_mm2",), ("area_mm2",), energy=0.4, area=1.2),
            _trial(e04, 1, 0.55, 10.0, (), ()),
            _trial(e04, 2, 0.65, 20.0, ("energy_uj", "memory_kb"), ("energy_uj",), energy=0.2),
        ],
    )
    s = e04.summarise(hw, acc, chip)
    assert s["hw_trained_feasible"] == 2 and s["acc_trained_feasible"] == 1
    assert s["acc_best"].number == 0 and not s["acc_best"].feasible
    assert s["hw_best"].accuracy == 0.6
    assert (
        s["skipped"] == 2
        and s["saved_s"] == pytest.approx(50.0)
        and s["acc_train_s"] == pytest.approx(60.0)
    )
    assert (
        s["acc_broken_per_budget"]["area_mm2"] == 1 and s["acc_broken_per_budget"]["energy_uj"] == 1
    )
    assert s["area_saving"] == pytest.approx(1.2 / 0.2) and s["energy_saving"] == pytest.approx(
        0.4 / 0.05
    )


@pytest.mark.slow
def test_04_budgeted_search_meets_every_budget_where_accuracy_only_does_not(
    e04: ModuleType, tmp_path: Path
) -> None:
    chip = load_chip(e04.CHIP)
    free = e04.unbudgeted_copy(chip, tmp_path / "free.yaml")
    assert not load_chip(free).budgets.items()
    fid = (
        "--epochs",
        "1",
        "--max-train-samples",
        "64",
        "--max-eval-samples",
        "32",
        "--eval-instances",
        "1",
    )
    db_hw = e04.run_search(
        "hw", e04.CHIP, ["accuracy", "energy_uj", "latency_us"], 4, 0, fid, tmp_path
    )
    db_acc = e04.run_search("acc", free, ["accuracy"], 4, 0, fid, tmp_path)
    hw = e04.read_search(db_hw, chip, "hw", 0)
    acc = e04.read_search(db_acc, chip, "acc", 0)
    assert hw.trained and all(t.feasible for t in hw.trained)
    assert len(acc.trained) == 4  # nothing stops an accuracy-only search from training anything
    assert any(not t.feasible for t in acc.trained)
    # the fronts re-measured by the export on both splits; the most accurate member is on the front
    acc.exported = e04.export_front(db_acc.parent, instances=2)
    s = e04.summarise(hw, acc, chip)
    assert s["hw_best"] is not None and s["hw_best"].feasible
    assert s["skipped"] >= 1 and s["saved_s"] > 0
    e = s["acc_best_export"]
    assert e is not None
    for split in ("val", "test"):
        lo, mean, hi = (e[f"{split}_accuracy{k}"] for k in ("_low", "", "_high"))
        assert lo <= mean <= hi and 0.0 <= mean <= 1.0  # a 2-instance t-interval may leave [0, 1]
    text = e04.write_table([s], chip, 4, tmp_path / "t.md", fid)
    assert "accuracy-only" in text and (tmp_path / "t.md").exists()
    assert f"{e['test_accuracy']:.1%} [" in text


# ---- 06: LD-LIF's accuracy cost against LIF ------------------------------------------------


@pytest.fixture(scope="module")
def e06() -> ModuleType:
    return _load("06_ldlif_accuracy.py")


def test_06_configs_differ_only_in_the_neuron(e06: ModuleType) -> None:
    for cfg in e06.CONFIGS.values():
        lif, ld = cfg.arch("lif"), cfg.arch("ld_lif")
        assert lif.neuron.model == "lif" and ld.neuron.model == "ld_lif"
        assert ld.with_(neuron=lif.neuron) == lif
        assert ld.neuron.reset == lif.neuron.reset and ld.neuron.threshold == lif.neuron.threshold


def test_06_paired_difference_and_interval_over_seeds(e06: ModuleType) -> None:
    rows = []
    for seed, (lif, ld) in enumerate(((90.0, 89.0), (80.0, 78.0), (85.0, 82.0))):
        for neuron, v in (("lif", lif), ("ld_lif", ld)):
            rows.append(
                {
                    "config": "digits-mlp",
                    "neuron": neuron,
                    "seed": seed,
                    "status": "ok",
                    "val": v,
                    "test": v - 1,
                }
            )
    for neuron, status in (("ld_lif", "ok"), ("lif", "diverged")):  # a diverged partner: no pair
        rows.append(
            {
                "config": "digits-mlp",
                "neuron": neuron,
                "seed": 7,
                "status": status,
                "val": 0.0,
                "test": 0.0,
            }
        )
    d = e06.paired(rows, "digits-mlp", "ld_lif", "val")
    assert d["seeds"] == [0, 1, 2] and d["diffs"] == [-1.0, -2.0, -3.0]
    # mean -2, sample sd 1, t(0.975, 2 dof) = 4.303: half-width 4.303 / sqrt(3)
    assert d["mean"] == pytest.approx(-2.0) and d["half"] == pytest.approx(
        4.3027 / 3**0.5, rel=1e-3
    )
    assert e06.paired(rows, "digits-mlp", "if", "val") is None
    assert e06.paired(rows, "flow", "ld_lif", "test") is None


@pytest.mark.slow
def test_06_one_tiny_run_per_neuron_gives_both_splits_and_the_table(
    e06: ModuleType, tmp_path: Path
) -> None:
    cfg = e06.CONFIGS["digits-mlp"]
    path = tmp_path / "r.csv"
    for neuron in ("lif", "ld_lif"):
        row = e06.run_one(
            cfg, neuron, 0, epochs=1, instances=2, max_train_samples=64, max_eval_samples=32
        )
        assert row["status"] == "ok" and row["neuron"] == neuron
        assert len(row["test_per_instance"].split()) == 2
        assert 0.0 <= row["val"] <= 100.0 and 0.0 <= row["test"] <= 100.0
        e06.append_row(path, row)
    rows = e06.read_rows(path)
    assert [r["neuron"] for r in rows] == ["lif", "ld_lif"]
    text = e06.write_table(rows, tmp_path / "t.md")
    d = e06.paired(rows, "digits-mlp", "ld_lif", "test")
    assert d is not None and f"{d['mean']:+.2f} points [±n/a]" in text  # one seed: no interval
    e06.plot(rows, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
