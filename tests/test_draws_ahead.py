"""The crossbars' training draws taken one request ahead on a spare core
(:mod:`neuronas.snn._draws_ahead`) and the trainer's choice of threads for them
(:func:`neuronas.train.training_threads`): the same numbers as the draws in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_train import TINY

from neuronas.hardware import load_chip
from neuronas.snn import _kernels, build, set_draws_ahead
from neuronas.spec import ArchSpec
from neuronas.train import (
    DRAWS_AHEAD_MIN_SHARE,
    draw_share,
    train_candidate,
    training_threads,
)

MLP = dict(TINY, name="ahead-mlp")  # 128 -> 32 -> 10 on 64-row arrays, T 4
CNN = dict(
    TINY,
    name="ahead-cnn",
    layers=[
        {"kind": "conv", "out": 8, "kernel": 3},
        {"kind": "pool", "kernel": 4},
        {"kind": "fc", "out": 10},
    ],
)
CHIP = "rram-adcless-65nm"  # programming, stuck-cell and read noise: three draws per read

needs_fast_draws = pytest.mark.skipif(
    not _kernels.fast_draws(), reason="the numba draws are not used here (no numba, another torch)"
)


@pytest.fixture(autouse=True)
def _draws_in_place_after() -> Any:
    threads = torch.get_num_threads()
    yield
    set_draws_ahead(False)
    torch.set_num_threads(threads)


def _steps(ahead: bool, steps: int = 9) -> tuple[list[torch.Tensor], torch.Tensor, list[float]]:
    """Train a noisy two-layer crossbar MLP for ``steps`` batches with the draws ahead or in
    place; between batches other draws from the same generator (a shuffle's, a validation
    pass's reads) that the speculation cannot know of."""
    torch.manual_seed(7)
    net = build(ArchSpec.from_dict(MLP), load_chip(CHIP))
    x = (torch.rand(4, 24, 2, 32, 32) < 0.2).float()
    y = torch.randint(0, 10, (24,))
    net.set_hardware_awareness(1.0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    set_draws_ahead(ahead)
    for step in range(steps):
        b = slice(8 * (step % 3), 8 * (step % 3) + 8)
        loss = F.cross_entropy(net(x[:, b]).mean(0), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 4 == 1:
            torch.randperm(24)  # a draw between two batches' draws
        if step == 6:
            net.eval()  # validation: its reads draw from the global generator too
            with torch.no_grad():
                net(x[:, :8])
            net.train()
    set_draws_ahead(False)
    return [p.detach().clone() for p in net.parameters()], torch.get_rng_state(), losses


@needs_fast_draws
def test_draws_ahead_give_the_numbers_drawn_in_place() -> None:
    """Every parameter, loss and the generator's final state equal, bit for bit, with the
    speculative draws used where the generator was where they started (hits) and dropped where
    another draw came in between (misses; a speculation used there would change the numbers)."""
    torch.set_num_threads(1)
    params_in, state_in, losses_in = _steps(ahead=False)
    ahead = _kernels._AHEAD  # noqa: SLF001 (its counters: both paths must have been taken)
    hits, misses = ahead.hits, ahead.misses
    params_ah, state_ah, losses_ah = _steps(ahead=True)
    assert ahead.hits - hits > 5 and ahead.misses - misses >= 2
    assert losses_ah == losses_in
    assert all(torch.equal(a, b) for a, b in zip(params_ah, params_in, strict=True))
    assert torch.equal(state_ah, state_in)


def test_the_draws_get_a_core_when_they_are_a_large_share_of_a_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chip = load_chip(CHIP)
    mlp, cnn = build(ArchSpec.from_dict(MLP), chip), build(ArchSpec.from_dict(CNN), chip)
    cpu = torch.device("cpu")
    assert draw_share(mlp, 32) >= DRAWS_AHEAD_MIN_SHARE > draw_share(cnn, 32) > 0
    assert draw_share(build(ArchSpec.from_dict(MLP)), 32) == 0.0  # a noiseless device draws none
    torch.set_num_threads(2)
    with training_threads(mlp, 32, cpu) as (threads, ahead):
        assert threads == torch.get_num_threads() == 1
        assert ahead == _kernels.fast_draws() == _kernels.draws_ahead_on()
    assert torch.get_num_threads() == 2 and not _kernels.draws_ahead_on()
    with training_threads(cnn, 32, cpu) as (threads, ahead):
        assert (threads, ahead) == (2, False) and not _kernels.draws_ahead_on()
    with pytest.raises(RuntimeError), training_threads(mlp, 32, cpu):
        raise RuntimeError("a training that fails")
    assert torch.get_num_threads() == 2 and not _kernels.draws_ahead_on()
    torch.set_num_threads(1)  # no core to spare
    with training_threads(mlp, 32, cpu) as (threads, ahead):
        assert (threads, ahead) == (1, False)
    torch.set_num_threads(2)
    monkeypatch.setenv("NEURONAS_DRAWS_AHEAD", "0")
    with training_threads(mlp, 32, cpu) as (threads, ahead):
        assert (threads, ahead) == (2, False)


def test_a_training_on_two_threads_is_the_one_on_one_with_the_draws_ahead(tmp_path: Path) -> None:
    """An MLP given two threads trains on one with its draws on the other: the run on one
    thread, to the bit (losses, accuracies per chip instance, activity, saved weights)."""
    arch = ArchSpec.from_dict(MLP)
    quick = {"epochs": 2, "max_train_samples": 96, "max_eval_samples": 64, "eval_instances": 2}
    runs = {
        n: train_candidate(
            arch, CHIP, "digits-events", seed=5, out_dir=tmp_path / str(n), num_threads=n, **quick
        )
        for n in (1, 2)
    }
    one, two = runs[1], runs[2]
    assert one.config["threads"] == 1 and not one.config["draws_ahead"]
    assert two.config["threads"] == 1 and two.config["draws_ahead"] == _kernels.fast_draws()
    assert torch.get_num_threads() == 2  # given back after the training
    keys = ("train_loss", "train_accuracy", "val_accuracy")
    assert [[h[k] for k in keys] for h in one.history] == [
        [h[k] for k in keys] for h in two.history
    ]
    assert one.accuracies == two.accuracies and one.activity == two.activity
    sa = torch.load(tmp_path / "1" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "2" / "model.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
