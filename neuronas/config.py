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
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from neuronas.errors import ConfigError

__all__ = [
    "MAX_MAGNITUDE",
    "PRESET_KINDS",
    "check_number_input",
    "check_number_range",
    "format_validation_error",
    "list_presets",
    "load_model",
    "load_yaml",
    "parse_model",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_VALUES",
    "preset_dir",
    "preview",
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
        raise ConfigError(
            f"{text}: no such file (a {what} file path, or one of the presets: {', '.join(known)})"
        )
    near = difflib.get_close_matches(text, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise ConfigError(
        f"unknown {what} {text!r}{hint} Known {what}s: {', '.join(known)} (or give a path to a .yaml file)"
    )


#: the largest chip, space or architecture file read (bytes); the shipped ones are under 5 kB
MAX_FILE_BYTES = 1 << 20
#: the deepest nesting of lists and mappings, counted after expanding aliases; the shipped
#: files nest 4 deep
MAX_DEPTH = 32
#: the most values (scalars, lists and mappings) a file may hold, counted after expanding
#: aliases: an alias bomb (a billion laughs) is refused before anything is expanded
MAX_VALUES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
#: tags SafeLoader would turn into bytes, sets or ordered pair lists: no neuronas field is one,
#: and a set or bytes value as a name would break JSON output far from the file
_REFUSED_TAGS = {
    "tag:yaml.org,2002:binary": "!!binary",
    "tag:yaml.org,2002:set": "!!set",
    "tag:yaml.org,2002:omap": "!!omap",
    "tag:yaml.org,2002:pairs": "!!pairs",
    _TIMESTAMP_TAG: "!!timestamp",
}


class _LimitError(Exception):
    """Raised inside the loader; turned into a ConfigError naming the file."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line


def _line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with limits enforced while composing, before any value is built.

    Nesting and size are counted by the composer (whose recursion is what overflows Python's
    stack on deep input); aliases are measured on the composed graph, where they are still
    shared references, so expanding them is never needed to refuse them.
    """

    # an unquoted 2024-01-01 stays the text written (a name, never a date object)
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        self._values += 1
        event = self.peek_event()
        if self._depth > MAX_DEPTH:
            raise _LimitError(
                event.start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep"
            )
        if self._values > MAX_VALUES:
            raise _LimitError(event.start_mark.line + 1, f"more than {MAX_VALUES} values")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: Any) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        shown = _REFUSED_TAGS.get(node.tag)
        if shown is not None:
            raise _LimitError(
                _line(node), f"the tag {shown} is not allowed (no neuronas field holds one)"
            )
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int | None] = {}
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise _LimitError(
                        _line(key_node),
                        f"key {_preview(key)} is not a text key (quote it if a name was meant)",
                    )
                if key in seen:
                    raise _LimitError(
                        _line(key_node),
                        f"duplicate key {_preview(key)} (first given at line {seen[key]})",
                    )
                seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: Any) -> None:
    """Refuse a node graph whose expansion is too deep, too large or infinite (a cycle).

    Iterative post-order walk with memoisation: each shared (aliased) node is measured once, so
    the walk costs the size of the graph, not of its expansion.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES:
                raise _LimitError(
                    _line(node), f"more than {MAX_VALUES} values once its aliases are expanded"
                )
            if depth[key] > MAX_DEPTH:
                raise _LimitError(
                    _line(node),
                    f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded",
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise _LimitError(
                _line(node), "an alias refers to a value that contains it (a recursive structure)"
            )
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise _LimitError(
                    _line(child),
                    "an alias refers to a value that contains it (a recursive structure)",
                )
            if id(child) not in size:
                stack.append((child, False))


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _preview(value: Any, limit: int = 60) -> str:
    """A short JSON-like rendering of ``value`` that stops after ``limit`` characters.

    Built piece by piece with a budget, so a huge (or alias-expanded) value costs as much as
    its first ``limit`` characters, never its whole size.
    """
    out: list[str] = []
    budget = [limit + 1]

    def emit(text: str) -> bool:
        out.append(text[: budget[0]])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(v: Any, depth: int) -> bool:
        if depth > 8:
            return emit("...")
        if isinstance(v, Mapping):
            if not emit("{"):
                return False
            for i, (k, item) in enumerate(v.items()):
                if (i and not emit(", ")) or not emit(f"{k}: ") or not walk(item, depth + 1):
                    return False
            return emit("}")
        if isinstance(v, (list, tuple, set, frozenset)):
            if not emit("["):
                return False
            for i, item in enumerate(v):
                if (i and not emit(", ")) or not walk(item, depth + 1):
                    return False
            return emit("]")
        if isinstance(v, str):
            return emit(json.dumps(v[: limit + 2]))
        if isinstance(v, bool) or v is None:
            return emit(json.dumps(v))
        if isinstance(v, float):
            return emit(repr(v))
        if isinstance(v, int):
            # str() of a many-thousand-digit integer raises (and is slow): describe it instead
            return emit(
                str(v)
                if v.bit_length() < 256
                else f"an integer of ~{int(v.bit_length() * 0.30103)} digits"
            )
        return emit(type(v).__name__)

    walk(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def preview(value: Any, limit: int = 60) -> str:
    """``value`` as short JSON-like text for an error message (at most ``limit`` characters)."""
    return _preview(value, limit)


def _read_regular(p: Path) -> str:
    """The text of ``p``; a directory, pipe, device or oversized file is refused without reading it."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{p}: is a directory, expected a YAML file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{p}: not a regular file (a pipe, device or socket); expected a YAML file"
        )
    if st.st_size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{p}: {st.st_size} bytes, larger than the {MAX_FILE_BYTES} bytes (1 MiB) a neuronas file may have"
        )
    try:
        # O_NONBLOCK: should the path be swapped for a pipe after the check, opening it must not wait
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(
                f"{p}: not a regular file (a pipe, device or socket); expected a YAML file"
            )
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{p}: larger than the {MAX_FILE_BYTES} bytes (1 MiB) a neuronas file may have"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}); expected a YAML file") from None


