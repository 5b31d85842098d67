"""The compute-in-memory cost model: chips, activity and ``estimate`` (pure Python, no torch)."""

from neuronas.hardware.activity import Activity, load_activity
from neuronas.hardware.chip import Chip, chip_problems, fit_to_chip, load_chip
from neuronas.hardware.cost import CostReport, LayerCost, Violation, estimate

__all__ = [
    "Activity",
    "Chip",
    "CostReport",
    "LayerCost",
    "Violation",
    "chip_problems",
    "estimate",
    "fit_to_chip",
    "load_activity",
    "load_chip",
]
