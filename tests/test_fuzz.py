"""Seeded fuzzing of the shipped chip, search-space and architecture files.

A few hundred mutations (numbers replaced by 0, -1, 1e308, .inf, .nan, text, lists; keys deleted
or duplicated; sections of the wrong type; deep nesting; alias bombs) go through the loaders in
process, and whatever loads is used the way a search or ``neuronas cost`` would use it.  Every
outcome must be a success or a NeuronasError with a short one-line message.  A handful also go
through the real ``neuronas validate`` / ``neuronas cost`` commands in subprocesses: exit status
0 or 2, at most one line on stderr, no traceback, no hang, nothing written outside a
temporary folder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from neuronas._cli.cost import strict_json
from neuronas.errors import NeuronasError
from neuronas.hardware import chip_problems, estimate, load_chip
from neuronas.hardware.chip import fit_to_chip
from neuronas.search.space import load_space
from neuronas.spec import ArchSpec

REPO = Path(__file__).resolve().parents[1]
SEED = 15
PER_FILE = 22  # mutations of each shipped file (14 files: ~300 in all)
CLI_CASES = 8

SOURCES = {
    "chip": sorted((REPO / "constraints").glob("*.yaml")),
    "space": sorted((REPO / "search_spaces").glob("*.yaml")),
    "arch": sorted((REPO / "experiments" / "archs").glob("*.yaml")),
}

REPLACEMENTS: list[Any] = [
    0,
    -1,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    10**20,
    2**63,
    1e-300,
    True,
    None,
    "x",
    "",
    "a" * 500,
    [],
    [1, 2],
    [0],
    {},
    {"low": 5, "high": 1},
    {"low": 1, "high": 10**20},
    "2024-01-01",
]

BOMB = "".join(
    [f"x-a0: &a0 [{', '.join(['x'] * 9)}]\n"]
    + [f"x-a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)]
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---------------------------------------------------------------------------------------------
# mutations


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value (mappings and lists included) below the top level."""
    out: list[tuple[Any, ...]] = []
    items: Any = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(_paths(v, prefix + (k,)))
    return out


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for k in path[:-1]:
        data = data[k]
    data[path[-1]] = value


def _delete(data: Any, path: tuple[Any, ...]) -> None:
    for k in path[:-1]:
        data = data[k]
    del data[path[-1]]


def _mutate(rng: random.Random, data: Any, text: str) -> tuple[str, str]:
    """One mutation of a shipped file: (description, the mutated YAML text)."""
    paths = _paths(data)
    path = rng.choice(paths)
    kind = rng.choices(
        ["replace", "delete", "duplicate", "deep", "bomb", "double"], [10, 3, 2, 1, 1, 2]
    )[0]
    d = copy.deepcopy(data)
    if kind == "replace":
        value = rng.choice(REPLACEMENTS)
        _set(d, path, value)
        return f"{'.'.join(map(str, path))} = {value!r:.40}", yaml.safe_dump(d, sort_keys=False)
    if kind == "delete":
        _delete(d, path)
        return f"del {'.'.join(map(str, path))}", yaml.safe_dump(d, sort_keys=False)
    if kind == "duplicate":
        lines = text.splitlines(keepends=True)
        keyed = [
            i
            for i, line in enumerate(lines)
            if ":" in line and not line.lstrip().startswith(("#", "-"))
        ]
        i = rng.choice(keyed)
        return f"duplicate line {i + 1}", "".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    if kind == "deep":
        depth = rng.choice([20, 40, 1000, 10_000])
        _set(d, path, "__DEEP__")
        nested = "[" * depth + "1" + "]" * depth
        return f"{'.'.join(map(str, path))} nested {depth} deep", yaml.safe_dump(
            d, sort_keys=False
        ).replace("__DEEP__", nested)
    if kind == "bomb":
        _set(d, path, "__BOMB__")
        return f"{'.'.join(map(str, path))} = alias bomb", BOMB + yaml.safe_dump(
            d, sort_keys=False
        ).replace("__BOMB__", "*a8")
    # two replacements at once reach combinations single ones cannot
    for p in rng.sample(paths, 2):
        # the first replacement may have removed what the second path points into
        with contextlib.suppress(KeyError, IndexError, TypeError):
            _set(d, p, rng.choice(REPLACEMENTS))
    return "two replacements", yaml.safe_dump(d, sort_keys=False)


