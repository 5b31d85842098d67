"""Spike activity: the rate per weighted layer that the cost model prices with.

Before training it is a prior (the chip's default rate, from the literature ~0.1-0.2) or dense
1.0 (worst-case latency); after training it is measured by the trainer's spike-rate probes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronas.errors import ConfigError

__all__ = ["Activity", "load_activity"]

_SOURCES = ("prior", "dense", "measured")


def _rates(values: Any, where: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(f"{where}: got {values!r}, must be a non-empty list of rates in [0, 1]")
    out = []
    for i, v in enumerate(values):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, float))
            or not math.isfinite(v)
            or not 0 <= v <= 1
        ):
            raise ConfigError(f"{where}[{i}]: got {v!r}, must be a number in [0, 1]")
        out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class Activity:
    """One rate per weighted layer of ``arch.resolved()``, in that order.

    ``input_rates[i]``: mean spike probability per input element per timestep of weighted layer
    i (layer 0: the input's event density), measured where the layer reads it, i.e. after any
    pool in front of it.  ``output_rates[i]``: the same for its output spikes, before any pool
    (readout: 0 or its rate).  ``source``: "prior" | "dense" | "measured".

    ``row_group_occupancy[i]`` (optional, measured): the fraction of weighted layer i's row groups
    (the rows one array / PE reads at once) that hold at least one input spike, over every array
    read (positions x timesteps x row groups).  Real spikes cluster, so this is lower than the
    independence estimate 1 - (1 - a)^R the cost model uses without it.
    """

    input_rates: tuple[float, ...]
    output_rates: tuple[float, ...] | None = None
    source: str = "prior"
    row_group_occupancy: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "input_rates", _rates(list(self.input_rates), "activity.input_rates")
        )
        if self.output_rates is not None:
            outs = _rates(list(self.output_rates), "activity.output_rates")
            if len(outs) != len(self.input_rates):
                raise ConfigError(
                    f"activity.output_rates: got {len(outs)} rates, must have one per weighted layer "
                    f"like input_rates ({len(self.input_rates)})"
                )
            object.__setattr__(self, "output_rates", outs)
        if self.source not in _SOURCES:
            raise ConfigError(
                f"activity.source: got {self.source!r}, must be one of {', '.join(_SOURCES)}"
            )
        if self.row_group_occupancy is not None:
            occ = _rates(list(self.row_group_occupancy), "activity.row_group_occupancy")
            if len(occ) != len(self.input_rates):
                raise ConfigError(
                    f"activity.row_group_occupancy: got {len(occ)} values, must have one per weighted layer "
                    f"like input_rates ({len(self.input_rates)})"
                )
            object.__setattr__(self, "row_group_occupancy", occ)

    @classmethod
    def uniform(cls, rate: float, arch: Any, source: str = "prior") -> Activity:
        """The same rate at every layer's input and output (the readout's output: 0)."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ConfigError(f"activity: got {rate!r}, must be a spike rate in [0, 1]")
        if source not in _SOURCES:
            raise ConfigError(
                f"activity.source: got {source!r}, must be one of {', '.join(_SOURCES)}"
            )
        n = len(arch.resolved())
        r = float(rate)
        return cls.from_checked((r,) * n, (r,) * (n - 1) + (0.0,), source)

    @classmethod
    def dense(cls, arch: Any) -> Activity:
        """Every element spikes every timestep: the worst case (latency, energy)."""
        n = len(arch.resolved())
        return cls.from_checked((1.0,) * n, (1.0,) * n, "dense")

    @classmethod
    def from_checked(
        cls, ins: tuple[float, ...], outs: tuple[float, ...] | None, source: str
    ) -> Activity:
        """An Activity from rates the caller has already checked (finite, in [0, 1], one per
        layer): skips re-validation, since a sampler prices tens of thousands of these."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "input_rates", ins)
        object.__setattr__(obj, "output_rates", outs)
        object.__setattr__(obj, "source", source)
        object.__setattr__(obj, "row_group_occupancy", None)
        return obj

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "source": self.source,
            "input_rates": list(self.input_rates),
            "output_rates": None if self.output_rates is None else list(self.output_rates),
        }
        if (
            self.row_group_occupancy is not None
        ):  # absent rather than null: older readers stay valid
            d["row_group_occupancy"] = list(self.row_group_occupancy)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Activity:
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"activity: got {type(d).__name__}, must be a mapping with input_rates"
            )
        known = {"source", "input_rates", "output_rates", "row_group_occupancy"}
        unknown = [k for k in d if k not in known]
        if unknown:
            raise ConfigError(
                f"activity.{unknown[0]}: unknown key; known keys here: {', '.join(sorted(known))}"
            )
        if "input_rates" not in d:
            raise ConfigError("activity.input_rates: required field is missing")
        occ = d.get("row_group_occupancy")
        return cls(
            tuple(d["input_rates"]) if isinstance(d["input_rates"], list) else d["input_rates"],
            tuple(d["output_rates"])
            if isinstance(d.get("output_rates"), list)
            else d.get("output_rates"),
            d.get("source", "measured"),
            tuple(occ) if isinstance(occ, list) else occ,
        )

    def check(self, arch: Any, source: str = "") -> None:
        """Raise when the number of rates does not match the architecture's weighted layers."""
        n = len(arch.resolved())
        if len(self.input_rates) != n:
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}activity.input_rates: got {len(self.input_rates)} rates, the architecture "
                f"{arch.name or ''} has {n} weighted layers (one rate each)".replace("  ", " ")
            )


def load_activity(path: str | Path) -> Activity:
    """Read an activity JSON: a raw activity or any JSON with a top-level ``"activity"`` key."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{p}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc})") from None
    if isinstance(data, Mapping) and "activity" in data:
        data = data["activity"]
    try:
        return Activity.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
