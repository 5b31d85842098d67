"""Crossbar layers: ideal equivalence, hand-checked quantizers and per-group conversion, noise."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuronas.snn.crossbar import (
    CrossbarConfig,
    CrossbarConv2d,
    CrossbarConvTranspose2d,
    CrossbarLinear,
    DeviceModel,
    adc_quantize,
    quantize_weight,
    sense_amp,
    zero_inserted,
)

SA64 = CrossbarConfig(weight_bits=4, adc_bits=1, adc_kind="sa", rows=64, bits_per_cell=1)
NOISY = DeviceModel(
    program_sigma=0.1,
    read_noise_sigma=0.02,
    stuck_off_rate=0.01,
    stuck_on_rate=0.005,
    on_off_ratio=50,
)


def _spikes(*shape: int, p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


# -- awareness 0 is the plain layer ------------------------------------------------------------


def test_linear_awareness_zero_equals_nn_linear_even_on_a_noisy_chip() -> None:
    torch.manual_seed(0)
    xb = CrossbarLinear(300, 40, SA64, NOISY)
    ref = nn.Linear(300, 40)
    ref.load_state_dict({"weight": xb.weight.detach(), "bias": xb.bias.detach()})
    x = torch.randn(17, 300)
    assert torch.allclose(xb(x), ref(x), atol=1e-6)
    xb.eval()
    assert torch.allclose(xb(x), ref(x), atol=1e-6)


def test_conv_awareness_zero_equals_nn_conv2d() -> None:
    torch.manual_seed(0)
    xb = CrossbarConv2d(3, 8, 3, stride=2, padding=1, config=SA64, device_model=NOISY)
    ref = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    ref.load_state_dict(xb.state_dict(), strict=False)
    x = torch.randn(4, 3, 11, 11)
    assert torch.allclose(xb(x), ref(x), atol=1e-6)


def test_state_dict_holds_the_learned_converter_but_not_the_chip_instance() -> None:
    xb = CrossbarLinear(10, 4, SA64, NOISY)
    keys = set(xb.state_dict())
    assert {"weight", "bias", "w_step", "adc_step", "sa_ref", "calibrated"} <= keys
    assert not any(k.startswith("_prog") or k.startswith("_fault") for k in keys)


# -- the pure quantizers -------------------------------------------------------------------------


def test_quantize_weight_golden_and_ste() -> None:
    w = torch.tensor([-1.0, -0.26, 0.0, 0.12, 0.13, 0.49, 2.0], requires_grad=True)
    q = quantize_weight(w, torch.tensor(0.25), -3, 3)
    assert q.tolist() == [-3.0, -1.0, 0.0, 0.0, 1.0, 2.0, 3.0]
    q.sum().backward()
    # straight through inside the range, zero where clamped
    assert w.grad.tolist() == pytest.approx([0, 4, 4, 4, 4, 4, 0])
    # the step's gradient is that of the composed ops (LSQ through w / step)
    w2, step = w.detach().clone().requires_grad_(), torch.tensor(0.25, requires_grad=True)
    gy = torch.linspace(-1.0, 1.0, 7)
    (quantize_weight(w2, step, -3, 3) * gy).sum().backward()
    w3, step3 = w.detach().clone().requires_grad_(), torch.tensor(0.25, requires_grad=True)
    v = torch.clamp(w3 / step3, -3, 3)
    ((v + (torch.round(v) - v).detach()) * gy).sum().backward()
    assert torch.allclose(step.grad, step3.grad) and torch.allclose(w2.grad, w3.grad)


def test_adc_quantize_golden() -> None:
    p = torch.tensor([-9.0, -2.2, 0.4, 1.2, 5.2, 100.0])
    out = adc_quantize(p, torch.tensor(2.0), -4, 3)  # a 3-bit signed ADC with 2.0 per code
    assert out.tolist() == pytest.approx([-8.0, -2.0, 0.0, 2.0, 6.0, 6.0])


def test_sense_amp_golden_and_window_gradient() -> None:
    p = torch.tensor([-3.0, -0.5, 0.0, 0.4, 0.6, 3.0], requires_grad=True)
    out = sense_amp(p, torch.tensor(1.0), torch.tensor(0.5), bipolar=True)
    assert out.tolist() == [-1.0, -1.0, -1.0, -1.0, 1.0, 1.0]
    out.sum().backward()
    assert p.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # |p - ref| <= step
    uni = sense_amp(p.detach(), torch.tensor(2.0), torch.tensor(0.5), bipolar=False)
    assert uni.tolist() == [0.0, 0.0, 0.0, 0.0, 2.0, 2.0]
    # the step is a pure output level: its gradient is the decision itself; the reference
    # passes straight through (-1 per element inside the window)
    step, ref = torch.tensor(1.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    sense_amp(p.detach(), step, ref).sum().backward()
    assert float(step.grad) == -1 - 1 - 1 - 1 + 1 + 1
    assert float(ref.grad) == -4.0


# -- per-group conversion, checked against a hand-written loop -----------------------------------


def _manual(x: torch.Tensor, q: torch.Tensor, rows: int, convert) -> torch.Tensor:
    """Loop over row groups: each group's partial sum converted on its own, idle groups skipped."""
    out = torch.zeros(x.shape[0], q.shape[0])
    for g0 in range(0, q.shape[1], rows):
        xs, qs = x[:, g0 : g0 + rows], q[:, g0 : g0 + rows]
        psum = xs @ qs.t()
        active = (xs.abs().sum(1, keepdim=True) > 0).float()
        out += convert(psum) * active
    return out


def _set_levels(layer: CrossbarLinear, q: torch.Tensor, step: float = 0.1) -> None:
    with torch.no_grad():
        layer.weight.copy_(q * step)
        layer.w_step.fill_(step)
        layer.bias.zero_()
        layer.calibrated.fill_(True)


def test_sense_amp_per_row_group_matches_hand_loop() -> None:
    torch.manual_seed(0)
    cfg = CrossbarConfig(
        weight_bits=2, adc_bits=1, adc_kind="sa", rows=4, bits_per_cell=2
    )  # one slice
    layer = CrossbarLinear(10, 3, cfg)  # 3 row groups of 4, the last one half empty
    q = torch.randint(-3, 4, (3, 10)).float()
    _set_levels(layer, q)
    with torch.no_grad():
        layer.adc_step.fill_(0.5)
        layer.sa_ref.copy_(torch.tensor([[0.5, -0.5, 1.5]]))
    x = _spikes(16, 10, p=0.25)
    x[0] = 0.0  # an input with no spike at all: every group idle, output 0
    x[1, :4] = 0.0  # group 0 idle for this one
    layer.hardware_awareness = 1.0
    ref = torch.tensor([0.5, -0.5, 1.5])
    want = _manual(x, q, 4, lambda p: 0.5 * torch.where(p - ref >= 0, 1.0, -1.0)) * 0.1
    assert torch.allclose(layer(x), want, atol=1e-6)
    assert torch.equal(layer(x)[0], torch.zeros(3))


def test_adc_per_row_group_matches_hand_loop_and_differs_from_one_big_group() -> None:
    torch.manual_seed(1)
    cfg = CrossbarConfig(weight_bits=3, adc_bits=3, adc_kind="sar", rows=8, bits_per_cell=3)
    layer = CrossbarLinear(24, 5, cfg)
    q = torch.randint(-7, 8, (5, 24)).float()
    _set_levels(layer, q)
    with torch.no_grad():
        layer.adc_step.fill_(2.0)
    x = _spikes(32, 24, p=0.4)
    layer.hardware_awareness = 1.0
    want = _manual(x, q, 8, lambda p: 2.0 * torch.clamp(torch.round(p / 2.0), -4, 3)) * 0.1
    got = layer(x)
    assert torch.allclose(got, want, atol=1e-5)
    exact = x @ (q * 0.1).t()
    assert not torch.allclose(got, exact, atol=1e-3)  # the ADC really quantizes each partial sum


