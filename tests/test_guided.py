"""The cost-guided sampler (the search's default): its expected hypervolume improvement is the
exact expectation, its proposals fit the chip and never repeat, and with accuracy a known function
of the architecture (no training) it finds a larger front than random search."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
import pytest

from neuronas.hardware import estimate, load_chip
from neuronas.search.guided import PROPOSAL_ATTR, CostGuidedSampler, expected_hvi
from neuronas.search.pareto import hypervolume, to_loss
from neuronas.search.pool import arch_features
from neuronas.search.space import load_space

OBJ = ("accuracy", "energy_uj", "latency_us")
REF = np.array([0.0, 1.0, 100.0])


def _front() -> np.ndarray:
    return np.array([[0.8, 0.5, 60.0], [0.6, 0.2, 40.0], [0.4, 0.05, 90.0], [0.3, 0.02, 95.0]])


def test_expected_improvement_is_the_expectation_of_the_improvement() -> None:
    # the closed form against numerical integration of the improvement (computed by the generic
    # hypervolume on a fine grid of accuracies) over the normal density
    front = _front()
    cands = np.array([[0.0, 0.3, 50.0], [0.0, 0.1, 30.0], [0.0, 0.6, 20.0], [0.0, 0.01, 99.0]])
    mean = np.array([0.7, 0.5, 0.9, 0.2])
    std = np.array([0.1, 0.2, 0.05, 0.3])
    got = expected_hvi(
        to_loss(front, OBJ), to_loss([REF], OBJ)[0], to_loss(cands, OBJ), 0, -mean, std
    )
    base = hypervolume(front, REF, OBJ)
    for i in range(len(cands)):
        xs = np.linspace(mean[i] - 7 * std[i], mean[i] + 7 * std[i], 1401)
        # accuracy below the reference (0) adds nothing: the volume is clipped there
        gains = np.array(
            [hypervolume(np.vstack([front, [x, *cands[i, 1:]]]), REF, OBJ) - base for x in xs]
        )
        density = np.exp(-0.5 * ((xs - mean[i]) / std[i]) ** 2) / (std[i] * math.sqrt(2 * math.pi))
        numeric = float(
            np.sum((gains * density)[1:] + (gains * density)[:-1]) * 0.5 * (xs[1] - xs[0])
        )
        assert got[i] > 0
        assert got[i] == pytest.approx(numeric, rel=2e-4), (i, got[i], numeric)


def test_known_objectives_give_the_exact_improvement() -> None:
    front = _front()
    ref_l = to_loss([REF], OBJ)[0]
    cands = np.array([[0.7, 0.3, 50.0], [0.9, 0.6, 70.0], [0.5, 0.6, 70.0], [0.9, 1.2, 10.0]])
    base = hypervolume(front, REF, OBJ)
    exact = [hypervolume(np.vstack([front, c]), REF, OBJ) - base for c in cands]
    np.testing.assert_allclose(
        expected_hvi(to_loss(front, OBJ), ref_l, to_loss(cands, OBJ), None), exact, atol=1e-12
    )
    # a vanishing deviation: the expectation becomes the improvement at the mean
    near = expected_hvi(
        to_loss(front, OBJ), ref_l, to_loss(cands, OBJ), 0, -cands[:, 0], np.full(4, 1e-7)
    )
    np.testing.assert_allclose(near, exact, atol=1e-6)
    assert exact[2] == 0.0  # dominated by (0.6, 0.2, 40)
    assert exact[3] == 0.0  # beyond the energy reference


def _synthetic_accuracy(arch) -> float:
    """Accuracy as a fixed, noisy-free function of the architecture (no training): grows with
    the weights, timesteps and resolution, falls with weight bits on a 1-bit sense amplifier."""
    f = arch_features(arch)
    log_w, timesteps, log_in, mean_bits = f[0], f[4], f[5], f[6]
    z = 0.6 * (log_w - 12.0) + 0.25 * (timesteps - 6) + 0.3 * (log_in - 9) - 0.35 * (mean_bits - 3)
    return 0.1 + 0.8 / (1.0 + math.exp(-z))


def _search(
    sampler, space, chip, trials: int, seen_check: bool = False, between=None
) -> tuple[float, list]:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    points, keys, rows = [], set(), []
    for _ in range(trials):
        trial = study.ask()
        arch = space.sample(trial, chip)
        report = estimate(arch, chip)
        proposal = study._storage.get_trial(trial._trial_id).system_attrs.get(PROPOSAL_ATTR)  # noqa: SLF001
        rows.append((arch, report, proposal))
        if seen_check:
            assert arch.key not in keys, "a repeated architecture"
            keys.add(arch.key)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("arch_key", arch.key)
        if not report.feasible:
            trial.set_user_attr("status", "infeasible")
            study.tell(trial, [0.0, report.metric("energy_uj"), report.metric("latency_us")])
            if between is not None:
                between()
            continue
        acc = _synthetic_accuracy(arch)
        values = [acc, report.metric("energy_uj"), report.metric("latency_us")]
        trial.set_user_attr("status", "ok")
        trial.set_user_attr("accuracy", acc)
        trial.set_user_attr("metrics", {"energy_uj": values[1], "latency_us": values[2]})
        trial.set_user_attr("prior_metrics", {"energy_uj": values[1], "latency_us": values[2]})
        study.tell(trial, values)
        points.append(values)
        if between is not None:
            between()
    budgets = chip.budgets.items()
    ref = [0.0] + [budgets[o].limit for o in OBJ[1:]]
    return hypervolume(points, ref, OBJ), rows


@pytest.mark.parametrize("chip_name", ["rram-adcless-65nm", "rram-adcless-65nm-tight"])
def test_proposals_fit_the_hard_budgets_never_repeat_and_are_followed(chip_name: str) -> None:
    space, chip = load_space("digits-small"), load_chip(chip_name)
    sampler = CostGuidedSampler(
        space, chip, objectives=OBJ, n_startup_trials=4, n_candidates=200, seed=3
    )
    _, rows = _search(sampler, space, chip, 10, seen_check=True)
    for i, (arch, report, proposal) in enumerate(rows):
        assert report.feasible, f"trial {i} proposed over a hard budget: {report.violations}"
        assert proposal is not None and proposal["key"] == arch.key, "the proposal was not followed"
        assert proposal["how"] == (
            "random (feasible, new)" if i < 4 else "expected hypervolume improvement"
        )
        if i >= 4:
            assert 0.0 <= proposal["predicted_accuracy"] <= 1.0 and proposal["ehvi"] >= 0.0


def test_it_finds_a_larger_front_than_random_search_when_accuracy_is_known() -> None:
    space, chip = load_space("digits-small"), load_chip("rram-adcless-65nm")
    guided, rand = [], []
    for seed in range(3):
        g = CostGuidedSampler(
            space, chip, objectives=OBJ, n_startup_trials=5, n_candidates=200, seed=seed
        )
        guided.append(_search(g, space, chip, 16)[0])
        rand.append(_search(optuna.samplers.RandomSampler(seed=seed), space, chip, 16)[0])
    assert np.mean(guided) > 1.02 * np.mean(rand), (guided, rand)
    assert sum(g > r for g, r in zip(guided, rand, strict=True)) >= 2, (guided, rand)


def test_without_accuracy_every_objective_is_priced_and_the_improvement_is_exact() -> None:
    # objectives the cost model knows exactly: no model, no start-up, and the improvement each
    # proposal expects is the hypervolume it then adds (the chip budgets both: the reference)
    space, chip = load_space("digits-small"), load_chip("rram-adcless-65nm")
    objectives = ("energy_uj", "area_mm2")
    budgets = chip.budgets.items()
    ref = [budgets[o].limit for o in objectives]
    sampler = CostGuidedSampler(
        space, chip, objectives=objectives, n_startup_trials=2, n_candidates=150, seed=0
    )
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    points: list[list[float]] = []
    for _ in range(6):
        trial = study.ask()
        arch = space.sample(trial, chip)
        report = estimate(arch, chip)
        assert report.feasible
        proposal = study._storage.get_trial(trial._trial_id).system_attrs[PROPOSAL_ATTR]  # noqa: SLF001
        assert proposal["key"] == arch.key and "predicted_accuracy" not in proposal
        assert proposal["how"] == "expected hypervolume improvement"
        values = [report.metric(o) for o in objectives]
        before = hypervolume(points, ref, objectives) if points else 0.0
        points.append(values)
        assert hypervolume(points, ref, objectives) - before == pytest.approx(
            proposal["ehvi"], rel=1e-9, abs=1e-12
        )
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("arch_key", arch.key)
        trial.set_user_attr("status", "ok")
        study.tell(trial, values)
    assert proposal["ehvi"] >= 0.0


def test_the_model_libraries_load_when_the_sampler_is_built_not_mid_search() -> None:
    """scikit-learn / SciPy (~1 s, ~140 MiB) are imported when a sampler that will fit the
    accuracy model is built, so the first fit (trial n_startup_trials + 1) neither pauses nor
    steps up the search's memory; a sampler with only priced objectives never imports them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from neuronas.search.guided import CostGuidedSampler\n"
        "CostGuidedSampler(None, None, objectives=('energy_uj', 'latency_us'))\n"
        "print('sklearn.gaussian_process' in sys.modules)\n"
        "CostGuidedSampler(None, None, objectives=('accuracy', 'energy_uj'))\n"
        "print('sklearn.gaussian_process' in sys.modules, 'scipy.linalg' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert out.stdout.split() == ["False", "True", "True"], out.stderr


