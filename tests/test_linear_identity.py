"""The crossbar linear layer's leaner autograd graph and the trainer's foreach Adam: the same
numbers, bit for bit, as the code they replace (kept verbatim below as the reference)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_crossbar import NOISY  # the noisy device every crossbar test uses

from neuronas.snn import _kernels
from neuronas.snn.crossbar import CrossbarConfig, CrossbarLinear, quantize_weight

# -- the code before (crossbar.py at b23621b), verbatim but for the names ------------------------


class _ConvertSumBefore(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x2d: torch.Tensor,
        wg: torch.Tensor,
        wq: torch.Tensor,
        slice_weight: torch.Tensor,
        slice_grad: torch.Tensor,
        step: torch.Tensor,
        ref: torch.Tensor | None,
        mode: int,
        qn: int,
        qp: int,
    ) -> torch.Tensor:
        from neuronas.snn import crossbar

        tie = None if mode == 0 else 1e-4 * step
        coef = slice_grad * slice_weight
        fast = (
            x2d.device.type == "cpu"
            and x2d.dtype == torch.float32
            and wg.dtype == torch.float32
            and _kernels.available()
        )
        conv = _kernels.convert_sum_forward if fast else crossbar._convert_sum_dense
        want_mask = bool(ctx.needs_input_grad[0])
        yscale = slice_weight.repeat_interleave(wq.shape[-1]) * step
        y, sums, h, mask = conv(x2d, wg, step, ref, tie, coef, yscale, mode, qn, qp, want_mask)
        ctx.save_for_backward(x2d, wg, step, sums, h, mask, slice_weight)
        ctx.mode, ctx.used, ctx.fast = mode, False, fast
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x2d, wg, step, sums, h, mask, slice_weight = ctx.saved_tensors
        g_groups, r, _ = wg.shape
        m, nc = grad.shape
        n_slices = slice_weight.shape[0]
        sw = slice_weight.repeat_interleave(nc)
        if ctx.fast:
            g_total, g_dsum = _kernels.column_dots(sums, grad)
        else:
            g_total, g_dsum = (
                (sums.view(2, m, n_slices, nc) * grad.view(1, m, 1, nc)).sum(1).view(2, -1)
            )
        if ctx.mode == 0:
            grad_step = sw * (g_total - g_dsum)
            grad_ref = None
        else:
            grad_step = sw * g_total
            grad_ref = -sw * g_dsum
        grad_x = grad_wq = None
        if ctx.needs_input_grad[2]:
            xg = x2d.reshape(m, g_groups, r).transpose(0, 1)
            grad_wq = torch.matmul(xg.transpose(1, 2), h.mul_(grad))
        if ctx.needs_input_grad[0]:
            gp = torch.mul(mask, grad.repeat(1, n_slices) * sw)
            grad_x = torch.matmul(gp, wg.transpose(1, 2)).transpose(0, 1).reshape(x2d.shape)
        return grad_x, None, grad_wq, None, None, grad_step, grad_ref, None, None, None


def crossbar_mm_before(self: Any, x2d: torch.Tensor, noise: bool = True) -> torch.Tensor:
    cfg = self.config
    qn, qp = cfg.weight_range
    q = quantize_weight(self.weight.reshape(self.fan_out, -1), self.w_step.abs() + 1e-12, qn, qp)
    g, r = self.row_groups, cfg.rows
    cells = self._cell_levels(q, noise)
    s, nc = cells.shape[1], cells.shape[2]
    wq = (q if cfg.differential else torch.cat([q, torch.zeros_like(q[:1])])).t()
    if g * r != self.fan_in:
        cells = F.pad(cells, (0, 0, 0, 0, 0, g * r - self.fan_in))
        wq = F.pad(wq, (0, 0, 0, g * r - self.fan_in))
    wg = cells.reshape(g, r, s * nc)
    wq = wq.reshape(g, r, nc)
    if not bool(self.calibrated):
        with torch.no_grad():
            xg = x2d.reshape(-1, g, r).transpose(0, 1)
            self._calibrate(torch.matmul(xg, wg).view(g, x2d.shape[0], s, nc), xg)
    step = (self.adc_step.abs() + 1e-8).reshape(-1)
    if cfg.adc_kind == "sa":
        mode = 1 if cfg.differential else 2
        ref = self.sa_ref.reshape(-1) if self.sa_ref is not None else None
        qn, qp = 0, 0
    else:
        mode, ref = 0, None
        qn, qp = cfg.adc_range
    y = _ConvertSumBefore.apply(
        x2d, wg, wq, self.slice_weight, self.slice_grad, step, ref, mode, qn, qp
    )
    if not cfg.differential:
        y = y[:, : self.fan_out] - y[:, self.fan_out :]
    return y


def forward_before(self: Any, x: torch.Tensor) -> torch.Tensor:
    a = float(self.hardware_awareness)
    if a <= 0.0:
        return F.linear(x, self.weight, self.bias)
    self._ensure_weight_step()
    lead = x.shape[:-1]
    x2d = x.reshape(-1, self.fan_in)
    y = crossbar_mm_before(self, self._pad_rows(x2d)) * (self.w_step.abs() + 1e-12)
    if self.bias is not None:
        y = y + self.bias
    y = y.view(*lead, self.fan_out)
    ideal = F.linear(x, self.weight, self.bias) if a < 1.0 else None
    return self._mix(ideal, y)


# -- the tests ---------------------------------------------------------------------------------


def _spikes(*shape: int, p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).float()


def _train_two_layers(
    cfg: CrossbarConfig, fan_in: int, hidden: int, steps: int, awareness: float
) -> list[torch.Tensor]:
    """``steps`` Adam steps of two crossbar layers (the second one's input needs a gradient);
    every output, gradient and parameter, and the generator's state at the end."""
    torch.manual_seed(0)
    l1 = CrossbarLinear(fan_in, hidden, cfg, NOISY)
    l2 = CrossbarLinear(hidden, 10, cfg, NOISY)
    params = [*l1.parameters(), *l2.parameters()]
    opt = torch.optim.Adam(params, lr=3e-2)
    seen: list[torch.Tensor] = []
    for step in range(steps):
        a = awareness if step % 3 else 1.0  # the ideal path mixed in, and not
        l1.hardware_awareness = l2.hardware_awareness = a
        x = _spikes(24, fan_in, p=0.2, seed=step)
        h = (l1(x) > 0.1).float() + 0.5 * torch.sigmoid(l1(x))
        y = l2(h)
        loss = F.cross_entropy(y, torch.arange(24) % 10)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        seen += [y.detach().clone()]
        seen += [p.grad.clone() for p in params if p.grad is not None]
        opt.step()
    return seen + [p.detach().clone() for p in params] + [torch.rand(3)]


@pytest.mark.parametrize("numba", [True, False])
@pytest.mark.parametrize(
    "kind,scheme,fan_in",
    [
        ("sa", "differential", 64),  # the default search's layers
        ("sa", "differential", 70),  # a padded last row group
        ("sa", "offset", 70),
        ("adc", "differential", 64),
        ("adc", "offset", 45),
    ],
)
def test_linear_layer_trains_bit_identical_to_the_graph_before(
    monkeypatch: pytest.MonkeyPatch, kind: str, scheme: str, fan_in: int, numba: bool
) -> None:
    """Two crossbar layers on a noisy device trained for several Adam steps (awareness 1 and a
    mix with the ideal layer): outputs, every gradient (weights, weight step, converter steps and
    references, biases), the parameters and torch's generator state equal the code before
    (its extra nodes: the weight step twice, the converter step's abs / add / reshape, the
    reference's reshape, the column weights' transpose / pad / reshape) to the bit."""
    if numba and not _kernels.available():
        pytest.skip("numba is not importable here")
    if not numba:
        monkeypatch.setenv("NEURONAS_NO_NUMBA", "1")
    cfg = CrossbarConfig(
        weight_bits=4,
        adc_bits=1 if kind == "sa" else 3,
        adc_kind=kind,
        rows=32,
        bits_per_cell=1 if scheme == "differential" else 2,
        signed_scheme=scheme,
    )
    now = _train_two_layers(cfg, fan_in, 40, steps=6, awareness=0.5)
    with monkeypatch.context() as m:
        m.setattr(CrossbarLinear, "forward", forward_before)
        before = _train_two_layers(cfg, fan_in, 40, steps=6, awareness=0.5)
    assert len(now) == len(before) and len(now) > 6 * 9
    for a, b in zip(now, before, strict=True):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)
    torch.manual_seed(0)
    fresh = [*CrossbarLinear(fan_in, 40, cfg, NOISY).parameters()]
    n = len(fresh)  # weight, bias, w_step, adc_step (, sa_ref): the same for both layers
    trained = now[-1 - 2 * n : -1 - n]  # the first layer's parameters after training
    assert not torch.equal(fresh[0], trained[0])  # the run really trained the weights
    assert not torch.equal(fresh[3], trained[3])  # and the converter steps


