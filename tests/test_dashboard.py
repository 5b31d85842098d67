"""What optuna-dashboard shows of a neuronas run, read through its own WSGI app (the JSON its web
page renders, ``GET /api/studies/<id>``) on real searches in real SQLite:

* the objectives by name (``study.set_metric_names``), not "Objective 0/1";
* every priced trial's constraints (the list optuna-dashboard 0.21 reads from the trial's
  ``constraints`` system attribute), one value per budget of the chip, > 0 exactly where the
  trial broke that budget;
* the Pareto-front plot's split, as the dashboard's page computes it (``bundle.js``: a trial is
  feasible when every constraint is <= 0; only feasible trials form the front): infeasible trials
  are never drawn as the front, and a run where every trial was rejected has no front, as
  Optuna's own ``best_trials``.

Documented difference (asserted): the dashboard's *server-side* ``best_trials`` list
(``optuna_dashboard/_pareto_front.py``) takes every COMPLETE trial and ignores constraints, so on
a fully rejected run it still lists the non-dominated rejected trials.  neuronas keeps rejected
trials COMPLETE on purpose (NSGA-II learns only from COMPLETE trials: see
``neuronas/search/trials.py``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from _search_helpers import FAST, cli, write_space

optuna_dashboard = pytest.importorskip(
    "optuna_dashboard", reason="optuna-dashboard (the dev extra) is not installed"
)

pytestmark = pytest.mark.slow

CHIP = Path(__file__).resolve().parents[1] / "constraints" / "rram-adcless-65nm.yaml"


def _study_json(run_dir: Path) -> dict[str, Any]:
    """The dashboard's study detail for the run's study, through its WSGI app."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'study.db'}")
    study_id = storage.get_study_id_from_name(run_dir.name)
    app = optuna_dashboard.wsgi(storage)
    status: list[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": f"/api/studies/{study_id}",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8080",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
    }
    body = b"".join(app(environ, lambda s, _h, _exc=None: status.append(s)))
    assert status and status[0].startswith("200"), (status, environ["wsgi.errors"].getvalue())
    return json.loads(body)


def _dashboard_front(detail: dict[str, Any]) -> list[int]:
    """The trial numbers the dashboard's Pareto-front plot draws as the front: the
    non-dominated COMPLETE trials among the feasible ones (every constraint <= 0)."""
    directions = detail["directions"]
    done = [t for t in detail["trials"] if t["state"] == "Complete"]
    feasible = [t for t in done if all(c <= 0 for c in t["constraints"])]

    def loss(t: dict[str, Any]) -> list[float]:
        return [v if d == "minimize" else -v for v, d in zip(t["values"], directions, strict=True)]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    return sorted(
        t["number"]
        for t in feasible
        if not any(dominates(loss(o), loss(t)) for o in feasible if o is not t)
    )


def _search(tmp: Path, chip: Path, name: str, trials: int) -> Path:
    space = write_space(tmp)
    args = ["search", "--space", str(space), "--chip", str(chip), "--trials", str(trials)]
    r = cli([*args, "--name", name, "--seed", "3", "--sampler", "tpe", *FAST], tmp)
    assert r.returncode == 0, r.stderr
    return tmp / "runs" / name


def _check_names_and_constraints(run_dir: Path, detail: dict[str, Any]) -> None:
    import optuna

    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    objectives = json.loads((run_dir / "run.json").read_text())["objectives"]
    assert detail["objective_names"] == objectives
    names = study.user_attrs["constraint_names"]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    priced = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert priced
    for t in priced:
        ua = by_number[t["number"]].user_attrs
        assert len(t["constraints"]) == len(names), t
        margins = ua["margins"]
        for name, value in zip(names, t["constraints"], strict=True):
            assert value == pytest.approx(margins[name]), (name, value, margins)
        if ua["status"] == "infeasible":
            assert any(c > 0 for c in t["constraints"])
    # Optuna itself reads the same record: its feasibility agrees with the dashboard's
    for t in priced:
        assert list(by_number[t["number"]].constraints.values()) == t["constraints"]


def test_a_fully_rejected_run_has_no_front_in_the_dashboard(tmp_path: Path) -> None:
    # the default chip with a memory budget only the very cheapest candidates meet (the prescreen
    # refuses a space where none does): every trial the sampler draws here is rejected
    chip = tmp_path / "nothing-fits.yaml"
    text = CHIP.read_text()
    assert "  memory_kb: 160" in text
    chip.write_text(text.replace("  memory_kb: 160", "  memory_kb: 1.2", 1))
    run_dir = _search(tmp_path, chip, "rejected", 4)
    detail = _study_json(run_dir)
    _check_names_and_constraints(run_dir, detail)
    assert all(
        any(c > 0 for c in t["constraints"]) for t in detail["trials"] if t["state"] == "Complete"
    )
    assert _dashboard_front(detail) == []
    import optuna

    study = optuna.load_study(study_name="rejected", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert study.best_trials == []
    # documented difference: the server-side list ignores constraints
    assert detail["best_trials"], "optuna-dashboard 0.21's best_trials lists infeasible trials"
    assert all(any(c > 0 for c in t["constraints"]) for t in detail["best_trials"])


def test_the_dashboard_front_is_optunas_front_of_feasible_trials(tmp_path: Path) -> None:
    run_dir = _search(tmp_path, CHIP, "mixed", 6)
    detail = _study_json(run_dir)
    _check_names_and_constraints(run_dir, detail)
    import optuna

    study = optuna.load_study(study_name="mixed", storage=f"sqlite:///{run_dir / 'study.db'}")
    front = _dashboard_front(detail)
    assert front == sorted(t.number for t in study.best_trials)
    feasible = {t["number"] for t in detail["trials"] if all(c <= 0 for c in t["constraints"])}
    assert set(front) <= feasible
    complete = {t["number"] for t in detail["trials"] if t["state"] == "Complete"}
    assert front and complete - feasible, "the run should hold both feasible and rejected trials"
