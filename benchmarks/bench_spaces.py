"""Time per trial of each shipped task space, and one small search's front (issue 12).

Each space runs a 2-trial search through the CLI (screening fidelity as given below) on tiny
synthetic files written in its dataset's real tonic layout (tests/_tonic_files.py: N-MNIST .bin,
SHD HDF5, DVS Gesture .npy; class-dependent blobs / channel bands); digits-small runs on the
built-in digits-events for comparison.  Prints one JSON line per space: wall seconds of the
search, the trials' own ``seconds.wall``, statuses, and the front.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_spaces.py --out /tmp/bench_spaces
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

FIDELITY = ["--epochs", "1", "--max-train-samples", "64", "--max-eval-samples", "64"]


def main() -> None:
    import optuna
    from _tonic_files import gesture_root, nmnist_root, shd_root

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--spaces", nargs="+", default=["digits-small", "nmnist", "gesture", "audio"])
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    roots = {
        "nmnist": lambda p: nmnist_root(p, per_class=6, test_per_class=2),
        "gesture": lambda p: gesture_root(p, per_class=4, test_per_class=2),
        "audio": lambda p: shd_root(p, per_class=4, test_per_class=2),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for space in a.spaces:
        cmd = [sys.executable, "-m", "neuronas", "search", "--space", space, "--name", space]
        cmd += ["--trials", str(a.trials), "--quiet", *FIDELITY]
        if space in roots:
            root = a.out / f"data-{space}"
            if not root.exists():
                roots[space](root)
            cmd += ["--data-root", str(root)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=a.out, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        study = optuna.load_study(
            study_name=space, storage=f"sqlite:///{a.out / 'runs' / space / 'study.db'}"
        )
        trials = study.get_trials(deepcopy=False)
        tail = res.stdout.split("feasible Pareto front")[-1].splitlines()[3:]
        front = [ln for ln in tail if ln and not ln.startswith("next:")]
        print(
            json.dumps(
                {
                    "space": space,
                    "rc": res.returncode,
                    "search_wall_s": round(wall, 1),
                    "trial_wall_s": [
                        round(t.user_attrs.get("seconds", {}).get("wall", 0), 2) for t in trials
                    ],
                    "status": [t.user_attrs.get("status") for t in trials],
                    "front": front,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
