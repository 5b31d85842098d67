"""The trainer end to end on the real digits-events data (tiny network, few samples), and the CLI."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

from neuronas.spec import ArchSpec
from neuronas.train import TrainResult, awareness_at, load_model, train_candidate

TINY = {
    "name": "tiny-mlp",
    "input": {"shape": [2, 32, 32], "timesteps": 4},
    "layers": [
        {"kind": "pool", "kernel": 4, "pool": "avg"},
        {"kind": "fc", "out": 32},
        {"kind": "fc", "out": 10},
    ],
    "mapping": {"adc_bits": 1, "adc_kind": "sa", "rows": 64},
}
QUICK = {
    "epochs": 2,
    "max_train_samples": 96,
    "max_eval_samples": 64,
    "eval_instances": 3,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def tiny() -> ArchSpec:
    return ArchSpec.from_dict(TINY)


def test_awareness_schedules() -> None:
    assert [awareness_at("none", s, 10) for s in (0, 5, 9)] == [0.0, 0.0, 0.0]
    assert [awareness_at("abrupt", s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    prog = [awareness_at("progressive", s, 10, ramp_fraction=0.5) for s in range(10)]
    assert prog[0] == 0.0 and prog[5:] == [1.0] * 5
    assert all(a <= b for a, b in zip(prog, prog[1:], strict=False))


def test_train_candidate_end_to_end(tiny: ArchSpec, tmp_path: Path) -> None:
    from neuronas.hardware import load_activity, load_chip

    chip = load_chip("rram-adcless-65nm")
    epochs_seen: list[tuple[int, float]] = []
    res = train_candidate(
        tiny,
        chip,
        "digits-events",
        out_dir=tmp_path,
        on_epoch=lambda e, a: epochs_seen.append((e, a)) or False,
        **QUICK,
    )
    assert isinstance(res, TrainResult)
    assert res.status == "ok" and res.epochs_run == 2 and [e for e, _ in epochs_seen] == [0, 1]
    assert len(res.accuracies) == 3 and all(0.0 <= a <= 1.0 for a in res.accuracies)
    assert res.accuracy_mean == pytest.approx(sum(res.accuracies) / 3)
    assert 0.0 <= res.float_accuracy <= 1.0
    assert [h["epoch"] for h in res.history] == [0, 1]
    assert res.history[0]["hardware_awareness"] < res.history[1]["hardware_awareness"] <= 1.0
    # the artefacts
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(res.to_dict()))
    act = load_activity(tmp_path / "metrics.json")
    assert act.source == "measured" and len(act.input_rates) == len(tiny.resolved())
    assert 0.0 < act.input_rates[0] < 1.0
    # row-group occupancy, measured in the same pass, one per weighted layer, through the JSON
    assert act.row_group_occupancy == tuple(res.activity["row_group_occupancy"])
    assert len(act.row_group_occupancy) == len(tiny.resolved())
    assert all(0.0 < v <= 1.0 for v in act.row_group_occupancy)
    # the checkpoint loads with weights_only=True and reproduces the chip's float accuracy
    state = torch.load(res.checkpoint, weights_only=True)
    assert "layers.1.weight" in state
    model = load_model(tiny, chip, res.checkpoint)
    assert model.hardware_awareness == 1.0 and not model.training
    # an RRAM chip: two manufactured instances compute different outputs
    from neuronas.snn import crossbar_layers
    from neuronas.train import dataset_tensors

    x = dataset_tensors("digits-events", "test", 4, shape=(2, 32, 32))[0][:8]
    first = crossbar_layers(model)[0]
    with torch.no_grad():
        pooled = torch.nn.functional.avg_pool2d(x.flatten(0, 1), 4).flatten(1)
        model.resample_chip_instance(0)
        a = first(pooled)
        model.resample_chip_instance(1)
        b = first(pooled)
    assert not torch.allclose(a, b)


def test_same_seed_same_result(tiny: ArchSpec) -> None:
    a = train_candidate(tiny, None, "digits-events", seed=3, **QUICK)
    b = train_candidate(tiny, None, "digits-events", seed=3, **QUICK)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert a.accuracies == b.accuracies and a.activity == b.activity
    assert a.accuracy_std == 0.0  # an ideal device: every chip instance is the same


def test_same_seed_same_result_on_a_noisy_chip(tiny: ArchSpec) -> None:
    """Device noise is drawn from the seed too: a search can cache and compare candidates."""
    from neuronas.hardware import load_chip

    chip = load_chip("rram-adcless-65nm")
    a = train_candidate(tiny, chip, "digits-events", seed=5, **QUICK)
    b = train_candidate(tiny, chip, "digits-events", seed=5, **QUICK)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert a.accuracies == b.accuracies and a.activity == b.activity


def test_on_epoch_can_stop_the_run(tiny: ArchSpec) -> None:
    res = train_candidate(
        tiny, None, "digits-events", on_epoch=lambda e, a: True, **{**QUICK, "epochs": 5}
    )
    assert res.status == "stopped" and res.epochs_run == 1 and "epoch 0" in res.reason
    assert res.accuracies  # still evaluated


def test_divergence_ends_the_run_with_a_reason(tiny: ArchSpec, tmp_path: Path) -> None:
    res = train_candidate(
        tiny, None, "digits-events", lr=1e30, out_dir=tmp_path, **{**QUICK, "epochs": 3}
    )
    assert res.status == "diverged"
    assert "non-finite" in res.reason or "nan" in res.reason.lower() or "inf" in res.reason
    assert res.checkpoint is None
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged"


# -- the CLI, through a real process ------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "neuronas", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def _write_arch(path: Path, **over: object) -> Path:
    path.write_text(ArchSpec.from_dict({**TINY, **over}).to_yaml())
    return path


@pytest.mark.slow
def test_cli_train_writes_metrics_and_checkpoint(repo_root: Path, tmp_path: Path) -> None:
    arch = _write_arch(tmp_path / "tiny.yaml")
    out = tmp_path / "run"
    r = _cli(
        "train",
        str(arch),
        "--chip",
        "rram-adcless-65nm",
        "--dataset",
        "digits-events",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--max-train-samples",
        "64",
        "--eval-instances",
        "2",
        "--schedule",
        "abrupt",
        cwd=repo_root,
    )
    assert r.returncode == 0, r.stderr
    assert "accuracy on chip" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and len(metrics["accuracies"]) == 2
    assert metrics["config"]["schedule"] == "abrupt"
    assert (out / "model.pt").is_file()


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["--dataset", "digits-event"],
            "digits-events",
        ),  # unknown name: lists / suggests the known ones
        (
            ["--dataset", "nmnist", "--data-root", "{tmp}/nowhere"],
            "nowhere",
        ),  # says where the files must be
        (["--dataset", "nmnist"], "data"),  # no data root at all
    ],
)
def test_cli_bad_dataset_input_is_one_line_exit_2(
    repo_root: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    arch = _write_arch(tmp_path / "tiny.yaml")
    if "nmnist" in args:
        arch = _write_arch(tmp_path / "tiny34.yaml", input={"shape": [2, 34, 34], "timesteps": 4})
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = _cli("train", str(arch), "--epochs", "1", *args, cwd=repo_root)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert needle in lines[0]


def test_cli_input_shape_mismatch_names_both_shapes(repo_root: Path, tmp_path: Path) -> None:
    arch = _write_arch(tmp_path / "rgb.yaml", input={"shape": [3, 32, 32], "timesteps": 4})
    r = _cli("train", str(arch), "--epochs", "1", cwd=repo_root)
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "[3, 32, 32]" in line and "[2, 32, 32]" in line


def test_cli_readout_size_must_match_the_classes(repo_root: Path, tmp_path: Path) -> None:
    layers = [{"kind": "pool", "kernel": 4, "pool": "avg"}, {"kind": "fc", "out": 5}]
    arch = _write_arch(tmp_path / "five.yaml", layers=layers)
    r = _cli("train", str(arch), "--epochs", "1", cwd=repo_root)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "5 outputs" in r.stderr and "10 classes" in r.stderr


def test_measured_activity_changes_the_cost(
    repo_root: Path, tmp_path: Path, tiny: ArchSpec
) -> None:
    """Spike rates measured by the trainer feed `neuronas cost --activity-file` and move the energy."""
    arch = _write_arch(tmp_path / "tiny.yaml")
    res = train_candidate(
        tiny, "rram-adcless-65nm", "digits-events", out_dir=tmp_path / "run", **QUICK
    )
    assert res.status == "ok"
    base = _cli(
        "cost",
        str(arch),
        "--chip",
        "rram-adcless-65nm",
        "--activity",
        "1.0",
        "--json",
        cwd=repo_root,
    )
    measured = _cli(
        "cost",
        str(arch),
        "--chip",
        "rram-adcless-65nm",
        "--activity-file",
        str(tmp_path / "run" / "metrics.json"),
        "--json",
        cwd=repo_root,
    )
    assert base.returncode == 0, base.stderr
    assert measured.returncode == 0, measured.stderr
    e_dense = json.loads(base.stdout)["energy_uj"]
    report = json.loads(measured.stdout)
    assert report["activity"]["source"] == "measured"
    assert report["activity"]["input_rates"] == pytest.approx(res.activity["input_rates"])
    assert report["activity"]["row_group_occupancy"] == pytest.approx(
        res.activity["row_group_occupancy"]
    )
    assert math.isfinite(report["energy_uj"]) and report["energy_uj"] < e_dense


@pytest.mark.gpu
def test_trains_and_evaluates_on_cuda(tiny: ArchSpec) -> None:
    res = train_candidate(tiny, "rram-adcless-65nm", "digits-events", device="cuda", **QUICK)
    assert res.status == "ok" and res.config["device"].startswith("cuda")
    assert len(res.accuracies) == 3


TINY_CNN = {
    "name": "tiny-cnn",
    "input": {"shape": [2, 16, 16], "timesteps": 3},
    "layers": [
        {"kind": "conv", "out": 4, "kernel": 3},
        {"kind": "pool", "kernel": 4},
        {"kind": "fc", "out": 10},
    ],
    "mapping": {"adc_bits": 1, "adc_kind": "sa", "rows": 16},
}


_PROXIES = (weakref.ProxyType, weakref.CallableProxyType)


def _live(kind: type) -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on some of torch's module objects warns
        warnings.simplefilter("ignore")
        # weak proxies are skipped: isinstance on a dead one raises (numba's code libraries
        # keep such proxies after a compiled function's module is dropped)
        return sum(1 for o in gc.get_objects() if type(o) not in _PROXIES and isinstance(o, kind))


def test_repeated_trainings_keep_no_model_graph_or_tensor_alive() -> None:
    """A long search trains hundreds of candidates in one process: after each training nothing of
    it may stay reachable (no model, no autograd graph, no per-trial tensors), so memory is flat."""
    from neuronas.snn import SpikingNetwork

    arch = ArchSpec.from_dict(TINY_CNN)
    quick = dict(QUICK, epochs=1, eval_instances=2, max_train_samples=64, max_eval_samples=32)
    train_candidate(
        arch, "rram-adcless-65nm", "digits-events", seed=0, **quick
    )  # data cache and kernels warm
    tensors_after_first = _live(torch.Tensor)
    for seed in (1, 2):
        res = train_candidate(arch, "rram-adcless-65nm", "digits-events", seed=seed, **quick)
        assert res.status == "ok"
    assert _live(SpikingNetwork) == 0
    assert _live(torch.Tensor) <= tensors_after_first


def test_data_cache_is_bounded_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    from neuronas.train import clear_data_cache, data_cache_info, dataset_tensors

    clear_data_cache()
    a = dataset_tensors("digits-events", "test", 2, shape=(2, 8, 8))
    assert (
        dataset_tensors("digits-events", "test", 2, shape=(2, 8, 8))[0] is a[0]
    )  # shared, not rebuilt
    one = data_cache_info()["bytes"]
    monkeypatch.setenv("NEURONAS_DATA_CACHE_MB", str(max(1, (3 * one) // 2**20)))
    for t in (3, 4, 5, 6):
        dataset_tensors("digits-events", "test", t, shape=(2, 8, 8))
    info = data_cache_info()
    assert 2 <= info["entries"] < 5  # older variants left; the newest kept
    assert info["bytes"] <= max(info["budget_bytes"], 2 * 6 * one)
    clear_data_cache()
    assert data_cache_info()["entries"] == 0


def _prefix_arch(pool: str, kernel: int, encoding: str = "events") -> ArchSpec:
    return ArchSpec.from_dict(
        {
            **TINY,
            "input": {"shape": [2, 32, 32], "timesteps": 4, "encoding": encoding},
            "layers": [
                {"kind": "pool", "kernel": kernel, "pool": pool},
                {"kind": "fc", "out": 32},
                {"kind": "fc", "out": 10},
            ],
        }
    )


@pytest.mark.parametrize(("pool", "kernel"), [("avg", 2), ("max", 4)])
def test_input_prefix_once_per_split_is_bit_identical(
    pool: str, kernel: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leading pools run once over each split give the per-batch path's numbers exactly:
    losses, accuracies (float and per chip instance), activity, occupancy and saved weights."""
    from neuronas.snn import build

    arch = _prefix_arch(pool, kernel)
    assert build(arch).input_prefix_length == 1
    runs = {}
    for name, env in (("once", "0"), ("per_batch", "1")):
        monkeypatch.setenv("NEURONAS_PER_BATCH_INPUT_PREFIX", env)
        runs[name] = train_candidate(
            arch, "rram-adcless-65nm", "digits-events", seed=2, out_dir=tmp_path / name, **QUICK
        )
    a, b = runs["once"], runs["per_batch"]
    assert a.status == b.status == "ok"
    assert [(h["train_loss"], h["train_accuracy"], h["val_accuracy"]) for h in a.history] == [
        (h["train_loss"], h["train_accuracy"], h["val_accuracy"]) for h in b.history
    ]
    assert a.accuracies == b.accuracies and a.float_accuracy == b.float_accuracy
    assert a.activity == b.activity and a.activity["row_group_occupancy"]
    sa = torch.load(tmp_path / "once" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "per_batch" / "model.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_input_prefix_stops_at_rate_encoding_and_skip_sources() -> None:
    """Rate encoding draws its spikes before the pools (nothing to precompute); a pool that a
    skip reads stays in the forward; prefixed and full forwards agree on events input."""
    from neuronas.snn import build

    rate = build(_prefix_arch("max", 2, encoding="rate"))
    assert rate.input_prefix_length == 0
    x = torch.rand(4, 3, 2, 32, 32)
    assert rate.apply_input_prefix(x) is x  # no draws taken outside the forward
    net = build(_prefix_arch("avg", 2)).eval()
    ev = (torch.rand(4, 3, 2, 32, 32) < 0.2).float()
    pooled = net.apply_input_prefix(ev)
    assert pooled.shape == (4, 3, 2, 16, 16)
    assert torch.equal(net(pooled, prefixed=True), net(ev))
    skip = build(
        ArchSpec.from_dict(
            {
                **TINY,
                "layers": [
                    {"kind": "pool", "kernel": 2, "pool": "max", "name": "p"},
                    {"kind": "conv", "out": 2, "kernel": 3, "padding": 1},
                    {
                        "kind": "conv",
                        "out": 2,
                        "kernel": 3,
                        "padding": 1,
                        "skip": {"from": "p", "op": "concat"},
                    },
                    {"kind": "fc", "out": 10},
                ],
            }
        )
    )
    assert skip.input_prefix_length == 0


@pytest.mark.parametrize(
    "layers",
    [
        [
            {"kind": "pool", "kernel": 2, "pool": "max"},
            {"kind": "fc", "out": 24},
            {"kind": "fc", "out": 10},
        ],
        [
            {"kind": "conv", "out": 4, "kernel": 3, "stride": 2},
            {"kind": "pool", "kernel": 2},
            {"kind": "fc", "out": 10},
        ],
    ],
    ids=["mlp", "cnn"],
)
def test_kernel_draws_train_bit_identical_to_torch_draws(
    layers: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crossbar's per-batch noise drawn by the numba kernels (``_kernels.rand`` / ``randn``)
    is torch's own stream: a training on the default (noisy) chip gives the same losses,
    accuracies, chip accuracy per instance, activity and saved weights as with torch's draws
    (``NEURONAS_TORCH_DRAWS=1``), and leaves torch's global generator in the same state."""
    from neuronas.snn import _kernels

    if not _kernels.fast_draws():
        pytest.skip("the numba draws are not used here (no numba, or another torch build)")
    arch = ArchSpec.from_dict({**TINY, "layers": layers})
    runs, states = {}, {}
    for name, env in (("kernels", "0"), ("torch", "1")):
        monkeypatch.setenv("NEURONAS_TORCH_DRAWS", env)
        runs[name] = train_candidate(
            arch, "rram-adcless-65nm", "digits-events", seed=3, out_dir=tmp_path / name, **QUICK
        )
        states[name] = torch.get_rng_state()
    a, b = runs["kernels"], runs["torch"]
    assert a.status == b.status == "ok"
    assert [(h["train_loss"], h["train_accuracy"], h["val_accuracy"]) for h in a.history] == [
        (h["train_loss"], h["train_accuracy"], h["val_accuracy"]) for h in b.history
    ]
    assert a.accuracies == b.accuracies and a.float_accuracy == b.float_accuracy
    assert a.activity == b.activity
    assert torch.equal(states["kernels"], states["torch"])
    sa = torch.load(tmp_path / "kernels" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "torch" / "model.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