def _json_depth_ok(text: str) -> int | None:
    """The line at which ``text`` first nests deeper than MAX_DEPTH (None: it never does)."""
    depth = 0
    in_string = escaped = False
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif ch in "]}":
            depth -= 1
    return None


def _json_load(p: Path, text: str) -> Any:
    deep = _json_depth_ok(text)
    if deep is not None:
        raise ConfigError(f"{p}: line {deep}: nested more than {MAX_DEPTH} levels deep")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ConfigError(f"{p}: duplicate key {_preview(k)}")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise ConfigError(
            f"{p}: {name} is not a number a neuronas file may hold (values must be finite)"
        )

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{p}: JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file safely, turning every failure into a one-line ConfigError.

    Only regular files of at most :data:`MAX_FILE_BYTES` are read; nesting deeper than
    :data:`MAX_DEPTH`, more than :data:`MAX_VALUES` values (aliases expanded), recursive
    aliases, duplicate keys, keys that are not text and the ``!!binary`` / ``!!set`` /
    ``!!omap`` / ``!!pairs`` / ``!!timestamp`` tags are refused; Python tags are never
    constructed (safe loading).  Unquoted dates stay text.
    """
    p = Path(path)
    text = _read_regular(p)
    if p.suffix == ".json":
        data = _json_load(p, text)
    else:
        loader = _StrictLoader(text)
        try:
            data = loader.get_single_data()
        except _LimitError as exc:
            where = f" line {exc.line}:" if exc.line is not None else ""
            raise ConfigError(f"{p}:{where} {exc}") from None
        except ValueError:
            # int() refuses numbers of more than 4300 digits (a denial-of-service guard)
            raise ConfigError(f"{p}: a number with more than 4300 digits cannot be read") from None
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            where = f" line {mark.line + 1}:" if mark is not None else ""
            raise ConfigError(
                f"{p}:{where} {_clip(exc.problem)} (only plain YAML values are read)"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = (
                f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            )
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{p}: YAML syntax error{where}: {_clip(problem)}") from None
        finally:
            loader.dispose()
    if data is None:
        raise ConfigError(f"{p}: the file is empty")
    return data


def _clip(text: object, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_UNION_TAGS = ("value", "list", "range")


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
    # the tags of the search spaces' tagged unions (a value, a list or a range) are pydantic's
    # bookkeeping, not keys of the file: no schema has a field of those names
    loc = tuple(part for part in err.get("loc", ()) if part not in _UNION_TAGS)
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
        shown = _preview(value) if not isinstance(value, Mapping) else "{...}"
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


# --------------------------------------------------------------------------------------------
# numeric fields of the pydantic file schemas

#: the largest magnitude any number in a chip or search-space file may have: far above every
#: physical quantity those files hold, far below where products of them overflow a float
MAX_MAGNITUDE = 1e12

_KIND_CACHE: dict[tuple[type, str], tuple[bool, bool, bool]] = {}


def _leaf_types(ann: Any, out: set[Any]) -> None:
    import typing

    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        out.update(type(a) for a in typing.get_args(ann))
        return
    args = typing.get_args(ann)
    if origin is dict:
        # only the values: keys are names (text) in every schema
        if len(args) == 2:
            _leaf_types(args[1], out)
        return
    if args:
        for a in args:
            _leaf_types(a, out)
        return
    out.add(ann)


def _field_kind(model: type, name: str) -> tuple[bool, bool, bool]:
    """(holds numbers, may hold text, a mapping holds numbers) for field ``name``; cached.

    A mapping given for a field that may be a nested model (an integer range) is that model's
    to check, so only plain ``dict`` fields have their values checked here.
    """
    key = (model, name)
    got = _KIND_CACHE.get(key)
    if got is None:
        fields = getattr(model, "model_fields", {})
        leaves: set[Any] = set()
        if name in fields:
            _leaf_types(fields[name].annotation, leaves)
        numeric = bool(leaves & {int, float}) and bool not in leaves
        nested_model = any(hasattr(t, "model_fields") for t in leaves)
        got = _KIND_CACHE[key] = (numeric, str in leaves, not nested_model)
    return got


def _strict_numbers(value: Any, text_ok: bool, mappings: bool, depth: int = 0) -> None:
    if isinstance(value, bool):
        raise ValueError(
            "a YAML boolean (true/false, yes/no, on/off) is not a number; write a number"
        )
    if isinstance(value, str) and not text_ok:
        raise ValueError("text is not a number; write the number without quotes")
    if depth < 2 and isinstance(value, list):
        for item in value:
            _strict_numbers(item, text_ok, mappings, depth + 1)
    elif mappings and depth < 2 and isinstance(value, Mapping):
        for item in value.values():
            _strict_numbers(item, text_ok, mappings, depth + 1)


def check_number_input(model: type, name: str, value: Any) -> Any:
    """Refuse booleans and quoted text in a numeric field of ``model`` before pydantic coerces them.

    Meant for a ``field_validator("*", mode="before")`` on a schema's base class, so that fields
    added later are covered too.  (Pydantic's lax mode reads ``yes`` as 1 and ``"1e3"`` as 1000.)
    """
    numeric, text_ok, mappings = _field_kind(model, name)
    if numeric:
        _strict_numbers(value, text_ok, mappings)
    return value


def check_number_range(value: Any) -> Any:
    """Refuse a number (or a list of numbers) beyond :data:`MAX_MAGNITUDE` or not finite.

    The fallback bound of every numeric field (``field_validator("*", mode="after")``); each
    field also has its own, tighter, documented range.
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError("must be a finite number")
            if abs(v) > MAX_MAGNITUDE:
                raise ValueError(
                    f"must be at most {MAX_MAGNITUDE:g} in magnitude (no chip or network quantity is that large)"
                )
    return value
