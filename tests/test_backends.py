"""One trial lifecycle, every backend: the same tiny search in this process, in local worker
processes and on a local Ray runtime stores the same trials.

The candidates are fixed (enqueued, in the same order) so that each backend evaluates the same
ones; training is deterministic for a seed on CPU.  What must agree is everything a trial
records about its candidate (state, parameters, status, costs, margins, constraints, accuracy,
values, system attributes); what may differ is where and how long it ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _search_helpers import TINY_SPACE

from neuronas.search.draw import RandomTrial
from neuronas.search.run import create_or_resume
from neuronas.search.study import run_search

pytestmark = pytest.mark.slow

FAST = {"epochs": 1, "max_train_samples": 32, "max_eval_samples": 32, "eval_instances": 1}

#: attributes that name where or how long a trial ran (they differ between backends)
VOLATILE = {
    "owner",
    "backend",
    "ray_worker",
    "seconds",
    "train",
    "history",
    "checkpoint",
    "trial_dir",
}


def _candidates(space: Any, chip: Any, n: int) -> list[dict[str, Any]]:
    """``n`` different candidates, both feasible and over budget on the default chip."""
    import numpy as np

    from neuronas.hardware import estimate

    rng = np.random.default_rng(3)
    out: list[dict[str, Any]] = []
    keys: set[str] = set()
    feasible: list[bool] = []
    while len(out) < n:
        t = RandomTrial(rng)
        arch = space.sample(t, chip, input_shape=(2, 32, 32), num_outputs=10)
        ok = estimate(arch, chip).feasible
        # alternate feasible / infeasible so both kinds are in the set
        if arch.key in keys or ok != (len(out) % 2 == 0):
            continue
        keys.add(arch.key)
        feasible.append(ok)
        out.append(dict(t.params))
    return out


def _search(tmp: Path, name: str, params: list[dict[str, Any]], **how: Any) -> list[Any]:
    space = tmp / "tiny.yaml"
    space.write_text(TINY_SPACE)
    opts = {
        "name": name,
        "space": str(space),
        "sampler": "random",
        "seed": 0,
        "trials": len(params),
    }
    run = create_or_resume({**opts, **FAST}, root=tmp)
    for p in params:
        run.study.enqueue_trial(p)
    run_search(run, progress=False, **how)
    return sorted(run.study.get_trials(deepcopy=False), key=lambda t: t.number)


def _stored(t: Any) -> dict[str, Any]:
    ua = {k: v for k, v in t.user_attrs.items() if k not in VOLATILE}
    return {
        "state": t.state.name,
        "params": t.params,
        "user_attrs": ua,
        "system_attrs": t.system_attrs,
        "constraints": t.constraints if t.state.name == "COMPLETE" else None,
        "values": t.values,
    }


def test_every_backend_records_the_same_trials(tmp_path: Path) -> None:
    from neuronas.hardware import load_chip
    from neuronas.search.ray_backend import RayOptions
    from neuronas.search.space import load_space

    space = tmp_path / "space.yaml"
    space.write_text(TINY_SPACE)
    params = _candidates(load_space(str(space)), load_chip("rram-adcless-65nm"), 4)

    here = _search(tmp_path, "here", params)
    workers = _search(tmp_path, "workers", params, workers=2)
    ray = _search(
        tmp_path, "ray", params, ray=RayOptions(local_cpus=2, max_concurrent=2, max_retries=0)
    )

    assert [t.params for t in here] == params  # the enqueued candidates, in order
    trained = [t for t in here if t.user_attrs["trained"]]
    assert trained and len(trained) < len(here), "both trained and rejected candidates"
    assert {t.user_attrs["backend"] for t in here} == {"local"}
    assert {t.user_attrs["backend"] for t in workers} == {"local-worker"}
    assert {t.user_attrs["backend"] for t in ray} == {"ray"}
    # the backend-specific attributes are where they belong
    assert len({t.user_attrs["owner"]["pid"] for t in workers}) == 2
    assert all("ray_worker" in t.user_attrs for t in ray if t.user_attrs["trained"])
    for name, trials in (("here", here), ("workers", workers), ("ray", ray)):
        for t in trials:
            # the same keys recorded on every backend, the volatile ones included
            keys = set(t.user_attrs) - {"ray_worker"}
            assert keys == set(here[t.number].user_attrs), (t.number, keys)
            if t.user_attrs["trained"]:
                assert t.user_attrs["trial_dir"] == f"trials/{t.number:04d}"
                assert (tmp_path / "runs" / name / t.user_attrs["trial_dir"] / "model.pt").is_file()
    for a, b, c in zip(here, workers, ray, strict=True):
        assert _stored(a) == _stored(b) == _stored(c), a.number
