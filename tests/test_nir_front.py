"""A tiny search's exported members, every one loaded by the *unpatched* importers of snnTorch
1.0, Norse 1.1 and nirtorch 2.6 and run on a batch of its test data.

The search (grid sampler, a space written here) covers every neuron model (lif, ld_lif, if) in
an MLP and a CNN with max pooling, on sense-amplifier arrays of 64 rows (every layer has
several row groups), and ``neuronas export --trials`` exports one trial of each kind, whether
or not it is on the front.  Per member:

* ``model.nir`` (the converters as comparator banks into memoryless LIF nodes) reproduces
  neuronas' chip mode on an ideal device to float rounding, in neuronas' reader, Norse,
  nirtorch (NIR's LIF and CubaLIF supplied: nirtorch maps no neurons) and snnTorch;
* IF and LD-LIF neurons are integrating ``CubaLIF`` nodes (not ``nir.IF``, which snnTorch 1.0
  imports as a leaky neuron returning a tuple): snnTorch runs them as ``Synaptic(alpha=0,
  beta=1.0)``, so every member runs in every importer;
* documented difference, asserted rather than skipped: LD-LIF is exported as IF with its decay
  in the bias, which stock importers run without LD-LIF's clamp at rest: there they equal the
  graph run as plain IF (not chip mode), while neuronas' reader runs LD-LIF exactly;
* ``model_ideal.nir`` (exact sums) runs in the same importers, which agree with each other;
* ``metrics.json`` records the chip, NIR and NIR-ideal accuracies, and the NIR accuracy is the
  ideal-device chip-mode accuracy on the same test samples.

Tolerance: 1e-5 of the largest output; inputs are spikes, every partial sum an integer and every
comparator exact, so only the periphery's float32 products may round differently, while one
comparator that differed would move an output by a converter step x weight step (>> 1e-5).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _search_helpers import FAST, cli, trials_of

snntorch = pytest.importorskip("snntorch")
pytest.importorskip("norse")
pytest.importorskip("nirtorch")

SPACE = """\
name: nirfront
dataset: digits-events
input: {timesteps: [3, 4], downsample: 4}
families:
  mlp: {depth: 1, width: 24}
  cnn: {blocks: 1, channels: 4, kernel: 3, pool: [max], hidden: [0]}
