"""The cost model pinned on a toy network whose costs are worked out by hand below."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from neuronas.errors import ConfigError
from neuronas.hardware import Activity, CostReport, estimate, load_activity, load_chip
from neuronas.hardware.cost import COMPONENTS
from neuronas.spec import ArchSpec

# A toy chip at 65 nm / 1.2 V (the reference node: no scaling of the 65 nm constants) whose
# digital constants are overridden to round numbers, so every term below can be done by hand.
TOY_CHIP = """
name: toy
technology:
  node_nm: 65
  supply_v: 1.2
  clock_mhz: 250
  device: {kind: rram, cell_area_um2: 0.1, read_energy_fj: 10.0, read_latency_ns: 10.0,
           write_energy_pj: 2.0, write_latency_ns: 100.0, bits_per_cell_max: 2, on_off_ratio: 10,
           program_sigma: 0.1, read_noise_sigma: 0.02, stuck_off_rate: 0.0, stuck_on_rate: 0.0,
           leaks: false}
periphery:
  adc_kinds: [sa]
  adc_bits_min: 1
  adc_bits_max: 1
  columns_per_adc: 1
  neuron_unit: {neurons_per_unit: 4}
  tile_buffer_kb: 0
capacity: {arrays: 100, array_rows_max: 64, array_cols_max: 64, pes_per_tile: 4, sram_kb: 64,
           dram_energy_pj_per_bit: 20, dram_bandwidth_gbps: 50}
budgets:
  energy_uj: 1.0e-4
  latency_us: {limit: 1.0, hard: false}
overrides:
  sa_energy_pj: 0.02
  sa_latency_ns: 1.0
  sa_area_um2: 50.0
  bitline_energy_fj_per_cell: 0.05
  wordline_energy_fj_per_cell: 0.25
  add_energy_pj_per_bit: 0.01
  accum_add_energy_pj_per_bit: 0.01
  mul_energy_pj_per_bit2: 0.005
  membrane_access_energy_pj_per_bit: 0.1
  buffer_energy_pj_per_bit: 0.1
  wire_energy_pj_per_bit_mm: 0.0
  leakage_mw_per_mm2: 0.0
  lif_update_ns: 5.0
  fa_delay_ns: 0.1
  row_driver_area_um2: 1.0
  column_periph_area_um2: 1.0
  accum_area_um2_per_bit: 10.0
  output_reg_area_um2_per_bit: 2.0
  lif_unit_area_um2: 800.0
  sram_bit_area_um2: 1.0
  router_area_um2: 1000.0