@pytest.mark.parametrize("n", [3, 8, 25])
def test_the_kernels_introspected_once_fit_what_scikit_learns_kernels_fit(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accuracy model's kernels (neuronas.search.gp_kernels: scikit-learn's, with their
    hyperparameter and argument lists made once per class) give the fit scikit-learn's own
    kernels give, bit for bit: hyperparameters, Cholesky factor, weights, predictions, the
    widened deviation -- so the search proposes the same candidates."""
    from sklearn.gaussian_process import kernels

    from neuronas.search import gp_kernels
    from neuronas.search.guided import AccuracyModel

    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 7))
    x[:, 3] = 1.0  # a constant feature (dropped by the standardisation)
    y = np.clip(0.5 + 0.2 * x[:, 0] - 0.1 * x[:, 1] + 0.05 * rng.normal(size=n), 0.0, 1.0)
    pool = rng.normal(size=(40, 7))

    def fitted() -> tuple[Any, ...]:
        model = AccuracyModel(seed=5).fit(x, y, pool)
        mean, std = model.predict(pool)
        gp = model._gp  # noqa: SLF001 - white-box: the fitted process itself
        return repr(gp.kernel_), gp.kernel_.theta, gp.L_, gp.alpha_, mean, std, model.std_scale

    ours = fitted()
    assert type(ours[0]) is str and "Matern" in ours[0]
    for name in ("ConstantKernel", "DotProduct", "Matern", "WhiteKernel"):
        monkeypatch.setattr(gp_kernels, name, getattr(kernels, name))
    theirs = fitted()
    assert ours[0] == theirs[0]
    for a, b in zip(ours[1:-1], theirs[1:-1], strict=True):
        assert np.array_equal(a, b)
    assert ours[-1] == theirs[-1]
    # the lists made once are scikit-learn's own (same names, same order)
    for name in ("ConstantKernel", "DotProduct", "Matern", "WhiteKernel"):
        k = getattr(gp_kernels, name)()
        ref = getattr(kernels, name)()
        assert [h.name for h in k.hyperparameters] == [h.name for h in ref.hyperparameters]
        assert k.get_params() == ref.get_params()


@pytest.mark.parametrize("space_name", ["digits-small", "digits-residual"])
def test_arch_features_are_numpys_values(space_name: str) -> None:
    """arch_features in plain Python gives what the NumPy formulas give, float for float, on
    random candidates of a space (MLPs, CNNs, skips, per-layer precision where the space has
    it): the accuracy model sees the same numbers."""
    import math as m

    from neuronas.search.draw import RandomTrial

    space, chip = load_space(space_name), load_chip("rram-adcless-65nm")
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(300):
        try:
            arch = space.sample(RandomTrial(rng), chip)
        except Exception:  # noqa: BLE001 - a candidate the space cannot make: not a test case
            continue
        w = arch.resolved()
        bits = [float(x.weight_bits) for x in w] or [float(arch.precision.weight_bits)]
        adc = [16.0 if x.adc_kind == "digital" else float(x.adc_bits) for x in w] or [1.0]
        got = arch_features(arch)
        assert got[1] == m.log2(max(sum(int(np.prod(x.out_shape)) for x in w), 1))
        assert got[5] == m.log2(max(int(np.prod(w[0].in_shape)) if w else 1, 1))
        assert got[6] == float(np.mean(bits)) and got[8] == float(np.mean(adc))
        assert all(type(v) is float for v in got)
        seen += 1
    assert seen > 100


def _pool_the_old_way(sampler: CostGuidedSampler, seen: set[str], number: int) -> list[tuple]:
    """The candidates as the sampler drew them before the pool could be drawn ahead: repeats
    and architectures in ``seen`` skipped before pricing (draw_priced's ``skip``)."""
    from neuronas.search.draw import draw_priced

    keys: set[str] = set()
    out = []
    for d in draw_priced(
        sampler.space,
        sampler.chip,
        np.random.default_rng([sampler.seed, number]),
        sampler.n_candidates,
        skip=lambda arch: arch.key in seen or arch.key in keys,
    ):
        if d.report.feasible:
            keys.add(d.arch.key)
            costs = [0.0 if o == "accuracy" else float(d.report.metric(o)) for o in OBJ]
            out.append((d.params, d.arch.key, costs, arch_features(d.arch)))
    return out


@pytest.mark.parametrize("space_name", ["digits-small", "digits-residual"])
def test_the_pool_filtered_afterwards_is_the_pool_drawn_with_the_skips(space_name: str) -> None:
    """Trial n's pool depends on n alone, and which members are new is decided afterwards: the
    same candidates, in the same order, as skipping repeats and seen architectures while
    drawing (what lets the pool be drawn a trial ahead)."""
    space, chip = load_space(space_name), load_chip("rram-adcless-65nm")
    sampler = CostGuidedSampler(space, chip, objectives=OBJ, n_candidates=150, seed=5)
    first = sampler.candidates(set(), 7)
    keys = [c["key"] for c in first]
    assert len(set(keys)) == len(keys) > 20
    for seen in (set(), set(keys[::3]), {keys[0], keys[-1], "not-a-key"}):
        got = [
            (c["params"], c["key"], c["costs"], c["features"]) for c in sampler.candidates(seen, 7)
        ]
        assert got == _pool_the_old_way(sampler, seen, 7)
        assert not {k for _, k, _, _ in got} & seen


def test_a_small_space_repeats_itself_and_the_pool_keeps_each_architecture_once() -> None:
    # digits-small has few enough architectures that 150 draws repeat some: the repeats are
    # dropped as the old skip did, whichever draw of them was feasible first
    space, chip = load_space("digits-small"), load_chip("rram-adcless-65nm")
    sampler = CostGuidedSampler(space, chip, objectives=OBJ, n_candidates=400, seed=1)
    got = [(c["params"], c["key"], c["costs"], c["features"]) for c in sampler.candidates(set(), 3)]
    assert got == _pool_the_old_way(sampler, set(), 3)
    drawn = set()
    from neuronas.search.draw import RandomTrial

    rng, repeats = np.random.default_rng([1, 3]), 0
    for _ in range(400):
        arch = space.sample(RandomTrial(rng), chip)
        repeats += arch.key in drawn
        drawn.add(arch.key)
    assert repeats > 0, "the test needs a space whose draws repeat"


def test_pools_drawn_ahead_in_the_helper_give_the_same_proposals() -> None:
    """A sampler that draws the next trial's pool in its helper process while a trial runs
    proposes exactly what one drawing every pool itself proposes, and its proposals did use
    the helper's pools."""
    space, chip = load_space("digits-small"), load_chip("rram-adcless-65nm")
    runs = {}
    for ahead in (False, True):
        sampler = CostGuidedSampler(
            space, chip, objectives=OBJ, n_startup_trials=3, n_candidates=120, seed=11, ahead=ahead
        )

        # the time a trial trains: until the helper has drawn the next pool
        def trains(sampler=sampler) -> None:
            if sampler._ahead is not None:  # noqa: SLF001
                assert sampler._ahead.ready(120)  # noqa: SLF001

        try:
            _, rows = _search(sampler, space, chip, 8, between=trains)
            runs[ahead] = [(a.key, p["how"], p.get("ehvi")) for a, _, p in rows]
            if ahead:
                assert sampler.pools_drawn_ahead == 7  # every proposal but the first
            else:
                assert sampler.pools_drawn_ahead == 0
        finally:
            sampler.close()
    assert runs[True] == runs[False]
    assert sum(how == "expected hypervolume improvement" for _, how, _ in runs[True]) == 5


def test_the_pool_helper_ends_with_the_process_that_started_it() -> None:
    """The helper process runs at the lowest priority and exits when the search process ends,
    even killed (SIGKILL): its pipe closes.  A real search process, a real kill."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys, time\n"
        "from neuronas.hardware import load_chip\n"
        "from neuronas.search.guided import CostGuidedSampler\n"
        "from neuronas.search.space import load_space\n"
        "s = CostGuidedSampler(load_space('digits-small'), load_chip('rram-adcless-65nm'),\n"
        "    objectives=('accuracy', 'energy_uj', 'latency_us'), n_candidates=50, ahead=True)\n"
        "s.candidates(set(), 0)\n"
        "assert s._ahead.ready(120)\n"  # noqa: SLF001 -- the test's own child
        "print(s._ahead._proc.pid, flush=True)\n"  # noqa: SLF001
        "time.sleep(600)\n"
    )

    def running(pid: int) -> bool:
        # the helper is our grandchild: once orphaned it is init's to reap, so an exited one
        # may linger a moment as a zombie
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False

    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        helper = int(proc.stdout.readline())
        assert running(helper)
        # at the lowest priority: it takes the cycles the trial leaves idle
        assert (
            os.sched_getscheduler(helper) == os.SCHED_IDLE
            or os.getpriority(os.PRIO_PROCESS, helper) == 19
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for _ in range(300):
            if not running(helper):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the pool helper {helper} outlived its killed parent by 30 s")
    finally:
        proc.kill()
        proc.wait()


def test_a_pool_helper_that_cannot_start_leaves_the_drawing_to_the_proposal() -> None:
    # settings that cannot be sent to a process (a closure): no helper; nothing is ever taken
    from neuronas.search.pool import PoolAhead

    helper = PoolAhead({"space": lambda: None})
    helper.ask(1)
    assert not helper.ready(0.5)
    assert helper.take(1) is None and helper.taken == 0
    helper.close()
