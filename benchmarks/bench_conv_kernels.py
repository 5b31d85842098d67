"""The crossbar convolutions' kernels alone, on one recorded batch of a warm network.

``bench_train.py``'s warm network (``--arch``, 64-row arrays, 1-bit sense amplifiers, the
trainer's progressive schedule for ``--warm-epochs``, then awareness 1) runs one training step
while every call of :func:`neuronas.snn._kernels.sparse_conv_forward` and
:func:`~neuronas.snn._kernels.sparse_conv_backward` is recorded (its arguments cloned); the
calls are then replayed, each ``--repeats`` times, and their process time reported per call
(median and minimum, ms): what an epoch's convolutions cost without the rest of the step and
its noise.

``--compare PATH`` also loads another checkout's kernels (``PATH/neuronas/snn/_kernels_nb.py``)
and replays every call with both, alternating call by call in this one process (the shared
machine's speed drifts between processes), checks that both give the same bits (outputs and
every gradient, as float32 bit patterns) and prints the ratio of the two.  The kernels are then
compiled into a new temporary numba cache, whatever ``NUMBA_CACHE_DIR`` says (a second copy of
a module must not write into a checkout's cache, and numba cannot load that copy from a cache
again).  The calls are this checkout's: the other checkout's kernels must take the same
arguments (since 2026-12-03 the conv kernels take the input's dilation, ``dil``; a checkout
from before that cannot be compared).

    python benchmarks/bench_conv_kernels.py [--arch digits-cnn] [--repeats 40] [--compare PATH]
        [--json OUT]
    python benchmarks/bench_conv_kernels.py --arch dvsgesture-cnn --input-shape 2 32 32 \\
        --drop-input-pool --batch-size 16 --samples 64
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KERNELS = ("sparse_conv_forward", "sparse_conv_backward")


def _clone(a: Any) -> Any:
    import torch

    if isinstance(a, torch.Tensor):
        return a.detach().clone()
    if isinstance(a, tuple):
        return tuple(_clone(b) for b in a)
    return a


def private_numba_cache(prefix: str) -> str:
    """Point numba at a new, empty cache for this run (``--compare``; before numba is imported),
    removed at exit, whatever ``NUMBA_CACHE_DIR`` said: the other checkout's copy is cached
    under a module name numba cannot import again, so a second run reading the same cache failed
    (``ModuleNotFoundError: No module named '<dynamic>'``), and a checkout's own cache is never
    written by a copy of its module."""
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ["NUMBA_CACHE_DIR"] = path
    return path


def other_checkout_module(root: Path, module: str, name: str) -> Any:
    """``root``'s copy of the module file ``module`` (e.g. ``neuronas/snn/_kernels_nb.py``),
    loaded under ``name`` beside this checkout's own (for ``--compare``; set a temporary
    ``NUMBA_CACHE_DIR`` before numba is imported, so that the copy never writes into a
    checkout's cache)."""
    path = Path(root) / module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    return other