neuron: {model: [lif, ld_lif, if], threshold: 1.0}
precision: {weight_bits: 4}
mapping: {adc_kind: sa, crossbar: 64}
"""


def _if_semantics(graph: Any) -> Any:
    """``graph`` with the LD-LIF metadata dropped: what a stock importer runs (plain IF)."""
    g = copy.deepcopy(graph)
    for node in g.nodes.values():
        meta = getattr(node, "metadata", None)
        if meta and meta.get("neuronas_model") == "ld_lif":
            meta.pop("neuronas_model")
            meta.pop("folded_into_bias", None)
    return g


@pytest.mark.slow
def test_every_member_of_a_tiny_search_runs_in_the_stock_importers(tmp_path: Path) -> None:
    import nir
    import torch
    from snntorch.import_nir import import_from_nir
    from test_export import NIRTORCH_WITH_BIAS, run_nirtorch, run_norse, run_snntorch

    from neuronas.data import load_dataset
    from neuronas.snn import build
    from neuronas.snn.nir import run_graph
    from neuronas.spec import ArchSpec

    (tmp_path / "space.yaml").write_text(SPACE)
    # a grid of 12 (2 families x 3 neuron models x 2 timesteps), 11 trials: every kind at
    # least once, and the search ends on its trial count (the grid running out is tested in
    # test_search_errors.py)
    args = ["search", "--space", "space.yaml", "--sampler", "grid", "--trials", "11"]
    r = cli([*args, "--name", "nf", "--seed", "0", *FAST], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = trials_of(tmp_path / "runs" / "nf")
    first: dict[tuple[str, str], int] = {}  # the first trained trial of each kind
    for t in trials:
        if t.user_attrs.get("status") == "ok":
            first.setdefault((t.params["family"], t.params["neuron"]), t.number)
    assert len(first) == 6, [(t.number, t.params, t.user_attrs.get("status")) for t in trials]
    chosen = [str(n) for n in sorted(first.values())]
    r = cli(["export", "nf", "--out", "exp", "--instances", "2", "--trials", *chosen], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exported 6 chosen trial(s)" in r.stdout
    members = sorted(p for p in (tmp_path / "exp").iterdir() if p.is_dir())
    assert len(members) == 6

    def nirtorch_run(g: Any, xs: torch.Tensor) -> torch.Tensor:
        return run_nirtorch(g, xs, NIRTORCH_WITH_BIAS)

    stock = {"norse": run_norse, "nirtorch": nirtorch_run, "snntorch": run_snntorch}
    kinds = set()
    for d in members:
        arch = ArchSpec.from_yaml(d / "arch.yaml")
        family = "cnn" if any(layer.kind == "conv" for layer in arch.layers) else "mlp"
        model_kind = arch.neuron.model
        kinds.add((family, model_kind))
        assert family == "mlp" or any(
            layer.kind == "pool" and layer.pool == "max" for layer in arch.layers[1:]
        )
        meta = json.loads((d / "metrics.json").read_text())
        acc = meta["accuracy"]
        for key in ("nir", "nir_ideal"):
            assert 0.0 <= acc[key] <= 1.0, (d.name, key, acc[key])
        assert acc["test"]["mean"] is not None and acc["test"]["instances"] == 2
        graph = nir.read(str(d / "model.nir"))
        ideal = nir.read(str(d / "model_ideal.nir"))
        assert "per-row-group conversion represented" in graph.metadata["notes"]
        assert any(name.endswith("_cmp") for name in graph.nodes)

        # a batch of the member's test data, and chip mode on an ideal device
        x_all, y_all = load_dataset(
            "digits-events", "test", arch.input.timesteps, input_shape=tuple(arch.input.shape)
        ).tensors()
        n_eval = int(meta["accuracy"]["test_samples"])
        x_all = torch.as_tensor(x_all[:n_eval]).float().transpose(0, 1)
        y_all = torch.as_tensor(y_all[:n_eval]).long()
        chip_mode = build(arch, None)
        chip_mode.load_state_dict(torch.load(d / "model.pt", weights_only=True))
        chip_mode.set_hardware_awareness(1.0)
        chip_mode.eval()
        with torch.no_grad():
            want_all = chip_mode(x_all)
        x, want = x_all[:, :8], want_all[:, :8].reshape(arch.input.timesteps, 8, -1)
        tol = 1e-5 * float(want.abs().max())
        assert float(want.std(0).max()) > 1e-3, "spikes reach the readout"

        # model.nir is the chip's network: neuronas' reader runs every neuron model exactly
        got = run_graph(graph, x).reshape(want.shape)
        assert float((got - want).abs().max()) <= tol, d.name
        assert not any(isinstance(n, nir.IF) for n in graph.nodes.values())
        if model_kind != "lif":
            syn = [m for m in import_from_nir(graph).modules() if isinstance(m, snntorch.Synaptic)]
            assert syn and all(torch.all(torch.as_tensor(m.beta) == 1.0) for m in syn)
        for name, run in stock.items():
            theirs = run(graph, x).detach().reshape(want.shape)
            if model_kind == "ld_lif":
                # documented: stock importers run the IF + bias export, without the clamp
                want_stock = run_graph(_if_semantics(graph), x).reshape(want.shape)
                assert float((theirs - want_stock).abs().max()) <= tol, (d.name, name)
            else:
                assert float((theirs - want).abs().max()) <= tol, (d.name, name)

        # model_ideal.nir (exact sums) runs in the same importers, which agree
        ref = run_graph(_if_semantics(ideal) if model_kind == "ld_lif" else ideal, x)
        ref = ref.reshape(want.shape)
        for name, run in stock.items():
            theirs = run(ideal, x).detach().reshape(want.shape)
            assert float((theirs - ref).abs().max()) <= 1e-5 * float(ref.abs().max()), name

        # the recorded NIR accuracy is the ideal-device chip-mode accuracy on the same samples
        # (up to argmax ties within the tolerance)
        mean = want_all.mean(0).reshape(n_eval, -1)
        top2 = mean.topk(2, dim=-1).values
        ties = int((top2[:, 0] - top2[:, 1] <= 1e-5 * float(mean.abs().max())).sum())
        chip_ideal = float((mean.argmax(-1) == y_all).float().mean())
        assert abs(chip_ideal - acc["nir"]) * n_eval <= ties + 1e-9, (chip_ideal, acc["nir"])
    assert kinds == {(f, m) for f in ("mlp", "cnn") for m in ("lif", "ld_lif", "if")}
    csv = (tmp_path / "exp" / "pareto.csv").read_text().splitlines()
    assert csv[0].endswith(",on_front") and any(line.endswith(",1") for line in csv[1:])
    report = (tmp_path / "exp" / "report.md").read_text()
    assert "Trials chosen for export" in report and "## Exported trials" in report