def test_digital_cim_is_exact_on_quantized_weights() -> None:
    cfg = CrossbarConfig(weight_bits=4, adc_bits=0, adc_kind="digital", rows=16, bits_per_cell=1)
    layer = CrossbarLinear(50, 7, cfg)
    q = torch.randint(-15, 16, (7, 50)).float()
    _set_levels(layer, q, step=0.05)
    x = _spikes(9, 50)
    layer.hardware_awareness = 1.0
    assert torch.allclose(layer(x), x @ (q * 0.05).t(), atol=1e-5)


def test_bit_slices_each_get_their_own_converter() -> None:
    """4-bit weights on 1-bit cells: 4 slices, each summed by its own 8-bit ADC and shifted back;
    with a fine ADC the result equals the exact product."""
    cfg = CrossbarConfig(weight_bits=4, adc_bits=8, adc_kind="sar", rows=8, bits_per_cell=1)
    layer = CrossbarLinear(16, 3, cfg)
    q = torch.randint(-15, 16, (3, 16)).float()
    _set_levels(layer, q)
    with torch.no_grad():
        layer.adc_step.fill_(1.0)  # integer partial sums <= 8 fit exactly
    x = _spikes(5, 16, p=0.5)
    layer.hardware_awareness = 1.0
    assert layer.adc_step.shape == (4, 3)
    assert torch.allclose(layer(x), x @ (q * 0.1).t(), atol=1e-5)


def test_conv_hardware_path_equals_linear_on_im2col() -> None:
    torch.manual_seed(0)
    cfg = CrossbarConfig(weight_bits=3, adc_bits=4, adc_kind="sar", rows=10, bits_per_cell=3)
    conv = CrossbarConv2d(2, 4, 3, stride=1, padding=1, config=cfg)
    lin = CrossbarLinear(18, 4, cfg)
    lin.load_state_dict(
        {k: v for k, v in conv.state_dict().items() if k != "weight"}
        | {"weight": conv.weight.detach().view(4, 18)}
    )
    with torch.no_grad():
        for m in (conv, lin):
            m.w_step.fill_(0.05)
            m.adc_step.fill_(0.7)
            m.calibrated.fill_(True)
            m.hardware_awareness = 1.0
    x = _spikes(3, 2, 6, 6)
    cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 18)  # [B*P, K]
    want = lin(cols).view(3, 36, 4).transpose(1, 2).reshape(3, 4, 6, 6)
    assert torch.allclose(conv(x), want, atol=1e-5)


def test_awareness_interpolates_between_ideal_and_chip() -> None:
    torch.manual_seed(0)
    layer = CrossbarLinear(64, 8, SA64)
    x = _spikes(10, 64)
    y0 = layer(x)
    layer.hardware_awareness = 1.0
    y1 = layer(x)
    layer.hardware_awareness = 0.25
    assert torch.allclose(layer(x), 0.75 * y0 + 0.25 * y1, atol=1e-5)


@pytest.mark.parametrize("kind,bits", [("sa", 1), ("sar", 4), ("digital", 0)])
def test_gradients_reach_weights_and_converters(kind: str, bits: int) -> None:
    torch.manual_seed(0)
    cfg = CrossbarConfig(weight_bits=4, adc_bits=bits, adc_kind=kind, rows=16, bits_per_cell=2)
    layer = CrossbarLinear(40, 6, cfg, NOISY)
    layer.hardware_awareness = 1.0
    x = _spikes(12, 40).requires_grad_()
    (layer(x) * torch.randn(12, 6)).sum().backward()
    assert layer.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    assert layer.w_step.grad is not None and math.isfinite(float(layer.w_step.grad))
    if kind != "digital":
        assert layer.adc_step.grad.abs().sum() > 0
    if kind == "sa":
        assert layer.sa_ref.grad.abs().sum() > 0


def test_fused_converter_gradients_match_the_pure_functions() -> None:
    """The fused autograd path gives the same gradients as composing sense_amp / adc_quantize."""
    torch.manual_seed(0)
    for cfg in (
        CrossbarConfig(weight_bits=2, adc_bits=1, adc_kind="sa", rows=4, bits_per_cell=2),
        CrossbarConfig(weight_bits=2, adc_bits=3, adc_kind="sar", rows=4, bits_per_cell=2),
    ):
        layer = CrossbarLinear(12, 3, cfg)
        with torch.no_grad():
            layer.w_step.fill_(0.1)
            layer.adc_step.uniform_(0.5, 1.5)
            if layer.sa_ref is not None:
                layer.sa_ref.uniform_(-0.5, 0.5)
            layer.calibrated.fill_(True)
        layer.hardware_awareness = 1.0
        x = _spikes(20, 12, p=0.4)
        x[:5, :4] = 0.0  # idle groups
        gy = torch.randn(20, 3)
        (layer(x) * gy).sum().backward()
        got = (
            layer.weight.grad.clone(),
            layer.adc_step.grad.clone(),
            None if layer.sa_ref is None else layer.sa_ref.grad.clone(),
        )
        layer.zero_grad()
        q = quantize_weight(layer.weight, layer.w_step, *cfg.weight_range)
        step = layer.adc_step.abs() + 1e-8
        y = 0
        for g0 in range(0, 12, 4):
            xs = x[:, g0 : g0 + 4]
            p = xs @ q[:, g0 : g0 + 4].t()
            act = (xs.sum(1, keepdim=True) > 0).float()
            if cfg.adc_kind == "sa":
                y = y + sense_amp(p, step[0], layer.sa_ref[0]) * act
            else:
                y = y + adc_quantize(p, step[0], *cfg.adc_range)
        (y * layer.w_step * gy).sum().backward()
        assert torch.allclose(got[0], layer.weight.grad, atol=1e-4)
        assert torch.allclose(got[1], layer.adc_step.grad, atol=1e-4)
        if got[2] is not None:
            assert torch.allclose(got[2], layer.sa_ref.grad, atol=1e-4)


# -- device noise ----------------------------------------------------------------------------------


def test_chip_instances_are_reproducible_and_distinct() -> None:
    torch.manual_seed(0)
    dev = DeviceModel(program_sigma=0.2)
    cfg = CrossbarConfig(weight_bits=4, adc_bits=0, adc_kind="digital", rows=32)
    layer = CrossbarLinear(64, 8, cfg, dev).eval()
    layer.hardware_awareness = 1.0
    x = _spikes(6, 64)
    layer.resample_chip_instance(1)
    a = layer(x)
    assert torch.equal(layer(x), a)  # no read noise: the same chip reads the same
    layer.resample_chip_instance(2)
    b = layer(x)
    assert not torch.allclose(a, b)
    layer.resample_chip_instance(1)
    assert torch.equal(layer(x), a)


def test_read_noise_changes_every_forward() -> None:
    layer = CrossbarLinear(
        64, 8, CrossbarConfig(adc_kind="digital", adc_bits=0), DeviceModel(read_noise_sigma=0.05)
    ).eval()
    layer.hardware_awareness = 1.0
    x = _spikes(6, 64)
    assert not torch.allclose(layer(x), layer(x))


def test_all_cells_stuck_off_leaves_only_the_bias() -> None:
    layer = CrossbarLinear(
        32, 4, CrossbarConfig(adc_kind="digital", adc_bits=0), DeviceModel(stuck_off_rate=1.0)
    ).eval()
    layer.hardware_awareness = 1.0
    x = _spikes(5, 32)
    assert torch.allclose(layer(x), layer.bias.detach().expand(5, 4), atol=1e-6)


def test_offset_scheme_digital_is_exact() -> None:
    cfg = CrossbarConfig(
        weight_bits=4,
        adc_bits=0,
        adc_kind="digital",
        rows=8,
        bits_per_cell=2,
        signed_scheme="offset",
    )
    layer = CrossbarLinear(20, 3, cfg)
    q = torch.randint(-8, 8, (3, 20)).float()
    _set_levels(layer, q)
    layer.hardware_awareness = 1.0
    x = _spikes(4, 20)
    assert torch.allclose(layer(x), x @ (q * 0.1).t(), atol=1e-5)


def test_conv_transpose_builds_and_quantizes() -> None:
    torch.manual_seed(0)
    layer = CrossbarConvTranspose2d(
        4, 2, 2, stride=2, config=CrossbarConfig(adc_kind="digital", adc_bits=0)
    )
    x = _spikes(3, 4, 5, 5)
    y0 = layer(x)
    assert y0.shape == (3, 2, 10, 10)
    assert torch.allclose(y0, F.conv_transpose2d(x, layer.weight, layer.bias, 2))
    layer.hardware_awareness = 1.0
    y1 = layer(x)
    assert y1.shape == y0.shape and not torch.allclose(y0, y1)


