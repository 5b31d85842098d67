"""The training-free score (SAHD, after SNASNet): hand-checked kernel, and the search filter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _search_helpers import FAST, cli, trials_of, write_space

from neuronas.search.proxy import sahd_kernel, sahd_score
from neuronas.spec import ArchSpec


def test_kernel_by_hand() -> None:
    # one layer, one timestep, 3 samples x 4 neurons; rate r = 5/12
    c = torch.tensor([[[1.0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 1, 0]]])
    k = sahd_kernel([c])
    r = 5 / 12
    # samples 0 and 1: one shared spike, two shared silences
    assert float(k[0, 1]) == pytest.approx((1 / r + 2 / (1 - r)) / 4)
    # samples 0 and 2: nothing in common
    assert float(k[0, 2]) == pytest.approx(0.0)
    assert torch.allclose(k, k.T)


def test_kernel_sums_layers_and_timesteps() -> None:
    a = (torch.rand(3, 5, 7) < 0.3).float()
    b = (torch.rand(2, 5, 4) < 0.5).float()
    assert torch.allclose(sahd_kernel([a, b]), sahd_kernel([a]) + sahd_kernel([b]))


def _mlp(width: int) -> ArchSpec:
    return ArchSpec.from_dict(
        {
            "input": {"shape": [64], "timesteps": 4},
            "layers": [{"kind": "fc", "out": width}, {"kind": "fc", "out": 10}],
            "neuron": {"model": "if", "threshold": 0.2},
        }
    )


def test_score_separates_distinct_inputs_from_identical_ones() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 16, 64, generator=g) < 0.3).float()
    same = x[:, :1].expand(4, 16, 64).contiguous()
    distinct = sahd_score(_mlp(128), x)
    identical = sahd_score(_mlp(128), same)
    assert math.isfinite(distinct)
    # identical inputs give identical spike patterns: a rank-one kernel (ridge aside)
    assert identical < distinct - 10
    assert sahd_score(_mlp(128), x) == distinct  # deterministic for a seed


@pytest.mark.slow
def test_search_filter_skips_training_below_the_quantile(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    r = cli(
        [
            "search",
            "--space",
            str(space),
            "--trials",
            "14",
            "--name",
            "px",
            "--seed",
            "2",
            "--proxy-quantile",
            "0.9",
            *FAST,
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    trials = trials_of(tmp_path / "runs" / "px")
    scored = [
        t
        for t in trials
        if t.user_attrs.get("status") not in ("infeasible", "incompatible")
        and "cached_from" not in t.user_attrs
    ]
    assert all("proxy_score" in t.user_attrs for t in scored)
    rejected = [t for t in trials if t.user_attrs.get("status") == "proxy_rejected"]
    for t in rejected:
        assert t.state.name == "PRUNED" and not t.user_attrs["trained"]
        assert not (tmp_path / "runs" / "px" / "trials" / f"{t.number:04d}").exists()
    trained = [t for t in trials if t.user_attrs.get("trained")]
    if len(trained) >= 5 and len(trials) > len(trained) + 2:
        assert rejected, (
            "with the 0.9-quantile most candidates after the first five trained are filtered"
        )


def test_the_score_reads_only_its_batch(tmp_path: Path) -> None:
    """A tonic (or folder) split frames on access: the score reads its first ``proxy_batch``
    samples, not the whole split -- a corrupt fifth recording is never read."""
    import numpy as np
    from _tonic_files import shd_sample, write_shd_h5

    from neuronas.search.objective import evaluate
    from neuronas.settings import SCREENING

    rng = np.random.default_rng(0)
    samples = [shd_sample(rng, c) for c in range(20)]
    times, units, label = samples[4]
    samples[4] = (np.concatenate([[-1.0], times]), np.concatenate([[0], units]), label)
    write_shd_h5(tmp_path / "SHD" / "shd_train.h5", samples)
    write_shd_h5(tmp_path / "SHD" / "shd_test.h5", samples[:2])
    arch = ArchSpec.from_dict(
        {
            "name": "tiny",
            "task": "classification",
            "input": {"shape": [700], "timesteps": 3, "encoding": "events"},
            "layers": [{"kind": "fc", "out": 16}, {"kind": "fc", "out": 20}],
            "neuron": {"model": "lif", "tau": 2.0, "threshold": 1.0, "reset": "hard"},
            "precision": {"weight_bits": 4, "membrane_bits": 8},
            "mapping": {"adc_bits": 1, "adc_kind": "sa", "rows": 64, "cols": 64},
        }
    ).to_dict()
    settings = SCREENING.replace(
        dataset="shd",
        data_root=str(tmp_path),
        proxy_quantile=0.5,
        proxy_batch=4,
        proxy_reference=(1e9,) * 6,  # every score is below: stopped before training
        seed=0,
    )
    out = evaluate(arch, "rram-adcless-65nm", settings)
    assert out["status"] == "proxy_rejected", out["reason"]
    assert math.isfinite(out["proxy_score"]) and not out["trained"]
