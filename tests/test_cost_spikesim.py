"""The spikesim-rram-64 chip file alone reproduces SpikeSim's ELA energy, area and latency.

The expected values are computed here, independently of neuronas' model, from the ELA formulas
(Moitra et al., arXiv 2210.12899; ela_spikesim.py) with the constants of DESIGN.md §5, for our
own VGG-style worked example: six 3x3 convolutions, 64x64 crossbars, T = 1, 5 and 8.

Latency: ELA advances one output neuron per PE cycle per timestep (linear in T), then prints every
latency multiplied by T once more; the chip reproduces the linear one, so ELA's printout = ours x T.
"""

from __future__ import annotations

import math

import pytest

from neuronas.hardware import Activity, Chip, estimate, load_chip
from neuronas.spec import ArchSpec

X = 64  # crossbar size
K = 3  # kernel
PE_PER_TILE = 8
PE_CYCLE_NS = 26 * (1000 / 250)  # 26 clocks at 250 MHz

# (in_ch, out_ch, in_dim, out_dim, stride); PEs per layer 1, 1, 2, 4, 8, 8 (sorted, as ELA
# requires) = 24 PEs = 3 full tiles; output channels multiples of 64
LAYERS = [
    (3, 64, 32, 32, 1),
    (64, 64, 32, 16, 2),
    (64, 128, 16, 16, 1),
    (128, 128, 16, 8, 2),
    (128, 256, 8, 8, 1),
    (256, 128, 8, 4, 2),
]


def _arch(T: int) -> ArchSpec:
    return ArchSpec.from_dict(
        {
            "name": "vgg-style-ela",
            "input": {"shape": [3, 32, 32], "timesteps": T},
            "layers": [
                {"kind": "conv", "out": o, "kernel": K, "stride": s}
                for _i, o, _di, _do, s in LAYERS
            ],
            "neuron": {"model": "lif"},
            # ELA stores 22 bits per neuron; 4-bit weights sit in one 4-bit cell, no slicing
            "precision": {"weight_bits": 4, "membrane_bits": 22},
            "mapping": {
                "adc_kind": "sar",
                "adc_bits": 4,
                "rows": X,
                "cols": X,
                "bits_per_cell": 4,
                "signed_scheme": "offset",
            },
        }
    )


def _ela_pe_counts() -> list[float]:
    return [math.ceil(i / X) * math.ceil(o / X) for i, o, *_ in LAYERS]


def ela_energy_pj(T: int) -> list[float]:
    xbar, adc, mux, sub, temp, tile_buf, htree, fetch, neuron = (
        1.76423,
        2.03084,
        0.094245,
        1.15e-6,
        0.2,
        397.0,
        19.64 * 8,
        4.64,
        1.274 * 4.0,
    )
    pe_ar = K * K * xbar + (X / 8) * (adc + mux)
    pe_cycle = (
        htree + fetch + neuron + X / 8 * pe_ar + (X / 8) * 16 * sub + (X / 8) * temp + tile_buf
    )
    return [
        pes * do * do * pe_cycle * T
        for pes, (_i, _o, _di, do, _s) in zip(_ela_pe_counts(), LAYERS, strict=True)
    ]


def ela_area_um2() -> float:
    xbar, tile_buf, temp, sub, adc, htree, mux = (
        26.2144,
        0.7391 * 64 * 128,
        484.643999,
        13411.41498,
        693.633,
        216830 * 2,
        45.9,
    )
    n_tiles = math.ceil(sum(_ela_pe_counts()) / PE_PER_TILE)
    pe_ar = K * K * xbar + (X / 8) * (adc + mux)
    tile = (X / 8) * sub + temp + tile_buf + PE_PER_TILE * pe_ar + htree
    inputs = sum(i * di * di for i, _o, di, _do, _s in LAYERS) * 0.7391 * 22
    neuron_mem = sum(o * do * do for _i, o, _di, do, _s in LAYERS[0:5]) * 0.7391 * 22
    return tile * n_tiles + inputs + neuron_mem


def ela_latency_ns(T: int) -> tuple[list[float], float]:
    """ELA's latency_gen checkpoints (a layer starts when its predecessor is 75 % done), printed as
    ELA prints them: x T once more."""
    outs = [o * do * do for _i, o, _di, do, _s in LAYERS]
    cp1 = [int(0.75 * n) * T for n in outs]
    cum = [sum(cp1[: i + 1]) for i in range(len(cp1))]
    starts = [1] + [1 + c for c in cum[:-1]]
    halts = [n * T + (0 if i == 0 else cum[i - 1]) for i, n in enumerate(outs)]
    layerwise = [(h - s) * PE_CYCLE_NS * T for h, s in zip(halts, starts, strict=True)]
    total = (halts[-1] - starts[0]) * PE_CYCLE_NS * T
    return layerwise, total