@pytest.mark.gpu
def test_crossbar_on_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    layer = CrossbarLinear(100, 8, SA64)
    x = _spikes(16, 100)
    layer.hardware_awareness = 1.0
    want = layer(x)
    got = layer.cuda()(x.cuda())
    assert torch.allclose(got.cpu(), want, atol=1e-4)


# -- the event-driven CPU kernels against the tensor-op twin ----------------------------------------


def _case_config(kind: str, bits: int, scheme: str, bpc: int, rows: int) -> CrossbarConfig:
    """4-bit weights with a parametrised converter, scheme, cells and rows (the cases' tuple)."""
    return CrossbarConfig(
        weight_bits=4,
        adc_bits=bits,
        adc_kind=kind,
        rows=rows,
        bits_per_cell=bpc,
        signed_scheme=scheme,
    )


def all_calls_on_parallel_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every numba kernel call on its parallel twin when torch has several threads, whatever its
    size (the test layers are under ``_kernels.PARALLEL_MIN_WORK``)."""
    from neuronas.snn import _kernels

    monkeypatch.setattr(_kernels, "PARALLEL_MIN_WORK", dict.fromkeys(_kernels.PARALLEL_MIN_WORK, 0))


def _fwd_bwd(layer: nn.Module, x: torch.Tensor, gy_seed: int = 3) -> list[torch.Tensor]:
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    y = layer(x)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(gy_seed))
    (y * gy).sum().backward()
    grads = [p.grad.clone() for _, p in sorted(layer.named_parameters()) if p.grad is not None]
    return [y.detach(), x.grad.clone(), *grads]


@pytest.mark.parametrize(
    "kind,bits,scheme,bpc,rows",
    [
        ("sa", 1, "differential", 1, 16),
        ("sa", 1, "differential", 2, 40),
        ("sa", 1, "offset", 1, 16),
        ("sa", 1, "offset", 2, 40),
        ("sar", 4, "differential", 1, 16),
        ("sar", 4, "differential", 2, 40),
        ("sar", 3, "offset", 1, 16),
        ("flash", 3, "offset", 2, 40),
    ],
)
def test_event_driven_kernels_match_the_tensor_op_path(
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    bits: int,
    scheme: str,
    bpc: int,
    rows: int,
) -> None:
    """Same outputs and gradients from the numba kernels and the dense tensor ops (spike inputs
    and integer weights: the partial sums are exact in either summation order)."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: only the tensor-op path runs")
    torch.manual_seed(0)
    cfg = _case_config(kind, bits, scheme, bpc, rows)
    layers = [CrossbarLinear(70, 12, cfg), CrossbarConv2d(3, 5, 3, padding=1, config=cfg)]
    inputs = [_spikes(33, 70, p=0.1, seed=1), _spikes(4, 3, 6, 6, p=0.2, seed=2)]
    for layer, x in zip(layers, inputs, strict=True):
        layer.hardware_awareness = 1.0
        layer(x)  # calibrate the converters
        if layer.sa_ref is not None:
            with torch.no_grad():
                layer.sa_ref.normal_(0.0, 0.3)
        monkeypatch.setenv("NEURONAS_NO_NUMBA", "1")
        want = _fwd_bwd(layer, x)
        monkeypatch.delenv("NEURONAS_NO_NUMBA")
        for _ in range(2):  # twice: the kernels' outputs are fresh, uninitialised memory
            got = _fwd_bwd(layer, x)
            for a, b in zip(got, want, strict=True):
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)  # float sums in another order


def test_idle_groups_pass_no_gradient_through_skipped_sense_amplifiers() -> None:
    torch.manual_seed(0)
    layer = CrossbarLinear(
        64, 4, CrossbarConfig(weight_bits=2, adc_bits=1, adc_kind="sa", rows=16, bits_per_cell=2)
    )
    layer.hardware_awareness = 1.0
    x = torch.zeros(8, 64)
    x[:, :16] = _spikes(8, 16, p=0.5)  # only the first row group is ever driven
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad[:, 16:].abs().sum() == 0
    assert x.grad[:, :16].abs().sum() > 0


# -- convolutions through one grouped conv2d, against the im2col reference -----------------------


def _trained_like(layer: Any) -> None:
    """Weights, bias, weight step, converter steps and references away from their initial
    values (as training leaves them), the converters marked calibrated."""
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.3)
        layer.bias.normal_(0.0, 0.1)
        layer.w_step.fill_(0.07)
        layer.adc_step.uniform_(0.6, 1.6)
        if layer.sa_ref is not None:
            layer.sa_ref.normal_(0.0, 0.4)
        layer.calibrated.fill_(True)


def _conv_and_reference(
    cfg: CrossbarConfig,
    stride: int,
    padding: int,
    device: DeviceModel | None = None,
    c_in: int = 3,
    c_out: int = 5,
) -> tuple[CrossbarConv2d, CrossbarLinear]:
    """A conv layer and the same weights as a linear layer on im2col columns (the reference: the
    layers' shared per-group conversion, tested against hand loops above)."""
    torch.manual_seed(0)
    conv = CrossbarConv2d(
        c_in, c_out, 3, stride=stride, padding=padding, config=cfg, device_model=device
    )
    lin = CrossbarLinear(c_in * 9, c_out, cfg, device)
    _trained_like(conv)
    lin.load_state_dict(
        {k: v for k, v in conv.state_dict().items() if k != "weight"}
        | {"weight": conv.weight.detach().view(c_out, -1)}
    )
    for m in (conv, lin):
        m.hardware_awareness = 1.0
    return conv, lin


def _conv_grads(
    layer: nn.Module, x: torch.Tensor, fwd: Any, gy_mask: torch.Tensor | None = None
) -> list[torch.Tensor]:
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    y = fwd(x)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
    if gy_mask is not None:
        gy = gy * gy_mask
    (y * gy).sum().backward()
    names = ("weight", "bias", "w_step", "adc_step", "sa_ref")
    grads = [getattr(layer, n).grad for n in names if getattr(layer, n, None) is not None]
    return [y.detach(), x.grad.clone(), *(g.clone().view(-1) for g in grads if g is not None)]


CONV_CASES = [  # (kind, adc bits, scheme, bits per cell, rows): rows that cut kernels (16, 10, 7, 20), hold whole ones (9, 27)
    ("sa", 1, "differential", 1, 16),
    ("sa", 1, "differential", 2, 9),
    ("sa", 1, "offset", 1, 20),
    ("sa", 1, "offset", 2, 7),
    ("sar", 4, "differential", 1, 10),
    ("sar", 3, "differential", 2, 27),
    ("sar", 3, "offset", 1, 16),
    ("flash", 2, "offset", 2, 9),
    ("digital", 0, "differential", 1, 16),
    ("digital", 0, "offset", 2, 10),
]


@pytest.mark.parametrize("kind,bits,scheme,bpc,rows", CONV_CASES)
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (2, 1)])
@pytest.mark.parametrize("numba", [True, False])
def test_grouped_conv_path_equals_the_im2col_reference(
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    bits: int,
    scheme: str,
    bpc: int,
    rows: int,
    stride: int,
    padding: int,
    numba: bool,
) -> None:
    """Outputs and every gradient (input, weights, weight step, bias, converter steps and
    references) of the grouped-conv path equal the linear layer's on im2col columns; on the numba
    kernels and on the tensor-op path CUDA runs."""
    from neuronas.snn import _kernels

    if numba and not _kernels.available():
        pytest.skip("numba is not importable here: only the tensor-op path runs")
    if not numba:
        monkeypatch.setenv("NEURONAS_NO_NUMBA", "1")
    cfg = _case_config(kind, bits, scheme, bpc, rows)
    conv, lin = _conv_and_reference(cfg, stride, padding)
    x = _spikes(4, 3, 7, 7, p=0.25, seed=2)
    x[0, :, :4, :4] = 0.0  # idle row groups at some positions
    x[1] *= 0.5  # not only spikes: pooled inputs reach a conv too

    def reference(xx: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(xx, 3, padding=padding, stride=stride)  # [B, K, P]
        oh = (7 + 2 * padding - 3) // stride + 1
        return (
            lin(cols.transpose(1, 2).reshape(-1, 27))
            .view(4, oh * oh, 5)
            .transpose(1, 2)
            .reshape(4, 5, oh, oh)
        )

    got = _conv_grads(conv, x, conv)
    want = _conv_grads(lin, x, reference)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)  # float sums in another order


