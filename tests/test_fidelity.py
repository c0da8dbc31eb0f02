"""Multi-fidelity search: the promotion rule, the spec's rungs, studies end to end and a driver
killed in the middle of a promotion."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.core.objectives import Objective
from autopeft.results.views import load_view
from autopeft.search.promotion import RungEntry, promotions
from autopeft.search.samplers.base import point_key
from autopeft.storage.records import TrialRecord
from autopeft.trial.curve import stored_curve
from tests.conftest import (
    SPACE,
    assert_user_error,
    kill_driver_mid_trial,
    write_study,
    write_tiny_csv,
)

ACC = Objective("accuracy", "maximize")
PARAMS = Objective("trainable_params", "minimize")
runner = CliRunner()


def _done(number: int, acc: float, params: float, rung: int = 0, promoted: bool = False):
    return RungEntry(number, rung, True, {"accuracy": acc, "trainable_params": params}, promoted)


# -- the rule ------------------------------------------------------------------------------------
def test_a_rung_promotes_its_best_fraction_by_non_dominated_sorting() -> None:
    # front: 0 (0.9, 900), 1 (0.8, 100), 2 (0.85, 500); the rest are dominated by one of them
    entries = [
        _done(0, 0.9, 900),
        _done(1, 0.8, 100),
        _done(2, 0.85, 500),
        _done(3, 0.7, 950),
        _done(4, 0.6, 200),
        _done(5, 0.5, 600),
    ]
    assert sorted(promotions(entries, [ACC, PARAMS], 3, 2.0)) == [0, 1, 2]  # floor(6 / 2)
    # three per rung with factor 3 would be 2: the front's extremes first (infinite crowding)
    assert sorted(promotions(entries, [ACC, PARAMS], 3, 3.0)) == [0, 1]
    # promotion_order: metric -- within the front (0, 1, 2) the metric decides: 0 and 2
    assert promotions(entries, [ACC, PARAMS], 3, 3.0, order="metric") == [0, 2]
    # already promoted: not again; a failed trial counts in the rung but is never promoted
    entries[0] = _done(0, 0.9, 900, promoted=True)
    failed = [RungEntry(6 + i, 0, True, {}, False) for i in range(3)]
    assert promotions([*entries, failed[0]], [ACC, PARAMS], 3, 3.0) == [1]  # floor(7 / 3)
    assert sorted(promotions([*entries, *failed], [ACC, PARAMS], 3, 3.0)) == [1, 2]  # 9 / 3
    # running trials do not count yet
    running = [RungEntry(9 + i, 0, False) for i in range(5)]
    assert promotions([*entries, failed[0], *running], [ACC, PARAMS], 3, 3.0) == [1]


def test_ranks_peel_fronts_as_pareto_indices_finds_them() -> None:
    """The one-matrix sort gives the ranks of peeling :func:`pareto_indices` fronts one by
    one, duplicates and NaN rows included."""
    import numpy as np

    from autopeft.core.pareto import nondominated_ranks, pareto_indices

    rng = np.random.default_rng(0)
    for _ in range(50):
        table = rng.integers(0, 4, size=(int(rng.integers(1, 30)), 3)).astype(float)
        table[rng.random(len(table)) < 0.1] = np.nan
        directions = ["maximize", "minimize", "minimize"]
        expected, remaining, rank = {}, [i for i, r in enumerate(table) if not np.isnan(r).any()], 0
        while remaining:
            front = [remaining[i] for i in pareto_indices(table[remaining].tolist(), directions)]
            expected.update(dict.fromkeys(front, rank))
            remaining, rank = [i for i in remaining if i not in front], rank + 1
        expected.update({i: rank for i, r in enumerate(table) if np.isnan(r).any()})
        ranks = nondominated_ranks(table.tolist(), directions)
        assert [r for r, _ in ranks] == [expected[i] for i in range(len(table))]


def test_asha_promotes_a_late_best_trial_and_the_quota_rule_caps_the_rung() -> None:
    """A later, better trial is promoted at once by ASHA (it is in the top fraction when it
    arrives); with ``cap`` a rung never has more than floor(m / factor) promoted."""
    entries = [_done(i, 0.5 + i / 100, 100, promoted=i in (4, 5)) for i in range(6)]
    for cap in (False, True):
        assert promotions(entries, [ACC, PARAMS], 2, 3.0, cap=cap) == []  # quota 2, both used
    entries.append(_done(6, 0.99, 100))  # the best so far: floor(7 / 3) = 2 still
    assert promotions(entries, [ACC, PARAMS], 2, 3.0) == [6]
    assert promotions(entries, [ACC, PARAMS], 2, 3.0, cap=True) == []
    entries += [_done(7, 0.1, 100), _done(8, 0.2, 100)]  # floor(9 / 3) = 3: one more, the best
    assert promotions(entries, [ACC, PARAMS], 2, 3.0, cap=True) == [6]


def test_a_new_smallest_configuration_with_a_poor_metric_is_not_promoted() -> None:
    """``promotion_order: metric``: cost objectives are known at every rung; a trial is promoted
    for what the rung measured, not for being smaller than the trials that measured better.
    (The default ``crowding`` order promotes it first: measured better for hypervolume.)"""
    entries = [_done(i, 0.80 + 0.01 * i, 1000 + 100 * i) for i in range(5)]
    small = _done(5, 0.55, 700)  # the smallest yet, and the worst metric
    assert 5 not in promotions([*entries, small], [ACC, PARAMS], 3, 3.0, order="metric")
    assert promotions([*entries, small], [ACC, PARAMS], 3, 3.0, order="metric") == [
        4,
        3,
    ]  # best metric first
    # the default order promotes it first (infinite crowding at the front's cheap end)
    assert promotions([*entries, small], [ACC, PARAMS], 3, 3.0) == [4, 5]
    from autopeft.core.pareto import nondominated_ranks

    table = [[e.values["accuracy"], e.values["trainable_params"]] for e in [*entries, small]]
    ranks = nondominated_ranks(table, ["maximize", "minimize"])
    assert min(range(6), key=lambda i: (ranks[i][0], -ranks[i][1], i)) in (4, 5)
    assert ranks[5] == (0, float("inf"))
    # it is on the front (the cheapest point) and moves up once the quota reaches it
    dominated = [_done(6 + i, 0.5, 5000 + i) for i in range(12)]
    assert promotions([*entries, small, *dominated], [ACC, PARAMS], 3, 3.0, order="metric") == [
        4,
        3,
        2,
        1,
        0,
        5,
    ]
    # with three objectives the same (memory is known at every rung too)
    mem = Objective("peak_memory_mb", "minimize")
    three = [RungEntry(e.number, 0, True, {**e.values, "peak_memory_mb": 50.0}) for e in entries]
    poor = RungEntry(5, 0, True, {"accuracy": 0.55, "trainable_params": 700, "peak_memory_mb": 45})
    assert 5 not in promotions([*three, poor], [ACC, PARAMS, mem], 3, 3.0, order="metric")


def _chains(low: list[float], top: list[float]) -> list[TrialRecord]:
    """Configurations ``i`` measured ``low[i]`` at rung 0 and ``top[i]`` at rung 1."""
    from autopeft.core.states import TrialState

    out = []
    for i, (a, b) in enumerate(zip(low, top, strict=True)):
        out.append(TrialRecord(2 * i, TrialState.PRUNED, {"accuracy": a}, rung=0))
        out.append(
            TrialRecord(
                2 * i + 1, TrialState.COMPLETE, {"accuracy": b}, rung=1, promoted_from=2 * i
            )
        )
    return out


def test_a_rung_that_ranks_unlike_the_top_rung_is_distrusted_and_selects_nothing() -> None:
    """The fallback: on a constructed problem whose low rung ranks configurations backwards,
    the rung is distrusted and every trial finished at it moves up (continuing costs no extra
    steps); a rung that agrees with the top rung keeps selecting."""
    from autopeft.results.rungs import distrusted_rungs, learning_curve, rung_correlations

    low = [0.5, 0.6, 0.7, 0.8, 0.9]
    backwards = _chains(low, [0.9, 0.85, 0.8, 0.75, 0.7])
    (c,) = rung_correlations(backwards, "accuracy", 2)
    assert (c.rung, c.pairs) == (0, 5) and c.rho == pytest.approx(-1.0) and c.distrusted
    assert distrusted_rungs(backwards, "accuracy", 2) == {0}
    agreeing = _chains(low, [0.7, 0.75, 0.8, 0.85, 0.9])
    assert distrusted_rungs(agreeing, "accuracy", 2) == frozenset()
    assert distrusted_rungs(backwards[:6], "accuracy", 2) == frozenset()  # 3 pairs: too few
    assert learning_curve(backwards, 3, "accuracy") == [0.6, 0.85]
    entries = [_done(i, 0.5 + 0.01 * i, 100 * (i + 1)) for i in range(9)]
    assert len(promotions(entries, [ACC, PARAMS], 2, 3.0)) == 3  # selects floor(9 / 3)
    everything = promotions(entries, [ACC, PARAMS], 2, 3.0, distrusted=frozenset({0}))
    assert sorted(everything) == list(range(9))
    # under the quota a distrusted rung still promotes floor(9 / 3), in trial order, not by rank
    capped = promotions(entries, [ACC, PARAMS], 2, 3.0, cap=True, distrusted=frozenset({0}))
    assert capped == [0, 1, 2]
    entries = [RungEntry(e.number, 0, True, e.values, e.number in (1, 5)) for e in entries]
    capped = promotions(entries, [ACC, PARAMS], 2, 3.0, cap=True, distrusted=frozenset({0}))
    assert capped == [0]  # two of the three already promoted


def test_units_of_an_objective_do_not_change_the_promotions() -> None:
    base = [_done(i, 0.5 + 0.05 * (i % 5), 100 * (7 - i)) for i in range(7)]
    scaled = [
        _done(e.number, e.values["accuracy"], e.values["trainable_params"] * 1e6) for e in base
    ]
    assert promotions(base, [ACC, PARAMS], 2, 3.0) == promotions(scaled, [ACC, PARAMS], 2, 3.0)


def test_higher_rungs_go_first_and_a_settled_rung_promotes_one_when_draining() -> None:
    entries = [_done(i, 0.5 + i / 100, 100) for i in range(3)]  # rung 0: floor(3 / 3) = 1
    entries += [_done(3, 0.7, 100, rung=1)]  # rung 1: 1 trial, floor(1 / 3) = 0
    assert promotions(entries, [ACC, PARAMS], 3, 3.0) == [2]
    assert promotions(entries, [ACC, PARAMS], 3, 3.0, draining=True) == [2]  # rung 0 unsettled
    entries[2] = _done(2, 0.52, 100, promoted=True)
    # draining, rung 0 settled (its promotion is trial 3, finished): rung 1 promotes its best
    assert promotions(entries, [ACC, PARAMS], 3, 3.0, draining=True) == [3]
    running_below = [*entries, RungEntry(4, 0, False)]
    assert promotions(running_below, [ACC, PARAMS], 3, 3.0, draining=True) == []
    top = [*entries[:3], _done(3, 0.7, 100, rung=2)]
    assert promotions(top, [ACC, PARAMS], 3, 3.0, draining=True) == []  # the top rung stays


# -- spec ----------------------------------------------------------------------------------------
def _mf_study(d: Path, model: Path, *, n_trials: int, rungs: str, extra: str = "") -> Path:
    write_tiny_csv(d / "data.csv")
    (d / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(d, model=str(model), n_trials=n_trials)
    text = spec.read_text().replace("max_steps: 4,", f"rungs: {rungs}, reduction_factor: 2,")
    text += "objectives: [accuracy, trainable_params]\n" + extra
    spec.write_text(text)
    return spec


@pytest.mark.parametrize(
    ("rungs", "fragments"),
    [
        ("[4, 2]", ("fidelity.rungs", "increasing order", "[4, 2]")),
        ("[8]", ("fidelity.rungs", "at least 2")),
        ("12", ("fidelity.rungs", "2 to 10", "12")),
    ],
)
def test_bad_rungs_are_one_error_line(tmp_path, tiny_bert_dir, rungs, fragments) -> None:
    spec = _mf_study(tmp_path, tiny_bert_dir, n_trials=2, rungs=rungs)
    assert_user_error(runner.invoke(app, ["validate", str(spec)]), "study.yaml", *fragments)
    assert not (tmp_path / "studies.db").exists()


def test_the_last_rung_must_be_max_steps(tmp_path, tiny_bert_dir) -> None:
    spec = _mf_study(tmp_path, tiny_bert_dir, n_trials=2, rungs="[2, 6]")
    spec.write_text(spec.read_text().replace("rungs:", "max_steps: 8, rungs:"))
    result = runner.invoke(app, ["validate", str(spec)])
    assert_user_error(result, "study.yaml", "fidelity", "last rung (6 steps)", "max_steps (8)")


# -- studies -------------------------------------------------------------------------------------
def assert_successive_halving(records: list[TrialRecord], configs: int, steps: list[int]) -> None:
    """What every multi-fidelity study holds, however it ran: ``configs`` configurations at
    rung 0; each promotion trains its source's point at the next rung's steps, once; only the
    top rung is COMPLETE (lower rungs PRUNED, with their values)."""
    ran = [r for r in records if not r.interrupted]
    assert sum(1 for r in ran if r.rung == 0 and r.state != "RUNNING") == configs
    by_number = {r.number: r for r in records}
    sources = Counter(r.promoted_from for r in ran if r.promoted_from is not None)
    assert all(n == 1 for n in sources.values()), sources  # promoted once
    for r in ran:
        assert r.rung is not None
        if r.state in ("COMPLETE", "PRUNED"):
            assert r.metrics["steps"] == steps[r.rung]
            assert set(r.values) == {"accuracy", "trainable_params"}
            assert r.state == ("COMPLETE" if r.rung == len(steps) - 1 else "PRUNED")
        if r.rung > 0:
            source = by_number[r.promoted_from]
            assert source.rung == r.rung - 1 and source.params == r.params
            assert source.state == "PRUNED"
        else:
            assert r.promoted_from is None
    assert any(r.rung == len(steps) - 1 and r.state == "COMPLETE" for r in ran)


def test_a_multi_fidelity_study_through_the_cli(tmp_path, tiny_bert_dir) -> None:
    spec = _mf_study(
        tmp_path,
        tiny_bert_dir,
        n_trials=6,
        rungs="[2, 4, 8]",
        extra="sampler: {name: mobo, options: {n_initial: 4}}\n",
    )
    spec.write_text(spec.read_text().replace("sampler: random\n", ""))
    result = runner.invoke(app, ["run", str(spec), "-q"])
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    view = load_view("tiny", url)
    assert_successive_halving(view.records, 6, [2, 4, 8])
    top = {r.number for r in view.records if r.rung == 2 and r.state == "COMPLETE"}
    front = json.loads(runner.invoke(app, ["front", "tiny", "--storage", url, "-f", "json"]).output)
    assert front and {row["trial"] for row in front} <= top
    assert all(row["rung"] == 2 and row["steps"] == 8 for row in front)
    assert [r.number for r in view.records if r.hypervolume is not None] == sorted(top)
    shown = runner.invoke(app, ["show", "tiny", "--storage", url]).output
    assert "rungs 2 / 4 / 8 steps" in shown
    from autopeft.service.summary import study_state, summary

    assert view.finished() == 6  # configurations: promotions are not budget trials
    assert (
        summary(view, study_state(view, driver_running=False, exit_code=0))["state"] == "complete"
    )
    counts = view.rung_counts()
    assert counts[0] == 6 and counts[1] >= 3 and counts[2] >= 1  # floor(6 / 2) at least
    # every promotion continued its source's training; the checkpoints are gone at the end
    promoted = [r for r in view.records if r.promoted_from is not None]
    assert promoted and all(
        r.metrics["continued_from_step"] == [2, 4, 8][r.rung - 1] for r in promoted
    )
    assert all("note" not in r.metrics for r in view.records)
    assert (tmp_path / "studies.db.checkpoints").is_dir()
    assert not (tmp_path / "studies.db.checkpoints" / "tiny").exists()
    shown = runner.invoke(app, ["show", "tiny", "--storage", url]).output
    assert "metric per rung (front): #" in shown
    # a top-rung trial's loss curve is its configuration's, from step 1, through the store
    by_number = {r.number: r for r in view.records}
    for number in top:
        curve, source = stored_curve(by_number[number].metrics), by_number[number]
        assert [s for s, _ in curve] == list(range(1, 9))
        while source.promoted_from is not None:
            source = by_number[source.promoted_from]
            low = stored_curve(source.metrics)
            assert curve[: len(low)] == low and low[-1][0] == [2, 4, 8][source.rung]
    shown = runner.invoke(app, ["show", "tiny", "--storage", url, "--curves"]).output
    assert "over 8 steps; accuracy " in shown and "@2 > " in shown and "@8" in shown
    # Optuna's own view (optuna-dashboard, best_trials) holds only top-rung values
    import optuna

    study = optuna.load_study(study_name="tiny", storage=url)
    assert {t.number for t in study.best_trials} <= top
    assert all(t.values is None for t in study.trials if t.number not in top)


def _promotion_running(db: Path) -> bool:
    """A promoted trial (rung >= 1) is running."""
    if not db.exists():
        return False
    query = (
        "select count(*) from trials t join autopeft_trials a on a.trial_id = t.trial_id "
        "where t.state = 'RUNNING' and a.rung >= 1"
    )
    try:
        with sqlite3.connect(db) as con:
            return con.execute(query).fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False


def _finished(records: list[TrialRecord]) -> Counter:
    return Counter(
        (point_key(r.params), r.rung, r.state)
        for r in records
        if not r.interrupted and r.state != "RUNNING"
    )


@pytest.mark.slow
def test_a_driver_killed_mid_promotion_resumes_it_with_nothing_lost_or_run_twice(
    tmp_path, tiny_bert_dir
) -> None:
    """Killed (SIGKILL) while a promotion trains, then resumed: the promotion is re-run at its
    rung from the same source, the trials finished before stay as they were, and the study
    ends with exactly the trials an uninterrupted run of the same spec has."""
    rungs = "[30, 90, 270]"
    reference = tmp_path / "reference"
    reference.mkdir()
    spec = _mf_study(reference, tiny_bert_dir, n_trials=5, rungs=rungs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "autopeft.cli", "run", str(spec), "-q"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    uninterrupted = load_view("tiny", f"sqlite:///{reference / 'studies.db'}").records

    killed_dir = tmp_path / "killed"
    killed_dir.mkdir()
    spec = _mf_study(killed_dir, tiny_bert_dir, n_trials=5, rungs=rungs)
    db = killed_dir / "studies.db"
    before, running = kill_driver_mid_trial(
        ["run", str(spec), "-q"], db, timeout=240, ready=_promotion_running
    )
    assert any(r.rung and r.rung >= 1 for r in running)
    # the checkpoints the running promotions continue from are still there
    kept = {p.name for p in (killed_dir / "studies.db.checkpoints" / "tiny").glob("*.pt")}
    assert {f"trial-{r.promoted_from}.pt" for r in running if r.rung} <= kept
    subprocess.run([*run[:4], str(spec), "-q"], env=env, check=True, capture_output=True)
    done = load_view("tiny", f"sqlite:///{db}").records
    assert_successive_halving(done, 5, [30, 90, 270])
    by_number = {r.number: r for r in done}
    assert all(by_number[n].values == v for n, v in before.items())  # nothing lost
    for r in running:
        lost = by_number[r.number]
        assert lost.state == "FAIL" and lost.interrupted
        reruns = [x for x in done if x.params == lost.params and x.rung == lost.rung]
        assert [x.promoted_from for x in reruns if not x.interrupted] == [lost.promoted_from]
    assert _finished(done) == _finished(uninterrupted)
    for r in done:  # the re-run promotion continued from the same checkpoint as the first try
        if r.promoted_from is not None and r.state in ("COMPLETE", "PRUNED"):
            assert r.metrics["continued_from_step"] == [30, 90][r.rung - 1], r.metrics
    assert not (killed_dir / "studies.db.checkpoints" / "tiny").exists()  # cleaned up


def test_a_schema_7_database_gains_the_rung_columns(study_dir: Path) -> None:
    """A study stored before multi-fidelity (schema 7) reads and resumes as single-fidelity."""
    from autopeft.run.driver import run_study
    from autopeft.storage.store import Store
    from autopeft.storage.tables import SCHEMA_VERSION

    run_study(study_dir / "study.yaml", trials=1)
    db = study_dir / "studies.db"
    with sqlite3.connect(db) as con:
        con.execute("ALTER TABLE autopeft_trials DROP COLUMN rung")
        con.execute("ALTER TABLE autopeft_trials DROP COLUMN promoted_from")
        con.execute("UPDATE autopeft_schema SET version = 7")
    records = Store(f"sqlite:///{db}").records("tiny")
    assert [(r.state, r.rung, r.promoted_from) for r in records] == [("COMPLETE", None, None)]
    done = run_study(study_dir / "study.yaml", trials=2)
    assert [(r.state, r.rung) for r in done.records] == [("COMPLETE", None)] * 2
    with sqlite3.connect(db) as con:
        columns = [r[1] for r in con.execute("PRAGMA table_info(autopeft_trials)")]
        assert columns.count("rung") == 1 and columns.count("promoted_from") == 1
        assert con.execute("SELECT version FROM autopeft_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_the_driver_notes_a_distrusted_rung_once_and_stops_selecting_there() -> None:
    """The driver's side of the fallback, on the constructed backwards problem (fixed rungs,
    judged on the calibration configurations: :func:`autopeft.search.budget.calibration`):
    one ``note:`` line when the rung becomes distrusted and new configurations skip it, none
    while it stays so, one when it recovers."""
    from types import SimpleNamespace

    from autopeft.run.driver import StudyRunner
    from autopeft.run.progress import Reporter
    from autopeft.search.budget import AUTO_MIN_PAIRS

    class Notes(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

    low = [0.5 + 0.05 * i for i in range(AUTO_MIN_PAIRS)]
    records = _chains(low, low[::-1])
    runner_ = object.__new__(StudyRunner)
    runner_.reporter = Notes()
    runner_.rungs = (4, 8)
    runner_._noted_distrust = frozenset()
    fidelity = SimpleNamespace(promotion="asha")
    spec = SimpleNamespace(metric="accuracy", fidelity=fidelity)
    runner_.p = SimpleNamespace(files=SimpleNamespace(spec=spec))
    runner_.mirror = SimpleNamespace(records=lambda: records)
    assert runner_._distrusted() == {0} and runner_._distrusted() == {0}
    assert runner_._entry == 1  # new configurations start above the distrusted rung
    (line,) = runner_.reporter.lines
    assert line.startswith("note: calibration on 6 configurations") and "rung 0 (4 steps)" in line
    assert "-1.00 over 6" in line and "train at the top rung only" in line
    records = _chains(low, low)
    assert runner_._distrusted() == frozenset() and runner_._entry == 0
    assert len(runner_.reporter.lines) == 2 and "again" in runner_.reporter.lines[1]
