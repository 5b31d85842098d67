"""The YAML loader under hostile input: limits enforced by the loader, one-line errors, nothing run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronas.config import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, load_yaml
from neuronas.errors import ConfigError
from neuronas.hardware import load_chip
from neuronas.search.space import load_space
from neuronas.spec import ArchSpec

REPO = Path(__file__).resolve().parents[1]


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def _write(tmp_path: Path, text: str, name: str = "f.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _bomb(levels: int = 9) -> str:
    """A billion-laughs document: 9 ** levels leaves from a few hundred bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_deep_flow_nesting_is_refused_by_the_loader(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, "[" * 10_000))
    assert f"nested more than {MAX_DEPTH} levels deep" in msg


def test_deep_mappings_are_refused(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, "{a: " * 3000 + "1" + "}" * 3000))
    assert f"nested more than {MAX_DEPTH} levels deep" in msg
    block = "".join(" " * i + f"k{i}:\n" for i in range(100))
    assert "line 32: nested" in _error(_write(tmp_path, block, "block.yaml"))


def test_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, _bomb()))
    assert f"more than {MAX_VALUES} values once its aliases are expanded" in msg


def test_alias_bomb_in_a_field_that_fails_validation(tmp_path: Path) -> None:
    """The reported hang: the bomb sits in a chip's name, whose error message would expand it."""
    chip = (REPO / "constraints" / "rram-adcless-65nm.yaml").read_text()
    chip = chip.replace("name: rram-adcless-65nm", "name: *a9", 1)
    p = _write(tmp_path, _bomb() + chip, "chip.yaml")
    with pytest.raises(ConfigError) as info:
        load_chip(p)
    assert "aliases are expanded" in str(info.value)


def test_an_expanded_value_is_never_printed_in_full(tmp_path: Path) -> None:
    """Aliases within the limit: the validation error shows a truncated value."""
    chip = (REPO / "constraints" / "rram-adcless-65nm.yaml").read_text()
    chip = chip.replace("name: rram-adcless-65nm", "name: *a2", 1)
    p = _write(tmp_path, _bomb(2) + chip, "chip.yaml")
    with pytest.raises(ConfigError) as info:
        load_chip(p)
    msg = str(info.value)
    assert "name: got [[" in msg and "..." in msg and len(msg) < 250


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, "a: &a [1, *a]\n"))
    assert "recursive" in msg and "line 1" in msg


def test_too_many_values_are_refused_while_composing(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, "x: [" + "0," * (MAX_VALUES + 10) + "]\n"))
    assert f"more than {MAX_VALUES} values" in msg


def test_size_limit(tmp_path: Path) -> None:
    p = _write(tmp_path, "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    assert "(1 MiB)" in _error(p)


def test_duplicate_key_names_key_and_lines(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, "name: a\nlayers: []\nname: b\n"))
    assert 'line 3: duplicate key "name" (first given at line 1)' in msg


def test_merge_keys_still_work(tmp_path: Path) -> None:
    data = load_yaml(_write(tmp_path, "base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n"))
    assert data["c"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("key", ["on", "yes", "1", "3.5", "null"])
def test_keys_must_be_text(tmp_path: Path, key: str) -> None:
    msg = _error(_write(tmp_path, f"{key}: 1\n"))
    assert "is not a text key" in msg


def test_dates_stay_text(tmp_path: Path) -> None:
    assert load_yaml(_write(tmp_path, "name: 2024-01-01\n")) == {"name": "2024-01-01"}


@pytest.mark.parametrize(
    "value,tag",
    [
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!omap [{a: 1}]", "!!omap"),
        ("!!timestamp 2024-01-01", "!!timestamp"),
    ],
)
def test_refused_tags(tmp_path: Path, value: str, tag: str) -> None:
    msg = _error(_write(tmp_path, f"name: {value}\n"))
    assert f"line 1: the tag {tag} is not allowed" in msg


def test_python_tags_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system"):
        p = _write(tmp_path, f"name: {tag} ['touch {marker}']\n")
        assert "only plain YAML values are read" in _error(p)
    assert not marker.exists()


def test_huge_integer_is_one_line(tmp_path: Path) -> None:
    assert "more than 4300 digits" in _error(_write(tmp_path, "x: 1" + "0" * 5000 + "\n"))


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "f.yaml"
    p.write_bytes(b"name: \xff\n")
    assert "not UTF-8" in _error(p)


def test_directory_device_and_pipe_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "dir.yaml"
    d.mkdir()
    assert "is a directory" in _error(d)
    z = tmp_path / "zero.yaml"
    z.symlink_to("/dev/zero")
    assert "not a regular file" in _error(z)
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in _error(fifo)


def test_validate_on_a_pipe_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # the timeout only detects a hang (the reported behaviour was to block forever)
    r = subprocess.run(
        [sys.executable, "-m", "neuronas.cli", "validate", str(fifo)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "not a regular file" in r.stdout and "Traceback" not in r.stderr


def test_json_files_get_the_same_limits(tmp_path: Path) -> None:
    assert 'duplicate key "a"' in _error(_write(tmp_path, '{"a": 1, "a": 2}', "f.json"))
    assert "NaN is not a number" in _error(_write(tmp_path, '{"a": NaN}', "f.json"))
    assert "nested more than" in _error(_write(tmp_path, "[" * 5000, "f.json"))
    assert load_yaml(_write(tmp_path, '{"a": "[{", "b": [1]}', "f.json")) == {"a": "[{", "b": [1]}


def test_every_file_kind_uses_the_safe_loader(tmp_path: Path) -> None:
    dup = "name: a\nname: b\n"
    for load in (load_chip, load_space, ArchSpec.from_yaml):
        p = _write(tmp_path, dup, f"{load.__name__}.yaml")
        with pytest.raises(ConfigError, match="duplicate key"):
            load(p)
