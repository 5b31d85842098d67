"""build(arch, chip): shapes, neuron models, per-layer mapping, probes, shipped archs."""

from __future__ import annotations

import pytest
import torch

from neuronas.snn import CrossbarConv2d, CrossbarLinear, LDLIFNode, build, crossbar_layers
from neuronas.spec import ArchSpec


def _arch(**over: object) -> ArchSpec:
    d: dict = {
        "name": "tiny-cnn",
        "input": {"shape": [2, 12, 12], "timesteps": 4},
        "layers": [
            {"kind": "conv", "out": 6, "kernel": 3},
            {"kind": "pool", "kernel": 2, "pool": "max"},
            {
                "kind": "conv",
                "out": 8,
                "kernel": 3,
                "stride": 2,
                "override": {"rows": 16, "adc_bits": 4, "adc_kind": "sar"},
            },
            {"kind": "pool", "kernel": 3, "pool": "avg"},
            {"kind": "fc", "out": 10},
        ],
        "mapping": {"adc_bits": 1, "adc_kind": "sa", "rows": 64},
    }
    d.update(over)
    return ArchSpec.from_dict(d)


@pytest.mark.parametrize("model", ["lif", "if", "ld_lif"])
def test_cnn_shapes_for_every_neuron(model: str) -> None:
    arch = _arch(neuron={"model": model})
    net = build(arch)
    x = (torch.rand(4, 3, 2, 12, 12) < 0.2).float()
    y = net(x)
    assert y.shape == (4, 3, 10)
    net.set_hardware_awareness(1.0)
    y = net(x)
    assert y.shape == (4, 3, 10) and torch.isfinite(y).all()
    y.mean(0).sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad and p.dim() > 1)
    if model == "ld_lif":
        assert any(isinstance(m, LDLIFNode) for m in net.modules())


def test_layers_follow_the_resolved_per_layer_mapping() -> None:
    arch = _arch()
    layers = crossbar_layers(build(arch))
    assert [type(m) for m in layers] == [CrossbarConv2d, CrossbarConv2d, CrossbarLinear]
    for m, r in zip(layers, arch.resolved(), strict=True):
        assert (m.fan_in, m.fan_out) == (r.fan_in, r.fan_out)
        assert (m.config.rows, m.config.adc_kind, m.config.adc_bits) == (
            r.rows,
            r.adc_kind,
            r.adc_bits,
        )
        assert m.row_groups == -(-r.fan_in // r.rows)
    assert layers[1].config.adc_kind == "sar" and layers[1].config.rows == 16


def test_awareness_zero_network_is_deterministic_and_resets_state() -> None:
    net = build(_arch())
    x = (torch.rand(4, 2, 2, 12, 12) < 0.3).float()
    assert torch.equal(net(x), net(x))  # neuron state is reset at every forward


def test_probes_measure_the_rates_the_cost_model_needs() -> None:
    arch = ArchSpec.from_dict(
        {
            "input": {"shape": [20], "timesteps": 5},
            "layers": [{"kind": "fc", "out": 16}, {"kind": "fc", "out": 3}],
            "neuron": {"model": "if", "threshold": 0.5},
        }
    )
    net = build(arch)
    x = (torch.rand(5, 8, 20) < 0.25).float()
    net.probing = True
    net(x)
    ins, outs = net.activity_rates()
    assert len(ins) == len(outs) == len(arch.resolved())
    assert ins[0] == pytest.approx(float(x.mean()))
    # the second layer's input is the first layer's output spikes
    assert ins[1] == pytest.approx(outs[0])
    assert outs[-1] == 0.0
    net.reset_probes()
    assert net.activity_rates()[0] == (0.0, 0.0)


def test_rate_encoding_draws_spikes() -> None:
    arch = ArchSpec.from_dict(
        {
            "input": {"shape": [6], "timesteps": 3, "encoding": "rate"},
            "layers": [{"kind": "fc", "out": 2}],
        }
    )
    net = build(arch)
    x = torch.full((3, 2, 6), 0.5)
    enc = net.encode(x)
    assert set(enc.unique().tolist()) <= {0.0, 1.0}


def test_bad_awareness_and_input_are_refused() -> None:
    net = build(_arch())
    with pytest.raises(ValueError, match="awareness"):
        net.set_hardware_awareness(1.5)
    with pytest.raises(ValueError, match="expected input"):
        net(torch.zeros(2, 12, 12))


@pytest.mark.parametrize(
    "name",
    [
        "digits-mlp",
        "digits-cnn",
        "digits-resnet",
        "dvsgesture-cnn",
        "adcless-dvsnet",
        "spike-flownet",
    ],
)
def test_shipped_archs_build_and_run(repo_root, name: str) -> None:
    arch = ArchSpec.from_yaml(repo_root / "experiments" / "archs" / f"{name}.yaml")
    net = build(arch)
    x = (torch.rand(2, 1, *arch.input.shape) < 0.1).float()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 1, *arch.output_shape)


def test_chip_fields_are_read_by_contract_name(repo_root) -> None:
    from neuronas.hardware import load_chip

    chip = load_chip("rram-adcless-65nm")
    net = build(_arch(), chip)
    dev = chip.technology.device
    assert net.device_model.program_sigma == pytest.approx(dev.program_sigma)
    assert net.device_model.read_noise_sigma == pytest.approx(dev.read_noise_sigma)
    assert net.device_model.stuck_off_rate == pytest.approx(dev.stuck_off_rate)


def test_data_driven_init_wakes_a_silent_network(repo_root) -> None:
    arch = ArchSpec.from_yaml(repo_root / "experiments" / "archs" / "digits-mlp.yaml")
    torch.manual_seed(0)
    net = build(arch)
    x = (torch.rand(8, 16, *arch.input.shape) < 0.12).float()  # sparse events, like digits-events
    net.probing = True
    net(x)
    before = net.activity_rates()[1][0]
    factors = net.init_from_data(x)
    assert factors[-1] == 1.0 and factors[0] > 1.0  # the readout keeps its init
    net.reset_probes()
    net(x)
    after = net.activity_rates()[1][0]
    assert before < 0.01 < after < 0.3
    assert net.hardware_awareness == 0.0 and net.training
