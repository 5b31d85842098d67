"""neuronas: hardware-aware spiking neural architecture search for compute-in-memory chips.

The public API (imported lazily: ``import neuronas`` loads neither torch nor optuna)::

    import neuronas

    run = neuronas.create_or_resume({"name": "demo", "trials": 8})  # runs/demo, resumable
    neuronas.run_search(run)  # budgets first, training with the chip in the loop
    neuronas.export_run(run, "runs/demo/export")  # the feasible Pareto front, report.md

* :func:`estimate` -- price an :class:`ArchSpec` on a chip (:func:`load_chip`) with the CIM
  cost model; :func:`load_space` -- a search space preset or file.
* :func:`create_or_resume` / :func:`open_run` -- a run (``runs/NAME``, its Optuna storage);
  :func:`run_search` -- its search (in this process, local workers, or Ray);
  :func:`export_run` -- its front as files for a hardware team.
* :class:`TrialSettings` / :data:`SCREENING` -- how candidates are trained (neuronas.settings).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuronas.errors import NeuronasError
from neuronas.version import __version__

#: public name -> the module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "estimate": "neuronas.hardware",
    "load_chip": "neuronas.hardware",
    "load_space": "neuronas.search.space",
    "ArchSpec": "neuronas.spec",
    "create_or_resume": "neuronas.search.run",
    "open_run": "neuronas.search.run",
    "run_search": "neuronas.search.study",
    "TrialSettings": "neuronas.settings",
    "SCREENING": "neuronas.settings",
}

__all__ = [
    "SCREENING",
    "ArchSpec",
    "NeuronasError",
    "TrialSettings",
    "__version__",
    "create_or_resume",
    "estimate",
    "export_run",
    "load_chip",
    "load_space",
    "open_run",
    "run_search",
]

if TYPE_CHECKING:
    from neuronas.hardware import estimate, load_chip
    from neuronas.search.run import create_or_resume, open_run
    from neuronas.search.space import load_space
    from neuronas.search.study import run_search
    from neuronas.settings import SCREENING, TrialSettings
    from neuronas.spec import ArchSpec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'neuronas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def export_run(run: Any, out: str | Path, *, nir: bool = True, plot: bool = True) -> dict[str, Any]:
    """Export ``run``'s feasible Pareto front under ``out`` (see ``neuronas export``).

    ``run``: an opened run (:func:`open_run` / :func:`create_or_resume`) or a run name/folder.
    Returns what :func:`neuronas.export.export_run` returns (the members, the report's path).
    """
    from neuronas.export import export_run as export

    if isinstance(run, (str, Path)):
        from neuronas.search.run import open_run as opened

        run = opened(run)
    return export(run, Path(out), nir=nir, plot=plot)