def _cases() -> list[tuple[str, str, str, str]]:
    """(kind, source file name, description, text) for every mutation, deterministically."""
    rng = random.Random(SEED)
    out = []
    for kind, files in SOURCES.items():
        for f in files:
            text = f.read_text()
            data = yaml.safe_load(text)
            for _ in range(PER_FILE):
                desc, mutated = _mutate(rng, data, text)
                out.append((kind, f.name, desc, mutated))
    return out


# ---------------------------------------------------------------------------------------------
# using what loads, as a search or `neuronas cost` would

DEFAULT_CHIP = "rram-adcless-65nm"


def _use_chip(path: Path) -> None:
    chip = load_chip(path)
    arch = ArchSpec.from_yaml(REPO / "experiments" / "archs" / "digits-mlp.yaml")
    strict_json(estimate(fit_to_chip(arch, chip), chip).to_dict())


def _use_space(path: Path) -> None:
    space = load_space(path)
    chip = load_chip(DEFAULT_CHIP)
    space.check(chip)  # what validate and the search's start check
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(SEED))
    for _ in range(10):
        arch = space.sample(study.ask(), chip, input_shape=(2, 32, 32), num_outputs=10)
        assert not chip_problems(arch, chip)
        strict_json(estimate(arch, chip, space.activity_prior).to_dict())


def _use_arch(path: Path) -> None:
    arch = ArchSpec.from_yaml(path)
    chip = load_chip(DEFAULT_CHIP)
    strict_json(estimate(fit_to_chip(arch, chip), chip).to_dict())


USE = {"chip": _use_chip, "space": _use_space, "arch": _use_arch}


def test_mutated_files_load_or_fail_in_one_line(tmp_path: Path) -> None:
    cases = _cases()
    assert len(cases) >= 300
    problems: list[str] = []
    outcomes = {"ok": 0, "error": 0}
    for i, (kind, name, desc, text) in enumerate(cases):
        p = tmp_path / f"m{i:03d}-{name}"
        p.write_text(text)
        try:
            USE[kind](p)
            outcomes["ok"] += 1
        except NeuronasError as exc:
            outcomes["error"] += 1
            msg = str(exc)
            if "\n" in msg or len(msg) > 600 or not msg:
                problems.append(f"{name} [{desc}]: message of {len(msg)} chars: {msg[:200]!r}")
        except Exception as exc:  # noqa: BLE001 -- the point: anything else is a failure
            problems.append(f"{name} [{desc}]: {type(exc).__name__}: {str(exc)[:200]}")
    assert not problems, f"{len(problems)} of {len(cases)} mutations escaped:\n" + "\n".join(
        problems[:20]
    )
    # both outcomes occur: the mutations are neither all harmless nor all fatal
    assert outcomes["ok"] > 10 and outcomes["error"] > 100, outcomes


# ---------------------------------------------------------------------------------------------
# the real commands


def _strict_json_text(text: str) -> bool:
    def refuse(token: str) -> Any:
        raise ValueError(token)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


def _snapshot(root: Path) -> set[str]:
    r = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {
        line
        for line in r.stdout.splitlines()
        if "__pycache__" not in line and ".pytest_cache" not in line
    }


