"""Strict loading of the project's YAML files and resolution of shipped presets.

Files are read at the edge into typed models (pydantic, ``extra="forbid"``); every failure
becomes a one-line :class:`~neuronas.errors.ConfigError` naming the file, the field, the value
and what is allowed.  The typed models themselves live next to the code that uses them
(chips in :mod:`neuronas.hardware.chip`, search spaces in :mod:`neuronas.search.space`,
architectures in :mod:`neuronas.spec`); this module is the shared machinery.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from neuronas.errors import ConfigError

__all__ = [
    "PRESET_KINDS",
    "format_validation_error",
    "list_presets",
    "load_model",
    "load_yaml",
    "parse_model",
    "preset_dir",
    "resolve_preset",
]

M = TypeVar("M")

#: preset kind -> folder name at the top of a checkout (and under ``neuronas/_presets`` in a wheel)
PRESET_KINDS: dict[str, str] = {
    "chip": "constraints",
    "space": "search_spaces",
    "arch": "experiments/archs",
}


def preset_dir(kind: str) -> Path:
    """The folder holding the shipped presets of ``kind`` ("chip", "space" or "arch").

    In a wheel the presets are copied to ``neuronas/_presets/<folder>``; in a checkout (or an
    editable install) they are read from the top-level folder.
    """
    if kind not in PRESET_KINDS:
        raise ValueError(f"unknown preset kind {kind!r}; known: {sorted(PRESET_KINDS)}")
    folder = PRESET_KINDS[kind]
    package_root = Path(__file__).resolve().parent
    installed = package_root / "_presets" / Path(folder).name
    if installed.is_dir():
        return installed
    return package_root.parent / folder


def list_presets(kind: str) -> list[str]:
    """Names (file stems) of the shipped presets of ``kind``, sorted."""
    d = preset_dir(kind)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.yaml"))


def resolve_preset(name_or_path: str | Path, kind: str) -> Path:
    """A path for ``name_or_path``: an existing file, or the name of a shipped preset.

    Unknown names raise a :class:`ConfigError` listing the known presets and near matches.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    text = str(name_or_path)
    looks_like_path = p.suffix in (".yaml", ".yml", ".json") or "/" in text or "\\" in text
    candidate = preset_dir(kind) / f"{text}.yaml"
    if not looks_like_path and candidate.is_file():
        return candidate
    known = list_presets(kind)
    what = {"chip": "chip", "space": "search space", "arch": "architecture"}[kind]
    if looks_like_path:
        raise ConfigError(f"{text}: no such file (a {what} file path, or one of the presets: {', '.join(known)})")
    near = difflib.get_close_matches(text, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise ConfigError(f"unknown {what} {text!r}{hint} Known {what}s: {', '.join(known)} (or give a path to a .yaml file)")


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file, turning every I/O or syntax failure into a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text) if p.suffix != ".json" else json.loads(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}: YAML syntax error{where}: {problem}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty")
    return data


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: Any, source: str, model: Any = None) -> str:
    """One line from a pydantic ``ValidationError``: file, field, value and what is allowed.

    For an unknown key the known keys at that level are listed (when ``model`` is given).
    """
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    where = _loc(loc)
    value = err.get("input")
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        known = _known_keys(model, loc[:-1]) if model is not None else []
        allowed = f"; known keys here: {', '.join(known)}" if known else ""
        msg = f"{source}: {where}: unknown key{allowed}"
    elif etype == "missing":
        msg = f"{source}: {where}: required field is missing"
    else:
        shown = json.dumps(value, default=str) if not isinstance(value, Mapping) else "{...}"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        text = err.get("msg", "invalid value")
        text = text.removeprefix("Value error, ")
        msg = f"{source}: {where}: got {shown}, {_lower_first(text)}"
    more = len(errors) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return msg


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s else s


def _known_keys(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) pydantic model addressed by ``loc``; best effort."""
    import typing

    current = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        ann = fields[part].annotation
        current = _first_model(ann)
        _ = typing  # keep import local and explicit
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _first_model(ann: Any) -> Any:
    import typing

    if hasattr(ann, "model_fields"):
        return ann
    for arg in typing.get_args(ann):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def parse_model(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` into ``model`` (a pydantic model) or raise a one-line ConfigError."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model)) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read a YAML file strictly into ``model``."""
    return parse_model(model, load_yaml(path), str(path))
