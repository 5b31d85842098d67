"""The crossbars' training draws taken one request ahead on a spare core
(:mod:`neuronas.snn._draws_ahead`) and the trainer's choice of threads for them
(:func:`neuronas.train.training_threads`): the same numbers as the draws in place."""

from __future__ import annotations

import threading
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
    spare_core_pays,
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
LONG_MLP = dict(MLP, name="ahead-mlp-t64", input={"shape": [2, 32, 32], "timesteps": 64})
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


def test_the_draws_and_kernel_parts_get_a_spare_core_where_it_pays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chip = load_chip(CHIP)
    mlp, cnn = build(ArchSpec.from_dict(MLP), chip), build(ArchSpec.from_dict(CNN), chip)
    cpu = torch.device("cpu")
    long_mlp = build(ArchSpec.from_dict(LONG_MLP), chip)
    assert draw_share(mlp, 32) >= DRAWS_AHEAD_MIN_SHARE > draw_share(cnn, 32) > 0
    assert DRAWS_AHEAD_MIN_SHARE > draw_share(long_mlp, 32) > 0
    # two threads: every network that draws; more: linear layers only or a large share
    assert all(spare_core_pays(net, 32, 2) for net in (mlp, long_mlp, cnn))
    assert spare_core_pays(mlp, 32, 8) and spare_core_pays(long_mlp, 32, 8)
    assert not spare_core_pays(cnn, 32, 8) and not spare_core_pays(mlp, 32, 1)
    noiseless = build(ArchSpec.from_dict(MLP))
    assert draw_share(noiseless, 32) == 0.0 and not spare_core_pays(noiseless, 32, 2)
    for given in (2, 3):
        torch.set_num_threads(given)
        for net in (mlp, long_mlp, cnn) if given == 2 else (mlp, long_mlp):
            with training_threads(net, 32, cpu) as (threads, ahead):
                assert threads == torch.get_num_threads() == given - 1
                assert ahead == _kernels.fast_draws() == _kernels.draws_ahead_on()
            assert torch.get_num_threads() == given and not _kernels.draws_ahead_on()
    with training_threads(cnn, 32, cpu) as (threads, ahead):
        assert (threads, ahead) == (3, False) and not _kernels.draws_ahead_on()
    torch.set_num_threads(2)
    with training_threads(noiseless, 32, cpu) as (threads, ahead):
        assert (threads, ahead) == (2, False)
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


# --------------------------------------------------------------------------------------------
# the spare core takes rows of the convert-sum forward and of the noisy-cell pass


def test_shared_parts_each_run_once_on_both_threads() -> None:
    """Every part runs once; the caller and the background thread both take parts (the first
    two parts wait for each other: only two threads at once get past them)."""
    ahead = _kernels._AHEAD  # noqa: SLF001 (the process's one spare thread)
    meet = threading.Barrier(2, timeout=30)
    done: list[tuple[int, str]] = []

    def part(i: int) -> None:
        if i < 2:
            meet.wait()
        done.append((i, threading.current_thread().name))

    ahead.share(part, 12)
    assert sorted(i for i, _ in done) == list(range(12))
    assert len({name for i, name in done if i < 2}) == 2


def test_a_busy_spare_thread_leaves_the_parts_to_the_caller() -> None:
    """While the background thread is still drawing, the caller does every part and returns
    without waiting for those draws; an error in a part reaches the caller."""
    ahead = _kernels._AHEAD  # noqa: SLF001
    release = threading.Event()
    busy = ahead._spare().submit(release.wait, 30)  # noqa: SLF001 (a long draw, in effect)
    caller = threading.current_thread().name
    done: list[str] = []
    try:
        ahead.share(lambda i: done.append(threading.current_thread().name), 6)
        assert done == [caller] * 6 and not busy.done()

        def fails(i: int) -> None:
            raise ValueError(f"part {i}")

        with pytest.raises(ValueError, match="part 0"):
            ahead.share(fails, 3)
    finally:
        release.set()
    assert busy.result() is True


def _split_in_any_order(part: Any, n: int) -> None:
    """Parts in reverse order, every other one on a thread of its own: what any split must
    survive (each part writes only its own rows)."""
    others = [threading.Thread(target=part, args=(i,)) for i in range(n - 1, -1, -2)]
    for t in others:
        t.start()
    for i in range(n - 2, -1, -2):
        part(i)
    for t in others:
        t.join()


@needs_fast_draws
@pytest.mark.parametrize("split", ["spare", "any order"])
def test_the_spare_core_takes_rows_to_the_bit(monkeypatch: pytest.MonkeyPatch, split: str) -> None:
    """With the draws taken ahead, the convert-sum forward (every converter mode, with and
    without the straight-through masks) and the noisy cells (differential and offset columns,
    some draws off) are split in parts (checked) and give the single pass's bits."""
    torch.set_num_threads(1)
    ahead = _kernels._AHEAD  # noqa: SLF001
    real_share = ahead.share
    calls: list[int] = []

    def share(part: Any, n: int) -> None:
        calls.append(n)
        (real_share if split == "spare" else _split_in_any_order)(part, n)

    monkeypatch.setattr(ahead, "share", share)
    gen = torch.Generator().manual_seed(2)
    m, g, r, n_slices, nc = 1024, 8, 64, 4, 64  # 8 blocks of 128 rows: 8 parts
    k = n_slices * nc
    x = (torch.rand(m, g * r, generator=gen) < 0.15).float()
    wg = torch.randn(g, r, k, generator=gen)
    step = torch.rand(k, generator=gen) + 0.5
    ref = torch.randn(k, generator=gen)
    coef, yscale = torch.rand(n_slices, generator=gen), torch.rand(k, generator=gen)
    for mode in (0, 1, 2):
        for mask in (False, True):
            args = (x, wg, step, ref, 1e-4 * step, coef, yscale, mode, -8, 7, mask)
            set_draws_ahead(False)
            whole = _kernels.convert_sum_forward(*args)
            set_draws_ahead(True)
            n_calls = len(calls)
            parts = _kernels.convert_sum_forward(*args)
            assert calls[n_calls:] == [8]
            for a, b in zip(whole, parts, strict=True):
                assert (a is None and b is None) or torch.equal(a, b)
    for differential, draws in ((True, (1, 1, 1)), (False, (1, 0, 1)), (True, (0, 1, 0))):
        n_in, n_out = 1024, 128
        p = _kernels.CellParams(
            n_slices=2,
            bits=2,
            differential=differential,
            offset=0 if differential else 8,
            g_off=0.1,
            g_on=3.0,
            program_sigma=0.1,
            stuck_off_below=0.03,
            stuck_on_below=0.05,
            read_sigma=0.02,
            n_cols=n_out if differential else n_out + 1,
        )
        shape = (n_in, 2, 2 if differential else 1, p.n_cols)
        eps, u, r_ = (
            (torch.rand(shape, generator=gen) if i == 1 else torch.randn(shape, generator=gen))
            if on
            else None
            for i, on in enumerate(draws)
        )
        q = torch.randint(-8, 8, (n_out, n_in), generator=gen).float()
        set_draws_ahead(False)
        whole_cells = _kernels.noisy_cells(q, p, eps, u, r_)
        set_draws_ahead(True)
        n_calls = len(calls)
        part_cells = _kernels.noisy_cells(q, p, eps, u, r_)
        assert calls[n_calls:] == [2]  # 262k signed cells: two parts
        assert torch.equal(whole_cells, part_cells)