@pytest.fixture
def cli_cases() -> list[tuple[str, str, str, str]]:
    cases = _cases()
    rng = random.Random(SEED + 1)
    picked: list[tuple[str, str, str, str]] = []
    for kind in ("chip", "space", "arch"):
        pool = [c for c in cases if c[0] == kind]
        picked += rng.sample(pool, CLI_CASES // 3 + (kind == "arch") * (CLI_CASES % 3))
    return picked


def test_mutated_files_through_the_cli(
    tmp_path: Path, cli_cases: list[tuple[str, str, str, str]]
) -> None:
    before = _snapshot(REPO)
    work = tmp_path / "cwd"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path), OMP_NUM_THREADS="1")
    for i, (kind, name, desc, text) in enumerate(cli_cases):
        p = tmp_path / f"c{i}-{name}"
        p.write_text(text)
        commands = [["validate", str(p)]]
        if kind == "chip":
            commands.append(["cost", "digits-mlp", "--chip", str(p), "--fit", "--json"])
        elif kind == "arch":
            commands.append(["cost", str(p), "--fit", "--json"])
        for argv in commands:
            # the timeout only detects a hang; the commands take about a second
            r = subprocess.run(
                [sys.executable, "-m", "neuronas.cli", *argv],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
                cwd=work,
            )
            what = f"{' '.join(argv[:1])} {name} [{desc}]"
            assert r.returncode in (0, 2), f"{what}: exit {r.returncode}: {r.stderr[-500:]}"
            assert "Traceback" not in r.stderr, f"{what}: {r.stderr[-500:]}"
            assert r.stderr.count("\n") <= 1, f"{what}: {r.stderr[-500:]}"
            if argv[0] == "cost" and r.returncode == 0:
                assert _strict_json_text(r.stdout), f"{what}: NaN or Infinity in the JSON"
            if argv[0] == "validate":
                status = r.stdout.splitlines()[0]
                assert status.startswith("OK " if r.returncode == 0 else "FAIL "), (
                    f"{what}: {r.stdout}"
                )
    assert list(work.iterdir()) == []
    assert _snapshot(REPO) == before


# ---------------------------------------------------------------------------------------------
# command-line arguments (in process: the same code path as the command, without its start-up)

ARG_VALUES = ["nan", "inf", "-1", "0", "1e308", "2", "x", "", "/dev/zero", "/", "digits-mlp", "-"]


def test_fuzzed_arguments_fail_in_one_line(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuronas.cli import main

    monkeypatch.chdir(tmp_path)  # relative paths among the values land here, if anywhere

    rng = random.Random(SEED)
    arch = str(REPO / "experiments" / "archs" / "digits-mlp.yaml")
    templates = [
        ["cost", arch, "--activity", "{v}"],
        ["cost", arch, "--chip", "{v}", "--json"],
        ["cost", "{v}", "--json"],
        ["cost", arch, "--activity-file", "{v}"],
        ["validate", "{v}"],
        ["validate", arch, "--chip", "{v}"],
        ["validate", str(REPO / "search_spaces" / "digits-small.yaml"), "--dataset", "{v}"],
        # each train case carries a refused setting, so none of them starts training
        ["train", "{v}", "--batch-size", "0"],
        ["train", arch, "--lr", "{v}", "--epochs", "0"],
        ["train", arch, "--device", "{v}", "--seed", "-1"],
        ["train", arch, "--out", "{v}", "--eval-instances", "0"],
    ]
    for _ in range(60):
        argv = [a.replace("{v}", rng.choice(ARG_VALUES)) for a in rng.choice(templates)]
        usage_error = False
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: a value of the wrong type (usage, then one line)
            rc, usage_error = exc.code, True
        out = capsys.readouterr()
        assert rc in (0, 2), f"{argv}: exit {rc}: {out.err}"
        assert "Traceback" not in out.err, f"{argv}: {out.err}"
        if usage_error:
            assert out.err.splitlines()[-1].startswith("neuronas "), f"{argv}: {out.err}"
        elif rc == 2 and argv[0] != "validate":
            assert out.err.count("\n") == 1 and out.err.startswith(f"neuronas {argv[0]}: error: ")
        if argv[0] == "train":
            assert rc == 2, f"{argv}: {out.err}"
    assert list(tmp_path.iterdir()) == []
