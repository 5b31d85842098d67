"""Shared pieces of the search tests: a tiny space, a CLI runner, a storage reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# MLPs on digits-events; full-resolution inputs with wide, 8-bit layers break the default chip's
# 160 kB memory budget, so a good share of the candidates is rejected before training
TINY_SPACE = """\
name: tiny
dataset: digits-events
input: {timesteps: [2, 3], downsample: [1, 4]}
families:
  mlp: {depth: 1, width: [16, 256]}
neuron: {model: [lif, if]}
precision: {weight_bits: [2, 8]}
mapping: {adc_kind: [sa], crossbar: [64, 128]}
"""

FAST = [
    "--epochs",
    "1",
    "--max-train-samples",
    "64",
    "--max-eval-samples",
    "64",
    "--eval-instances",
    "1",
    "--quiet",
]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONUNBUFFERED"] = "1"
    return e


def cli(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "neuronas", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "neuronas", *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_space(tmp: Path, text: str = TINY_SPACE) -> Path:
    p = tmp / "tiny.yaml"
    p.write_text(text)
    return p


def trials_of(run_dir: Path, storage: str = "sqlite") -> list[Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        path = str(run_dir / "journal.log")
        st: Any = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    else:
        st = f"sqlite:///{run_dir / 'study.db'}"
    return optuna.load_study(study_name=run_dir.name, storage=st).get_trials(deepcopy=False)