def test_the_conv_cases_take_both_layouts_of_the_backward() -> None:
    """The conv backward kernel runs the converters position-minor for layers with fewer than
    ``FEW_SUMS`` partial sums per output position (a few-channel readout) when most positions
    get a gradient, and position by position otherwise: the reference cases have both kinds of
    layer, checked with dense and sparse gradients (the test below), kept codes and the
    parallel twins (cases 0, 3 and 4)."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: the layouts are the kernels'")
    from neuronas.snn._kernels_nb import FEW_SUMS

    sums = []
    for case in CONV_CASES:
        if case[0] == "digital":
            continue  # summed exactly: no converters
        conv, _ = _conv_and_reference(_case_config(*case), 1, 1)
        sums.append(conv.slice_weight.numel() * conv.out_channels)
    few = [k < FEW_SUMS for k in sums]
    assert any(few) and not all(few), sums
    assert [few[i] for i in (0, 3, 4, 7)] == [False, True, False, True]


@pytest.mark.parametrize("kind,bits,scheme,bpc,rows", [CONV_CASES[i] for i in (0, 3, 4, 7)])
@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_conv_sparse_output_gradient_equals_the_im2col_reference(
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    bits: int,
    scheme: str,
    bpc: int,
    rows: int,
    threads: int,
) -> None:
    """The backward kernel skips what receives no gradient (a whole item, output positions,
    single columns, as behind a max-pool or a surrogate's window) and takes the input's gradient
    over the non-zero partial-sum gradients only: the same gradients as the reference, on one
    thread and on numba's parallel kernels."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: the skips are the kernels'")
    cfg = _case_config(kind, bits, scheme, bpc, rows)
    conv, lin = _conv_and_reference(cfg, 1, 1)
    x = _spikes(5, 3, 8, 8, p=0.25, seed=7)
    x[3] *= 0.5
    mask = (torch.rand(5, 5, 8, 8, generator=torch.Generator().manual_seed(8)) < 0.25).float()
    mask[1] = 0.0  # an item with no gradient at all
    mask[2, :, :3, :] = 0.0  # positions with none
    mask[4] = 1.0  # one dense item

    def reference(xx: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(xx, 3, padding=1)  # [B, 27, 64]
        return (
            lin(cols.transpose(1, 2).reshape(-1, 27))
            .view(5, 64, 5)
            .transpose(1, 2)
            .reshape(5, 5, 8, 8)
        )

    all_calls_on_parallel_twins(monkeypatch)  # on two threads
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = _conv_grads(conv, x, conv, mask)
    finally:
        torch.set_num_threads(before)
    want = _conv_grads(lin, x, reference, mask)
    assert float(got[1][1].abs().sum()) == 0.0  # the item without gradient passes none
    assert float(got[1].abs().sum()) > 0.0
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_lowest_set_bit_of_every_word() -> None:
    """The backward walks a pixel's non-zero input slots by the lowest set bit of its mask word
    (a de Bruijn multiply): every one of the 64 bit positions, whatever lies above it."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: the bit walk is the kernels'")
    import numpy as np

    from neuronas.snn._kernels_nb import DE_BRUIJN_BIT, lowest_bit

    rng = np.random.default_rng(0)
    for b in range(64):
        low = np.uint64(1) << np.uint64(b)
        above = np.uint64(rng.integers(0, 2**63, dtype=np.int64)) << np.uint64(1)
        above = (above >> np.uint64(b + 1)) << np.uint64(b + 1) if b < 63 else np.uint64(0)
        assert lowest_bit(low, DE_BRUIJN_BIT) == b
        assert lowest_bit(low | above, DE_BRUIJN_BIT) == b


@pytest.mark.parametrize("kind,bits", [("sa", 1), ("sar", 3)])
def test_a_group_of_more_input_channels_than_a_mask_word_holds_equals_the_reference(
    kind: str, bits: int
) -> None:
    """The backward reads a row group's non-zero inputs through one bit-mask word per pixel when
    the group holds at most ``MASK_SLOTS`` input channels (every other case here), through
    compressed rows above that: a group of ``MASK_SLOTS + 2`` whole kernels takes the second
    (with enough partial sums per position not to take the few-sum layout)."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: the two layouts are the kernels'")
    from neuronas.snn._kernels_nb import FEW_SUMS, MASK_SLOTS

    c_in = MASK_SLOTS + 2
    cfg = _case_config(kind, bits, "differential", 1, 9 * c_in)
    conv, lin = _conv_and_reference(cfg, 1, 1, c_in=c_in)
    assert conv.row_groups == 1 and conv.slice_weight.numel() * conv.out_channels >= FEW_SUMS
    x = _spikes(3, c_in, 5, 5, p=0.2, seed=4)
    x[1] *= 0.5

    def reference(xx: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(xx, 3, padding=1)  # [B, 9 * c_in, 25]
        return (
            lin(cols.transpose(1, 2).reshape(-1, 9 * c_in))
            .view(3, 25, 5)
            .transpose(1, 2)
            .reshape(3, 5, 5, 5)
        )

    got = _conv_grads(conv, x, conv)
    want = _conv_grads(lin, x, reference)
    assert float(got[2].abs().sum()) > 0.0  # the weights get a gradient
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_grouped_conv_equals_reference_on_a_noisy_chip_instance() -> None:
    """Programming variation, stuck cells and off-state conductance of one chip instance (the
    same draws for both layers: the cells are laid out alike)."""
    dev = DeviceModel(program_sigma=0.1, stuck_off_rate=0.02, stuck_on_rate=0.01, on_off_ratio=30)
    cfg = CrossbarConfig(weight_bits=4, adc_bits=4, adc_kind="sar", rows=16, bits_per_cell=2)
    conv, lin = _conv_and_reference(cfg, 1, 1, dev)
    for m in (conv, lin):
        m.eval()
        m.resample_chip_instance(7)
    x = _spikes(3, 3, 6, 6, p=0.3, seed=4)
    cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 27)
    want = lin(cols).view(3, 36, 5).transpose(1, 2).reshape(3, 5, 6, 6)
    assert torch.allclose(conv(x), want, rtol=1e-4, atol=1e-4)


def test_grouped_conv_chunks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch item per chunk (as on a GPU with a huge batch) gives the same outputs and gradients."""
    from neuronas.snn import crossbar

    cfg = CrossbarConfig(weight_bits=4, adc_bits=1, adc_kind="sa", rows=16, bits_per_cell=1)
    conv, _ = _conv_and_reference(cfg, 1, 1)
    x = _spikes(5, 3, 6, 6, p=0.2, seed=3)
    whole = _conv_grads(conv, x, conv)
    monkeypatch.setitem(crossbar._CHUNK_FLOATS, "cpu", 1)
    chunked = _conv_grads(conv, x, conv)
    for a, b in zip(whole, chunked, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32)


@pytest.mark.parametrize("scheme,rows", [("differential", 16), ("offset", 7), ("differential", 27)])
@pytest.mark.parametrize("threads", [1, 2])
def test_conv_backward_from_the_forwards_codes_is_bit_identical_to_scattering_again(
    monkeypatch: pytest.MonkeyPatch, scheme: str, rows: int, threads: int
) -> None:
    """The sense amplifiers' codes and windows the forward keeps (a byte per partial sum) give
    the backward the same bits as scattering the partial sums again: outputs and every
    gradient with the codes of every item kept, of the first 3 of 5 only (the budget between 3
    and 4 items': on two threads one task holds an item with codes and two without) and of none
    (a budget of 0), with idle groups, an item without gradient and sparse gradients, over
    three training steps (the weights move)."""
    from neuronas.snn import _kernels, crossbar

    if not _kernels.available():
        pytest.skip("numba is not importable here: the codes are the kernels'")
    cfg = CrossbarConfig(
        weight_bits=4, adc_bits=1, adc_kind="sa", rows=rows, bits_per_cell=1, signed_scheme=scheme
    )
    forward = _kernels.sparse_conv_forward
    kept: list[int] = []  # items whose codes each forward kept (the real kernel runs)
    item_bytes: list[int] = []

    def counting_forward(*args: Any, **kwargs: Any) -> Any:
        codes = forward(*args, **kwargs)
        kept.append(0 if codes is None else codes[0].shape[0])
        if codes is not None:
            item_bytes.append((codes[0][0].numel() + codes[1][0].numel()) * codes[0].element_size())
        return codes

    monkeypatch.setattr(_kernels, "sparse_conv_forward", counting_forward)
    all_calls_on_parallel_twins(monkeypatch)
    runs, kept_per_run = [], []
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for budget in ("all", "3.5 items", 0):
            if budget == "all":
                monkeypatch.setattr(crossbar, "_CODES_BYTES", 1 << 26)
            elif budget == "3.5 items":
                monkeypatch.setattr(crossbar, "_CODES_BYTES", item_bytes[0] * 7 // 2)
            else:
                monkeypatch.setattr(crossbar, "_CODES_BYTES", budget)
            kept.clear()
            conv, _ = _conv_and_reference(cfg, 1, 1, c_in=4, c_out=6)
            opt = torch.optim.SGD(conv.parameters(), lr=1e-2)
            seen = []
            for step in range(3):
                x = _spikes(5, 4, 8, 8, p=0.25, seed=20 + step)
                x[0, :, :4, :4] = 0.0  # idle row groups
                x[2] *= 0.5
                mask = torch.rand(5, 6, 8, 8, generator=torch.Generator().manual_seed(step)) < 0.3
                mask[1] = False  # an item without gradient
                mask[3] = False  # and one among those whose partial sums are scattered again
                got = _conv_grads(conv, x, conv, mask.float())
                seen += got
                opt.step()
            runs.append(seen)
            kept_per_run.append(list(kept))
    finally:
        torch.set_num_threads(before)
    assert kept_per_run == [[5, 5, 5], [3, 3, 3], [0, 0, 0]]
    assert float(runs[0][1].abs().sum()) > 0.0
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert torch.equal(_bits(a), _bits(b))


@pytest.mark.parametrize("kind,bits,scheme,bpc,rows", [CONV_CASES[i] for i in (0, 4)])
def test_small_kernel_calls_run_serially_with_the_parallel_twins_bits(
    monkeypatch: pytest.MonkeyPatch, kind: str, bits: int, scheme: str, bpc: int, rows: int
) -> None:
    """On two threads a kernel call under ``_kernels.PARALLEL_MIN_WORK`` runs the serial kernel
    (the parallel twins lose on small calls): a linear and a conv layer trained three SGD steps
    give the same bits (outputs and every gradient) whether their calls are served by the
    serial kernels (the tiny test layers, by the thresholds) or all by the parallel twins
    (thresholds 0).  The conv backward's choice stays with the threads alone: its running sums
    per task make its numbers depend on the number of tasks."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: the choice is the kernels'")
    nb = _kernels._load()
    cfg = _case_config(kind, bits, scheme, bpc, rows)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # the choice: by the work under two threads, always serial on one
        limit = _kernels.PARALLEL_MIN_WORK["fwd"]
        assert _kernels._fwd_kernel("fwd", limit - 1) is nb.fwd
        assert _kernels._fwd_kernel("fwd", limit) is nb.fwd_parallel
        assert _kernels._fwd_kernel("sconv_bwd") is nb.sconv_bwd_parallel
        torch.set_num_threads(1)
        assert _kernels._fwd_kernel("fwd", limit) is nb.fwd
        torch.set_num_threads(2)
        runs = []
        for thresholds in ("measured", "all parallel"):
            if thresholds == "all parallel":
                all_calls_on_parallel_twins(monkeypatch)
            conv, lin = _conv_and_reference(cfg, 1, 1, c_in=4, c_out=6)
            opt = torch.optim.SGD([*conv.parameters(), *lin.parameters()], lr=1e-2)
            seen = []
            for step in range(3):
                x = _spikes(5, 4, 8, 8, p=0.25, seed=30 + step)
                seen += _conv_grads(conv, x, conv)
                seen += _fwd_bwd(lin, _spikes(7, 36, p=0.3, seed=40 + step))
                opt.step()
            runs.append(seen)
    finally:
        torch.set_num_threads(before)
    assert float(runs[0][1].abs().sum()) > 0.0
    for a, b in zip(*runs, strict=True):
        assert torch.equal(_bits(a), _bits(b))


@pytest.mark.parametrize("kind,bits,scheme,bpc,rows", [CONV_CASES[i] for i in (0, 3, 4)])
def test_the_spare_core_gives_the_two_thread_bits(
    monkeypatch: pytest.MonkeyPatch, kind: str, bits: int, scheme: str, bpc: int, rows: int
) -> None:
    """With the draws taken ahead (torch on one thread, the spare core taking batch items of the
    conv forward, rows of the linear forward and the conv backward's two tasks), a conv and a
    linear layer on a noisy device trained three SGD steps give the bits of two torch threads with
    every call on the parallel twins (the same tasks): outputs and every gradient."""
    from neuronas.snn import _kernels, set_draws_ahead

    if not _kernels.fast_draws():
        pytest.skip("numba's draws are not used here: nothing is taken ahead")
    cfg = _case_config(kind, bits, scheme, bpc, rows)
    before = torch.get_num_threads()
    shared: list[int] = []
    real_share = _kernels._AHEAD.share

    def counted_share(part: Any, n: int) -> None:
        shared.append(n)
        real_share(part, n)

    runs = []
    try:
        for arm in ("two threads", "spare core"):
            if arm == "two threads":
                torch.set_num_threads(2)
                all_calls_on_parallel_twins(monkeypatch)
            else:
                torch.set_num_threads(1)
                set_draws_ahead(True)
                # every call split, however small (the test layers are under the sizes)
                monkeypatch.setattr(_kernels, "SPARE_PART_WORK", 1)
                monkeypatch.setattr(_kernels, "SPARE_PART_CELLS", 1)
                monkeypatch.setattr(_kernels._AHEAD, "share", counted_share)
            torch.manual_seed(4)
            conv, lin = _conv_and_reference(cfg, 1, 1, device=NOISY, c_in=4, c_out=6)
            opt = torch.optim.SGD([*conv.parameters(), *lin.parameters()], lr=1e-2)
            seen = []
            for step in range(3):
                x = _spikes(5, 4, 8, 8, p=0.25, seed=30 + step)
                seen += _conv_grads(conv, x, conv)
                seen += _fwd_bwd(lin, _spikes(40, 36, p=0.3, seed=40 + step))
                opt.step()
            runs.append(seen)
    finally:
        set_draws_ahead(False)
        torch.set_num_threads(before)
    assert len(shared) >= 9 and 2 in shared and max(shared) > 2  # forwards, cells, backwards
    assert float(runs[0][1].abs().sum()) > 0.0
    for a, b in zip(*runs, strict=True):
        assert torch.equal(_bits(a), _bits(b))


def test_conv_keeps_no_codes_without_autograd() -> None:
    """Under ``torch.no_grad`` (evaluation) the forward keeps nothing for a backward, and its
    outputs are the same bits as with autograd on."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    conv, _ = _conv_and_reference(SA64, 1, 1, c_in=8, c_out=4)
    x = _spikes(3, 8, 6, 6, p=0.3, seed=1)
    with torch.no_grad():
        y0 = conv(x)
    y1 = conv(x.requires_grad_(True))
    assert y1.grad_fn is not None and torch.equal(_bits(y0), _bits(y1))


def test_conv_codes_buffers_are_reused_only_once_read_and_give_the_same_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A conv layer's forward writes its codes into the buffers its last backward read
    (``_CodesSpare``), and that changes no bit: outputs and every gradient equal a twin layer's
    that gets new buffers every call, over batches of 5, 5, 3 (the leading items of the same
    buffers), 7 (new, larger ones), an evaluation forward (lets go of them), and two forwards
    before their backwards (the second writes new buffers: the first's are held by its graph),
    taken in either order."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: the codes are the kernels'")
    forward = _kernels.sparse_conv_forward
    ptrs: list[int] = []

    def recording_forward(*args: Any, **kwargs: Any) -> Any:
        codes = forward(*args, **kwargs)
        ptrs.append(-1 if codes is None else codes[0].data_ptr())
        return codes

    monkeypatch.setattr(_kernels, "sparse_conv_forward", recording_forward)
    conv, _ = _conv_and_reference(SA64, 1, 1, c_in=4, c_out=6)
    twin, _ = _conv_and_reference(SA64, 1, 1, c_in=4, c_out=6)
    twin._codes_spare = None  # new buffers every call (what the layer did before)

    def x_of(n: int, seed: int) -> torch.Tensor:
        x = _spikes(n, 4, 8, 8, p=0.25, seed=seed)
        x[0, :, :4, :4] = 0.0  # idle row groups
        return x

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
        assert len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            assert torch.equal(_bits(u), _bits(v))

    first_ptr = None
    for i, n in enumerate((5, 5, 3, 7)):
        x = x_of(n, 40 + i)
        ptrs.clear()
        got = _conv_grads(conv, x, conv)
        ptr = ptrs[0]
        same(got, _conv_grads(twin, x, twin))
        if i == 0:
            first_ptr = ptr
        elif n <= 5:
            assert ptr == first_ptr  # written into the buffers the last backward read
        else:
            assert ptr != first_ptr  # 7 items do not fit them
    assert conv._codes_spare.bufs is not None
    with torch.no_grad():
        same([conv(x_of(7, 50))], [twin(x_of(7, 50))])
    assert conv._codes_spare.bufs is None  # evaluation lets go of them
    # two forwards, then their backwards in either order: each reads its own batch's codes
    for order in ((0, 1), (1, 0)):
        results = []
        for layer in (conv, twin):
            layer.zero_grad()
            xs = [x_of(5, 60 + j).requires_grad_(True) for j in range(2)]
            ptrs.clear()
            ys = [layer(xj) for xj in xs]
            if layer is conv:
                assert ptrs[0] != ptrs[1] and -1 not in ptrs
            out: list[torch.Tensor] = []
            for j in order:
                gy = torch.randn(ys[j].shape, generator=torch.Generator().manual_seed(j))
                (ys[j] * gy).sum().backward()
                out += [ys[j].detach(), xs[j].grad.clone(), layer.weight.grad.clone()]
            results.append(out)
        same(*results)


def test_conv_outputs_of_positions_no_group_reads_are_the_bias() -> None:
    """The comparators' kernels skip the sense amplifiers of idle row groups: at positions whose
    groups are all idle the outputs are the bias, the same bits as the tensor-op path's (which
    adds codes of 0 there), with a bias of -0 and +0 too, and close to it elsewhere; with a
    weight step that is not finite they are NaN as there (0 times it), not the bias."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    x = _spikes(3, 4, 8, 8, p=0.2, seed=3)
    x[0] = 0.0  # an item without input
    x[1, :, :5, :5] = 0.0  # positions every group of which is idle
    x[2, :2] = 0.0  # positions only some groups read
    # no input in a position's 3 x 3 window (padding 1): no group is read there
    dead = F.conv2d(x.sum(1, keepdim=True), torch.ones(1, 1, 3, 3), padding=1)[:, 0] == 0
    assert 0 < int(dead.sum()) < dead.numel()
    for scheme in ("differential", "offset"):
        cfg = CrossbarConfig(
            weight_bits=4, adc_bits=1, adc_kind="sa", rows=16, bits_per_cell=1, signed_scheme=scheme
        )
        conv, _ = _conv_and_reference(cfg, 1, 1, c_in=4, c_out=6)
        with torch.no_grad():
            conv.bias[0] = -0.0
            conv.bias[1] = 0.0
        for w_step in (0.07, math.inf):
            with torch.no_grad():
                conv.w_step.fill_(w_step)
                got = conv(x)
                with pytest.MonkeyPatch.context() as mp:
                    mp.setenv("NEURONAS_NO_NUMBA", "1")
                    ref = conv(x)
            d = dead.unsqueeze(1).expand_as(got)
            if w_step == math.inf:
                assert bool(got[d].isnan().all()) and bool(ref[d].isnan().all())
                continue
            assert torch.equal(_bits(got[d]), _bits(ref[d]))
            bias = conv.bias.detach().view(1, -1, 1, 1).expand_as(got)
            assert torch.equal(got[d], bias[d])
            assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "n_in,n_out,k,stride,pad,dil",
    [
        (8, 8, 3, 1, 1, 1),
        (9, 4, 3, 2, 0, 1),
        (10, 5, 5, 2, 2, 1),
        (7, 3, 3, 3, 1, 1),
        (8, 16, 4, 1, 2, 2),  # a transposed conv's zero-inserted input: k 4, stride 2, padding 1
        (5, 13, 3, 1, 2, 3),
        (6, 9, 3, 1, -1, 2),  # padding past k - 1: a crop
    ],
)
def test_conv_tap_and_read_tables_match_the_division(
    n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int
) -> None:
    """Which output an input pixel reaches through each tap, and which input pixel an output
    reads through each tap (-1: none, or an inserted zero of a dilated input)."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    t = _kernels._load().tap_table(n_in, n_out, k, stride, pad, dil)
    r = _kernels._load().read_table(n_out, n_in, k, stride, pad, dil)
    for i in range(n_in):
        for j in range(k):
            n = i * dil + pad - j
            want = n // stride if n >= 0 and n % stride == 0 and n // stride < n_out else -1
            assert t[i, j] == want
    for o in range(n_out):
        for j in range(k):
            n = o * stride - pad + j
            want = n // dil if n >= 0 and n % dil == 0 and n // dil < n_in else -1
            assert r[o, j] == want
            if want >= 0:  # the inverse: that input reaches this output through the same tap
                assert t[want, j] == o


@pytest.mark.parametrize(
    "g,span,k,n_k", [(1, 2, 3, 64), (3, 8, 3, 128), (2, 5, 5, 12), (1, 1, 1, 3)]
)
def test_conv_cells_by_column_equal_the_permuted_cells(g: int, span: int, k: int, n_k: int) -> None:
    """The backward's per-column cell table (the input gradient's order [k, k, span], padded
    with zeros to whole vectors) is the permuted cells, bit for bit, whatever the buffer held."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    cells = torch.randn(g, span, k, k, n_k, generator=torch.Generator().manual_seed(g + k))
    t = k * k * span
    ref = torch.zeros((g, n_k, -(-t // 16) * 16))
    ref[:, :, :t] = cells.permute(0, 4, 2, 3, 1).reshape(g, n_k, t)
    got = torch.full(ref.shape, math.nan)
    _kernels._load().cells_by_column(cells.numpy(), got.numpy())
    assert torch.equal(_bits(got), _bits(ref))


def test_conv_channel_fold_equals_index_add_bit_for_bit() -> None:
    """The kernels sum the gathered slots' input gradient per channel as the backward of
    ``index_select`` does (``zeros.index_add_``, slots in order), signed zeros included; here with
    three slots on one channel, where the order of the sums shows."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    gen = torch.Generator().manual_seed(3)
    chan = torch.tensor([0, 1, 1, 1, 2, 3, 3, 0])
    gxg = torch.randn(4, 5, 6, 8, generator=gen) * torch.logspace(-6, 6, 8)
    gxg[0, 0, 0] = -0.0
    out = torch.empty(4, 4, 5, 6)
    _kernels._load().fold_channels(gxg.numpy(), chan.numpy(), out.numpy())
    want = torch.zeros(4, 4, 5, 6).index_add_(1, chan, gxg.permute(0, 3, 1, 2))
    assert torch.equal(_bits(out), _bits(want))


@pytest.mark.parametrize("which", ["kernels", "noisy cells"])
def test_kernels_from_swaps_a_kernel_module_for_the_block_only(which: str) -> None:
    """``kernels_from`` / ``cell_kernels_from`` (benchmarks compare two checkouts' kernels with
    them) run a second copy of the kernels' module inside their block and this package's own
    after it, an error included.  (The copy is not called: a numba function compiled in a
    module that is then dropped leaves dead weak proxies behind in numba's code libraries.)"""
    import importlib.util

    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    if which == "kernels":
        own, swap, current = _kernels._load(), _kernels.kernels_from, _kernels._load
    else:
        from neuronas.snn import _cell_kernels_nb

        own, swap, current = _cell_kernels_nb, _kernels.cell_kernels_from, _kernels._cell_kernels
    spec = importlib.util.spec_from_file_location("second_kernels_nb", own.__file__)
    assert spec is not None and spec.loader is not None
    second = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(second)  # (nothing compiled: numba compiles on a first call)
    with swap(second) as inside:
        assert inside is second and current() is second
    assert current() is own
    with pytest.raises(KeyError), swap(second):
        raise KeyError("inside")
    assert current() is own
    with swap(None) as inside:
        assert inside is own


@pytest.mark.parametrize(
    "c_in,k,rows", [(3, 3, 16), (4, 3, 9), (5, 3, 7), (2, 5, 64), (16, 3, 64), (7, 1, 3)]
)
def test_conv_row_groups_cover_every_row_once(c_in: int, k: int, rows: int) -> None:
    from neuronas.snn.crossbar import ConvRowGroups

    geo = ConvRowGroups.of(c_in, k, rows)
    fan_in = c_in * k * k
    assert geo.groups == math.ceil(fan_in / rows)
    valid = geo.rows[geo.rows < fan_in]
    assert sorted(valid.tolist()) == list(range(fan_in))  # each row in exactly one slot
    chan = torch.arange(c_in) if geo.channels is None else geo.channels
    for g in range(geo.groups):
        r = geo.rows[g]
        mine = r[r < fan_in]
        assert bool(((mine >= g * rows) & (mine < (g + 1) * rows)).all())  # the group's own rows
        for w in range(geo.span):  # a slot's row belongs to the channel gathered there
            slot = r[w][r[w] < fan_in]
            assert bool((slot // (k * k) == chan[g * geo.span + w]).all())


@pytest.mark.gpu
@pytest.mark.parametrize("kind,bits", [("sa", 1), ("sar", 4)])
@pytest.mark.parametrize("transposed", [False, True])
def test_crossbar_conv_on_cuda_matches_cpu(kind: str, bits: int, transposed: bool) -> None:
    cfg = CrossbarConfig(weight_bits=4, adc_bits=bits, adc_kind=kind, rows=16, bits_per_cell=1)
    layer: nn.Module = (
        _deconv_and_reference(cfg, 4, 2, 1)[0] if transposed else _conv_and_reference(cfg, 1, 1)[0]
    )
    x = _spikes(6, 3, 9, 9, p=0.2, seed=6)
    want = _conv_grads(layer, x, layer)
    layer = layer.cuda()
    got = _conv_grads(layer, x.cuda(), layer)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a.cpu(), b, rtol=1e-4, atol=1e-4)


# -- transposed convolutions: the convolution of the zero-inserted input, converted per group ----

DECONV_GEOMETRIES = [  # (kernel, stride, padding): the flow decoders' 4/2/1, odd kernels, a crop
    (4, 2, 1),
    (3, 2, 1),
    (3, 1, 1),
    (2, 2, 0),
    (3, 2, 3),
]


@pytest.mark.parametrize("kernel,stride,padding", [*DECONV_GEOMETRIES, (1, 3, 0), (5, 3, 2)])
def test_zero_inserted_input_turns_a_transposed_conv_into_a_conv(
    kernel: int, stride: int, padding: int
) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 4)
    w = torch.randn(3, 4, kernel, kernel)  # conv_transpose2d's [C_in, C_out, k, k]
    xd, pad = zero_inserted(x, stride, kernel, padding)
    got = F.conv2d(xd, w.flip(2, 3).transpose(0, 1), padding=pad)
    want = F.conv_transpose2d(x, w, stride=stride, padding=padding)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)


def _deconv_and_reference(
    cfg: CrossbarConfig, kernel: int, stride: int, padding: int, c_in: int = 3, c_out: int = 5
) -> tuple[CrossbarConvTranspose2d, CrossbarLinear]:
    """A transposed conv and the same weights as a linear layer (rows ``(c, i, j)`` of the
    transposed conv's kernel: its fan-in order) for the reference."""
    torch.manual_seed(0)
    de = CrossbarConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=padding, config=cfg)
    lin = CrossbarLinear(c_in * kernel * kernel, c_out, cfg)
    _trained_like(de)
    lin.load_state_dict(
        {k: v for k, v in de.state_dict().items() if k != "weight"}
        | {"weight": de.weight.detach().transpose(0, 1).reshape(c_out, -1)}
    )
    for m in (de, lin):
        m.hardware_awareness = 1.0
    return de, lin


def _deconv_grads_and_reference(
    de: CrossbarConvTranspose2d, lin: CrossbarLinear, x: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Outputs and gradients of ``de`` on ``x`` (the weight's gradient in the reference's
    ``[C_out, K]`` order) and of the reference: the linear layer ``lin`` on the columns of the
    zero-inserted input, taps turned back to the transposed kernel's order."""
    k, s, p = de.kernel_size[0], int(de.stride[0]), int(de.padding[0])
    b, c, h, w = x.shape
    k2, n_out = c * k * k, lin.fan_out
    oh, ow = (h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k

    def reference(xx: torch.Tensor) -> torch.Tensor:
        xd, pad = zero_inserted(xx, s, k, p)
        cols = F.unfold(xd, k, padding=pad)  # [B, K, P], taps (c, k-1-i, k-1-j)
        n_pos = cols.shape[2]
        cols = cols.view(b, c, k, k, n_pos).flip(2, 3).reshape(b, k2, n_pos)
        y = lin(cols.transpose(1, 2).reshape(-1, k2))
        return y.view(b, n_pos, n_out).transpose(1, 2).reshape(b, n_out, oh, ow)

    got = _conv_grads(de, x, de)
    got[2] = de.weight.grad.transpose(0, 1).reshape(-1).clone()
    return got, _conv_grads(lin, x, reference)


@pytest.mark.parametrize("kind,bits,scheme,bpc,rows", [CONV_CASES[i] for i in (0, 3, 4, 7, 8)])
@pytest.mark.parametrize("kernel,stride,padding", DECONV_GEOMETRIES)
@pytest.mark.parametrize("numba", [True, False])
def test_transposed_conv_converts_every_row_group_like_the_linear_reference(
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    bits: int,
    scheme: str,
    bpc: int,
    rows: int,
    kernel: int,
    stride: int,
    padding: int,
    numba: bool,
) -> None:
    """Each output position of a transposed conv is one read of its arrays: every row group's
    partial sums over the taps that reach it (the input's pixels; inserted zeros drive no row)
    through their own converters.  Reference: the linear layer's per-group conversion on the
    columns of the zero-inserted input, taps turned back to the transposed kernel's order.
    Outputs and every gradient, on the numba kernels and on the tensor-op path."""
    from neuronas.snn import _kernels

    if numba and not _kernels.available():
        pytest.skip("numba is not importable here: only the tensor-op path runs")
    if not numba:
        monkeypatch.setenv("NEURONAS_NO_NUMBA", "1")
    cfg = _case_config(kind, bits, scheme, bpc, rows)
    de, lin = _deconv_and_reference(cfg, kernel, stride, padding)
    x = _spikes(4, 3, 5, 5, p=0.3, seed=4)
    x[0, :, :3, :3] = 0.0  # idle row groups at some positions
    x[1] *= 0.5  # pooled inputs reach a decoder too
    got, want = _deconv_grads_and_reference(de, lin, x)
    assert got[0].shape == F.conv_transpose2d(x, de.weight, None, stride, padding).shape
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)  # float sums in another order


@pytest.mark.parametrize("kind,bits,scheme,bpc,rows", [CONV_CASES[i] for i in (0, 4)])
def test_transposed_conv_on_the_parallel_twins_equals_the_reference(
    monkeypatch: pytest.MonkeyPatch, kind: str, bits: int, scheme: str, bpc: int, rows: int
) -> None:
    """Two threads, every kernel call on its parallel twin (items split over tasks, the
    backward's running sums per task): the same transposed conv as the linear reference."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here")
    all_calls_on_parallel_twins(monkeypatch)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        de, lin = _deconv_and_reference(_case_config(kind, bits, scheme, bpc, rows), 4, 2, 1)
        x = _spikes(6, 3, 5, 5, p=0.3, seed=9)
        got, want = _deconv_grads_and_reference(de, lin, x)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_transposed_conv_on_a_sense_amplifier_chip_is_not_the_exact_sum() -> None:
    """On 1-bit sense amplifiers the decoder's partial sums are converted (not summed exactly as
    a digital macro would), and its converters are calibrated from the first batch."""
    torch.manual_seed(0)
    cfg = CrossbarConfig(weight_bits=4, adc_bits=1, adc_kind="sa", rows=16, bits_per_cell=1)
    de = CrossbarConvTranspose2d(8, 4, 4, stride=2, padding=1, config=cfg)
    exact = CrossbarConvTranspose2d(
        8,
        4,
        4,
        stride=2,
        padding=1,
        config=CrossbarConfig(weight_bits=4, adc_kind="digital", adc_bits=0),
    )
    exact.load_state_dict(de.state_dict(), strict=False)
    x = _spikes(3, 8, 6, 6, p=0.3, seed=7)
    for m in (de, exact):
        m.hardware_awareness = 1.0
    assert not bool(de.calibrated)
    y = de(x)
    assert bool(de.calibrated) and not torch.allclose(de.adc_step, torch.ones_like(de.adc_step))
    y_exact = exact(x)
    assert y.shape == y_exact.shape == (3, 4, 12, 12)
    assert not torch.allclose(y, y_exact, atol=1e-3)
    # an input with no spike drives no row of any group: only the bias remains
    assert torch.allclose(de(torch.zeros_like(x)), de.bias.view(1, -1, 1, 1).expand_as(y))


# -- the fused noisy-cell kernel gives the numbers of the tensor ops -----------------------------


def _cell_levels_before(layer: Any, q: torch.Tensor, noise: bool) -> torch.Tensor:
    """``CrossbarLayer._cell_levels`` as written before the fused kernel (tensor ops, noisy
    branch verbatim): the reference the fast path must reproduce bit for bit."""
    cfg, dev = layer.config, layer.device_model
    levels = layer._levels(q)
    lmax = 2**cfg.bits_per_cell - 1
    g_off = lmax / dev.on_off_ratio if math.isfinite(dev.on_off_ratio) else 0.0
    g = levels + g_off
    if not layer.training and layer._prog_eps.shape != g.shape:
        layer.resample_chip_instance(
            0 if layer.instance_seed is None else layer.instance_seed, fixed_reads=False
        )
    if dev.program_sigma > 0:
        eps = torch.randn_like(g) if layer.training else layer._prog_eps
        g = g * (1.0 + dev.program_sigma * eps)
    if dev.stuck_off_rate > 0 or dev.stuck_on_rate > 0:
        u = torch.rand_like(g) if layer.training else layer._fault_u
        g = torch.where(u < dev.stuck_off_rate, torch.full_like(g, g_off), g)
        stuck_on = (u >= dev.stuck_off_rate) & (u < dev.stuck_off_rate + dev.stuck_on_rate)
        g = torch.where(stuck_on, torch.full_like(g, lmax + g_off), g)
    if dev.read_noise_sigma > 0:
        g = g * (1.0 + dev.read_noise_sigma * layer._read_noise(g))
    return g[:, :, 0] - g[:, :, 1] if cfg.differential else g[:, :, 0]


# stuck rates high enough that a few hundred cells of every test layer are stuck
_FAULTY = DeviceModel(
    program_sigma=0.1,
    read_noise_sigma=0.02,
    stuck_off_rate=0.03,
    stuck_on_rate=0.02,
    on_off_ratio=10,
)


@pytest.mark.parametrize(
    ("scheme", "bpc", "device"),
    [
        ("differential", 1, _FAULTY),
        ("differential", 2, _FAULTY),
        ("offset", 1, _FAULTY),
        ("offset", 2, _FAULTY),
        ("differential", 2, DeviceModel(read_noise_sigma=0.05, on_off_ratio=10)),
        ("offset", 1, DeviceModel(stuck_off_rate=0.05)),
        ("differential", 1, DeviceModel(on_off_ratio=20)),
    ],
)
def test_noisy_cells_match_the_tensor_ops_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, scheme: str, bpc: int, device: DeviceModel
) -> None:
    """The fused kernel (numba), the tensor-op path (CUDA, no numba) and the code both replaced
    draw the same noise from the same generator and give the same cells, to the bit, in
    training (global generator) and on a chip instance (its own draws and read stream)."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: only the tensor-op path runs")
    cfg = CrossbarConfig(
        weight_bits=6, adc_bits=1, adc_kind="sa", rows=32, bits_per_cell=bpc, signed_scheme=scheme
    )
    torch.manual_seed(3)
    layer = CrossbarLinear(70, 12, cfg, device)
    q = torch.randint(-31, 32, (12, 70)).float()  # every slice of the 6-bit weights in use
    for training in (True, False):
        layer.train(training)
        if not training:
            layer.resample_chip_instance(11)
        outs = []
        for path in ("kernel", "tensor", "before"):
            if not training:
                layer.resample_chip_instance(11)  # the instance's read stream from its start
            torch.manual_seed(5)
            if path == "tensor":
                monkeypatch.setenv("NEURONAS_NO_NUMBA", "1")
            fn = _cell_levels_before if path == "before" else type(layer)._cell_levels
            outs.append([fn(layer, q, True) for _ in range(3)])
            monkeypatch.delenv("NEURONAS_NO_NUMBA", raising=False)
            outs[-1].append(torch.rand(()))  # the generator ends in the same state
        for got in outs[:2]:
            for a, b in zip(got, outs[2], strict=True):
                assert torch.equal(a, b)
        fresh = device.read_noise_sigma > 0 or (training and device.noisy)
        assert torch.equal(outs[0][0], outs[0][1]) != fresh  # the draws are used


def test_training_on_a_noisy_chip_is_bit_identical_to_the_tensor_op_cells(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several training steps of a layer on a noisy device (programming noise, stuck cells, read
    noise, several bits per cell), differential and offset columns: the outputs, all gradients
    and the updated parameters are the same to the bit whether the cells come from the fused
    kernel or from the tensor ops they replace (the rest of the layer unchanged)."""
    from neuronas.snn import _kernels

    if not _kernels.available():
        pytest.skip("numba is not importable here: only the tensor-op path runs")
    for scheme in ("differential", "offset"):
        cfg = CrossbarConfig(
            weight_bits=4, adc_bits=1, adc_kind="sa", rows=32, bits_per_cell=2, signed_scheme=scheme
        )
        runs = []
        for before in (False, True):
            if before:
                monkeypatch.setattr(CrossbarLinear, "_cell_levels", _cell_levels_before)
            torch.manual_seed(0)
            layer = CrossbarLinear(70, 12, cfg, _FAULTY)
            with torch.no_grad():  # integer weights over the whole 4-bit range
                layer.weight.copy_(torch.randint(-7, 8, (12, 70)).float() * 0.1)
                layer.w_step.fill_(0.1)
            layer.hardware_awareness = 1.0
            opt = torch.optim.SGD(layer.parameters(), lr=1e-3)
            seen = []
            for step in range(4):
                x = _spikes(16, 70, p=0.2, seed=10 + step)
                y = layer(x)
                opt.zero_grad()
                (y * torch.linspace(-1, 1, 12)).sum().backward()
                seen += [y.detach().clone()]
                seen += [p.grad.clone() for p in layer.parameters() if p.grad is not None]
                opt.step()
            runs.append(seen + [p.detach().clone() for p in layer.parameters()])
            monkeypatch.undo()
        assert len(runs[0]) == len(runs[1]) and runs[0][1].abs().sum() > 0
        for a, b in zip(*runs, strict=True):
            assert torch.isfinite(a).all() and torch.equal(a, b)
