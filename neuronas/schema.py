"""The base of every file schema (chips, search spaces): strict, frozen, finite numbers.

Every number is finite and inside a physically meaningful range: each field states its own
bounds, and the validators here catch what a field (also one added later) leaves open --
booleans and quoted text where a number belongs (:func:`neuronas.config.check_number_input`),
and magnitudes beyond :data:`neuronas.config.MAX_MAGNITUDE`
(:func:`neuronas.config.check_number_range`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from neuronas.config import check_number_input, check_number_range

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Unknown keys rejected, instances frozen, no NaN or infinity, numbers that are numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        return check_number_input(cls, info.field_name or "", v)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, v: Any) -> Any:
        return check_number_range(v)