"""

# 32 inputs -> fc 16 (LIF) -> fc 4 (readout); 2-bit weights on 1-bit cells as differential pairs.
TOY_ARCH = {
    "name": "toy",
    "input": {"shape": [32], "timesteps": 2},
    "layers": [{"kind": "fc", "out": 16}, {"kind": "fc", "out": 4}],
    "neuron": {"model": "lif"},
    "precision": {"weight_bits": 2, "membrane_bits": 8},
    "mapping": {
        "adc_kind": "sa",
        "adc_bits": 1,
        "rows": 16,
        "cols": 32,
        "bits_per_cell": 1,
        "signed_scheme": "differential",
    },
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArchSpec, object]:
    p = tmp_path_factory.mktemp("chip") / "toy.yaml"
    p.write_text(TOY_CHIP)
    return ArchSpec.from_dict(TOY_ARCH), load_chip(p)


def test_toy_network_by_hand(toy) -> None:
    arch, chip = toy
    r = estimate(arch, chip, 0.5)
    # ---- mapping ---------------------------------------------------------------------------
    # fc0: K=32, N=16, s = 2 slices, d = 2 (differential): 64 columns -> ceil(32/16)=2 row groups
    #      x ceil(64/32)=2 column groups = 4 arrays of 16x32, 2048 cells all used.
    # fc1: K=16, N=4: 16 columns -> 1 array of 16x32, 256 of 512 cells used.
    l0, l1 = r.layers
    assert (l0.arrays, l1.arrays, r.arrays) == (4, 1, 5)
    assert l0.utilisation == 1.0 and l1.utilisation == 0.5
    assert r.utilisation == pytest.approx(2304 / 2560)
    # ---- energy, a = 0.5, T = 2, P = 1 (pJ) ------------------------------------------------
    # fc0, per read: active row groups = 2 x (1 - 0.5^16) = 1.99997
    #   arrays: a*K*(cols*e_cell + cg*C*e_wl) + groups*cg*(R*C*e_bl)
    #         = 16*(64*0.010 + 2*32*0.00025) + 1.99997*2*(16*32*0.00005) = 10.59840 -> x2 reads = 21.1968
    #   SA: 1.99997*64 conversions x 0.02 pJ = 2.55996 -> 5.11992
    #   accumulation: width 1 (SA) + log2(2 groups) + (2-1) slice shift + 1 sign = 4 bits;
    #     (127.998 conversions + 16 neurons x 3 slice/pair merges) x 4 x 0.01 = 7.03992 -> 14.0798
    #   LIF update (b=8): logic 0.005*64 + 2*0.01*8 = 0.48, membrane r/w 2*8*0.1 = 1.6;
    #     16 neurons x 2 steps: neurons 15.36, membrane 51.2
    #   buffers: (32 in + 16 out bits) x 0.1 x 2 = 9.6
    # fc1 (readout), per read: active groups 1 - 0.5^16 = 0.9999847
    #   arrays: 8*(16*0.010 + 32*0.00025) + 0.9999847*(16*32*0.00005) = 1.3695996 -> 2.7391992
    #   SA: 15.99976 x 0.02 = 0.3199951 -> 0.6399902
    #   accumulation: width 1 + 0 + 1 + 1 = 3; (15.99976 + 4 x 3 x 0.9999847) x 3 x 0.01 -> x2 = 1.6799725
    #   readout integrate: add 0.08 + membrane 1.6, 4 neurons x 2 steps: 0.64 + 12.8
    #   buffers: 16 in bits x 0.1 x 2 = 3.2
    g0 = 2 * (1 - 0.5**16)
    g1 = 1 - 0.5**16
    fc0 = {
        "arrays": 2 * (16 * (64 * 0.010 + 2 * 32 * 0.00025) + g0 * 2 * 16 * 32 * 0.00005),
        "conversion": 2 * g0 * 64 * 0.02,
        "accumulation": 2 * (g0 * 64 + 16 * 3 * (1 - 0.5**32)) * 4 * 0.01,
        "neurons": 32 * 0.48,
        "membrane": 32 * 1.6,
        "buffers": 9.6,
    }
    fc1 = {
        "arrays": 2 * (8 * (16 * 0.010 + 32 * 0.00025) + g1 * 16 * 32 * 0.00005),
        "conversion": 2 * g1 * 16 * 0.02,
        "accumulation": 2 * (g1 * 16 + 4 * 3 * g1) * 3 * 0.01,
        "neurons": 8 * 0.08,
        "membrane": 8 * 1.6,
        "buffers": 3.2,
    }
    assert fc0["arrays"] == pytest.approx(21.1968, rel=1e-5)
    for name, pj in fc0.items():
        assert l0.components[name] == pytest.approx(pj * 1e-6, rel=1e-9), name
    for name, pj in fc1.items():
        assert l1.components[name] == pytest.approx(pj * 1e-6, rel=1e-9), name
    total_pj = sum(fc0.values()) + sum(fc1.values())
    assert total_pj == pytest.approx(138.2557, rel=1e-5)
    assert r.energy_uj == pytest.approx(total_pj * 1e-6, rel=1e-9)
    assert r.components["offchip"] == 0 and r.components["leakage"] == 0
    # ---- latency (ns) -----------------------------------------------------------------------
    # fc0: array phase 10 ns read + 1 ns SA = 11; neurons: 16 on 4 units x 5.0 ns (LIF, 8 b) = 20
    # fc1: array 11; readout integrate: 4 on 1 unit x (1.8 ns memory + 16 x 0.1 ns) = 13.6
    # pipelined: fill 20 + 13.6, then (T-1) = 1 x the slowest stage 20 -> 53.6 ns
    assert l0.stage_ns == pytest.approx(20.0)
    assert l1.stage_ns == pytest.approx(13.6)
    assert r.latency_us == pytest.approx(0.0536)
    assert r.pipelined
    # ---- area (um^2) ------------------------------------------------------------------------
    # fc0: arrays 4 x (16*32*0.1 + 16 + 32) = 396.8; SA 4 x 32 x 50 = 6400; accumulators
    #   2 column groups x 32 x 4 bits x 10 = 2560; 4 LIF units x 800 = 3200; membrane 16x8 bits = 128;
    #   input buffer 32 bits = 32 -> 12716.8
    # fc1: arrays 99.2; SA 1600; accumulators 32 x 3 x 10 + output regs 4x8x2 = 1024;
    #   one IF-type unit 800 x 16/80 = 160; input buffer 16 -> 2899.2
    # 5 PEs / 4 per tile = 2 tiles x 1000 (router) -> total 17616 um^2
    assert l0.area_mm2 == pytest.approx(12716.8e-6)
    assert l1.area_mm2 == pytest.approx(2899.2e-6)
    assert r.tiles == 2
    assert r.area_mm2 == pytest.approx(17616e-6)
    # ---- memory: weights 2048 + 256 cells, membranes 128, input buffers 32 + 16 bits ---------
    assert r.memory_kb == pytest.approx(2480 / 8192)
    # ---- budgets: energy 1e-4 uJ (hard) is broken by 38 %, latency (soft) holds ----------------
    assert not r.feasible
    assert [v.metric for v in r.violations] == ["energy_uj"]
    assert r.margins() == pytest.approx(
        {"energy_uj": total_pj * 1e-6 / 1e-4 - 1, "latency_us": 0.0536 - 1}
    )
    assert r.hard_violations[0].margin == pytest.approx(0.382557, rel=1e-5)


def test_report_is_plain_json_and_sums(toy) -> None:
    arch, chip = toy
    r = estimate(arch, chip)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["activity"]["source"] == "prior"
    assert set(d["components"]) == set(COMPONENTS)
    assert sum(layer["energy_uj"] for layer in d["layers"]) == pytest.approx(r.energy_uj)
    assert sum(r.components.values()) == pytest.approx(r.energy_uj)
    assert sum(r.area_components.values()) == pytest.approx(r.area_mm2)
    assert r.metric("area_mm2") == r.area_mm2
    with pytest.raises(KeyError):
        r.metric("accuracy")
    assert isinstance(r, CostReport)
    # same input, same output
    assert estimate(arch, chip).to_dict() == r.to_dict()


def test_activity_forms(toy, tmp_path: Path) -> None:
    arch, chip = toy
    default = estimate(arch, chip)
    assert default.activity.input_rates == (chip.activity.default_rate,) * 2
    dense = estimate(arch, chip, 1.0)
    assert dense.activity.source == "dense"
    act = Activity((0.3, 0.1), (0.1, 0.0), "measured")
    assert Activity.from_dict(act.to_dict()) == act
    p = tmp_path / "metrics.json"
    p.write_text(json.dumps({"accuracy_mean": 0.9, "activity": act.to_dict()}))
    assert load_activity(p) == act
    measured = estimate(arch, chip, act)
    assert measured.activity == act
    assert default.energy_uj < dense.energy_uj
    with pytest.raises(ConfigError, match="one rate each"):
        estimate(arch, chip, Activity((0.1,), None, "measured"))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        estimate(arch, chip, 1.5)
    with pytest.raises(ConfigError, match="input_rates\\[1\\]"):
        Activity((0.1, -0.2))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: JSON syntax error"):
        load_activity(bad)


def test_event_skipping_counts_active_row_groups(toy) -> None:
    # a sparse input skips whole row groups: conversions follow ceil(K/R) x (1 - (1 - a)^R)
    arch, chip = toy
    for a in (0.001, 0.01, 0.1):
        r = estimate(arch, chip, a)
        expected = 2 * (1 - (1 - a) ** 16) * 64 * 2  # 2 groups, 64 columns, 2 timesteps
        assert r.layers[0].conversions == pytest.approx(expected)


def test_pool_and_deconv_layers_are_priced() -> None:
    chip = load_chip("rram-adcless-65nm")
    arch = ArchSpec.from_dict(
        {
            "input": {"shape": [2, 16, 16], "timesteps": 4},
            "layers": [
                {"kind": "conv", "out": 8, "kernel": 3, "stride": 2},
                {"kind": "pool", "kernel": 2, "pool": "max"},
                {"kind": "deconv", "out": 8, "kernel": 4, "stride": 2, "padding": 1},
                {"kind": "deconv", "out": 2, "kernel": 4, "stride": 2, "padding": 1},
            ],
            "task": "dense",
            "mapping": {"adc_kind": "sa", "adc_bits": 1},
        }
    )
    r = estimate(arch, chip)
    kinds = [layer.kind for layer in r.layers]
    assert kinds == ["conv", "pool", "deconv", "deconv"]
    pool = r.layers[1]
    assert pool.components["pooling"] > 0 and pool.arrays == 0
    # the pool's output is what the next layer is priced with (here the prior), its input what the
    # conv before it emits (tests/test_cost_activity.py pins measured rates through pools)
    assert pool.input_rate == pytest.approx(0.15) and pool.output_rate == pytest.approx(0.15)
    # a stride-2 transposed conv sees a zero-inserted input: 1/4 of the events of a plain conv
    deconv = r.layers[2]
    assert deconv.sops == pytest.approx(0.15 / 4 * 8 * 16 * 8 * 8 * 8 * 4)
    assert all(math.isfinite(layer.energy_uj) and layer.energy_uj > 0 for layer in r.layers)


def test_weights_that_do_not_fit_reload_from_dram() -> None:
    chip = load_chip("digital-cim-40nm")  # 16 arrays of 256 x 256 = 1 M cells

    def arch(dataflow: str) -> ArchSpec:
        return ArchSpec.from_dict(
            {
                "input": {"shape": [1024], "timesteps": 4},
                "layers": [
                    {"kind": "fc", "out": 1024},
                    {"kind": "fc", "out": 1024},
                    {"kind": "fc", "out": 10},
                ],
                "mapping": {
                    "adc_kind": "digital",
                    "adc_bits": 0,
                    "signed_scheme": "offset",
                    "dataflow": dataflow,
                },
                "precision": {"weight_bits": 4},
            }
        )

    ws = estimate(arch("weight_stationary"), chip)
    os_ = estimate(arch("output_stationary"), chip)
    assert ws.components["offchip"] > 0 and ws.notes  # 8.4 M cells wanted, 1 M on chip
    # output-stationary streams each weight once per inference from on-chip SRAM instead of
    # reloading the overflow from DRAM every timestep, and time-shares one set of arrays
    assert os_.components["offchip"] < ws.components["offchip"]
    assert os_.area_components["arrays"] < ws.area_components["arrays"]
    small = ArchSpec.from_dict(
        {
            "input": {"shape": [64], "timesteps": 4},
            "layers": [{"kind": "fc", "out": 10}],
            "mapping": {"adc_kind": "digital", "adc_bits": 0},
        }
    )
    assert estimate(small, chip).components["offchip"] == 0


def test_ld_lif_in_memory_beats_lif_on_neuron_updates() -> None:
    chip = load_chip("sram-ldlif-65nm")
    base = ArchSpec.from_yaml(
        Path(__file__).resolve().parents[1] / "experiments/archs/digits-cnn.yaml"
    )

    def neuron_energy(model: str) -> float:
        a = base.with_(neuron=base.neuron.__class__(model=model))
        r = estimate(a, chip)
        return r.components["neurons"] + r.components["membrane"]

    lif, ld = neuron_energy("lif"), neuron_energy("ld_lif")
    assert lif / ld > 3.0  # in-place decay: no multiplier, no macro read-out/write-back


def test_row_phases_of_a_multibit_adc() -> None:
    # a b-bit ADC on 1-bit cells resolves the binary-input partial sum of 2^b - 1 rows: a 5-bit
    # ADC on 64-row arrays reads in ceil(64 / 31) = 3 phases; the SA reads all rows in 1
    from neuronas.hardware.components import row_phases, rows_per_read

    assert rows_per_read("flash", 5, 1, None) == 31 and row_phases(64, 31) == 3
    assert rows_per_read("sar", 8, 2, None) == 85  # 255 // 3: a 2-bit cell adds up to 3 per row
    assert rows_per_read("sa", 1, 1, None) == 0 and row_phases(64, 0) == 1
    assert rows_per_read("digital", 0, 1, None) == 0
    assert rows_per_read("sar", 5, 1, 64) == 64  # a chip that accepts clipping sets its own

    def arch(kind: str, bits: int) -> ArchSpec:
        return ArchSpec.from_dict(
            {
                "input": {"shape": [256], "timesteps": 2},
                "layers": [{"kind": "fc", "out": 31}, {"kind": "fc", "out": 10}],
                "precision": {"weight_bits": 4},
                "mapping": {
                    "adc_kind": kind,
                    "adc_bits": bits,
                    "rows": 64,
                    "cols": 64,
                    "bits_per_cell": 1,
                    "signed_scheme": "differential",
                },
            }
        )

    flash = estimate(arch("flash", 5), load_chip("rram-hpadc-65nm"), 1.0)
    sa = estimate(arch("sa", 1), load_chip("rram-adcless-65nm"), 1.0)
    # fc0: K = 256 -> 4 row groups of 64 rows, 3 phases each; fc1: K = 31 rows fit one phase
    assert [layer.row_phases for layer in flash.layers] == [3, 1]
    assert [layer.row_phases for layer in sa.layers] == [1, 1]
    # dense input: every phase holds spikes. fc0 has 31 x 4 slices x 2 = 248 columns:
    # SA 4 groups x 248 x T=2 = 1984 conversions; flash 3 phases each = 5952
    assert sa.layers[0].conversions == pytest.approx(1984)
    assert flash.layers[0].conversions == pytest.approx(5952)
    # a phase is a full read: 10 ns bitline settle + 8 columns queued on each 1-ns flash ADC
    # = 18 ns, three times; the SA: 10 ns + one 1-ns decision
    assert flash.layers[0].array_ns == pytest.approx(3 * 18.0)
    assert sa.layers[0].array_ns == pytest.approx(11.0)
    # the same flash chip told to drive all 64 rows at once (accepting clipping): one phase
    d = load_chip("rram-hpadc-65nm").model_dump()
    d["periphery"]["max_active_rows"] = 64
    from neuronas.hardware import Chip

    clip = estimate(arch("flash", 5), Chip.model_validate(d), 1.0)
    assert clip.layers[0].row_phases == 1
    assert clip.layers[0].conversions == pytest.approx(1984)
    assert flash.layers[0].components["conversion"] == pytest.approx(
        3 * clip.layers[0].components["conversion"]
    )
    assert flash.layers[0].array_ns == pytest.approx(3 * clip.layers[0].array_ns)
    # DNN+NeuroSim's synchronous accounting: each of the 8 muxed columns is read and sensed in its
    # own cycle: 3 phases x 8 x (10 + 1) ns (the preset that prices the chip as the ADC-less
    # authors' NeuroSim fork does, and the mux timing alone on rram-hpadc-65nm)
    preset = estimate(arch("flash", 5), load_chip("rram-hpadc-65nm-sync"), 1.0)
    d = load_chip("rram-hpadc-65nm").model_dump()
    d["periphery"]["mux_timing"] = "synchronous"
    sync = estimate(arch("flash", 5), Chip.model_validate(d), 1.0)
    for r in (preset, sync):
        assert r.layers[0].array_ns == pytest.approx(3 * 8 * 11.0)
        assert r.layers[1].array_ns == pytest.approx(8 * 11.0)
    # the mux timing alone leaves the dynamic energy as it was (leakage runs longer)
    assert sync.energy_uj - sync.components["leakage"] == pytest.approx(
        flash.energy_uj - flash.components["leakage"]
    )
    assert sync.components["leakage"] > flash.components["leakage"]
    # an SA on every column has nothing to multiplex: the option changes nothing there
    d = load_chip("rram-adcless-65nm").model_dump()
    d["periphery"]["mux_timing"] = "synchronous"
    assert estimate(arch("sa", 1), Chip.model_validate(d), 1.0).latency_us == pytest.approx(
        sa.latency_us
    )


def test_row_phases_by_hand(tmp_path: Path) -> None:
    # the toy network on the toy chip, read out by a 2-bit flash ADC shared 8:1
    p = tmp_path / "flash.yaml"
    p.write_text(
        TOY_CHIP.replace("adc_kinds: [sa]", "adc_kinds: [sa, flash]")
        .replace("adc_bits_max: 1", "adc_bits_max: 5")
        .replace("columns_per_adc: 1", "columns_per_adc: 8")
        + "  flash_energy_per_comparator_pj: 0.01\n  flash_latency_ns: 1.0\n  mux_energy_pj: 0.005\n"
    )
    chip = load_chip(p)
    d = dict(TOY_ARCH, mapping={**TOY_ARCH["mapping"], "adc_kind": "flash", "adc_bits": 2})
    r = estimate(ArchSpec.from_dict(d), chip, 0.5)
    l0, l1 = r.layers
    # 2 bits resolve 3 rows of 1-bit cells: a 16-row group reads in 6 phases (5 of 3 rows, 1 of 1)
    assert (l0.row_phases, l1.row_phases) == (6, 6)
    # a = 0.5: a phase of 3 rows holds a spike with p = 1 - 0.5^3 = 0.875, the 1-row one 0.5:
    # 5 x 0.875 + 0.5 = 4.875 active phases per row group
    ph = 5 * 0.875 + 0.5
    # fc0: 2 row groups x 4.875 phases x 64 columns x 2 reads (T = 2) = 1248 conversions
    assert l0.conversions == pytest.approx(2 * ph * 64 * 2)
    # conversion: 3 comparators x 0.01 + mux 0.005 = 0.035 pJ each -> 43.68 pJ
    assert l0.components["conversion"] == pytest.approx(1248 * 0.035e-6)
    # arrays per read: driven cells + wordlines 16 x (64 x 0.010 + 2 x 32 x 0.00025) = 10.496, and
    # every active phase precharges its bitlines: 9.75 x 2 column groups x 16 x 32 x 0.00005 = 0.4992
    # -> (10.496 + 0.4992) x 2 reads = 21.9904 pJ
    assert l0.components["arrays"] == pytest.approx(21.9904e-6)
    # accumulation: width 2 (ADC) + 1 (2 groups) + 3 (6 phases) + 1 (slice) + 1 (sign) = 8 bits;
    # (624 conversions + 16 x 3 merges x (1 - 0.5^32)) x 8 x 0.01 x 2 reads
    assert l0.components["accumulation"] == pytest.approx(
        (624 + 48 * (1 - 0.5**32)) * 8 * 0.01 * 2 * 1e-6
    )
    # latency: 32 columns per array on 4 ADCs -> 8 queued 1-ns conversions after the 10-ns read,
    # 18 ns per phase; the busiest row group's 4.875 / (1 - 0.5^16) phases given a read, which
    # happens with p = 1 - 0.5^32: 87.75 ns, slower than the 20-ns neuron pass
    t0 = 18.0 * (1 - 0.5**32) * ph / (1 - 0.5**16)
    assert l0.array_ns == pytest.approx(t0) and l0.stage_ns == pytest.approx(t0)
    # fc1 (readout): one array, 16 columns, 4.875 phases x 2 reads
    assert l1.conversions == pytest.approx(ph * 16 * 2)


def test_ld_lif_in_memory_update_by_hand(toy) -> None:
    # in-memory LD-LIF writes the array twice per update: the parallel decay (v - d) and the
    # integration (v + x), each a read-modify-write of every membrane bit; logic: subtract, add, compare
    from neuronas.hardware.components import neuron_update_energy_pj

    _arch, chip = toy
    k = dict(chip.constants, sram_inplace_rmw_energy_pj_per_bit=0.05)
    logic, mem = neuron_update_energy_pj("ld_lif", 8, False, True, k)
    assert logic == pytest.approx(3 * 8 * 0.01)
    assert mem == pytest.approx(2 * 8 * 0.05)
    # the digital LIF: multiply 0.005 x 8^2 + add and compare 2 x 8 x 0.01; membrane read + write 2 x 8 x 0.1
    assert neuron_update_energy_pj("lif", 8, False, False, k) == pytest.approx((0.48, 1.6))


def test_synchronous_mux_timing_gives_the_adcless_papers_latency_range() -> None:
    # experiments/01 in small: VGG9 on 64x64 arrays, 4-bit weights on 1-bit cells, T = 5, rate 0.15;
    # the readout path (array phase summed over the layers) of a 5-bit flash ADC shared 8:1 vs an SA
    # per column: ~2x with the overlapped timing, in the paper's 8.9-24.6x with NeuroSim's synchronous one
    from neuronas.config import preset_dir
    from neuronas.hardware import Chip

    base = ArchSpec.from_yaml(preset_dir("arch") / "vgg9-cifar10.yaml")

    def on(chip_name: str, kind: str, bits: int) -> float:
        d = load_chip(chip_name).model_dump()
        d["capacity"]["arrays"] = 1_000_000  # the whole network on chip, as in the paper
        m = {
            **base.to_dict()["mapping"],
            "adc_kind": kind,
            "adc_bits": bits,
            "rows": 64,
            "cols": 64,
            "bits_per_cell": 1,
            "signed_scheme": "differential",
            "dataflow": "weight_stationary",
        }
        arch = ArchSpec.from_dict(
            {
                **base.to_dict(),
                "mapping": m,
                "precision": {**base.to_dict()["precision"], "weight_bits": 4},
            }
        )
        r = estimate(arch, Chip.model_validate(d), 0.15)
        return sum(layer.array_ns for layer in r.layers if layer.arrays)

    sa = on("rram-adcless-65nm", "sa", 1)
    assert 1.5 < on("rram-hpadc-65nm", "flash", 5) / sa < 3.0
    assert 8.9 <= on("rram-hpadc-65nm-sync", "flash", 5) / sa <= 24.6


# -- skip connections ---------------------------------------------------------------------------

SKIP_NET = {
    "input": {"shape": [2, 8, 8], "timesteps": 4},
    "layers": [
        {"name": "s", "kind": "conv", "out": 4, "kernel": 3},  # 4 x 8 x 8
        {"kind": "conv", "out": 4, "kernel": 3},
        {"kind": "conv", "out": 4, "kernel": 3, "skip": {"from": "s", "op": "add"}},
        {"name": "p", "kind": "pool", "kernel": 2},  # 4 x 4 x 4
        {"kind": "conv", "out": 4, "kernel": 3},
        {"kind": "conv", "out": 4, "kernel": 3, "skip": {"from": "p", "op": "concat"}},
        {"kind": "fc", "out": 10},
    ],
    "precision": {"weight_bits": 4, "membrane_bits": 8},
    "mapping": {"adc_kind": "sa", "adc_bits": 1, "rows": 64, "cols": 64},
}


def _without_skips(spec: dict) -> dict:
    return {
        **spec,
        "layers": [{k: v for k, v in layer.items() if k != "skip"} for layer in spec["layers"]],
    }


def test_skip_buffers_adder_and_concat_rows_by_hand() -> None:
    chip = load_chip("rram-adcless-65nm")
    assert chip.schedule.pipeline == "timestep"  # the skip buffer's depth below assumes it
    k, act_bits = chip.constants, chip.periphery.activation_bits
    T, rate = 4, 0.2
    plain = estimate(ArchSpec.from_dict(_without_skips(SKIP_NET)), chip, rate)
    skips = estimate(ArchSpec.from_dict(SKIP_NET), chip, rate)
    p_layers, s_layers = plain.layers, skips.layers

    # layers[2] adds the spikes of layers[0]: they wait 2 pipeline stages (layers 1 and 2), so
    # the skip buffer holds 2 maps of 4 x 8 x 8 spikes, each written and read once a timestep
    map_bits = 4 * 8 * 8 * act_bits
    held_bits = 2 * map_bits
    assert s_layers[2].memory_kb - p_layers[2].memory_kb == pytest.approx(held_bits / 8192)
    e_buf = 2 * map_bits * k["buffer_energy_pj_per_bit"] * T * 1e-6
    assert s_layers[2].components["buffers"] - p_layers[2].components["buffers"] == pytest.approx(
        e_buf, rel=1e-9
    )
    # the membrane-level add: 8-bit adds for each of the 256 neurons when its source spiked
    e_add = 256 * T * rate * 8 * k["add_energy_pj_per_bit"] * 1e-6
    assert s_layers[2].components["neurons"] - p_layers[2].components["neurons"] == pytest.approx(
        e_add, rel=1e-9
    )
    assert s_layers[2].arrays == p_layers[2].arrays  # an add maps no rows

    # layers[5] reads the pool (layers[3]) beside layers[4]: K = (4 + 4) x 3 x 3 = 72 rows, two
    # row groups of a 64-row array where 36 rows needed one; 4-bit weights as differential
    # pairs of 1-bit cells: 4 x 4 x 2 = 32 columns, one column group
    assert (p_layers[5].arrays, s_layers[5].arrays) == (1, 2)
    w_bits_plain, w_bits_concat = 36 * 32, 72 * 32
    held_bits = 2 * (4 * 4 * 4 * act_bits)  # the pool's maps wait 2 stages (layers 4 and 5)
    # the consumer's input buffer keeps only layers[4]'s map: the skip part is in the skip buffer
    assert s_layers[5].memory_kb - p_layers[5].memory_kb == pytest.approx(
        (w_bits_concat - w_bits_plain + held_bits) / 8192
    )
    assert skips.arrays - plain.arrays == 1
    # everything else is priced as before, and the whole grows
    for i in (0, 1, 3, 4, 6):
        assert (
            s_layers[i].memory_kb == p_layers[i].memory_kb
            and s_layers[i].arrays == p_layers[i].arrays
        )
    assert skips.memory_kb > plain.memory_kb and skips.area_mm2 > plain.area_mm2
    assert skips.energy_uj > plain.energy_uj
    note = "skip buffers (maps held x bits per map): layers[2] adds layers[0]: 2 x 256; "
    assert skips.notes == (note + "layers[5] concats layers[3]: 2 x 64",) and not plain.notes


def test_skip_adds_are_event_driven_and_the_buffer_depth_is_capped_at_t() -> None:
    chip = load_chip("rram-adcless-65nm")
    arch = ArchSpec.from_dict(SKIP_NET)
    lo, hi = estimate(arch, chip, 0.1), estimate(arch, chip, 0.4)
    assert hi.layers[2].components["neurons"] > lo.layers[2].components["neurons"]
    assert hi.energy_uj > lo.energy_uj
    # one timestep: the held maps can be no more than the inference's T = 1 maps
    one = ArchSpec.from_dict({**SKIP_NET, "input": {"shape": [2, 8, 8], "timesteps": 1}})
    plain = ArchSpec.from_dict(
        _without_skips({**SKIP_NET, "input": {"shape": [2, 8, 8], "timesteps": 1}})
    )
    got = (
        estimate(one, chip, 0.1).layers[2].memory_kb
        - estimate(plain, chip, 0.1).layers[2].memory_kb
    )
    assert got == pytest.approx(4 * 8 * 8 * chip.periphery.activation_bits / 8192)


@pytest.mark.parametrize(
    ("chip_name", "dataflow"),
    [
        ("spikesim-rram-64", "weight_stationary"),  # layer by layer: all T maps wait
        ("rram-adcless-65nm", "output_stationary"),  # the consumer loops over T innermost
    ],
)
def test_skip_buffer_holds_every_timestep_when_not_pipelined(chip_name: str, dataflow: str) -> None:
    chip = load_chip(chip_name)
    mapping = {**SKIP_NET["mapping"], "dataflow": dataflow}
    arch = ArchSpec.from_dict({**SKIP_NET, "mapping": mapping})
    plain = ArchSpec.from_dict(_without_skips({**SKIP_NET, "mapping": mapping}))
    got = (
        estimate(arch, chip, 0.1).layers[2].memory_kb
        - estimate(plain, chip, 0.1).layers[2].memory_kb
    )
    T, map_bits = 4, 4 * 8 * 8 * chip.periphery.activation_bits
    assert got == pytest.approx(T * map_bits / 8192)
