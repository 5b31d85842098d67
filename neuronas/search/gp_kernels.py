"""scikit-learn's Gaussian-process kernels, with their introspection done once per class.

The accuracy model of the cost-guided sampler (:class:`neuronas.search.guided.AccuracyModel`)
fits a GP on 5-100 points, where scikit-learn's own arithmetic is cheap and its bookkeeping is
not: every evaluation of the marginal likelihood clones the kernel, and every clone, ``theta``
get and set lists the kernel's hyperparameters with ``dir(self)`` and its constructor arguments
with ``inspect.signature`` (~40 % of a fit).  Both lists are the same for every instance of a
class, so these subclasses compute them once per class and otherwise are scikit-learn's kernels:
the same names (their ``repr`` is unchanged), the same arithmetic, the same fitted values bit for
bit (``tests/test_guided.py``).  Imported on first use (scikit-learn is heavy).
"""

from __future__ import annotations

from inspect import signature
from typing import Any

from sklearn.gaussian_process import kernels

__all__ = ["ConstantKernel", "DotProduct", "Matern", "WhiteKernel"]

_HYPERPARAMETER_NAMES: dict[type, list[str]] = {}
_INIT_ARGS: dict[type, list[str]] = {}


class _IntrospectedOnce:
    """``hyperparameters`` and ``get_params`` of a leaf kernel, from lists made once per class
    exactly as scikit-learn's :class:`~sklearn.gaussian_process.kernels.Kernel` makes them."""

    @property
    def hyperparameters(self) -> list[Any]:
        cls = type(self)
        names = _HYPERPARAMETER_NAMES.get(cls)
        if names is None:
            names = [a for a in dir(self) if a.startswith("hyperparameter_")]
            _HYPERPARAMETER_NAMES[cls] = names
        return [getattr(self, a) for a in names]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        cls = type(self)
        args = _INIT_ARGS.get(cls)
        if args is None:
            super().get_params(deep)  # type: ignore[misc]  # its checks (no *args), once
            args = [
                p.name
                for p in signature(cls.__init__).parameters.values()
                if p.kind != p.VAR_KEYWORD and p.name != "self"
            ]
            _INIT_ARGS[cls] = args
        return {a: getattr(self, a) for a in args}


class ConstantKernel(_IntrospectedOnce, kernels.ConstantKernel):
    pass


class Matern(_IntrospectedOnce, kernels.Matern):
    pass


class DotProduct(_IntrospectedOnce, kernels.DotProduct):
    pass


class WhiteKernel(_IntrospectedOnce, kernels.WhiteKernel):
    pass
