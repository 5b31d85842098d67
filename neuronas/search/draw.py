"""Random candidates of a space, priced: the draw -> check -> price loop in one place.

:func:`draw_priced` is what the pre-screen (is any candidate within the chip's budgets at
all?) and the cost-guided sampler (which feasible candidate to propose) both run: draw an
architecture uniformly at random with :class:`RandomTrial`, drop it if the space cannot make it
or the chip cannot build it, price it with the CIM cost model (no training, about a
millisecond).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Draw", "RandomTrial", "draw_priced"]


class RandomTrial:
    """A stand-in for an Optuna trial that draws every parameter uniformly at random.

    It offers the two ``suggest_*`` methods a search space uses, so ``space.sample`` works on
    it without a study; ``params`` holds what was drawn (replayable through an Optuna trial).
    """

    def __init__(self, rng: Any) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            v = int(round(math.exp(self.rng.uniform(math.log(low), math.log(high)))))
            v = min(max(v, low), high)
        else:
            v = low + step * int(self.rng.integers(0, (high - low) // step + 1))
        self.params[name] = v
        return v

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        v = choices[int(self.rng.integers(0, len(choices)))]
        self.params[name] = v
        return v


@dataclass(frozen=True)
class Draw:
    """One buildable random candidate: the parameters drawn, the architecture, its price."""

    params: dict[str, Any]
    arch: Any
    report: Any  # neuronas.hardware.CostReport at the given spike rate


def draw_priced(
    space: Any,
    chip: Any,
    rng: Any,
    n: int,
    *,
    input_shape: Sequence[int] | None = None,
    num_outputs: int | None = None,
    activity: Any = None,
    skip: Callable[[Any], bool] | None = None,
) -> Iterator[Draw]:
    """Draw ``n`` candidates of ``space`` with ``rng`` and yield the buildable ones, priced.

    A candidate the space cannot make (:class:`~neuronas.errors.SpecError`) or the chip cannot
    build (:func:`neuronas.hardware.chip_problems`) is dropped, as is one for which ``skip(arch)``
    is true (checked before pricing, so a caller can skip repeats cheaply).  Every one of the
    ``n`` draws uses the generator alike, so the sequence depends on ``rng`` alone.
    """
    from neuronas.errors import SpecError
    from neuronas.hardware import chip_problems, estimate

    for _ in range(n):
        t = RandomTrial(rng)
        try:
            arch = space.sample(t, chip, input_shape=input_shape, num_outputs=num_outputs)
        except SpecError:
            continue
        if chip_problems(arch, chip) or (skip is not None and skip(arch)):
            continue
        yield Draw(params=dict(t.params), arch=arch, report=estimate(arch, chip, activity))
