"""The parts of a trial outside the trainer that "Outside the trainer" changed, old way against
new way in one process, interleaved (medians of ``--repeats``):

* the accuracy model's fit (``AccuracyModel.fit``) with scikit-learn's kernels against
  :mod:`neuronas.search.gp_kernels` (same fit bit for bit), on the trained trials of a study;
* a trial phase's held writes (~10 parameters, ~17 attributes) written one by one in the
  transaction (the earlier ``BatchedRDBStorage._flush``) against the new one lookup + one upsert
  per table, on a real SQLite file;
* ``arch_features`` of a proposal's ~300 candidates with NumPy (the earlier code) and in Python;
* the progress line of a ``--quiet`` search (was computed after every trial, now not at all).

    python benchmarks/bench_outside_parts.py --run RUN_DIR [--repeats 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _features_numpy(arch: Any) -> list[float]:
    """arch_features as it was (NumPy reductions)."""
    from neuronas.search.pool import _ADC_KINDS, _NEURON_MODELS  # noqa: PLC2701

    weighted = arch.resolved()
    weights = sum(lay.weights for lay in weighted)
    neurons = sum(int(np.prod(lay.out_shape)) for lay in weighted)
    convs = sum(1 for lay in weighted if lay.kind != "fc")
    first_in = int(np.prod(weighted[0].in_shape)) if weighted else 1
    bits = [float(lay.weight_bits) for lay in weighted] or [float(arch.precision.weight_bits)]
    adc = [16.0 if lay.adc_kind == "digital" else float(lay.adc_bits) for lay in weighted] or [1.0]
    m, model = arch.mapping, arch.neuron.model
    return [
        math.log2(max(weights, 1)),
        math.log2(max(neurons, 1)),
        float(len(weighted)),
        convs / max(len(weighted), 1),
        float(arch.input.timesteps),
        math.log2(max(first_in, 1)),
        float(np.mean(bits)),
        float(min(bits)),
        float(np.mean(adc)),
        float(m.bits_per_cell),
        math.log2(m.rows),
        float(m.signed_scheme == "differential"),
        *(float(model == k) for k in _NEURON_MODELS),
        *(float(m.adc_kind == k) for k in _ADC_KINDS),
    ]


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder of the default search")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sklearn.gaussian_process import kernels

    from neuronas.search import gp_kernels
    from neuronas.search.draw import draw_priced
    from neuronas.search.guided import AccuracyModel
    from neuronas.search.pool import arch_features
    from neuronas.search.progress import progress_line
    from neuronas.search.rdb import BatchedRDBStorage
    from neuronas.search.run import open_run
    from neuronas.search.storage import deferred_writes
    from neuronas.search.trials import take_trial
    from neuronas.spec import ArchSpec

    run = open_run(args.run)
    trials = run.study.get_trials(deepcopy=False)
    trained = [
        t for t in trials if t.user_attrs.get("accuracy") is not None and "arch" in t.user_attrs
    ]
    x = np.asarray([arch_features(ArchSpec.from_dict(t.user_attrs["arch"])) for t in trained])
    y = np.asarray([float(t.user_attrs["accuracy"]) for t in trained])
    cfg = run.config
    pool = [
        d.arch
        for d in draw_priced(
            run.space,
            run.chip,
            np.random.default_rng([cfg.seed, 10_000]),
            300,
            input_shape=cfg.input_shape,
            num_outputs=cfg.num_outputs,
            activity=cfg.activity_prior,
        )
        if d.report.feasible
    ]
    xc = np.asarray([arch_features(a) for a in pool])
    ours = {
        n: getattr(gp_kernels, n) for n in ("ConstantKernel", "DotProduct", "Matern", "WhiteKernel")
    }

    def fit_with(kind: str) -> None:
        for n, cls in ours.items():
            setattr(gp_kernels, n, cls if kind == "new" else getattr(kernels, n))
        try:
            AccuracyModel(seed=0).fit(x, y, xc)
        finally:
            for n, cls in ours.items():
                setattr(gp_kernels, n, cls)

    class OneByOne(BatchedRDBStorage):
        """The held writes as the earlier _flush wrote them: one by one, in one transaction."""

        def _write_held(self, session: Any, trial_id: int, writes: Any) -> None:
            for kind, wargs in writes:
                if kind == "param":
                    self._set_trial_param_without_commit(session, trial_id, *wargs)
                else:
                    model = (
                        models.TrialUserAttributeModel
                        if kind == "user"
                        else models.TrialSystemAttributeModel
                    )
                    self._set_trial_attr_without_commit(session, model, trial_id, *wargs)

    assert _create_scoped_session is not None
    tmp = Path(tempfile.mkdtemp())
    studies = {}
    for kind, cls in (("old", OneByOne), ("new", BatchedRDBStorage)):
        st = cls(f"sqlite:///{tmp / kind}.db", engine_kwargs={"connect_args": {"timeout": 60}})
        studies[kind] = optuna.create_study(
            storage=st, study_name="s", directions=["maximize", "minimize", "minimize"]
        )
    attrs = {k: v for k, v in trained[-1].user_attrs.items() if k != "owner"}
    params = {f"p{i}": IntDistribution(1, 64) for i in range(8)}
    params.update(
        family=CategoricalDistribution(["mlp", "cnn"]),
        neuron=CategoricalDistribution(["lif", "if"]),
    )

    def phase(kind: str) -> None:
        study = studies[kind]
        trial = take_trial(study)
        with deferred_writes(study, trial):
            for name, dist in params.items():
                trial._suggest(name, dist)  # noqa: SLF001 - a sampled parameter, as space.sample does
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
        study.tell(trial, [0.5, 1.0, 2.0])

    for _ in range(2):  # warm: first statements compiled, first trial's distribution queries
        for kind in ("old", "new"):
            phase(kind)
            fit_with(kind)

    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for kind in ("old", "new"):
            times.setdefault(f"gp_fit_{kind}", []).append(_timed(lambda k=kind: fit_with(k)))
            times.setdefault(f"trial_writes_{kind}", []).append(_timed(lambda k=kind: phase(k)))
        times.setdefault("features_old", []).append(
            _timed(lambda: [_features_numpy(a) for a in pool])
        )
        times.setdefault("features_new", []).append(
            _timed(lambda: [arch_features(a) for a in pool])
        )
        times.setdefault("progress_line_old", []).append(
            _timed(lambda: progress_line(run.study, run.target, run.config.objectives))
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "run": str(args.run),
        "trained_points": len(y),
        "pool": len(pool),
        "repeats": args.repeats,
        "median_s": med,
        "ratio_old_over_new": {
            part: med[f"{part}_old"] / med[f"{part}_new"]
            for part in ("gp_fit", "trial_writes", "features")
        },
    }
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
