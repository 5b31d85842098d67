"""How well the cost-guided sampler's accuracy model predicts, from few trained candidates.

Data: ``results/trained_candidates.json.gz``, the 819 candidates of ``digits-small`` trained on
``rram-adcless-65nm`` by the search benchmark's runs of 2026-11-22 (3 epochs, full splits, lr
3e-2, one chip instance; 749 distinct architectures, seeds 0-9 and 100-102): architecture,
training seed, accuracy, priced and measured energy / latency.

For ``n`` in 6, 10, 15 (the number of trained trials the sampler has when it proposes), ``--reps``
times: fit the model on ``n`` random candidates, predict the other ones, and report

* the deviation of the held-out z-scores ``(accuracy - mean) / std`` (1 = calibrated; larger =
  overconfident, which makes the expected improvement exploit a wrong belief);
* the rank correlation (Spearman) of the predicted mean with the accuracy;
* the median absolute error.

Kernels: ``default`` is :class:`neuronas.search.guided.AccuracyModel` as shipped (linear trend +
isotropic Matern 5/2 + noise floor); the others are the alternatives it was chosen over::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_surrogate.py --reps 20
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def kernel(name: str, dim: int):  # noqa: ANN201 - sklearn kernel
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    c = ConstantKernel(1.0, (1e-2, 1e2))
    if name == "ard":  # one length scale per feature, noise free to vanish
        return c * Matern(np.full(dim, 2.0), (0.3, 30.0), nu=2.5) + WhiteKernel(0.1, (1e-4, 1.0))
    if name == "iso":  # one length scale, noise free to vanish
        return c * Matern(2.0, (0.3, 30.0), nu=2.5) + WhiteKernel(0.1, (1e-4, 1.0))
    if name == "iso-floor":  # one length scale >= 1, noise >= 5 % of the variance
        return c * Matern(2.0, (1.0, 30.0), nu=2.5) + WhiteKernel(0.1, (0.05, 1.0))
    raise ValueError(name)


def main() -> int:
    from scipy.stats import spearmanr
    from sklearn.gaussian_process import GaussianProcessRegressor

    from neuronas.search.guided import AccuracyModel
    from neuronas.search.pool import arch_features
    from neuronas.spec import ArchSpec

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--sizes", type=int, nargs="+", default=[6, 10, 15])
    p.add_argument("--kernels", nargs="+", default=["ard", "iso", "iso-floor", "default"])
    p.add_argument("--data", type=Path, default=HERE / "results" / "trained_candidates.json.gz")
    a = p.parse_args()
    with gzip.open(a.data, "rt") as f:
        rows = json.load(f)
    x = np.array([arch_features(ArchSpec.from_dict(r["arch"])) for r in rows], dtype=float)
    y = np.array([r["accuracy"] for r in rows], dtype=float)
    print(f"{len(rows)} trained candidates, accuracy {y.min():.3f}-{y.max():.3f}")
    print("| model | trained points | held-out z deviation | Spearman | median abs. error |")
    print("|---|---|---|---|---|")
    for name in a.kernels:
        rng = np.random.default_rng(0)  # the same training sets for every model
        for n in a.sizes:
            zs, rho, mae = [], [], []
            for _ in range(a.reps):
                idx = rng.choice(len(y), n, replace=False)
                rest = np.setdiff1d(np.arange(len(y)), idx)
                if name == "default":
                    mean, std = AccuracyModel(seed=0).fit(x[idx], y[idx], x[rest]).predict(x[rest])
                else:
                    keep = x.std(0) > 1e-12
                    mu, sd = x.mean(0)[keep], x.std(0)[keep]
                    z = (x[:, keep] - mu) / sd
                    gp = GaussianProcessRegressor(
                        kernel(name, z.shape[1]),
                        normalize_y=True,
                        n_restarts_optimizer=1,
                        random_state=0,
                    )
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        gp.fit(z[idx], y[idx])
                    mean, std = gp.predict(z[rest], return_std=True)
                zs.append(float(np.std((y[rest] - mean) / std)))
                rho.append(float(spearmanr(mean, y[rest])[0]))
                mae.append(float(np.median(np.abs(y[rest] - mean))))
            print(
                f"| {name} | {n} | {np.median(zs):.2f} | {np.nanmean(rho):.2f} | {np.mean(mae):.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
