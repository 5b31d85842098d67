"""The cost-guided sampler, the search's default: the cost model inside the proposal.

A hardware-aware search knows most of a candidate's objectives before it trains it: the cost
model prices energy, latency, area and memory in about a millisecond, and only accuracy needs
training (seconds to minutes).  A general-purpose sampler (TPE, NSGA-II) learns all objectives
from finished trials alike and spends trials on candidates that break a budget or that it has
already tried.  This sampler uses the prices directly.  For each trial it

1. draws ``n_candidates`` architectures from the space at random and prices each one (the same
   :func:`neuronas.hardware.estimate` the trial runs first, with the prior spike rate): the
   trial's pool (:mod:`neuronas.search.pool`), drawn while the previous trial trained when
   there is a core to spare;
2. drops those that break a hard budget, cannot be built on the chip, or repeat an architecture
   of the study (finished, running, or just proposed by another worker);
3. fits a Gaussian process to the trained trials' accuracies (a candidate successive halving
   stopped early counts at its rung accuracy plus the promoted ones' median gain), on features of the architecture
   (:func:`arch_features`: weights, neurons, depth, timesteps, input resolution, bits, neuron
   model...);
4. proposes the candidate with the largest **expected hypervolume improvement** of the feasible
   front, with its cost objectives at their priced values (scaled by how measured costs have
   compared with priced ones so far) and accuracy normal with the process's mean and deviation.
   With one uncertain objective the expectation is exact and closed form (below).

Until ``n_startup_trials`` trials are trained it proposes a random candidate of step 2 (random,
but never over budget and never a repeat); when accuracy is not an objective, every objective is
priced and the improvement is exact from the first trial.  When a trial's parameters cannot be replayed (a
space that draws differently on replay), the remaining parameters are drawn at random.

Expected improvement, exactly.  In loss form (all objectives minimised; accuracy negated) a
candidate ``c`` whose uncertain objective ``u`` takes the value ``x`` adds the volume
``HVI(x) = integral_x^{ref_u} A(t) dt``, where ``A(t)`` is the area (volume, in the known
objectives) of the box ``[c_known, ref_known]`` not dominated by the front points with
``p_u <= t``.  ``A`` is a step function with a step at each front point's ``p_u``, so with
``x ~ N(mu, s)``: ``E[HVI] = sum_k A_k * (s*psi((hi_k - mu)/s) - s*psi((lo_k - mu)/s))`` over
the steps ``[lo_k, hi_k]``, with ``psi(z) = z*Phi(z) + phi(z)`` (``E[(h - x)^+] = s*psi((h-mu)/s)``).
This is the one-uncertain-objective case of Emmerich et al.'s EHVI (M. Emmerich, K. Yang,
A. Deutz, H. Wang, C. Fonseca, "A multicriteria generalization of Bayesian global optimization",
2016); the known objectives need no integration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.samplers import BaseSampler, RandomSampler

from neuronas.search.pareto import DIRECTIONS, dominated_volume, front_trials, hypervolume, to_loss
from neuronas.search.pool import (
    UNCERTAIN,
    PoolAhead,
    arch_features,
    candidate_pool,
    new_candidates,
)

# --------------------------------------------------------------------------------------------
# expected hypervolume improvement


_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _psi(z: float) -> float:
    """``z * Phi(z) + phi(z)``: E[(h - x)^+] / s for x ~ N(mu, s), z = (h - mu) / s."""
    return z * 0.5 * (1.0 + math.erf(z / _SQRT2)) + _INV_SQRT2PI * math.exp(-0.5 * z * z)


def _dominated(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by ``points`` (loss form) up to ``ref``."""
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 0:
        return 1.0
    if points.shape[1] <= 2:
        # the 1-D / 2-D sweep passes over dominated points by itself: skip the O(n^2) filter
        # that `hypervolume` applies (this is called once per front point per candidate)
        inside = points[np.all(points < ref, axis=1)]
        return float(dominated_volume(inside, ref)) if len(inside) else 0.0
    return hypervolume(points, [float(v) for v in ref])


