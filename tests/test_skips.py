"""Skip connections end to end: a network with residual adds and a concatenation is priced,
trained for an epoch, exported to NIR as graph edges, and the graph runs in snnTorch's unpatched
importer (and nirtorch's, and neuronas' own reader) with the network's own outputs.

What neuronas computes (:mod:`neuronas.snn.build`): ``add`` puts the source's spikes into the
consumer's output current before its neuron; ``concat`` joins the source's channels to the
consumer's input.  The NIR graph expresses both with edges, which NIR (and nirtorch, which
snnTorch imports through) sums at the receiving node.  A digital (exact-sum) crossbar on an
ideal device computes exactly the quantized weights the graph holds, so the outputs must agree
to float32 rounding (1e-5; one differing spike would move an output by a whole weight).

Documented difference (asserted, not patched): Norse 1.1 imports through nirtorch's deprecated
``load``, whose executor orders nodes by a depth-first trace rather than topologically: on a
graph with skip edges it returned an inner node's output (conv5's 6 x 4 x 4 spikes) or a readout
of the right shape and wrong values (chain graphs run exactly: ``test_export.py``).
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import nir
import pytest
import torch
from test_export import (
    IF,
    LIF,
    _graph,
    _inputs,
    _model,
    _ours,
    run_neuronas,
    run_nirtorch,
    run_norse,
    run_snntorch,
)

from neuronas.hardware import Activity, estimate, load_chip
from neuronas.snn import build
from neuronas.snn.nir import to_nir
from neuronas.spec import ArchSpec

pytest.importorskip("snntorch")

T = 6
#: residual adds (into hidden neurons, from a conv and from a pool), channel concatenations into
#: a conv and into the first (flattening) fc, an add into an fc's neurons and a concatenation
#: into the readout
RES = {
    "input": {"shape": [2, 8, 8], "timesteps": T},
    "layers": [
        {"name": "stem", "kind": "conv", "out": 4, "kernel": 3},
        {"kind": "conv", "out": 4, "kernel": 3},
        {
            "name": "b0",
            "kind": "conv",
            "out": 4,
            "kernel": 3,
            "skip": {"from": "stem", "op": "add"},
        },
        {"name": "p0", "kind": "pool", "kernel": 2, "pool": "max"},
        {"kind": "conv", "out": 4, "kernel": 3, "skip": {"from": "p0", "op": "add"}},
        {"kind": "conv", "out": 6, "kernel": 3, "skip": {"from": "p0", "op": "concat"}},
        {"name": "h", "kind": "fc", "out": 12, "skip": {"from": "p0", "op": "concat"}},
        {"kind": "fc", "out": 12, "skip": {"from": "h", "op": "add"}},
        {"kind": "fc", "out": 5, "skip": {"from": "h", "op": "concat"}},
    ],
    "precision": {"weight_bits": 4},
    "mapping": {"adc_kind": "digital", "adc_bits": 0, "rows": 32, "cols": 32},
}
#: the same with a residual add into the readout (which has no neuron)
RES_ADD_OUT = copy.deepcopy(RES)
RES_ADD_OUT["layers"][-1] = {"kind": "fc", "out": 12, "skip": {"from": "h", "op": "add"}}


def test_add_joins_the_current_and_concat_the_input() -> None:
    arch, model = _model(RES, LIF, seed=0, gain=4.0)
    seen: dict[int, Any] = {}
    layers = model.layers
    hooks = [
        layers[i].register_forward_hook(
            lambda _m, inp, out, i=i: seen.__setitem__(i, (inp[0], out))
        )
        for i in (0, 4, 5)
    ]
    spikes: dict[int, Any] = {}
    nh = [
        model.neurons[n].register_forward_hook(
            lambda _m, inp, out, n=n: spikes.__setitem__(n, (inp[0], out))
        )
        for n in range(len(model.neurons))
    ]
    with torch.no_grad():
        model(_inputs(arch))
    for h in hooks + nh:
        h.remove()
    # neurons: 0 stem, 1, 2 b0, 3 (layer 4), 4 (layer 5), ...; pool p0 = maxpool(b0 spikes)
    b0 = spikes[2][1]
    p0 = torch.nn.functional.max_pool2d(b0.flatten(0, 1), 2)
    cur4 = seen[4][1]  # the crossbar's current of layer 4, [T*B, 4, 4, 4]
    assert torch.allclose(spikes[3][0].flatten(0, 1), cur4 + p0)  # add: current + spikes
    inp5 = seen[5][0]  # layer 5's crossbar reads [layer 4's spikes, p0] on 8 channels
    assert inp5.shape[1] == 8
    assert torch.equal(inp5[:, :4], spikes[3][1].flatten(0, 1)) and torch.equal(inp5[:, 4:], p0)


@pytest.mark.parametrize("neuron", [LIF, IF], ids=["lif", "if"])
@pytest.mark.parametrize("spec", [RES, RES_ADD_OUT], ids=["concat-readout", "add-readout"])
def test_skip_graph_runs_in_snntorch_nirtorch_and_neuronas(
    tmp_path: Path, spec: dict, neuron: dict
) -> None:
    arch, model = _model(spec, neuron, seed=0, gain=4.0)
    x = _inputs(arch)
    ours = _ours(arch, model, x)
    graph = _graph(arch, model, tmp_path)
    edges = set(graph.edges)
    n = neuron["model"]  # the neuron nodes' prefix: lif<i> (nir.LIF), if<i> (integrating CubaLIF)
    assert (f"{n}0", f"{n}2") in edges and ("pool3_or", f"{n}4") in edges  # adds: into the neuron
    assert ("pool3_or", "conv5_skip") in edges and ("conv5_skip", f"{n}5") in edges  # concat
    assert (
        graph.nodes["conv5"].weight.shape[1] == 4 and graph.nodes["conv5_skip"].weight.shape[1] == 4
    )
    assert ("pool3_or", "fc6_skip") in edges  # concat into the flattening fc: [12, 4, 4, 4]
    assert graph.nodes["fc6_skip"].weight.shape == (12, 4, 4, 4)
    assert ("sum8", "output") in edges and sum(b == "output" for _, b in edges) == 1
    for run in (run_snntorch, run_nirtorch, run_neuronas):
        theirs = run(graph, x).detach()
        assert theirs.shape == ours.shape
        assert torch.allclose(theirs, ours, atol=1e-5, rtol=0), (
            run.__name__,
            (theirs - ours).abs().max(),
        )
    # the documented difference (module docstring): Norse does not compute the readout
    norse_out = run_norse(graph, x).detach()
    assert norse_out.shape != ours.shape or (norse_out - ours).abs().max() > 1e-2


def test_residual_network_prices_trains_an_epoch_and_runs_in_snntorch(tmp_path: Path) -> None:
    from neuronas.train import dataset_tensors, load_model, train_candidate

    spec = {
        "name": "res-e2e",
        "input": {"shape": [2, 32, 32], "timesteps": 4},
        "layers": [
            {"kind": "pool", "kernel": 4, "pool": "max"},  # 2 x 8 x 8
            {"name": "stem", "kind": "conv", "out": 4, "kernel": 3},
            {"kind": "conv", "out": 4, "kernel": 3},
            {
                "name": "b0",
                "kind": "conv",
                "out": 4,
                "kernel": 3,
                "skip": {"from": "stem", "op": "add"},
            },
            {"kind": "conv", "out": 4, "kernel": 3},
            {"kind": "conv", "out": 8, "kernel": 3, "skip": {"from": "b0", "op": "concat"}},
            {"kind": "fc", "out": 10},
        ],
        "precision": {"weight_bits": 4},
        "mapping": {"adc_kind": "digital", "adc_bits": 0, "rows": 64, "cols": 64},
    }
    arch = ArchSpec.from_dict(spec)
    chip = load_chip("digital-cim-40nm")
    prior = estimate(arch, chip)
    assert prior.energy_uj > 0 and prior.memory_kb > 0
    res = train_candidate(
        arch,
        None,
        "digits-events",
        epochs=1,
        out_dir=tmp_path,
        max_train_samples=64,
        max_eval_samples=32,
        eval_instances=1,
        num_threads=1,
    )
    assert res.status == "ok" and res.epochs_run == 1 and 0.0 <= res.accuracy_mean <= 1.0
    act = Activity.from_dict(res.activity)
    # every hidden layer spikes, so the comparison below is between networks that compute
    assert all(r > 0.01 for r in act.output_rates[:-1]), act.output_rates
    measured = estimate(arch, chip, act)
    assert measured.energy_uj > 0 and measured.activity.source == "measured"
    model = load_model(arch, None, res.checkpoint)
    x = dataset_tensors("digits-events", "test", 4, shape=(2, 32, 32))[0][:8].transpose(0, 1)
    with torch.no_grad():
        ours = model(x.float())
    path = tmp_path / "model.nir"
    nir.write(str(path), to_nir(model, arch))
    graph = nir.read(str(path))
    theirs = run_snntorch(graph, x.float()).detach()
    # the readout after a feature map is [10, 1, 1] in NIR: compare flat
    assert theirs.shape == (4, 8, 10)
    assert torch.allclose(theirs, ours.reshape(4, 8, 10), atol=1e-4, rtol=0), (
        (theirs - ours).abs().max()
    )


#: the shipped residual space narrowed so that every candidate has a skip (add or concat)
RESIDUAL_SPACE = """\
name: tiny-residual
dataset: digits-events
input: {timesteps: 3, downsample: 4}
families:
  resnet: {stem: [4, 8], blocks: 1, width: [4], kernel: [3], skip: [add, concat], pool: [max]}
