"""Invariants of the cost model over many random architectures (hypothesis)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from neuronas.config import load_yaml, preset_dir
from neuronas.errors import SpecError
from neuronas.hardware import Chip, estimate, load_chip
from neuronas.hardware.chip import fit_to_chip
from neuronas.spec import ArchSpec


def _permissive_chip(**changes: Any) -> Chip:
    """rram-hpadc-65nm with every readout kind allowed, and a small array budget (overflow happens)."""
    d = load_yaml(preset_dir("chip") / "rram-hpadc-65nm.yaml")
    d["name"] = "permissive"
    d["periphery"].update(
        adc_kinds=["sa", "sar", "flash", "digital"], adc_bits_min=0, adc_bits_max=10
    )
    d["capacity"]["arrays"] = 64
    for path, value in changes.items():
        node = d
        *head, last = path.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = value
    return Chip.model_validate(d)


CHIP = _permissive_chip()
CHIPS = [
    CHIP,
    _permissive_chip(**{"schedule.pipeline": "layer", "schedule.start_fraction": 0.5}),
    _permissive_chip(**{"periphery.layout": "kernel_split"}),
]

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

ADC = st.sampled_from(
    [("sa", 1), ("digital", 0), ("sar", 3), ("sar", 5), ("sar", 8), ("flash", 2), ("flash", 4)]
)


@st.composite
def archs(draw: st.DrawFn, adc: Any = ADC) -> ArchSpec:
    kind, bits = draw(adc)
    family = draw(st.sampled_from(["mlp", "cnn"]))
    layers: list[dict[str, Any]] = []
    if family == "mlp":
        shape = [draw(st.integers(4, 600))]
        for _ in range(draw(st.integers(0, 3))):
            layers.append({"kind": "fc", "out": draw(st.integers(2, 300))})
    else:
        size = draw(st.sampled_from([8, 12, 16, 32]))
        shape = [draw(st.integers(1, 4)), size, size]
        for _ in range(draw(st.integers(1, 3))):
            k = draw(st.sampled_from([1, 3, 5]))
            s = draw(st.sampled_from([1, 2]))
            layers.append(
                {"kind": "conv", "out": draw(st.integers(2, 48)), "kernel": k, "stride": s}
            )
            if draw(st.booleans()):
                layers.append(
                    {"kind": "pool", "kernel": 2, "pool": draw(st.sampled_from(["max", "avg"]))}
                )
        if draw(st.booleans()):
            layers.append(
                {
                    "kind": "deconv",
                    "out": draw(st.integers(2, 16)),
                    "kernel": 4,
                    "stride": 2,
                    "padding": 1,
                }
            )
    layers.append({"kind": "fc", "out": draw(st.integers(2, 20))})
    d = {
        "input": {
            "shape": shape,
            "timesteps": draw(st.integers(1, 12)),
            "encoding": draw(st.sampled_from(["events", "rate", "direct"])),
        },
        "layers": layers,
        "neuron": {"model": draw(st.sampled_from(["lif", "ld_lif", "if"]))},
        "precision": {
            "weight_bits": draw(st.integers(1, 8)),
            "membrane_bits": draw(st.integers(4, 16)),
        },
        "mapping": {
            "adc_kind": kind,
            "adc_bits": bits,
            "rows": draw(st.sampled_from([16, 32, 64, 128, 256])),
            "cols": draw(st.sampled_from([16, 32, 64, 128, 256])),
            "bits_per_cell": draw(st.integers(1, 2)),
            "signed_scheme": draw(st.sampled_from(["differential", "offset"])),
            "dataflow": draw(st.sampled_from(["weight_stationary", "output_stationary"])),
        },
    }
    try:
        return ArchSpec.from_dict(d)
    except SpecError:
        assume(False)
        raise


def _values(r: Any) -> list[float]:
    vals = [r.energy_uj, r.latency_us, r.area_mm2, r.memory_kb, r.sops, r.utilisation]
    vals += list(r.components.values()) + list(r.area_components.values())
    for layer in r.layers:
        vals += [layer.energy_uj, layer.latency_us, layer.area_mm2, layer.stage_ns, layer.memory_kb]
        vals += list(layer.components.values())
    return vals


@SETTINGS
@given(arch=archs(), rate=st.floats(0.0, 1.0), chip_i=st.integers(0, len(CHIPS) - 1))
def test_costs_are_finite_and_non_negative(arch: ArchSpec, rate: float, chip_i: int) -> None:
    r = estimate(arch, CHIPS[chip_i], rate)
    for v in _values(r):
        assert math.isfinite(v) and v >= 0, (v, r.to_dict())
    assert r.energy_uj > 0 and r.latency_us > 0 and r.area_mm2 > 0
    assert sum(r.components.values()) == pytest.approx(r.energy_uj, rel=1e-9)
    assert sum(layer.energy_uj for layer in r.layers) == pytest.approx(r.energy_uj, rel=1e-9)


@SETTINGS
@given(
    arch=archs(),
    r1=st.floats(0.0, 1.0),
    r2=st.floats(0.0, 1.0),
    chip_i=st.integers(0, len(CHIPS) - 1),
)
def test_energy_and_latency_never_fall_as_spike_rates_rise(
    arch: ArchSpec, r1: float, r2: float, chip_i: int
) -> None:
    lo, hi = sorted((r1, r2))
    a, b = estimate(arch, CHIPS[chip_i], lo), estimate(arch, CHIPS[chip_i], hi)
    assert a.energy_uj <= b.energy_uj * (1 + 1e-12)
    assert a.latency_us <= b.latency_us * (1 + 1e-12)
    for c in a.components:
        assert a.components[c] <= b.components[c] * (1 + 1e-12) + 1e-18, c


# every row of an array driven at once whatever the ADC resolution (a design that accepts clipping)
ALL_ROWS = _permissive_chip(**{"periphery.max_active_rows": 4096})
MULTIBIT = st.sampled_from([("sar", b) for b in range(2, 9)] + [("flash", b) for b in range(2, 8)])


@SETTINGS
@given(arch=archs(adc=MULTIBIT), rate=st.floats(0.01, 1.0))
def test_more_adc_bits_never_make_conversion_cheaper(arch: ArchSpec, rate: float) -> None:
    # with the rows per read fixed, a wider ADC only costs more per conversion
    m = arch.mapping
    more = arch.with_(mapping=m.__class__(**{**m.to_dict(), "adc_bits": m.adc_bits + 1}))
    a, b = estimate(arch, ALL_ROWS, rate), estimate(more, ALL_ROWS, rate)
    assert a.components["conversion"] <= b.components["conversion"]
    assert a.area_components["conversion"] <= b.area_components["conversion"]
    assert a.latency_us <= b.latency_us * (1 + 1e-12)
    assert a.energy_uj <= b.energy_uj


@SETTINGS
@given(arch=archs(adc=MULTIBIT), rate=st.floats(0.01, 1.0))
def test_more_adc_bits_never_need_more_row_phases(arch: ArchSpec, rate: float) -> None:
    # rows per read derived from the ADC resolution: a wider ADC resolves more rows at once, so
    # it never needs more phases (nor conversions), and reading all rows at once is the floor
    m = arch.mapping
    more = arch.with_(mapping=m.__class__(**{**m.to_dict(), "adc_bits": m.adc_bits + 1}))
    a, b, flat = (
        estimate(arch, CHIP, rate),
        estimate(more, CHIP, rate),
        estimate(arch, ALL_ROWS, rate),
    )
    for la, lb, lf in zip(a.layers, b.layers, flat.layers, strict=True):
        assert la.row_phases >= lb.row_phases >= lf.row_phases == 1
        assert la.conversions >= lb.conversions * (1 - 1e-12)
        assert la.conversions >= lf.conversions * (1 - 1e-12)
        assert la.array_ns >= lf.array_ns * (1 - 1e-12)


@SETTINGS
@given(
    arch=archs(),
    rate=st.floats(0.0, 1.0),
    chip_i=st.integers(0, len(CHIPS) - 1),
    extra=st.integers(1, 8),
)
def test_more_timesteps_never_cost_less(
    arch: ArchSpec, rate: float, chip_i: int, extra: int
) -> None:
    longer = arch.with_(
        input=arch.input.__class__(
            arch.input.shape, arch.input.timesteps + extra, arch.input.encoding
        )
    )
    a, b = estimate(arch, CHIPS[chip_i], rate), estimate(longer, CHIPS[chip_i], rate)
    for metric in ("energy_uj", "latency_us", "area_mm2", "memory_kb"):
        assert a.metric(metric) <= b.metric(metric) * (1 + 1e-12), metric


# neuron units fast enough never to be the bottleneck, so the comparison is about the readout
FAST_NEURONS = _permissive_chip(
    **{"overrides.neuron_update_ns": 1e-3, "periphery.neuron_unit.units_per_layer": 4096}
)


@SETTINGS
@given(
    arch=archs(adc=st.just(("sa", 1))), bits=st.integers(2, 8), rate=st.floats(0.01, 1.0)
)  # no spikes: nothing to convert
def test_sense_amp_per_column_is_faster_than_a_shared_adc(
    arch: ArchSpec, bits: int, rate: float
) -> None:
    m = arch.mapping.to_dict()
    sar = arch.with_(mapping=arch.mapping.__class__(**{**m, "adc_kind": "sar", "adc_bits": bits}))
    flash = arch.with_(
        mapping=arch.mapping.__class__(**{**m, "adc_kind": "flash", "adc_bits": bits})
    )
    t_sa = estimate(arch, FAST_NEURONS, rate).latency_us
    # a SAR ADC takes b+1 >= 3 cycles per conversion, and 8 columns queue on it
    assert t_sa < estimate(sar, FAST_NEURONS, rate).latency_us
    # a flash ADC decides in one cycle like the SA, but the columns sharing it still queue
    assert t_sa <= estimate(flash, FAST_NEURONS, rate).latency_us


@SETTINGS
@given(arch=archs())
def test_every_shipped_chip_prices_random_archs_fitted_to_it(arch: ArchSpec) -> None:
    from neuronas.config import list_presets

    for name in list_presets("chip"):
        chip = load_chip(name)
        r = estimate(fit_to_chip(arch, chip), chip)
        assert all(math.isfinite(v) and v >= 0 for v in _values(r))