@pytest.mark.parametrize("T", [1, 5, 8])
def test_ela_energy_area_latency_from_a_chip_file(T: int) -> None:
    chip = load_chip("spikesim-rram-64")
    arch = _arch(T)
    r = estimate(arch, chip, Activity.dense(arch))
    # energy: per layer and in total
    expected = ela_energy_pj(T)
    for layer, e in zip(r.layers, expected, strict=True):
        assert layer.energy_uj == pytest.approx(e * 1e-6, rel=1e-9)
    assert r.energy_uj == pytest.approx(sum(expected) * 1e-6, rel=1e-9)
    # area
    assert r.tiles == 3
    assert r.area_mm2 == pytest.approx(ela_area_um2() * 1e-6, rel=1e-9)
    # latency: ELA's printout is ours x T, to within the one PE cycle ELA loses by counting from 1
    # (its 75 % checkpoints are whole neurons here: every layer's count is a multiple of 4)
    layerwise, total = ela_latency_ns(T)
    one_cycle_us = PE_CYCLE_NS * T * 1e-3
    for layer, lat in zip(r.layers, layerwise, strict=True):
        assert layer.latency_us * T == pytest.approx(lat * 1e-3, abs=one_cycle_us * 1.001)
    assert r.latency_us * T == pytest.approx(total * 1e-3, abs=one_cycle_us * 1.001)
    assert not r.pipelined


def test_latency_is_linear_in_timesteps() -> None:
    chip = load_chip("spikesim-rram-64")
    lat = {T: estimate(_arch(T), chip, 1.0).latency_us for T in (1, 5, 8)}
    assert lat[5] == pytest.approx(5 * lat[1], rel=1e-12)
    assert lat[8] == pytest.approx(8 * lat[1], rel=1e-12)
    # T = 1 by hand: the last layer's 128 x 4 x 4 = 2,048 output neurons after 75 % of the five
    # before (65,536 + 16,384 + 32,768 + 8,192 + 16,384 = 139,264 neurons), 104 ns each
    assert lat[1] == pytest.approx((0.75 * 139_264 + 2_048) * 104e-3, rel=1e-9)


def test_worked_example_numbers() -> None:
    # a sanity anchor for the formulas above (computed once by hand from DESIGN §5 constants):
    # PE_ar = 9 x 1.76423 + 8 x 2.125085 = 32.87875 pJ; PE cycle = 157.12 + 4.64 + 5.096
    # + 8 x 32.87875 + 8 x 16 x 1.15e-6 + 8 x 0.2 + 397 = 828.4862 pJ
    e = ela_energy_pj(5)
    assert e[0] == pytest.approx(1 * 32 * 32 * 828.48615 * 5, rel=1e-6)


def _xbar_pj(T: int, rate: float) -> list[float]:
    """SpikingJelly 2.0's SpikeSim estimator, event mode, crossbar term (op_counter/spikesim
    formulas.py + config.xbar_row_energy_pj), written out: every driven row of a 64-column crossbar
    costs 1.76423 / 8 pJ x 64 / (channels mapped on it); a conv layer drives rate x in_ch x k x k
    rows per output position and timestep (padding ignored) on each of its output-channel tiles."""
    out = []
    for i, o, _di, do, _s in LAYERS:
        tiles_in = [min(X, i - s) for s in range(0, i, X)]
        per_pos = sum(rate * c * K * K * (1.76423 / 8) * X / c for c in tiles_in)
        out.append(math.ceil(o / X) * per_pos * do * do * T)
    return out


@pytest.mark.parametrize("rate", [0.03, 0.3])
def test_crossbar_energy_per_driven_row_as_spikingjellys_event_mode(rate: float) -> None:
    """``periphery.array_energy: driven_rows`` (the preset): the crossbar energy is ELA's
    per-read energy x the driven share of each crossbar's mapped rows, i.e. linear in the rate and
    independent of how the spikes cluster into row groups (the occupancy moves only the PE terms);
    ``active_array`` charges a whole read to every crossbar holding a spike.  Dense, both are ELA."""
    chip = load_chip("spikesim-rram-64")
    per_array = Chip.model_validate(
        {
            **chip.model_dump(),
            "periphery": {**chip.periphery.model_dump(), "array_energy": "active_array"},
        }
    )
    arch = _arch(2)
    n = len(LAYERS)
    want = _xbar_pj(2, rate)
    for occ in (0.2, 0.9):
        act = Activity((rate,) * n, (rate,) * (n - 1) + (0.0,), "measured", (occ,) * n)
        got = [layer.components["arrays"] * 1e6 for layer in estimate(arch, chip, act).layers]
        assert got == pytest.approx(want, rel=1e-9)
    # whole crossbar reads: a crossbar holding a spike costs a full read, more than its driven rows
    act = Activity((rate,) * n, (rate,) * (n - 1) + (0.0,), "measured", (0.9,) * n)
    whole = [layer.components["arrays"] * 1e6 for layer in estimate(arch, per_array, act).layers]
    assert all(w > g for w, g in zip(whole, want, strict=True))
    dense = Activity.dense(arch)
    assert estimate(arch, chip, dense).energy_uj == pytest.approx(
        estimate(arch, per_array, dense).energy_uj, rel=1e-12
    )
    assert estimate(arch, chip, dense).energy_uj * 1e6 == pytest.approx(
        sum(ela_energy_pj(2)), rel=1e-9
    )
