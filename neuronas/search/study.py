"""The search in one import: create or open a run, run its search, read its trials.

The parts live in their own modules -- :mod:`~neuronas.search.run` (the run: config, create,
resume, open), :mod:`~neuronas.search.storage`, :mod:`~neuronas.search.samplers` (the registry),
:mod:`~neuronas.search.trials` (statuses, counting, recording, duplicates, ownership),
:mod:`~neuronas.search.lifecycle` (one trial's life on every backend),
:mod:`~neuronas.search.local` and :mod:`~neuronas.search.ray_backend` (where trials are
evaluated), :mod:`~neuronas.search.prescreen`, :mod:`~neuronas.search.progress` -- and this
module names the ones a caller needs, and :func:`run_search`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from neuronas.search.draw import RandomTrial
from neuronas.search.pareto import front_trials
from neuronas.search.prescreen import prescreen, stored_prescreen
from neuronas.search.progress import Progress, banner
from neuronas.search.run import Run, RunConfig, create_or_resume, open_run
from neuronas.search.samplers import make_sampler, tpe_settings
from neuronas.search.storage import quiet_optuna
from neuronas.search.trials import (
    DUPLICATE_ALLOWANCE,
    Counts,
    TrialStatus,
    count_trials,
)

__all__ = [
    "DUPLICATE_ALLOWANCE",
    "Counts",
    "RandomTrial",
    "Run",
    "RunConfig",
    "TrialStatus",
    "count_trials",
    "create_or_resume",
    "front_trials",
    "make_sampler",
    "open_run",
    "prescreen",
    "quiet_optuna",
    "run_search",
    "tpe_settings",
]

#: the old private name, kept for tests/test_space.py (owned elsewhere) until it imports
#: :class:`neuronas.search.draw.RandomTrial`
_RandomTrial = RandomTrial


def run_search(
    run: Run,
    *,
    workers: int = 1,
    ray: Any = None,
    storage_url: str | None = None,
    progress: bool = True,
    prescreen_n: int = 300,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``run``'s search until the study has ``run.target`` finished trials.

    Where trials train: in this process (``workers`` 1), in ``workers`` local worker processes
    on the same storage (this process then only reports progress and restarts workers), or as
    Ray tasks (``ray``: a :class:`neuronas.search.ray_backend.RayOptions`).  ``timeout_s``:
    begin no new trial after this many seconds (trials under way finish); the same call later
    resumes towards ``run.target``.

    Returns ``{"counts", "front", "prescreen"}`` (plus ``"ray"`` on Ray): the counts of
    :func:`count_trials`, the front's trial numbers, the pre-screen's statistics.
    """
    if ray is not None:
        from neuronas.search.ray_backend import run_ray_search

        return run_ray_search(
            run, ray, progress=progress, prescreen_n=prescreen_n, timeout_s=timeout_s
        )
    from neuronas.search.local import search_here, supervise_workers

    cfg = run.config
    screen = stored_prescreen(run, prescreen_n)
    bar = Progress(enabled=progress)
    if progress:
        sys.stderr.write(banner(run, screen))
        bar.show(run)
    deadline = time.time() + timeout_s if timeout_s is not None else None
    try:
        if workers <= 1:
            search_here(run, progress=bar, deadline=deadline)
        else:
            supervise_workers(
                run, workers=workers, storage_url=storage_url, bar=bar, deadline=deadline
            )
    finally:
        bar.close()
    trials = run.study.get_trials(deepcopy=False)
    return {
        "counts": dataclasses.asdict(count_trials(run.study, trials)),
        "front": [t.number for t in front_trials(run.study, cfg.objectives, trials)],
        "prescreen": screen,
    }
