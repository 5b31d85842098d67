"""The search: spaces, one candidate's evaluation, the Optuna study, Pareto fronts.

Modules (import what you need; none of them imports torch at import time, and only
:mod:`~neuronas.search.guided` imports optuna):

* :mod:`neuronas.search.space` -- ``load_space``, ``SearchSpace.sample(trial, chip)``
* :mod:`neuronas.search.draw` -- ``RandomTrial``, ``draw_priced``: random candidates, priced
* :mod:`neuronas.search.objective` -- ``evaluate(arch_dict, chip_ref, settings)`` (plain values)
* :mod:`neuronas.search.study` -- ``create_or_resume``, ``open_run``, ``run_search``: the
  search in one import; its parts: :mod:`~neuronas.search.run` (the run: config, create,
  resume, identity), :mod:`~neuronas.search.storage`, :mod:`~neuronas.search.samplers` (the
  name -> factory registry), :mod:`~neuronas.search.trials` (statuses, counting, recording,
  duplicates, who owns a RUNNING trial), :mod:`~neuronas.search.lifecycle` (one trial's life
  on every backend), :mod:`~neuronas.search.local` and :mod:`~neuronas.search.ray_backend`
  (where candidates are evaluated), :mod:`~neuronas.search.prescreen`,
  :mod:`~neuronas.search.progress`
* :mod:`neuronas.search.guided` -- the default, cost-guided sampler; its candidate pools:
  :mod:`~neuronas.search.pool` (drawn in this process or, a trial ahead, in a helper)
* :mod:`neuronas.search.pareto` -- fronts (``front_trials``) and hypervolume
* :mod:`neuronas.search.proxy` -- a training-free score (SNASNet's SAHD)
"""

from neuronas.search.objective import evaluate
from neuronas.search.pareto import hypervolume, pareto_front
from neuronas.search.space import SearchSpace, load_space

__all__ = ["SearchSpace", "evaluate", "hypervolume", "load_space", "pareto_front"]
