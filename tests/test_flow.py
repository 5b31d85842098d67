"""Optical flow as a task: the AEE metric against hand-computed values, the mean-flow baseline,
the task checks, the flow family's encoder-decoder skips (sampled, priced, built), a flow network
with a concatenation skip trained with the crossbar in the loop, and a tiny flow search whose
export carries AEE and uses the flow task's screening batch size."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _search_helpers import cli

from neuronas.errors import NeuronasError
from neuronas.hardware import load_chip
from neuronas.hardware.cost import estimate
from neuronas.search.pareto import DIRECTIONS, pareto_front
from neuronas.search.space import load_space, space_from_dict
from neuronas.search.trials import objective_values
from neuronas.settings import SCREENING, screening_for
from neuronas.spec import ArchSpec
from neuronas.tasks import TASKS, aee, batch_sums, check_task, mean_flow_baseline

FLOW_NET = {
    "name": "tiny-flow",
    "task": "dense",
    "input": {"shape": [4, 16, 16], "timesteps": 3},
    "layers": [
        {"kind": "conv", "out": 4, "kernel": 3, "stride": 2},
        {"kind": "deconv", "out": 2, "kernel": 4, "stride": 2, "padding": 1},
    ],
    "precision": {"weight_bits": 4},
    "mapping": {"adc_kind": "sar", "adc_bits": 4, "rows": 64, "cols": 64},
}


def test_aee_by_hand() -> None:
    # two 1x2 fields: errors (3, 4) -> 5, (0, 0) -> 0 in sample 0; (1, 0) -> 1, (0, -2) -> 2 in
    # sample 1: AEE over all four pixels (5 + 0 + 1 + 2) / 4 = 2.0
    target = np.zeros((2, 2, 1, 2))
    pred = np.zeros((2, 2, 1, 2))
    pred[0, :, 0, 0] = (3.0, 4.0)
    pred[1, :, 0, 0] = (1.0, 0.0)
    pred[1, :, 0, 1] = (0.0, -2.0)
    assert aee(pred, target) == pytest.approx(2.0)
    # over the pixels with events only (sample 0's first pixel and sample 1's second): (5 + 2) / 2
    mask = np.array([[[True, False]], [[False, True]]])
    assert aee(pred, target, mask) == pytest.approx(3.5)
    assert math.isnan(aee(pred, target, np.zeros_like(mask)))
    with pytest.raises(ValueError, match=r"\[N, 2, h, w\]"):
        aee(pred[:, :1], target[:, :1])


def test_batch_sums_add_up_to_the_split_aee() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, 2, 4, 4, generator=g), torch.randn(6, 2, 4, 4, generator=g)
    frames = (torch.rand(3, 6, 2, 4, 4, generator=g) > 0.7).float()
    sums = [
        batch_sums(TASKS["flow"], pred[i : i + 4], target[i : i + 4], frames[:, i : i + 4])
        for i in (0, 4)
    ]
    total = sum(s["aee"][0] for s in sums) / sum(s["aee"][1] for s in sums)
    events = sum(s["aee_events"][0] for s in sums) / sum(s["aee_events"][1] for s in sums)
    assert total == pytest.approx(aee(pred, target))
    assert events == pytest.approx(aee(pred, target, frames.sum(dim=(0, 2)) > 0))


def test_mean_flow_baseline_by_hand() -> None:
    # training flows 1 and 3 px in x everywhere: the mean predicts 2; test flows 2 and 5 -> 0, 3
    train = np.zeros((2, 2, 2, 2))
    train[0, 0], train[1, 0] = 1.0, 3.0
    test = np.zeros((2, 2, 2, 2))
    test[0, 0], test[1, 0] = 2.0, 5.0
    assert mean_flow_baseline(train, test)["aee"] == pytest.approx(1.5)


def test_the_task_check_names_what_is_wrong() -> None:
    arch = ArchSpec.from_dict(FLOW_NET)
    assert check_task(arch, "flow-events").metric == "aee"
    with pytest.raises(NeuronasError, match="needs task: classification"):
        check_task(arch, "digits-events")
    wrong = ArchSpec.from_dict(
        {
            **FLOW_NET,
            "layers": [
                *FLOW_NET["layers"][:1],
                {"kind": "deconv", "out": 3, "kernel": 4, "stride": 2, "padding": 1},
            ],
        }
    )
    with pytest.raises(NeuronasError, match=r"readout gives \[3, 16, 16\].*\[2, 16, 16\]"):
        check_task(wrong, "flow-events")


def test_aee_is_minimised_and_untrained_candidates_are_worst() -> None:
    assert DIRECTIONS["aee"] == "minimize"
    objs = ("aee", "energy_uj")
    assert pareto_front([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]], objs) == [0, 1]
    untrained = {"prior": {"metrics": {"energy_uj": 1.0}}, "aee_mean": None}
    assert objective_values(untrained, objs) == [1e30, 1.0]
    assert objective_values({**untrained, "aee_mean": 0.5}, objs) == [0.5, 1.0]


class _Draw:
    """A trial stand-in: uniform draws from a seeded generator; ``fixed`` pins parameters."""

    def __init__(self, seed: int, **fixed: object) -> None:
        self.rng = np.random.default_rng(seed)
        self.fixed = {k.replace("__", "."): v for k, v in fixed.items()}
        self.params: dict[str, object] = {}

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        v = self.fixed.get(name, low + step * int(self.rng.integers(0, (high - low) // step + 1)))
        self.params[name] = v
        return int(v)  # type: ignore[call-overload]

    def suggest_categorical(self, name: str, choices: list) -> object:
        v = self.fixed.get(name, choices[int(self.rng.integers(0, len(choices)))])
        self.params[name] = v
        return v


def _flow_space(blocks: int = 3, skip: list[str] | None = None):  # type: ignore[no-untyped-def]
    fam: dict[str, object] = {"blocks": blocks, "channels": [4, 8], "kernel": 3}
    if skip is not None:
        fam["skip"] = skip
    return space_from_dict(
        {
            "name": "f",
            "dataset": "flow-events",
            "input": {"timesteps": 2},
            "families": {"flow": fam},
            "mapping": {"adc_kind": ["sar"], "crossbar": 64},
        }
    )


def test_flow_skips_join_each_encoder_stage_to_the_decoder_at_its_resolution() -> None:
    space = _flow_space()
    assert list(space.families.flow.skip) == ["concat", "add", "none"]  # the family's default
    seen = set()
    for seed in range(30):
        trial = _Draw(seed)
        arch = space.sample(trial)
        op = trial.params["flow.skip"]
        seen.add(op)
        skips = {
            layer.name: (layer.skip.source, layer.skip.op) for layer in arch.layers if layer.skip
        }
        # three stages e0 e1 e2, then d2 d1 d0 (d0: the readout); d<i> reads e<i>'s resolution
        if op == "concat":
            assert skips == {"d1": ("e1", "concat"), "d0": ("e0", "concat")}
        elif op == "add":
            assert skips == {"d2": ("e1", "add"), "d1": ("e0", "add")}
        else:
            assert skips == {}
        widths = [trial.params[f"flow.channels_{i}"] for i in range(3)]
        for r in arch.resolved():
            if r.skip_op == "concat":  # the decoder's channels and the encoder stage's
                stage = int(arch.layers[r.index].name[1:])
                assert r.in_shape[0] == 2 * widths[stage] and r.fan_in == 2 * widths[stage] * 16
            if r.skip_op == "add":
                assert r.skip_shape == r.out_shape
        assert arch.output_shape == (2, 32, 32)
    assert seen == {"concat", "add", "none"}
    # one stage has no decoder stage below the first: no skip, and no skip parameter
    trial = _Draw(0)
    arch = _flow_space(blocks=1).sample(trial)
    assert "flow.skip" not in trial.params and not any(layer.skip for layer in arch.layers)
    assert _flow_space(skip=["none"]).sample(_Draw(0)).skip_sources == frozenset()


def test_a_concat_skip_widens_the_readout_and_costs_more() -> None:
    chip = load_chip("rram-sar-32nm")
    space = _flow_space(blocks=2)
    pinned = {"flow__channels_0": 8, "flow__channels_1": 8}
    plain = space.sample(_Draw(1, flow__skip="none", **pinned), chip)
    joined = space.sample(_Draw(1, flow__skip="concat", **pinned), chip)
    r_plain, r_joined = plain.resolved()[-1], joined.resolved()[-1]
    # the readout deconv reads d1's 8 channels and e0's 8: twice the rows of its crossbars
    assert (r_plain.fan_in, r_joined.fan_in) == (8 * 16, 16 * 16)
    at = 0.1
    e_plain = estimate(plain, chip, at).metric("energy_uj")
    e_joined = estimate(joined, chip, at).metric("energy_uj")
    assert e_joined > e_plain > 0
    assert estimate(joined, chip, at).metric("area_mm2") > estimate(plain, chip, at).metric(
        "area_mm2"
    )


def test_the_flow_task_screens_with_batch_16() -> None:
    assert screening_for("flow").batch_size == 16
    assert screening_for("flow").replace(batch_size=SCREENING.batch_size) == SCREENING
    assert screening_for("classification") == SCREENING


def test_flow_events_is_split_coded_for_the_shipped_space() -> None:
    space = load_space("flow")
    arch = space.sample(_Draw(0))
    assert arch.input.shape == (4, 32, 32)  # ON/OFF of the sample's first and second half
    assert set(space.families.flow.skip) == {"concat", "none"}


def test_a_flow_network_trains_on_the_chip_and_reports_aee_and_the_baseline() -> None:
    from neuronas.train import train_candidate

    net = {
        **FLOW_NET,
        "layers": [
            {"kind": "conv", "out": 4, "kernel": 3, "stride": 2, "name": "e0"},
            {"kind": "conv", "out": 4, "kernel": 3, "stride": 2},
            {"kind": "deconv", "out": 4, "kernel": 4, "stride": 2, "padding": 1},
            {
                "kind": "deconv",
                "out": 2,
                "kernel": 4,
                "stride": 2,
                "padding": 1,
                "skip": {"from": "e0", "op": "concat"},
            },
        ],
    }
    r = train_candidate(
        ArchSpec.from_dict(net),
        "rram-adcless-65nm",
        "flow-events",
        epochs=1,
        max_train_samples=32,
        max_eval_samples=16,
        eval_instances=2,
    )
    assert r.status == "ok" and r.metric == "aee" and r.accuracy_mean is None
    assert r.aee_mean is not None and 0 < r.aee_mean < 20 and len(r.aees) == 2
    assert r.aee_events_mean is not None and r.baseline_aee is not None
    # the flow at 16 x 16 is half the sensor's pixels: the mean-flow baseline is ~1.5 px
    assert 0.5 < r.baseline_aee < 3.0
    assert "val_aee" in r.history[0] and "train_aee" in r.history[0]


def test_a_tiny_flow_search_exports_a_front_over_aee(tmp_path: Path) -> None:
    space = tmp_path / "flow-tiny.yaml"
    space.write_text(
        "name: flow-tiny\ndataset: flow-events\ninput: {timesteps: 2, shape: [4, 16, 16]}\n"
        "families:\n  flow: {blocks: 1, channels: [4, 8], kernel: 3}\n"
        "neuron: {model: lif}\nprecision: {weight_bits: [4, 6]}\n"
        "mapping: {adc_kind: [sa], crossbar: 64}\n"
    )
    fast = ["--epochs", "1", "--max-train-samples", "16", "--max-eval-samples", "8"]
    res = cli(
        [
            "search",
            "--space",
            str(space),
            "--trials",
            "3",
            "--startup-trials",
            "1",  # the third trial is proposed by expected hypervolume improvement over AEE
            "--name",
            "f",
            *fast,
            "--eval-instances",
            "1",
            "--quiet",
        ],
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    run = json.loads((tmp_path / "runs" / "f" / "run.json").read_text())
    assert run["objectives"] == ["aee", "energy_uj", "latency_us"]
    assert run["batch_size"] == 16  # the flow task's screening default
    import optuna

    url = f"sqlite:///{tmp_path / 'runs' / 'f' / 'study.db'}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    assert study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    proposals = [t.system_attrs.get("neuronas:proposal", {}) for t in study.trials]
    guided = [p for p in proposals if p.get("how") == "expected hypervolume improvement"]
    assert guided and all(p["predicted_aee"] > 0 for p in guided)
    res = cli(["export", "f", "--no-chip-package"], tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "runs" / "f" / "export"
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert rows and float(rows[0]["aee"]) > 0 and float(rows[0]["baseline_aee"]) > 0
    member = json.loads(next(out.glob("01_*/metrics.json")).read_text())
    assert member["aee"]["mean"] == pytest.approx(float(rows[0]["aee"]), rel=1e-5)
    assert member["objectives"]["aee"] == pytest.approx(member["aee"]["mean"])
    report = (out / "report.md").read_text()
    assert "AEE" in report
    # the front table's validation and test cells hold the export's AEE measurement in pixels
    test_aee = member["aee"]["test"]
    assert f"{test_aee['mean']:.3f} [{test_aee['low']:.3f}, {test_aee['high']:.3f}] px" in report
    assert f"{member['aee']['validation']['mean']:.3f} [" in report
    # a classification objective on a flow dataset is refused in one line
    res = cli(
        [
            "search",
            "--space",
            str(space),
            "--trials",
            "1",
            "--name",
            "g",
            "--objectives",
            "accuracy",
            "energy_uj",
            *fast,
        ],
        tmp_path,
    )
    assert res.returncode == 2 and "use aee" in res.stderr