neuron: {model: lif}
precision: {weight_bits: [4]}
mapping: {adc_kind: [sa], crossbar: [64]}
"""


def test_a_residual_space_search_of_two_trials_runs_and_exports(tmp_path: Path) -> None:
    from _search_helpers import FAST, cli, trials_of, write_space

    space = write_space(tmp_path, RESIDUAL_SPACE)
    args = ["search", "--space", str(space), "--trials", "2", "--name", "res", "--seed", "0"]
    r = cli([*args, *FAST], tmp_path)
    assert r.returncode == 0, r.stderr
    trials = trials_of(tmp_path / "runs" / "res")
    trained = [t for t in trials if t.user_attrs.get("trained")]
    assert len([t for t in trials if not t.user_attrs.get("uncounted")]) == 2 and trained
    for t in trials:
        assert t.params["resnet.skip_0"] in ("add", "concat")
    r = cli(["export", "res", "--out", "exp"], tmp_path)
    assert r.returncode == 0, r.stderr
    members = sorted(p for p in (tmp_path / "exp").iterdir() if p.is_dir())
    assert members
    for d in members:
        arch = ArchSpec.from_yaml(d / "arch.yaml")
        assert any(layer.skip is not None for layer in arch.layers)
        # model.nir, with the converters where it represents them (comparator banks into
        # memoryless LIF nodes, a chain per layer), loads in the unpatched snnTorch
        graph = nir.read(str(d / "model.nir"))
        inputs = Counter(b for _, b in graph.edges)
        assert max(inputs.values()) == 2  # the skip edge meets the main path at one node
        x = (torch.rand(arch.input.timesteps, 2, *arch.input.shape) < 0.2).float()
        assert run_snntorch(graph, x).shape == (arch.input.timesteps, 2, 10)


def test_encoder_decoder_with_concat_skips_builds_and_prices() -> None:
    """Spike-FlowNet's decoder reads its encoder's maps beside its own: concat into deconvs."""
    arch = ArchSpec.from_dict(
        {
            "task": "dense",
            "input": {"shape": [4, 16, 16], "timesteps": 3},
            "layers": [
                {"name": "e1", "kind": "conv", "out": 8, "kernel": 3, "stride": 2},  # 8 x 8 x 8
                {"name": "e2", "kind": "conv", "out": 16, "kernel": 3, "stride": 2},  # 16 x 4 x 4
                {"name": "d2", "kind": "deconv", "out": 8, "kernel": 4, "stride": 2, "padding": 1},
                {
                    "kind": "deconv",
                    "out": 2,
                    "kernel": 4,
                    "stride": 2,
                    "padding": 1,
                    "skip": {"from": "e1", "op": "concat"},  # reads 8 + 8 channels on 8 x 8
                },
            ],
        }
    )
    r = arch.resolved()[-1]
    assert r.in_shape == (16, 8, 8) and r.fan_in == 16 * 4 * 4 and arch.output_shape == (2, 16, 16)
    net = build(arch)
    x = (torch.rand(3, 2, 4, 16, 16) < 0.2).float()
    with torch.no_grad():
        assert net(x).shape == (3, 2, 2, 16, 16)
    assert estimate(arch, load_chip("rram-adcless-65nm")).energy_uj > 0


def test_chip_package_reproduces_a_skip_network_on_its_arrays(tmp_path: Path) -> None:
    """The exported chip package maps each crossbar's whole input, a concatenation's included."""
    from neuronas.export.chip import check_package, write_chip_package

    spec = {**RES, "mapping": {"adc_kind": "sa", "adc_bits": 1, "rows": 32, "cols": 32}}
    arch, model = _model(spec, LIF, seed=0, gain=4.0)
    x = _inputs(arch)
    with torch.no_grad():
        model(x)  # the converters' ranges are set on first use
    write_chip_package(model, arch, load_chip("rram-adcless-65nm"), tmp_path)
    assert check_package(model, arch, tmp_path, x) < 1e-5