def expected_hvi(
    front: np.ndarray,
    ref: np.ndarray,
    candidates: np.ndarray,
    uncertain: int | None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> np.ndarray:
    """Expected hypervolume improvement of each candidate over ``front`` (all in loss form).

    ``front``: ``[n, d]`` observed points; ``candidates``: ``[m, d]`` (column ``uncertain``
    ignored: it is ``N(mean, std)``); ``uncertain`` None: every objective is known and the
    improvement is exact.
    """
    front = np.asarray(front, dtype=float).reshape(-1, len(ref))
    front = front[np.all(front < ref, axis=1)]
    out = np.zeros(len(candidates))
    if uncertain is None:
        base = _dominated(front, ref)
        for i, c in enumerate(candidates):
            if np.all(c < ref):
                out[i] = _dominated(np.vstack([front, c[None]]), ref) - base
        return out
    known = [j for j in range(len(ref)) if j != uncertain]
    ref_k = ref[known]
    order = np.argsort(front[:, uncertain], kind="stable")
    front = front[order]
    levels = front[:, uncertain]
    ref_u = float(ref[uncertain])
    # the steps of A: [-inf, levels[0]), [levels[0], levels[1]), ... [levels[-1], ref_u)
    bounds = [-math.inf, *(min(float(v), ref_u) for v in levels), ref_u]
    # the clipped front lies below ref_k (the front below ref, the candidate too), so in one or
    # two known objectives its first k points go straight to the sweep (_dominated's filter
    # would keep them all)
    sweep = dominated_volume if len(known) in (1, 2) else _dominated
    for i, c in enumerate(candidates):
        ck = c[known]
        if np.any(ck >= ref_k):
            continue
        box = float(np.prod(ref_k - ck))
        clipped = np.maximum(front[:, known], ck)
        assert mean is not None and std is not None, "an uncertain objective needs mean and std"
        mu, s = float(mean[i]), max(float(std[i]), 1e-9)
        total = 0.0
        for k in range(len(front) + 1):
            lo, hi = bounds[k], bounds[k + 1]
            if hi <= lo:
                continue
            # A_k: the box less what the first k front points dominate in it
            area = box - (float(sweep(clipped[:k], ref_k)) if k else 0.0)
            if area <= 0.0:
                continue
            e_lo = 0.0 if lo == -math.inf else s * _psi((lo - mu) / s)
            total += area * (s * _psi((hi - mu) / s) - e_lo)
        out[i] = total
    return out


# --------------------------------------------------------------------------------------------
# the accuracy model


class AccuracyModel:
    """A Gaussian process on standardised :func:`arch_features`: linear trend + isotropic Matern 5/2
    + noise, hyperparameters fitted by marginal likelihood."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._gp: Any = None

    @staticmethod
    def load_libraries() -> None:
        """Import scikit-learn's Gaussian process and SciPy now (~1 s, ~140 MiB resident): the
        sampler does it when it is built, so that neither time nor memory jumps in the middle
        of a search at its first fit (``benchmarks/RESULTS.md``, "Memory")."""
        import scipy.linalg  # noqa: F401
        import sklearn.gaussian_process  # noqa: F401

        import neuronas.search.gp_kernels  # noqa: F401

    def fit(self, x: np.ndarray, y: np.ndarray, scale_from: np.ndarray) -> AccuracyModel:
        from sklearn.gaussian_process import GaussianProcessRegressor

        # scikit-learn's kernels, introspected once per class (the same fit, bit for bit)
        from neuronas.search.gp_kernels import ConstantKernel, DotProduct, Matern, WhiteKernel

        both = np.vstack([scale_from, x])
        self._mu = both.mean(axis=0)
        sd = both.std(axis=0)
        self._keep = sd > 1e-12
        self._sd = np.where(self._keep, sd, 1.0)
        z = self._z(x)
        # a linear trend (more weights, timesteps, resolution -> more accuracy, and so on, as the
        # data say) plus a smooth deviation with one length scale for all standardised features,
        # and a noise floor. With a separate scale per feature (ARD) the fit on 5-20 points
        # explains them by one spurious feature and is ~4x overconfident elsewhere; this kernel:
        # held-out z-scores' deviation 1.1-1.2, rank correlation 0.61 (ARD 0.36, no trend 0.55)
        # with 10 trained points, on 819 trained candidates of the benchmark (RESULTS.md, "Search")
        kernel = (
            ConstantKernel(1.0, (1e-2, 1e2))
            * Matern(length_scale=2.0, length_scale_bounds=(1.0, 30.0), nu=2.5)
            + ConstantKernel(0.1, (1e-3, 10.0)) * DotProduct(sigma_0=1.0, sigma_0_bounds="fixed")
            + WhiteKernel(0.1, (0.05, 1.0))
        )
        self._gp = GaussianProcessRegressor(
            kernel, normalize_y=True, n_restarts_optimizer=1, random_state=self.seed
        )
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on a handful of points
            self._gp.fit(z, y)
        # fitted on a handful of points, the process is overconfident (held-out errors were ~4x
        # its deviation on the benchmark's trials): widen the deviation by the leave-one-out
        # z-scores' RMS (closed form: z_i = alpha_i / sqrt([K^-1]_ii), Sundararajan & Keerthi
        # 2001), never narrow it
        from scipy.linalg import cho_solve

        k_inv = cho_solve((self._gp.L_, True), np.eye(len(y)))
        loo_z = np.ravel(self._gp.alpha_) / np.sqrt(np.clip(np.diag(k_inv), 1e-12, None))
        self.std_scale = max(1.0, float(np.sqrt(np.mean(loo_z**2)))) if len(y) > 1 else 1.0
        return self

    def _z(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._mu) / self._sd)[:, self._keep]

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self._gp.predict(self._z(x), return_std=True)
        return np.asarray(mean, dtype=float), self.std_scale * np.asarray(std, dtype=float)


def reference_point(objectives: Sequence[str], chip: Any, costs: np.ndarray) -> np.ndarray:
    """Hypervolume reference in natural units: accuracy 0; a cost at the chip's budget for it,
    else 1.1x the largest value seen (``costs``: ``[n, len(objectives)]``)."""
    budgets = chip.budgets.items()
    ref = []
    for j, o in enumerate(objectives):
        if o in UNCERTAIN and DIRECTIONS[o] == "maximize":
            ref.append(0.0)  # accuracy: no better than nothing
        elif o in budgets:
            ref.append(float(budgets[o].limit))
        else:
            col = costs[:, j] if len(costs) else np.array([1.0])
            col = col[np.isfinite(col)]
            if o in UNCERTAIN:  # AEE: 1.1x the worst on the front (the priced candidates carry 0)
                col = col[col > 0]
            ref.append(1.1 * float(col.max()) if len(col) else 1.0)
    return np.asarray(ref)


# --------------------------------------------------------------------------------------------
# the sampler

#: where a trial's proposal is recorded (trial system attribute): what was predicted, and the
#: architecture key, so that other workers do not propose it again before it is sampled
PROPOSAL_ATTR = "neuronas:proposal"


class CostGuidedSampler(BaseSampler):
    """An Optuna sampler that proposes by expected hypervolume improvement (module docstring).

    ``space``, ``chip``: the run's search space and chip; ``objectives``: the study's objectives
    (natural names, e.g. ``("accuracy", "energy_uj", "latency_us")``); ``activity``: the prior
    spike rate the trials are priced with.  ``n_startup_trials``: trained trials before the
    accuracy model is used (until then: random feasible, new candidates).  ``n_candidates``:
    architectures drawn and priced per proposal.  ``ahead``: draw the next trial's pool in a
    helper process while a trial trains (:class:`~neuronas.search.pool.PoolAhead`; for a
    sampler that proposes one trial at a time on a machine with a core to spare): the same
    proposals, sooner.
    """

    def __init__(
        self,
        space: Any,
        chip: Any,
        *,
        objectives: Sequence[str],
        input_shape: Sequence[int] | None = None,
        num_outputs: int | None = None,
        activity: Any = None,
        n_startup_trials: int = 5,
        n_candidates: int = 300,
        seed: int | None = None,
        ahead: bool = False,
    ) -> None:
        self.space = space
        self.chip = chip
        self.objectives = tuple(objectives)
        self.input_shape = input_shape
        self.num_outputs = num_outputs
        self.activity = activity
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self.seed = 0 if seed is None else int(seed)
        self._random = RandomSampler(seed=seed)
        self._plans: dict[int, dict[str, Any]] = {}
        self._features: dict[str, list[float]] = {}  # arch key -> arch_features (trained ones)
        self._ahead: PoolAhead | None = None
        if ahead:
            self._ahead = PoolAhead(self.pool_settings())
        if any(o in UNCERTAIN for o in self.objectives):
            AccuracyModel.load_libraries()  # the first fit comes n_startup_trials later

    # -- optuna's sampler interface ------------------------------------------------------------

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return {}

    def sample_relative(
        self, study: Any, trial: Any, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return {}

    def before_trial(self, study: Any, trial: Any) -> None:
        if trial.system_attrs.get("fixed_params"):
            return  # an enqueued trial (a re-run of a stale one): its parameters are given
        proposal = self.propose(study.get_trials(deepcopy=False), trial.number)
        if proposal is None:
            return
        self._plans[trial._trial_id] = proposal.pop("params")  # noqa: SLF001
        study._storage.set_trial_system_attr(trial._trial_id, PROPOSAL_ATTR, proposal)  # noqa: SLF001

    def sample_independent(
        self, study: Any, trial: Any, param_name: str, param_distribution: Any
    ) -> Any:
        plan = self._plans.get(trial._trial_id)  # noqa: SLF001
        if plan is not None and param_name in plan:
            value = plan[param_name]
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(value)):  # noqa: SLF001
                    return value
            except (ValueError, TypeError):
                pass
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._plans.pop(trial._trial_id, None)  # noqa: SLF001

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    # -- the proposal --------------------------------------------------------------------------

    def pool_settings(self) -> dict[str, Any]:
        """:func:`~neuronas.search.pool.candidate_pool`'s arguments but the trial number."""
        return {
            "space": self.space,
            "chip": self.chip,
            "objectives": self.objectives,
            "seed": self.seed,
            "n_candidates": self.n_candidates,
            "input_shape": self.input_shape,
            "num_outputs": self.num_outputs,
            "activity": self.activity,
        }

    def candidates(self, seen: set[str], number: int) -> list[dict[str, Any]]:
        """Trial ``number``'s :func:`~neuronas.search.pool.candidate_pool` without the
        architectures in ``seen``: random architectures of the space that fit the chip's hard
        budgets, each with its parameters, key, priced objectives and features.  Taken from the
        helper when it drew this pool ahead; then the next trial's is asked for."""
        pool = self._ahead.take(number) if self._ahead is not None else None
        if pool is None:
            pool = candidate_pool(**self.pool_settings(), number=number)
        if self._ahead is not None:
            self._ahead.ask(number + 1)
        return new_candidates(pool, seen)

    @property
    def pools_drawn_ahead(self) -> int:
        """Proposals whose pool the helper process drew ahead (0 without one)."""
        return self._ahead.taken if self._ahead is not None else 0

    def close(self) -> None:
        """Stop the helper process that draws pools ahead, if there is one."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def _trained_features(self, key: str, arch_dict: dict[str, Any]) -> list[float]:
        """:func:`arch_features` of a trial's architecture (``arch_key`` ``key``), computed once
        per architecture and sampler: every proposal reads all the trained trials again."""
        got = self._features.get(key)
        if got is None:
            from neuronas.spec import ArchSpec

            got = self._features[key] = arch_features(ArchSpec.from_dict(arch_dict))
        return got

    def propose(self, trials: Sequence[Any], number: int) -> dict[str, Any] | None:
        """The next trial's parameters and what was predicted for it (None: nothing to propose)."""
        from neuronas.spec import ArchSpec

        seen = {
            t.user_attrs.get("arch_key") or t.system_attrs.get(PROPOSAL_ATTR, {}).get("key")
            for t in trials
        }
        seen.discard(None)
        pool = self.candidates(seen, number)
        if not pool:
            return None
        trained: dict[str, tuple[list[float], float]] = {}
        ratios: list[list[float]] = []
        quality = next((o for o in self.objectives if o in UNCERTAIN), "accuracy")
        for t in trials:
            u = t.user_attrs
            if t.state.name != "COMPLETE" or u.get(quality) is None or "arch" not in u:
                continue
            key = u.get("arch_key") or ArchSpec.from_dict(u["arch"]).key
            if key not in trained:
                trained[key] = (self._trained_features(key, u["arch"]), float(u[quality]))
            prior, measured = u.get("prior_metrics") or {}, u.get("metrics") or {}
            ratios.append(
                [
                    float(measured[o]) / float(prior[o])
                    if prior.get(o) and measured.get(o)
                    else 1.0
                    for o in self.objectives
                    if o not in UNCERTAIN
                ]
            )
        # fidelity-aware: a candidate successive halving stopped at its rung (never evaluated
        # on the chip) enters the model at its rung accuracy shifted by the median gain from
        # the rung to the chip accuracy of the promoted candidates (neuronas.search.fidelity)
        gains = [
            float(t.user_attrs["accuracy"]) - float(t.user_attrs["fidelity"]["rung_accuracy"])
            for t in trials
            if t.state.name == "COMPLETE"
            and t.user_attrs.get("accuracy") is not None
            and (t.user_attrs.get("fidelity") or {}).get("rung_accuracy") is not None
        ]
        gain = float(np.median(gains)) if gains else 0.0
        for t in trials:
            u = t.user_attrs
            mark = u.get("fidelity") or {}
            if t.state.name != "PRUNED" or mark.get("promoted", True) or "arch" not in u:
                continue
            key = u.get("arch_key") or ArchSpec.from_dict(u["arch"]).key
            if key not in trained:
                estimate = min(1.0, max(0.0, float(mark["rung_accuracy"]) + gain))
                trained[key] = (self._trained_features(key, u["arch"]), estimate)
        info = {
            "key": pool[0]["key"],
            "drawn": self.n_candidates,
            "candidates": len(pool),
            "trained": len(trained),
        }
        uncertain = next((j for j, o in enumerate(self.objectives) if o in UNCERTAIN), None)
        if uncertain is not None and len(trained) < self.n_startup_trials:
            return {"params": pool[0]["params"], **info, "how": "random (feasible, new)"}

        # the priced costs, scaled by how measured costs have compared with priced ones
        scale = np.median(np.asarray(ratios), axis=0) if ratios else None
        costs = np.asarray([c["costs"] for c in pool], dtype=float)
        cost_cols = [j for j, o in enumerate(self.objectives) if o not in UNCERTAIN]
        if scale is not None and len(cost_cols):
            costs[:, cost_cols] *= scale
        observed = [list(t.values) for t in front_trials(None, self.objectives, list(trials))]
        # trials under way (other workers, Ray): counted at their predicted values, as if
        # finished ("kriging believer", Ginsbourger et al. 2010), so that concurrent proposals
        # spread over the front instead of piling onto one spot
        observed += [
            t.system_attrs[PROPOSAL_ATTR]["values"]
            for t in trials
            if t.state.name in ("RUNNING", "WAITING")
            and "values" in t.system_attrs.get(PROPOSAL_ATTR, {})
        ]
        front = np.asarray(observed, dtype=float).reshape(-1, len(self.objectives))
        ref = reference_point(
            self.objectives, self.chip, np.vstack([costs, front]) if len(front) else costs
        )
        mean: np.ndarray | None = None
        std: np.ndarray | None = None
        if uncertain is not None:
            x = np.asarray([f for f, _ in trained.values()], dtype=float)
            y = np.asarray([a for _, a in trained.values()], dtype=float)
            xc = np.asarray([c["features"] for c in pool], dtype=float)
            model = AccuracyModel(seed=self.seed).fit(x, y, xc)
            mean, std = model.predict(xc)
            mean = np.clip(mean, 0.0, 1.0 if quality == "accuracy" else None)
        loss_ref = to_loss(np.asarray([ref]), self.objectives)[0]
        loss_front = to_loss(front, self.objectives) if len(front) else np.zeros((0, len(ref)))
        score = expected_hvi(
            loss_front,
            loss_ref,
            to_loss(costs, self.objectives),
            uncertain,
            (-mean if DIRECTIONS[quality] == "maximize" else mean) if mean is not None else None,
            std,
        )
        best = int(np.argmax(score))
        pick = pool[best]
        out = {
            "params": pick["params"],
            **info,
            "key": pick["key"],
            "how": "expected hypervolume improvement",
            "ehvi": float(score[best]),
        }
        values = [float(v) for v in costs[best]]
        if mean is not None and std is not None and uncertain is not None:
            out[f"predicted_{quality}"] = float(mean[best])
            out[f"predicted_{quality}_std"] = float(std[best])
            values[uncertain] = float(mean[best])
        out["values"] = values
        return out
