"""Resident memory of one long search process, trial by trial (issue 11: a flat memory profile).

Starts ``neuronas search`` (one process, the in-process backend) in a temporary folder and, each
time the study holds one more finished trial, reads the search process's resident set size from
``/proc/PID/status``. Prints the curve and the ratio RSS(after trial N) / RSS(after trial 10), and
writes both as JSON. Linux only (``/proc``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_memory.py --trials 100 \
        --out benchmarks/results/bench_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of the process so far (steadier than wall time on a shared machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def finished(db: Path) -> int:
    """Finished trials (COMPLETE, PRUNED, FAIL) in the run's SQLite study, read without optuna."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            (n,) = con.execute(
                "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL')"
            ).fetchone()
        finally:
            con.close()
        return int(n)
    except sqlite3.Error:  # the schema is being created
        return 0


def trial_seconds(db: Path) -> list[float]:
    """Wall time of each finished trial (datetime_complete - datetime_start), in trial order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute(
            "SELECT (julianday(datetime_complete) - julianday(datetime_start)) * 86400.0 "
            "FROM trials WHERE datetime_complete IS NOT NULL ORDER BY number"
        ).fetchall()
    finally:
        con.close()
    return [float(s) for (s,) in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "search_args",
        nargs="*",
        help="extra `neuronas search` arguments (after --), e.g. -- --epochs 1",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="neuronas-mem-"))
    cmd = [sys.executable, "-m", "neuronas", "search", "--name", "mem", "--quiet"]
    cmd += ["--trials", str(args.trials), "--seed", str(args.seed), *args.search_args]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = tmp / "runs" / "mem" / "study.db"
    curve: list[tuple[int, int]] = []
    cpu: dict[int, float] = {}
    seen = 0
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    while proc.poll() is None:
        n = finished(db)
        if n > seen:
            r = rss_kb(proc.pid)
            c = cpu_s(proc.pid)
            if c is not None:
                cpu[n] = round(c, 2)
            if r is not None:
                curve.append((n, r))
                print(f"trial {n:4d}: RSS {r / 1024:7.1f} MiB  ({time.monotonic() - t0:6.0f} s)")
                if args.out is not None:  # so far: a run stopped early keeps its curve
                    partial = {"command": " ".join(cmd[1:]), "partial": True}
                    partial.update(rss_kb_after_trial=dict(curve), cpu_s_after_trial=cpu)
                    partial.update(load_avg_1min_at_start=load0, seconds=time.monotonic() - t0)
                    args.out.write_text(json.dumps(partial, indent=1) + "\n")
            seen = n
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        print(err.decode()[-2000:], file=sys.stderr)
        return 1
    secs = sorted(trial_seconds(db))
    at = dict(curve)
    ref = next((r for n, r in curve if n >= 10), None)
    last_n, last = curve[-1]
    summary = {
        "command": " ".join(cmd[1:]),
        "trials": args.trials,
        "rss_kb_after_trial": at,
        "rss_after_10_kb": ref,
        f"rss_after_{last_n}_kb": last,
        "ratio_last_over_10": (last / ref) if ref else None,
        "peak_kb": max(r for _, r in curve),
        "wall_s": round(time.monotonic() - t0, 1),
        "cpu_s_after_trial": cpu,
        "cpu_s_trials_10_to_last": round(cpu[max(cpu)] - cpu[min(k for k in cpu if k >= 10)], 1)
        if any(k >= 10 for k in cpu)
        else None,
        "load_avg_1min_at_start": load0,
        "median_trial_s": round(secs[len(secs) // 2], 3) if secs else None,
        "total_trial_s": round(sum(secs), 1),
        "load_avg_1min_at_end": os.getloadavg()[0],
    }
    ref_n, ref_kb = next(((n, r) for n, r in curve if n >= 10), curve[0])
    print(
        f"RSS after trial {ref_n}: {ref_kb / 1024:.1f} MiB; after trial {last_n}: {last / 1024:.1f} MiB; "
        f"ratio {last / ref_kb:.3f}; peak {summary['peak_kb'] / 1024:.1f} MiB; "
        f"wall {summary['wall_s']} s, median trial {summary['median_trial_s']} s, "
        f"sum of trials {summary['total_trial_s']} s; CPU s trials 10..{last_n}: "
        f"{summary['cpu_s_trials_10_to_last']}"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