def record(args: argparse.Namespace) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """One training step of the warm network at awareness 1, its kernel calls recorded."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_train

    from neuronas.settings import SCREENING
    from neuronas.snn import _kernels, build

    torch.manual_seed(0)
    arch, x, y = bench_train.bench_network(
        args.arch,
        rows=64,
        input_shape=args.input_shape,
        drop_input_pool=args.drop_input_pool,
        samples=args.samples,
    )
    net = build(arch)
    bench_train.warm_start(net, x, y, args.batch_size, args.warm_epochs, SCREENING.lr)
    net.set_hardware_awareness(1.0)
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    originals = {name: getattr(_kernels, name) for name in KERNELS}

    def recorder(name: str) -> Any:
        def call(*a: Any, **k: Any) -> Any:
            calls.append((name, _clone(a), {key: _clone(v) for key, v in k.items()}))
            return originals[name](*a, **k)

        return call

    for name in KERNELS:
        setattr(_kernels, name, recorder(name))
    try:
        xb, yb = x[: args.batch_size].transpose(0, 1), y[: args.batch_size]
        loss = F.cross_entropy(net(xb).mean(0), yb)
        loss.backward()
    finally:
        for name in KERNELS:
            setattr(_kernels, name, originals[name])
    return calls


def replay(
    call: tuple[str, tuple[Any, ...], dict[str, Any]], spent: list[float] | None = None
) -> list[Any]:
    """Run one recorded call on fresh copies of its arguments (the backward adds into its
    running sums); the tensors it wrote or returned (forward: the output and the codes;
    backward: the weights' and converters' running sums and the input's gradient).  ``spent``:
    the call's process time (the copies not counted) is appended to it."""
    import torch

    from neuronas.snn import _kernels

    name, a, k = call
    a = _clone(a)
    t0 = time.process_time()
    r = getattr(_kernels, name)(*a, **k)
    if spent is not None:
        spent.append(time.process_time() - t0)
    # forward: out; backward: gw, gsum
    written = [a[16]] if name == "sparse_conv_forward" else [a[19], a[20]]
    if isinstance(r, torch.Tensor):
        written.append(r)
    elif isinstance(r, tuple):  # the codes, defined only where their group was read, and act
        codes, act = r
        written.extend([codes * (act.unsqueeze(-1) != 0), act])
    return written


def same_bits(u: list[Any], v: list[Any]) -> bool:
    import torch

    for p, q in zip(u, v, strict=True):
        if p.dtype.is_floating_point:
            p, q = p.contiguous().view(torch.int32), q.contiguous().view(torch.int32)
        if p.shape != q.shape or not torch.equal(p, q):
            return False
    return True


def describe(call: tuple[str, tuple[Any, ...], dict[str, Any]]) -> str:
    name, a, _ = call
    x, cells = a[0], a[2]
    kind = "fwd" if name == "sparse_conv_forward" else "bwd"
    return (
        f"{kind} {x.shape[1]}->{cells.shape[-1] // a[8].shape[0]} at {a[6]}x{a[7]}, "
        f"{cells.shape[0]} group(s), {x.shape[0]} frames"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="digits-cnn")
    ap.add_argument("--input-shape", type=int, nargs="+", default=None)
    ap.add_argument("--drop-input-pool", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--warm-epochs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--compare", type=Path, default=None, help="another checkout's root")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.compare is not None:
        private_numba_cache("bench_conv_kernels_")

    import torch

    from neuronas.snn import _kernels

    torch.set_num_threads(1)  # the kernels' serial forms (the sparse backward's running sums)
    calls = record(args)
    arms: dict[str, Any] = {"this": None}  # None: this checkout's own kernels
    if args.compare is not None:
        arms["other"] = other_checkout_module(
            args.compare, "neuronas/snn/_kernels_nb.py", "bench_conv_kernels_other"
        )
    outputs: dict[str, list[list[Any]]] = {}
    for arm, module in arms.items():  # compile, and keep each arm's results
        with _kernels.kernels_from(module):
            outputs[arm] = [replay(c) for c in calls]
    rows = []
    for i, call in enumerate(calls):
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        order = list(arms)
        for r in range(args.repeats):
            for arm in order if r % 2 == 0 else order[::-1]:
                with _kernels.kernels_from(arms[arm]):
                    replay(call, times[arm])
        row: dict[str, Any] = {"call": i, "what": describe(call)}
        for arm, ts in times.items():
            row[f"{arm}_median_ms"] = 1e3 * statistics.median(ts)
            row[f"{arm}_min_ms"] = 1e3 * min(ts)
        if "other" in arms:
            row["this_over_other_median"] = row["this_median_ms"] / row["other_median_ms"]
            row["this_over_other_min"] = row["this_min_ms"] / row["other_min_ms"]
            row["same_bits"] = same_bits(outputs["this"][i], outputs["other"][i])
        rows.append(row)
    cols = [k for k in rows[0] if k not in ("call", "what")]
    print(f"{args.arch}, one recorded training step, {args.repeats} replays per call, ms")
    print("| call | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for row in rows:
        cells = " | ".join(
            f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols
        )
        print(f"| {row['what']} | {cells} |")
    if args.json:
        meta = {
            "argv": sys.argv,
            "load_average": os.getloadavg(),
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        Path(args.json).write_text(json.dumps({"meta": meta, "calls": rows}, indent=2))


if __name__ == "__main__":
    main()
