"""Wall time per training epoch: plain float SNN vs the crossbar layers at awareness 0 and 1.

The same network (a shipped architecture, default ``digits-mlp`` with 64-row crossbars and 1-bit
sense amplifiers) is trained for one epoch on digits-events in three forms, interleaved and
repeated so that the machine's noise hits all three alike:

- ``plain``: ``nn.Linear`` / ``nn.Conv2d`` with the same weights and neurons (the reference);
- ``aware0``: the crossbar layers at hardware awareness 0 (must cost <= 1.1x plain);
- ``aware1``: the crossbar layers at awareness 1: quantized weights in bit slices, every row
  group's partial sum through its converter (target <= 2.0x plain), on the CPU through the
  event-driven kernels of ``neuronas.snn._kernels``;
- ``aware1-dense`` (``--dense``): the same at awareness 1 through the tensor-op path the kernels
  replace (``NEURONAS_NO_NUMBA=1``; what runs on CUDA), to show what the kernels buy.

``--start`` says which network is timed:

- ``warm`` (default): the network a search trains, not a fresh one.  It is built, initialised
  from the first batch as the trainer does (``init_from_data``) and trained for ``--warm-epochs``
  epochs on the benchmark's samples with the trainer's default progressive schedule (awareness
  rising from 0 to 1 over the first 60 % of the steps, then held at 1) at the search's screening
  learning rate; its weights are then copied into all three forms.  A fresh network with 1-bit
  sense amplifiers can be silent in its deeper layers (digits-cnn's and the gesture CNN's are): every row group of the readout is idle, idle
  sense amplifiers pass no gradient, and the convolutions' backward gets an all-zero gradient
  for the whole epoch, which the kernels skip -- so ``fresh`` times a network that does not learn.
- ``fresh``: the freshly built network, no data initialisation, no warm-up (the benchmark as it
  was before 2026-12-01; kept to compare with the earlier figures).

Before and after the timing, each form's crossbar layers report their input spike density (the
share of non-zero inputs) and the share of non-zero gradient reaching their output, on one batch:
the reader sees whether the network is alive.

    python benchmarks/bench_train.py [--arch digits-mlp] [--rows 64] [--repeats 3] [--threads 1] [--dense]
        [--start warm|fresh] [--warm-epochs 6]
    python benchmarks/bench_train.py --arch dvsgesture-cnn --input-shape 2 32 32 --drop-input-pool --batch-size 16

(the second: the gesture CNN's convolutions at the sizes they see on DVS Gesture, fed from
digits-events frames; see ``--drop-input-pool``).

Prints a Markdown table with the median seconds per epoch and the ratios to ``plain``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def bench_network(
    name: str,
    *,
    rows: int,
    adc_bits: int = 1,
    bits_per_cell: int | None = None,
    input_shape: list[int] | None = None,
    drop_input_pool: bool = False,
    neuron: str | None = None,
    samples: int | None = None,
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """The shipped architecture ``name`` with the benchmark's mapping (``rows``-row arrays, a
    1-bit sense amplifier or a ``adc_bits`` SAR ADC), input shape and neuron, and its digits-events
    training frames (the first ``samples``)."""
    from neuronas.config import resolve_preset
    from neuronas.data import check_input_shape
    from neuronas.spec import ArchSpec
    from neuronas.train import dataset_tensors

    base = ArchSpec.from_yaml(resolve_preset(name, "arch"))
    kind = "sa" if adc_bits == 1 else "sar"
    mapping = dict(base.mapping.to_dict(), rows=rows, adc_bits=adc_bits, adc_kind=kind)
    if bits_per_cell:
        mapping["bits_per_cell"] = bits_per_cell
    d = dict(base.to_dict(), mapping=mapping)
    if neuron:
        d["neuron"] = dict(d["neuron"], model=neuron)
    if input_shape:
        d["input"] = dict(d["input"], shape=list(input_shape))
    if drop_input_pool and d["layers"][0]["kind"] == "pool":
        d["layers"] = d["layers"][1:]
    arch = ArchSpec.from_dict(d)
    shape = check_input_shape("digits-events", arch.input.shape)
    x, y = dataset_tensors("digits-events", "train", arch.input.timesteps, shape=shape)
    if samples:
        x, y = x[:samples], y[:samples]
    return arch, x, y


def plain_copy(net: nn.Module) -> nn.Module:
    """The same network with every crossbar layer replaced by its plain torch layer."""
    import copy

    from neuronas.snn.crossbar import CrossbarConv2d, CrossbarLinear

    out = copy.deepcopy(net)
    for i, m in enumerate(out.layers):
        if isinstance(m, CrossbarLinear):
            p = nn.Linear(m.in_features, m.out_features)
        elif isinstance(m, CrossbarConv2d):
            p = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
        else:
            continue
        p.load_state_dict({"weight": m.weight.detach().clone(), "bias": m.bias.detach().clone()})
        out.layers[i] = p
    return out


def epoch_seconds(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, dense: bool = False
) -> float:
    if dense:
        os.environ["NEURONAS_NO_NUMBA"] = "1"
    try:
        return _epoch(net, x, y, batch_size)
    finally:
        os.environ.pop("NEURONAS_NO_NUMBA", None)


def _epoch(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    t0 = time.perf_counter()
    for i in range(0, len(y), batch_size):
        xb = x[i : i + batch_size].transpose(0, 1)
        loss = F.cross_entropy(net(xb).mean(0), y[i : i + batch_size])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def warm_start(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, epochs: int, lr: float
) -> list[float]:
    """Bring ``net`` to the state a search's training reaches: the trainer's data initialisation
    on the first batch, then ``epochs`` epochs with its default progressive schedule (awareness
    0 -> 1 over the first 60 % of the steps, then 1) and cosine learning rate.  Returns the
    awareness at each step (the last is 1)."""
    from neuronas.train import awareness_at

    net.init_from_data(x[:batch_size].transpose(0, 1))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * -(-len(y) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    levels: list[float] = []
    net.train()
    step = 0
    for _ in range(epochs):
        for i in range(0, len(y), batch_size):
            level = awareness_at("progressive", step, steps)
            net.set_hardware_awareness(level)
            levels.append(level)
            xb = x[i : i + batch_size].transpose(0, 1)
            loss = F.cross_entropy(net(xb).mean(0), y[i : i + batch_size])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    net.set_hardware_awareness(1.0)
    return levels


def activity(
    net: nn.Module, layer_ids: list[int], x: torch.Tensor, y: torch.Tensor, dense: bool = False
) -> list[tuple[float, float]]:
    """Per weighted layer in ``layer_ids``: (share of non-zero inputs, share of non-zero
    gradient reaching its output) on one training batch (no optimiser step)."""
    stats: dict[int, list[float]] = {i: [float("nan"), float("nan")] for i in layer_ids}
    handles = []

    def hook(i: int):  # type: ignore[no-untyped-def]
        def f(_m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            stats[i][0] = float((inp[0] != 0).float().mean())
            if out.requires_grad:
                out.register_hook(lambda g: stats[i].__setitem__(1, float((g != 0).float().mean())))

        return f

    for i in layer_ids:
        handles.append(net.layers[i].register_forward_hook(hook(i)))
    if dense:
        os.environ["NEURONAS_NO_NUMBA"] = "1"
    try:
        net.train()
        loss = F.cross_entropy(net(x.transpose(0, 1)).mean(0), y)
        net.zero_grad(set_to_none=True)
        loss.backward()
        net.zero_grad(set_to_none=True)
    finally:
        os.environ.pop("NEURONAS_NO_NUMBA", None)
        for h in handles:
            h.remove()
    return [(stats[i][0], stats[i][1]) for i in layer_ids]


def print_activity(
    title: str, nets: dict[str, nn.Module], names: list[str], acts: dict[str, list]
) -> None:
    print(f"\n{title}: share of non-zero input spikes / of non-zero gradient at the output")
    print("| layer | " + " | ".join(nets) + " |")
    print("|---|" + "---|" * len(nets))
    for j, name in enumerate(names):
        cells = [f"{acts[k][j][0]:.3f} / {acts[k][j][1]:.3f}" for k in nets]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="digits-mlp")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument(
        "--adc-bits", type=int, default=1, help="1: sense amplifier (ADC-less); >=2: SAR ADC"
    )
    ap.add_argument(
        "--bits-per-cell",
        type=int,
        default=None,
        help="override the arch's (weight slices = ceil(weight_bits / bits_per_cell))",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--samples", type=int, default=None, help="training samples per epoch (default: all)"
    )
    ap.add_argument(
        "--dense",
        action="store_true",
        help="also time awareness 1 on the tensor-op path (no kernels)",
    )
    ap.add_argument(
        "--start",
        choices=("warm", "fresh"),
        default="warm",
        help="warm (default): time the network after --warm-epochs of the trainer's progressive "
        "schedule, as a search trains it; fresh: the untrained network (silent deeper layers)",
    )
    ap.add_argument(
        "--warm-epochs",
        type=int,
        default=6,
        help="epochs of the progressive schedule on the benchmark's samples before timing (too "
        "few and the ramp is too steep: digits-cnn's deeper layers fell silent at awareness 1 "
        "after 16 steps and stayed alive after 48)",
    )
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    ap.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        help="feed the arch this input shape (digits-events is 2 x 32 x 32: downsampled below that)",
    )
    ap.add_argument(
        "--drop-input-pool",
        action="store_true",
        help="drop a leading pool layer (dvsgesture-cnn pools its 128 x 128 input to 32 x 32; with "
        "--input-shape 2 32 32 its convolutions then see the sizes they see on DVS Gesture)",
    )
    args = ap.parse_args()

    from neuronas.settings import SCREENING
    from neuronas.snn import build

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch, x, y = bench_network(
        args.arch,
        rows=args.rows,
        adc_bits=args.adc_bits,
        bits_per_cell=args.bits_per_cell,
        input_shape=args.input_shape,
        drop_input_pool=args.drop_input_pool,
        samples=args.samples,
    )

    aware = build(arch)
    levels: list[float] = []
    t_warm = time.perf_counter()
    if args.start == "warm":
        levels = warm_start(aware, x, y, args.batch_size, args.warm_epochs, SCREENING.lr)
        aware.set_hardware_awareness(0.0)
    t_warm = time.perf_counter() - t_warm
    # every form from a fresh build holding the same state (a trained module keeps non-leaf
    # tensors that cannot be deep-copied)
    state = aware.state_dict()
    aware = build(arch)
    aware.load_state_dict(state)
    nets = {"plain": plain_copy(aware), "aware0": aware}
    aware1 = build(arch)
    aware1.load_state_dict(aware.state_dict())
    aware1.set_hardware_awareness(1.0)
    nets["aware1"] = aware1
    if args.dense:
        nets["aware1-dense"] = aware1
    from neuronas.snn.crossbar import CrossbarLayer

    layer_ids = [i for i, m in enumerate(aware.layers) if isinstance(m, CrossbarLayer)]
    layer_names = [
        f"{i}: {type(aware.layers[i]).__name__.removeprefix('Crossbar')} "
        f"{getattr(aware.layers[i], 'in_channels', getattr(aware.layers[i], 'in_features', ''))}"
        f"->{getattr(aware.layers[i], 'out_channels', getattr(aware.layers[i], 'out_features', ''))}"
        for i in layer_ids
    ]
    xa, ya = x[: args.batch_size], y[: args.batch_size]
    acts_before = {k: activity(n, layer_ids, xa, ya, k.endswith("dense")) for k, n in nets.items()}
    for (
        name,
        net,
    ) in nets.items():  # warm-up (the kernels' compilation, the converters' calibration)
        epoch_seconds(
            net,
            x[: 2 * args.batch_size],
            y[: 2 * args.batch_size],
            args.batch_size,
            name.endswith("dense"),
        )
    times: dict[str, list[float]] = {k: [] for k in nets}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, net in nets.items():
            times[name].append(epoch_seconds(net, x, y, args.batch_size, name.endswith("dense")))
    med = {k: statistics.median(v) for k, v in times.items()}
    load_after = os.getloadavg()[0]
    acts_after = {k: activity(n, layer_ids, xa, ya, k.endswith("dense")) for k, n in nets.items()}
    groups = [m.row_groups for m in aware.modules() if hasattr(m, "row_groups")]
    print(
        f"{arch.name}: {len(y)} samples/epoch, T={arch.input.timesteps}, batch {args.batch_size}, "
        f"rows {args.rows}, {arch.mapping.adc_kind} {args.adc_bits} b, weight {arch.precision.weight_bits} b / "
        f"{arch.mapping.bits_per_cell} b per cell, row groups per layer {groups}, threads {args.threads}, "
        f"load average {load_before:.2f} -> {load_after:.2f}"
    )
    if args.start == "warm":
        print(
            f"start: warm ({args.warm_epochs} epochs, {len(levels)} steps of the progressive "
            f"schedule, lr {SCREENING.lr}, awareness 0 -> 1 over the first 60 %, {t_warm:.1f} s)"
        )
    else:
        print("start: fresh (untrained, no data initialisation: deeper layers may be silent)")
    print(f"| network | s / epoch (median of {args.repeats}) | ratio to plain |")
    print("|---|---|---|")
    for name in nets:
        print(f"| {name} | {med[name]:.2f} | {med[name] / med['plain']:.2f} |")
    print_activity("before timing", nets, layer_names, acts_before)
    print_activity("after timing", nets, layer_names, acts_after)
    silent = [
        f"{k}: {layer_names[j]}"
        for acts in (acts_before, acts_after)
        for k, rows in acts.items()
        for j, (_spikes, grad) in enumerate(rows)
        if not grad > 0
    ]
    if silent:
        print(
            "\nWARNING: no gradient reaches "
            + ", ".join(sorted(set(silent)))
            + ": that network does not learn there, and the kernels skip its zero gradients, "
            "so its time is not what a search's training costs"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "arch": arch.to_dict(),
                    "times_s": times,
                    "median_s": med,
                    "ratio_aware0": med["aware0"] / med["plain"],
                    "ratio_aware1": med["aware1"] / med["plain"],
                    "ratio_aware1_dense": med["aware1-dense"] / med["plain"]
                    if "aware1-dense" in med
                    else None,
                    "machine": platform.platform(),
                    "threads": args.threads,
                    "load_average": [load_before, load_after],
                    "start": args.start,
                    "warm_epochs": args.warm_epochs if args.start == "warm" else 0,
                    "warm_seconds": t_warm,
                    "layers": layer_names,
                    "activity_before": acts_before,
                    "activity_after": acts_after,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
