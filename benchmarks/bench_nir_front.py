"""NIR accuracy of a tiny search's members: one trained trial of each kind (lif, ld_lif, if;
an MLP and a CNN with max pooling, sense-amplifier arrays of 64 rows), exported with
``neuronas export --trials``; per member the chip accuracy (test split, chip instances), the
float accuracy, and the accuracies of ``model.nir`` (the converters as NIR nodes: chip mode on
an ideal device) and ``model_ideal.nir`` (exact sums), as ``metrics.json`` records them.

    PYTHONPATH=. python benchmarks/bench_nir_front.py --workdir /tmp/nirfront

Prints a markdown table (for benchmarks/RESULTS.md).  The search is the one
``tests/test_nir_front.py`` runs, at a larger data budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

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


def _neuronas(args: list[str], cwd: Path) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "neuronas", *args], cwd=cwd, capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(f"neuronas {' '.join(args)} failed:\n{r.stderr[-2000:]}")
    return r.stdout


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="a new or empty folder")
    ap.add_argument("--epochs", default="2")
    ap.add_argument("--max-train-samples", default="512")
    ap.add_argument("--max-eval-samples", default="256")
    ap.add_argument("--instances", default="5")
    ap.add_argument("--seed", default="0")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    (a.workdir / "space.yaml").write_text(SPACE)
    # 12 grid points (2 families x 3 neuron models x 2 timesteps); 11 trials cover every kind
    # (Optuna's GridSampler stops the study when the grid is exhausted)
    _neuronas(
        [
            *("search", "--space", "space.yaml", "--sampler", "grid", "--trials", "11"),
            *("--name", "nf", "--seed", a.seed, "--epochs", a.epochs, "--quiet"),
            *("--max-train-samples", a.max_train_samples, "--max-eval-samples"),
            *(a.max_eval_samples, "--eval-instances", "1"),
        ],
        a.workdir,
    )
    import optuna

    from neuronas.spec import ArchSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{a.workdir}/runs/nf/study.db")
    first: dict[tuple[str, str], int] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("status") == "ok":
            first.setdefault((t.params["family"], t.params["neuron"]), t.number)
    chosen = [str(n) for n in sorted(first.values())]
    _neuronas(
        ["export", "nf", "--out", "exp", "--overwrite", "--instances", a.instances]
        + ["--trials", *chosen],
        a.workdir,
    )
    on_front = {}
    for line in (a.workdir / "exp" / "pareto.csv").read_text().splitlines()[1:]:
        cells = line.split(",")
        on_front[int(cells[1])] = cells[-1] == "1"
    print(
        "| trial | family | neuron | T | on front | chip test % (mean [95% t]) | float % | "
        "model.nir % | model_ideal.nir % | NIR - chip (points) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in sorted(p for p in (a.workdir / "exp").iterdir() if p.is_dir()):
        m = json.loads((d / "metrics.json").read_text())
        acc = m["accuracy"]
        test = acc["test"]
        t = int(d.name.split("trial")[1])
        kind = next(k for k, n in first.items() if n == t)
        steps = ArchSpec.from_yaml(d / "arch.yaml").input.timesteps
        print(
            f"| {t} | {kind[0]} | {kind[1]} | {steps} | "
            f"{'yes' if on_front.get(t) else 'no'} | "
            f"{_pct(test['mean'])} [{_pct(test['low'])}, {_pct(test['high'])}] | "
            f"{_pct(test.get('float'))} | {_pct(acc['nir'])} | {_pct(acc['nir_ideal'])} | "
            f"{100 * (acc['nir'] - test['mean']):+.1f} |"
        )
    print(f"\n{acc['test_samples']} test samples; {acc.get('interval', '')}")


if __name__ == "__main__":
    main()
