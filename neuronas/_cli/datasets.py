"""``neuronas datasets``: the datasets neuronas can load, and where their files must be.

Without a name: one line per dataset (shape per timestep, classes, where the files go).  With a
name: load both splits (building and caching ``digits-events`` on first use) and print what a
network would see: samples, frame shape, events per sample and the input spike rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        nargs="?",
        help="a dataset name or dataset folder (PATH with dataset.yaml) to load and describe "
        "(default: list all)",
    )
    parser.add_argument(
        "--data-root", type=Path, default=None, help="folder holding tonic datasets' files"
    )
    parser.add_argument(
        "--download", action="store_true", help="fetch a missing tonic dataset into --data-root"
    )
    parser.add_argument("--timesteps", "-T", type=int, default=8, help="frames per sample (8)")
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="downsample to this shape per timestep, e.g. 2 32 32",
    )
    parser.add_argument("--seed", type=int, default=0, help="digits-events sensor seed (0)")
    parser.add_argument(
        "--max-samples",
        type=int,
        default=256,
        help="samples per split used for the statistics of a tonic dataset (256)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def _list(args: argparse.Namespace) -> int:
    from neuronas.data import DATASETS, cache_dir
    from neuronas.data.layouts import LAYOUTS, missing_files

    rows = []
    for info in DATASETS.values():
        row = info.to_dict()
        if info.builtin:
            row["where"] = f"built in; cached under {cache_dir()}"
        else:
            row["where"] = "DATA_ROOT/" + " and DATA_ROOT/".join(info.files)
            if args.data_root is not None:
                row["present"] = {
                    split: missing_files(info.name, split, args.data_root) is None
                    for split in LAYOUTS[info.name]
                }
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'input':<10} {'classes':>7}  where the files must be")
    for r in rows:
        where = r["where"]
        if "present" in r:
            state = ", ".join(
                f"{s} {'present' if ok else 'MISSING'}" for s, ok in r["present"].items()
            )
            where += f"  [{state}]"
        print(
            f"{r['name']:<{width}}  {_shape(tuple(r['input_shape'])):<10} "
            f"{r['num_classes'] if r['task'] == 'classification' else r['task']:>7}  {where}"
        )
    print(
        "\nshape is per timestep: (polarity, y, x) for cameras, (channel,) for SHD; "
        "tonic datasets need --data-root (nothing is downloaded unless --download); "
        "your own recordings: a folder PATH with dataset.yaml, train/ and test/"
    )
    return 0


def _describe(args: argparse.Namespace) -> int:
    import numpy as np

    from neuronas.data import check_input_shape, dataset_info, load_dataset

    info = dataset_info(args.name)
    if args.input_shape is not None:
        check_input_shape(info, args.input_shape, what="--input-shape")
    out: dict = {"dataset": info.to_dict(), "timesteps": args.timesteps, "splits": {}}
    for split in ("train", "test"):
        if not args.json:
            print(f"loading {info.name} {split} ...", flush=True)
        ds = load_dataset(
            info,
            split,
            args.timesteps,
            data_root=args.data_root,
            download=args.download,
            input_shape=args.input_shape,
            seed=args.seed,
        )
        n = len(ds)
        take = range(n) if info.builtin else range(min(n, args.max_samples))
        flow = info.task == "flow"
        if hasattr(ds, "tensors") and info.builtin:
            x, y = ds.tensors()
            frames, labels = x.numpy(), y.numpy()
        else:
            pairs = [ds[i] for i in take]
            frames = np.stack([p[0].numpy() for p in pairs]) if pairs else np.zeros((0,))
            labels = np.stack([np.asarray(p[1]) for p in pairs]) if pairs else np.zeros((0,))
        events = [len(ds.events(i)) for i in take]
        stats: dict = {
            "samples": n,
            "frame_shape": list(frames.shape[1:]),
            "input_rate": float(frames.mean()) if frames.size else 0.0,
            "events_per_sample": float(np.mean(events)) if events else 0.0,
            "statistics_over": len(take),
        }
        if flow:  # mean endpoint length of the target flow, in input pixels
            stats["mean_flow_px"] = (
                float(np.sqrt((labels**2).sum(axis=1)).mean()) if labels.size else 0.0
            )
        else:
            stats["classes_seen"] = int(np.unique(labels).size)
        out["splits"][split] = stats
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{info.name} ({info.task}): {info.description}")
    for split, s in out["splits"].items():
        seen = (
            f"mean flow {s['mean_flow_px']:.2f} px"
            if "mean_flow_px" in s
            else f"{s['classes_seen']} classes seen"
        )
        print(
            f"  {split:<5} {s['samples']:>6} samples  frames {_shape(tuple(s['frame_shape']))}  "
            f"{s['events_per_sample']:.0f} events/sample  input rate {s['input_rate']:.3f}  "
            f"({seen} in {s['statistics_over']} samples)"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    return _describe(args) if args.name else _list(args)
