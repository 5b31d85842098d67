"""torch's CPU draws reproduced by the numba kernels (``neuronas.snn._kernels.rand`` / ``randn``):
the same numbers, bit for bit, and the generator left in the same state."""

from __future__ import annotations

import pytest
import torch

from neuronas.snn import _kernels

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="numba is not available")


def test_kernels_draw_where_torch_draws_normals_with_avx2() -> None:
    """On a CPU where torch's normals take its AVX2 path the kernels pass their check against
    torch at first use (else every draw silently falls back to torch's own, slower)."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("torch draws normals another way on this CPU")
    assert _kernels.fast_draws()


# sizes across the blocks of 16 of torch's Box-Muller (whole, partial, exactly 16) and across
# MT19937's 624-word state, up to a layer's cells ([K, S, P, Nc] of a 512 x 256 4-bit layer)
SHAPES = [
    (16,),
    (17,),
    (31,),
    (623,),
    (624,),
    (625,),
    (3, 5, 7),
    (512, 4, 2, 128),
    (257, 1, 2, 129),
]


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 17])
def test_draws_equal_torch_on_a_generator(seed: int) -> None:
    if not _kernels.fast_draws():
        pytest.skip("torch's own draws here")
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for shape in SHAPES:
        for normal in (True, False):
            a = (_kernels.randn if normal else _kernels.rand)(shape, generator=ours)
            b = (torch.randn if normal else torch.rand)(shape, generator=theirs)
            assert a.shape == b.shape and a.dtype == b.dtype == torch.float32
            assert torch.equal(a.view(torch.int32), b.view(torch.int32)), (shape, normal)
        assert torch.equal(ours.get_state(), theirs.get_state())
    # and the generators go on giving the same numbers through torch's own calls
    assert torch.equal(torch.randn(5, generator=ours), torch.randn(5, generator=theirs))


def test_draws_equal_torch_on_the_global_generator() -> None:
    """Training draws from torch's global generator: the kernels read and advance it as torch
    does, interleaved with torch's own draws (fewer than 16 normals are torch's own path)."""
    torch.manual_seed(123)
    torch.rand(3)
    start = torch.get_rng_state()
    want = [
        torch.randn(512, 4, 2, 64),
        torch.rand(512, 4, 2, 64),
        torch.randn(7),
        torch.randn(1000),
    ]
    end = torch.get_rng_state()
    torch.set_rng_state(start)
    got = [
        _kernels.randn((512, 4, 2, 64)),
        _kernels.rand((512, 4, 2, 64)),
        _kernels.randn((7,)),
        _kernels.randn((1000,)),
    ]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert torch.equal(torch.get_rng_state(), end)


def test_torch_draws_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``NEURONAS_TORCH_DRAWS=1`` turns the kernels off (torch's own calls)."""
    monkeypatch.setenv("NEURONAS_TORCH_DRAWS", "1")
    assert not _kernels.fast_draws()
    monkeypatch.setenv("NEURONAS_TORCH_DRAWS", "0")
    assert torch.equal(
        _kernels.rand((20,), torch.Generator().manual_seed(5)),
        torch.rand(20, generator=torch.Generator().manual_seed(5)),
    )