def test_foreach_adam_is_bit_identical_to_the_per_tensor_loop() -> None:
    """The trainer's ``Adam(foreach=True)`` against torch's CPU default (the per-tensor loop):
    several hundred steps, the crossbar layers' parameter shapes (scalars, [S, Nc], weights,
    biases), gradients over eight decades, some exactly zero, some parameters without a gradient
    on some steps, a cosine schedule: the parameters and both moments equal to the bit."""
    shapes = [(128, 512), (128,), (), (3, 128), (3, 128), (10, 128), (10,), (), (3, 10), (3, 10)]
    runs = []
    for foreach in (False, True):
        g = torch.Generator().manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
        opt = torch.optim.Adam(ps, lr=3e-2, foreach=foreach)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=300)
        for step in range(300):
            opt.zero_grad(set_to_none=True)
            for i, p in enumerate(ps):
                if (step + i) % 11 == 0:
                    continue  # no gradient this step
                scale = 10.0 ** float(torch.randint(-6, 3, (), generator=g))
                p.grad = torch.randn(p.shape, generator=g) * scale
                if step % 7 == 0 and p.dim() > 0:
                    p.grad[..., 0] = 0.0
            opt.step()
            sched.step()
        state = [opt.state[p] for p in ps]
        runs.append(
            [p.detach().clone() for p in ps]
            + [s["exp_avg"] for s in state]
            + [s["exp_avg_sq"] for s in state]
            + [s["step"] for s in state]
        )
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_the_trainer_uses_the_tested_adam(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's optimizer comes from ``neuronas.snn.optim.adam``: the numba Adam on the CPU
    (bit-identical to torch's foreach Adam, ``tests/test_optim.py``), torch's ``Adam(foreach=True)``
    without the kernels."""
    from neuronas.snn import optim
    from neuronas.spec import ArchSpec
    from neuronas.train import train_candidate

    made: list[torch.optim.Optimizer] = []
    factory = optim.adam

    def spy(params: Any, lr: float) -> torch.optim.Optimizer:
        made.append(factory(params, lr))
        return made[-1]

    monkeypatch.setattr(optim, "adam", spy)
    arch = ArchSpec.from_dict(
        {
            "name": "tiny-mlp",
            "input": {"shape": [2, 32, 32], "timesteps": 2},
            "layers": [{"kind": "pool", "kernel": 4, "pool": "avg"}, {"kind": "fc", "out": 10}],
        }
    )
    train_candidate(
        arch, None, "digits-events", epochs=1, max_train_samples=64, max_eval_samples=32
    )
    want = optim.Adam if optim.available() else torch.optim.Adam
    assert made and all(type(o) is want for o in made)
    assert all(o.state for o in made)  # it really stepped
