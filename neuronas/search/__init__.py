"""The search: spaces, one candidate's evaluation, the Optuna study, Pareto fronts.

Modules (import what you need; none of them imports torch or optuna at import time):

* :mod:`neuronas.search.space` -- ``load_space``, ``SearchSpace.sample(trial, chip)``
* :mod:`neuronas.search.objective` -- ``evaluate(arch_dict, chip_ref, settings)`` (plain values)
* :mod:`neuronas.search.study` -- runs, storage, resume, samplers, local workers,
  ``record_result`` / ``progress_line`` for other backends (Ray)
* :mod:`neuronas.search.pareto` -- fronts and hypervolume
* :mod:`neuronas.search.proxy` -- a training-free score (SNASNet's SAHD)
"""

from neuronas.search.objective import evaluate
from neuronas.search.pareto import hypervolume, pareto_front
from neuronas.search.space import SearchSpace, load_space

__all__ = ["SearchSpace", "evaluate", "hypervolume", "load_space", "pareto_front"]
