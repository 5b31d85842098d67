"""The samplers a search can use, by name: a registry of factories.

Each factory takes the opened run, a seed and the number of trials in flight at once
(``workers``) and returns an Optuna sampler.  ``neuronas search --sampler``, the README and the
tests all read the names from :data:`SAMPLERS`; :func:`register_sampler` adds one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from neuronas.errors import ConfigError

__all__ = [
    "SAMPLERS",
    "SAMPLER_FACTORIES",
    "close_sampler",
    "make_sampler",
    "register_sampler",
    "startup_trials",
    "tpe_settings",
]

#: (run, seed, workers) -> an Optuna sampler
SamplerFactory = Callable[[Any, int, int], Any]


def startup_trials(cfg: Any) -> int:
    """Trials before a model-based sampler (guided, TPE) uses its model."""
    return (
        cfg.startup_trials if cfg.startup_trials is not None else max(5, min(10, cfg.trials // 4))
    )


def tpe_settings(cfg: Any, *, workers: int = 1) -> dict[str, Any]:
    """TPE's settings (TPESampler keyword arguments, without the seed)."""
    return {
        "n_startup_trials": startup_trials(cfg),
        # the space is conditional (family -> depth -> widths): the multivariate, grouped
        # TPE models the branches jointly instead of each parameter on its own
        "multivariate": True,
        "group": True,
        # parallel workers: count running trials as bad so workers do not propose the same
        "constant_liar": workers > 1,
    }


def _guided(run: Any, seed: int, workers: int) -> Any:
    from neuronas.search.guided import CostGuidedSampler
    from neuronas.search.pool import spare_cores

    cfg = run.config
    return CostGuidedSampler(
        run.space,
        run.chip,
        objectives=cfg.objectives,
        input_shape=cfg.input_shape,
        num_outputs=cfg.num_outputs,
        activity=cfg.activity_prior,
        n_startup_trials=startup_trials(cfg),
        seed=seed,
        # one trial at a time and a core it leaves idle part of the time: the next trial's
        # candidates are drawn and priced there while this one trains (the same proposals)
        ahead=workers == 1 and spare_cores() > 0,
    )


def _tpe(run: Any, seed: int, workers: int) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=seed, **tpe_settings(run.config, workers=workers))


def _nsga2(run: Any, seed: int, workers: int) -> Any:
    import optuna

    cfg = run.config
    pop = cfg.population_size or max(8, min(50, cfg.trials // 4))
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)


def _random(run: Any, seed: int, workers: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(run: Any, seed: int, workers: int) -> Any:
    cfg = run.config
    grid = run.space.grid(run.chip, input_shape=cfg.input_shape, num_outputs=cfg.num_outputs)
    return grid_sampler_class()(grid, seed=seed)


@functools.cache
def grid_sampler_class() -> type:
    """Optuna's :class:`~optuna.samplers.GridSampler` without the ``study.stop()`` it calls
    after the last grid point's trial: ``stop`` works only inside ``study.optimize`` and raised
    a ``RuntimeError`` in neuronas' ask-and-tell loop once the grid ran out.  The loop asks
    :meth:`is_exhausted` instead (:func:`neuronas.search.trials.ask_next`) and ends the run.
    """
    import optuna

    class GridSamplerUntilExhausted(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSamplerUntilExhausted


def _qmc(run: Any, seed: int, workers: int) -> Any:
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


#: sampler name -> factory; the first is the default (``neuronas search``'s)
SAMPLER_FACTORIES: dict[str, SamplerFactory] = {
    "guided": _guided,
    "tpe": _tpe,
    "nsga2": _nsga2,
    "random": _random,
    "grid": _grid,
    "qmc": _qmc,
}

#: the sampler names, in the order ``--help`` lists them
SAMPLERS: tuple[str, ...] = tuple(SAMPLER_FACTORIES)


def register_sampler(name: str, factory: SamplerFactory) -> None:
    """Make ``factory`` available as ``--sampler name`` for runs created after this call
    (``SAMPLERS`` is rebound: read it as ``samplers.SAMPLERS``, not a copy imported earlier)."""
    global SAMPLERS
    SAMPLER_FACTORIES[name] = factory
    SAMPLERS = tuple(SAMPLER_FACTORIES)


def make_sampler(run: Any, *, workers: int = 1, worker_index: int = 0, n_existing: int = 0) -> Any:
    """The Optuna sampler named in the run's config, seeded for reproducibility.

    The seed is offset by the trials already in the study (so a resumed search does not replay
    its first proposals) and by the worker index (so parallel workers do not propose in
    lock-step), modulo 2**32.
    """
    cfg = run.config
    factory = SAMPLER_FACTORIES.get(cfg.sampler)
    if factory is None:
        raise ConfigError(
            f"--sampler: got {cfg.sampler!r}, known samplers: {', '.join(SAMPLER_FACTORIES)}"
        )
    # modulo 2**32: every sampler (numpy) takes seeds in [0, 2**32 - 1], and a run started with
    # a large --seed must still resume after many trials
    seed = (cfg.seed + 7919 * n_existing + 104729 * worker_index) % 2**32
    return factory(run, seed, workers)


def close_sampler(sampler: Any) -> None:
    """Release what a sampler holds beyond its object (the cost-guided sampler's helper
    process); nothing for a sampler that holds nothing."""
    close = getattr(sampler, "close", None)
    if callable(close):
        close()
