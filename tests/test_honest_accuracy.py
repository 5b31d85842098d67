"""Honest accuracy: the search selects by validation accuracy and never reads test labels before
its front is chosen; chip instances are reproducible, read noise included.

The search test runs the same tiny search twice on two dataset folders written here that differ
only in their test labels (scrambled in the second): every proposal, every stored objective and
the front must be identical, while the export (which reads the test split after the front is
chosen) must see the difference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _search_helpers import cli, trials_of

from neuronas.spec import ArchSpec

CLASSES = ["left", "middle", "right"]
W, H = 12, 8
SPAN_US = 10_000


def _sample(rng: np.random.Generator, label: int) -> np.ndarray:
    """Events mostly in the label's third of the sensor: a learnable task."""
    n = 60
    ev = np.zeros(n, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
    third = W // 3
    ev["x"] = np.where(
        rng.random(n) < 0.8, rng.integers(0, third, n) + label * third, rng.integers(0, W, n)
    )
    ev["y"] = rng.integers(0, H, n)
    ev["t"] = np.sort(rng.integers(0, SPAN_US + 1, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def _write_folder(root: Path, n_train: int = 60, n_test: int = 30) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    spec = {
        "name": "thirds",
        "task": "classification",
        "sensor": {"width": W, "height": H, "polarities": 2},
        "classes": CLASSES,
        "span_us": SPAN_US,
    }
    (root / "dataset.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for split, n in (("train", n_train), ("test", n_test)):
        d = root / split
        d.mkdir()
        rows = ["file,label"]
        for i in range(n):
            label = i % 3
            np.save(d / f"s{i:03d}.npy", _sample(rng, label))
            rows.append(f"s{i:03d}.npy,{CLASSES[label]}")
        (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _scramble_test_labels(root: Path) -> None:
    """Every test label moved to the next class: no test label is left right."""
    path = root / "test" / "labels.csv"
    lines = path.read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        name, label = line.split(",")
        out.append(f"{name},{CLASSES[(CLASSES.index(label) + 1) % 3]}")
    path.write_text("\n".join(out) + "\n")


SPACE = """\
name: thirds
dataset: digits-events
input: {timesteps: [2, 3]}
families:
  mlp: {depth: 1, width: [16, 64]}
neuron: {model: [lif, if]}
precision: {weight_bits: [2, 8]}
mapping: {adc_kind: [sa], crossbar: [64, 128]}
"""


def _search(tmp: Path, data: Path) -> Path:
    (tmp / "space.yaml").write_text(SPACE)
    args = ["search", "--space", "space.yaml", "--dataset", str(data), "--name", "r"]
    args += ["--trials", "8", "--seed", "2", "--epochs", "2", "--eval-instances", "2", "--quiet"]
    r = cli(args, tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    return tmp / "runs" / "r"


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    real = tmp_path_factory.mktemp("real")
    scrambled = tmp_path_factory.mktemp("scrambled")
    _write_folder(real / "data")
    shutil.copytree(real / "data", scrambled / "data")
    _scramble_test_labels(scrambled / "data")
    assert (real / "data" / "test" / "labels.csv").read_text() != (
        scrambled / "data" / "test" / "labels.csv"
    ).read_text()
    return _search(real, real / "data"), _search(scrambled, scrambled / "data")


def _numbers(history: list[dict] | None) -> list[dict]:
    """A training history without its wall-clock times."""
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history or []]


def test_search_never_reads_test_labels_before_the_front_is_chosen(
    two_searches: tuple[Path, Path],
) -> None:
    a_dir, b_dir = two_searches
    a, b = trials_of(a_dir), trials_of(b_dir)
    assert len(a) == len(b) >= 8
    trained = [t for t in a if t.user_attrs.get("trained")]
    assert trained, "nothing was trained: the test would prove nothing"
    assert all(t.user_attrs["accuracy_split"] == "validation" for t in trained if t.values)
    for ta, tb in zip(a, b, strict=True):
        assert ta.params == tb.params  # the same proposals, in the same order
        assert ta.state == tb.state and ta.values == tb.values
        assert ta.user_attrs.get("accuracy") == tb.user_attrs.get("accuracy")
        assert _numbers(ta.user_attrs.get("history")) == _numbers(tb.user_attrs.get("history"))

    fronts = []
    tests = []
    for run_dir in (a_dir, b_dir):
        r = cli(
            ["export", str(run_dir), "--out", "exp", "--instances", "3", "--no-nir"],
            run_dir.parent.parent,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        out = run_dir.parent.parent / "exp"
        members = sorted(p.name for p in out.iterdir() if p.is_dir())
        accs = [json.loads((out / m / "metrics.json").read_text())["accuracy"] for m in members]
        fronts.append((members, [acc["validation"]["per_instance"] for acc in accs]))
        tests.append([acc["test"]["per_instance"] for acc in accs])
        report = (out / "report.md").read_text()
        assert "The test split was not used for selection" in report
        assert all(
            acc["split"] == "validation" and not acc["test_used_for_selection"] for acc in accs
        )
    assert fronts[0] == fronts[1]  # the same members, the same validation accuracies
    # ... and the export did read the test labels: every scrambled one is wrong
    assert tests[0] != tests[1]


def test_export_reports_validation_and_test_with_intervals(two_searches: tuple[Path, Path]) -> None:
    """metrics.json: both splits over the export's instances with a Student-t interval; the
    first instances of the validation split repeat the search's own per-instance figures."""
    run_dir = two_searches[0]
    out = run_dir.parent.parent / "exp"  # written by the test above, or now
    if not out.is_dir():
        r = cli(
            ["export", str(run_dir), "--out", "exp", "--instances", "3", "--no-nir"],
            run_dir.parent.parent,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    for d in sorted(p for p in out.iterdir() if p.is_dir()):
        acc = json.loads((d / "metrics.json").read_text())["accuracy"]
        assert "Student-t" in acc["interval"]
        for split in ("validation", "test"):
            s = acc[split]
            assert s["instances"] == 3 and len(s["per_instance"]) == 3
            assert s["low"] <= s["mean"] <= s["high"]
            assert s["mean"] == pytest.approx(sum(s["per_instance"]) / 3)
        assert acc["validation"]["per_instance"][:2] == acc["per_instance"]
        assert acc["validation"]["samples"] == 6  # 10 % of the 60 training recordings
    import csv

    with open(out / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["accuracy_split"] == "validation" for r in rows)
    for r in rows:
        low, mean, high = (
            float(r[k]) for k in ("test_accuracy_low", "test_accuracy", "test_accuracy_high")
        )
        assert low <= mean <= high


# -- chip instances ---------------------------------------------------------------------------


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


def test_re_evaluating_a_member_reproduces_every_instance(tmp_path: Path) -> None:
    """Train on a noisy chip (programming and read noise), reload the checkpoint and evaluate it
    again on the same validation samples: the same per-instance accuracies, whatever torch's
    global generator holds; and the instances really differ (the noise is there)."""
    from neuronas.hardware import load_chip
    from neuronas.train import evaluate_on_chip, load_model, train_candidate, validation_tensors

    chip = load_chip("rram-adcless-65nm")
    assert chip.technology.device.read_noise_sigma > 0
    arch = ArchSpec.from_dict(TINY)
    kw = {"epochs": 1, "max_train_samples": 200, "eval_instances": 4, "num_threads": 1}
    res = train_candidate(arch, chip, "digits-events", seed=3, out_dir=tmp_path, **kw)
    assert res.config["eval_split"] == "validation" and res.config["eval_samples"] == 40
    x, y = validation_tensors("digits-events", 4, seed=3, shape=(2, 32, 32), max_train_samples=200)
    model = load_model(arch, chip, res.checkpoint)
    torch.manual_seed(12345)  # another global stream: must not matter
    again, _, _ = evaluate_on_chip(model, x, y, eval_instances=6, seed=3, measure_activity=False)
    assert again[:4] == list(res.accuracies)
    torch.manual_seed(999)
    third, _, _ = evaluate_on_chip(model, x, y, eval_instances=6, seed=3, measure_activity=False)
    assert third == again
    other, _, _ = evaluate_on_chip(model, x, y, eval_instances=6, seed=4, measure_activity=False)
    assert other != again  # another seed: other chips


def test_an_instance_reads_its_own_noise_stream() -> None:
    """In evaluation an instance's reads are fresh every forward but the same sequence each time
    the instance is drawn again; training reads stay on torch's global generator."""
    from neuronas.snn.crossbar import CrossbarConfig, CrossbarLinear, DeviceModel

    layer = CrossbarLinear(
        64, 8, CrossbarConfig(adc_kind="digital", adc_bits=0), DeviceModel(read_noise_sigma=0.05)
    ).eval()
    layer.hardware_awareness = 1.0
    x = (torch.rand(6, 64, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    with torch.no_grad():
        layer.resample_chip_instance(7)
        first = [layer(x) for _ in range(3)]
        assert not torch.equal(first[0], first[1])  # noise per read
        torch.rand(100)  # the global stream moves
        layer.resample_chip_instance(7)
        assert all(torch.equal(a, layer(x)) for a in first)
        layer.resample_chip_instance(8)
        assert not torch.equal(first[0], layer(x))
        # the cells are the same whether reads are fixed or not
        layer.resample_chip_instance(7, fixed_reads=False)
        eps = layer._prog_eps.clone()  # noqa: SLF001 - the instance's drawn cells
        layer.resample_chip_instance(7)
        assert torch.equal(eps, layer._prog_eps)  # noqa: SLF001
        layer.train()
        torch.manual_seed(1)
        a = layer(x)
        torch.manual_seed(1)
        assert torch.equal(a, layer(x))  # training draws from the global generator


def test_a_single_training_reports_the_test_split_only_when_asked() -> None:
    """``neuronas train`` and the experiments ask for the test split; the search never does."""
    from neuronas.train import train_candidate

    arch = ArchSpec.from_dict(TINY)
    kw = {"epochs": 1, "max_train_samples": 64, "max_eval_samples": 50, "num_threads": 1}
    quiet = train_candidate(arch, None, "digits-events", seed=1, **kw)
    asked = train_candidate(arch, None, "digits-events", seed=1, test_instances=2, **kw)
    assert quiet.test_accuracies == () and quiet.test_float_accuracy is None
    assert len(asked.test_accuracies) == 2 and asked.test_float_accuracy is not None
    assert asked.accuracies == quiet.accuracies  # the validation figures do not depend on it


def test_a_run_selected_on_the_test_split_is_labelled_and_not_resumed(
    two_searches: tuple[Path, Path], tmp_path: Path
) -> None:
    """A run stored before selection moved to the validation split (no ``accuracy_split`` in its
    metadata) still shows, labelled, but is not resumed: its trials' numbers mean something else."""
    import optuna

    shutil.copytree(two_searches[0], tmp_path / "runs" / "r")
    shutil.copy(two_searches[0].parent.parent / "space.yaml", tmp_path / "space.yaml")
    storage = f"sqlite:///{tmp_path / 'runs' / 'r' / 'study.db'}"
    study = optuna.load_study(study_name="r", storage=storage)
    meta = dict(study.user_attrs["neuronas"])
    assert meta["accuracy_split"] == "validation"
    del meta["accuracy_split"]
    study.set_user_attr("neuronas", meta)

    r = cli(["show", "r"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test acc" in r.stdout and "before selection moved to the validation split" in r.stdout
    r = cli(["search", "--name", "r", "--trials", "9", "--quiet"], tmp_path)
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "test-split accuracy" in line and "--name" in line


@pytest.mark.gpu
def test_instances_are_reproducible_on_cuda() -> None:
    """The read-noise streams live on the weights' device; re-evaluating on CUDA repeats too."""
    from neuronas.hardware import load_chip
    from neuronas.train import evaluate_on_chip, train_candidate, validation_tensors

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; none is present on this machine")
    from neuronas.snn import build

    chip = load_chip("rram-adcless-65nm")
    arch = ArchSpec.from_dict(TINY)
    res = train_candidate(
        arch, chip, "digits-events", epochs=1, max_train_samples=200, device="cuda", num_threads=1
    )
    assert res.status == "ok"
    x, y = validation_tensors("digits-events", 4, seed=0, shape=(2, 32, 32), max_train_samples=200)
    model = build(arch, chip).cuda()
    model.calibrate(x[:16].cuda().transpose(0, 1))
    kw = {"eval_instances": 3, "seed": 0, "device": "cuda", "measure_activity": False}
    first, _, _ = evaluate_on_chip(model, x, y, **kw)
    torch.cuda.manual_seed_all(77)
    assert evaluate_on_chip(model, x, y, **kw)[0] == first
