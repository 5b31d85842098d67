"""Errors a user can act on.

Every failure caused by what a person gave neuronas (a file, a flag, a name) is a
:class:`NeuronasError`.  The CLI prints its message on one line and exits with status 2; the
traceback is shown only with ``--debug``.  A good message names the file, the field, the value
and what is allowed, e.g.::

    constraints/x.yaml: periphery.adc_bits_max: got 0, must be an integer >= 1
"""

from __future__ import annotations

__all__ = [
    "NeuronasError",
    "ConfigError",
    "SpecError",
    "DataError",
    "StorageError",
    "SearchError",
    "ExportError",
]


class NeuronasError(Exception):
    """A failure whose cause is the user's input; the message says what to change."""

    exit_code = 2


class ConfigError(NeuronasError):
    """A chip, search-space or architecture file that cannot be read or is invalid."""


class SpecError(ConfigError):
    """An architecture that is not well formed (e.g. layer shapes that do not chain)."""


class DataError(NeuronasError):
    """A dataset that is unknown, absent from the data root, or does not fit the network."""


class StorageError(NeuronasError):
    """A study storage that cannot be reached or opened."""


class SearchError(NeuronasError):
    """A search that cannot proceed (e.g. every candidate breaks the chip's budgets)."""


class ExportError(NeuronasError):
    """An export that cannot be written where asked, or from what the run holds."""
