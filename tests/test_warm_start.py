"""Warm start: a new study's first proposals come from an earlier study's front, then its own
sampler takes over; a resumed study never proposes a warm point twice; bad sources are refused
before anything is written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.core.states import TrialState
from autopeft.results.views import load_view
from autopeft.search.samplers import Observation, make_sampler
from autopeft.search.samplers.base import point_key
from autopeft.search.samplers.random import RandomSampler, SobolSampler
from autopeft.search.warm_start import (
    DEFAULT_POINTS,
    WarmDesign,
    WarmStartSampler,
    design_from,
    design_size,
    map_point,
    plan_warm_start,
    ranked_points,
    stored_design,
)
from autopeft.space.encode import from_unit
from autopeft.storage.store import Store
from tests.conftest import assert_user_error, kill_driver_mid_trial, write_study, write_tiny_csv

runner = CliRunner()
# Objective values (accuracy, trainable_params, peak_memory_mb) of the fabricated source trials:
# trials 1, 3, 4 are its Pareto front (3 and 4 at its extremes), trials 0, 2, 5 its second rank.
SOURCE_VALUES = [
    (0.50, 1000, 10.0),
    (0.60, 900, 10.0),
    (0.55, 2000, 20.0),
    (0.90, 3000, 30.0),
    (0.40, 100, 5.0),
    (0.50, 950, 11.0),
]
FRONT_ORDER = [3, 4, 1]


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def source(study_dir: Path) -> Path:
    """``study_dir`` whose database holds study 'tiny' with six complete trials (random points,
    made-up values: nothing trained)."""
    _make_source(study_dir, "tiny")
    return study_dir


def _make_source(directory: Path, name: str) -> None:
    from autopeft.run.prepare import prepare_study, register_study
    from autopeft.space.encode import distribution

    p = prepare_study(directory / "study.yaml", name=name)
    store = Store(p.url)
    register_study(store, p)
    sampler = RandomSampler(p.bound, p.objectives, seed=123)
    distributions = {d.name: distribution(d.spec) for d in p.bound.dimensions}
    for i, values in enumerate(SOURCE_VALUES):
        point = sampler.draw(i)
        number = store.start_trial(name, point, distributions, p.bound.compile(point))
        store.complete_trial(name, number, list(values), {})


def _url(directory: Path) -> str:
    return f"sqlite:///{directory / 'studies.db'}"


def _source_points(directory: Path) -> list[dict]:
    records = sorted(load_view("tiny", _url(directory)).records, key=lambda r: r.number)
    return [r.params for r in records]


def _prepared(directory: Path):
    from autopeft.run.prepare import prepare_study

    return prepare_study(directory / "study.yaml")


@pytest.mark.parametrize(
    ("name", "options", "size"),
    [
        ("mobo", {}, 4),  # its prior_start: the transfer prior stands in for the rest
        ("mobo", {"prior_start": 2}, 2),
        ("mobo", {"n_initial": 3}, 3),  # never longer than its own random start
        ("tpe", {}, 10),
        ("tpe", {"n_startup_trials": 4}, 4),
        ("gp", {"n_startup_trials": 6}, 6),
        ("nsga2", {}, 16),
        ("nsga2", {"population_size": 8}, 8),
        ("random", {}, DEFAULT_POINTS),
    ],
)
def test_design_size_is_the_samplers_own_random_start(
    study_dir: Path, name: str, options: dict, size: int
) -> None:
    prepared = _prepared(study_dir)
    sampler = make_sampler(name, prepared.bound, prepared.objectives, 0, options)
    assert design_size(sampler) == size


def test_map_point_clips_snaps_and_fills_the_centre(study_dir: Path) -> None:
    bound = _prepared(study_dir).bound
    dims = {d.name: d.spec for d in bound.dimensions}
    cells = [n for n in dims if n.startswith("rank.")]
    point = map_point(
        {"learning_rate": 1.0, cells[0]: 3, cells[1]: 100, "target_modules": "x", "gone": 1},
        bound,
    )
    assert point["learning_rate"] == 1.0e-2  # clipped to the range
    assert point[cells[0]] in (2, 4) and point[cells[1]] == 4  # the nearest choice
    assert point["target_modules"] == from_unit(dims["target_modules"], 0.5)  # unknown choice
    assert point[cells[-1]] == from_unit(dims[cells[-1]], 0.5)  # absent in the source
    bound.check_point(point)


def test_design_is_the_front_first_capped_at_the_design_size(source: Path) -> None:
    view = load_view("tiny", _url(source))
    ranked = ranked_points(view.records, view.objectives)
    assert [r.number for _, r in ranked[:3]] == FRONT_ORDER
    assert [rank for (rank, _), _ in ranked] == [0, 0, 0, 1, 1, 1]
    p = _prepared(source)
    points = _source_points(source)
    design = plan_warm_start(p.url, "new", ["tiny"], p.bound, 2)
    assert design is not None and design.sources == ("tiny",)
    assert [dict(x) for x in design.points] == [points[i] for i in FRONT_ORDER[:2]]
    assert plan_warm_start(p.url, "tiny", ["tiny"], p.bound, 2) is None  # exists: stored design


def test_design_from_records_is_the_planned_design_without_a_database(source: Path) -> None:
    p = _prepared(source)
    view = load_view("tiny", _url(source))
    planned = plan_warm_start(p.url, "new", ["tiny"], p.bound, 3)
    design = design_from(["tiny"], [(view.objectives, view.records)], p.bound, 3)
    assert planned is not None and design == planned
    assert [dict(x) for x in design.points] == [_source_points(source)[i] for i in FRONT_ORDER]
    assert len(design.prior[0]) == len(SOURCE_VALUES)


def test_warm_sampler_serves_unseen_points_then_delegates(source: Path) -> None:
    p = _prepared(source)
    inner = make_sampler("random", p.bound, p.objectives, 0, {})
    warm = _source_points(source)[:3]
    sampler = WarmStartSampler(inner, warm)
    assert sampler.propose([], 2) == warm[:2]
    seen = [Observation(warm[0], TrialState.RUNNING, {}), Observation(warm[2], "FAIL", {})]
    batch = sampler.propose(seen, 3)
    pending = Observation(warm[1], TrialState.RUNNING, {})
    assert batch[0] == warm[1] and batch[1:] == inner.propose([*seen, pending], 2)
    assert point_key(batch[1]) not in {point_key(w) for w in warm}


def test_design_carries_every_source_trial_as_the_transfer_prior(source: Path) -> None:
    p = _prepared(source)
    design = plan_warm_start(p.url, "new", ["tiny"], p.bound, 2)
    assert design is not None and len(design.prior) == 1
    rows = design.prior[0]
    points = _source_points(source)
    assert [point for point, _ in rows[:3]] == [points[i] for i in FRONT_ORDER]  # best first
    names = [o.name for o in p.objectives]
    assert sorted(tuple(values[n] for n in names) for _, values in rows) == sorted(
        tuple(float(x) for x in v) for v in SOURCE_VALUES
    )
    assert WarmDesign.from_json(design.to_json()) == design  # what a resumed study reads
    legacy = {"sources": ["tiny"], "points": [dict(x) for x in design.points]}
    assert WarmDesign.from_json(legacy).prior == ()  # stored before the prior: none
    inner = make_sampler("mobo", p.bound, p.objectives, 0, {"n_initial": 3})
    WarmStartSampler(inner, design.points, design.prior_observations())
    assert [len(g) for g in inner._prior] == [6]  # handed to the study's own sampler


def _own_history(bound, n: int) -> list[Observation]:
    """``n`` complete trials of the target study, made-up values (nothing trained)."""
    points = RandomSampler(bound, [], seed=7).propose([], n)
    out = []
    for i, point in enumerate(points):
        params = bound.count_params(point)
        values = {"accuracy": 0.3 + 0.05 * i, "trainable_params": params, "peak_memory_mb": 9.0 + i}
        out.append(Observation(point, TrialState.COMPLETE, values))
    return out


@pytest.mark.slow
def test_mobo_fits_the_prior_with_its_own_trials_and_the_task_as_an_input(source: Path) -> None:
    p = _prepared(source)
    design = plan_warm_start(p.url, "new", ["tiny"], p.bound, 3)
    assert design is not None
    history = _own_history(p.bound, 4)
    options = {"n_initial": 3, "raw_samples": 32, "fit_maxiter": 20}

    def proposals(prior: bool) -> tuple[list[dict], object, object]:
        sampler = make_sampler("mobo", p.bound, p.objectives, 0, options)
        if prior:
            sampler.set_prior(design.prior_observations())
        return sampler.propose(history, 2), sampler.last_acquisition, sampler.encoder

    warm, acqf, encoder = proposals(prior=True)
    cold, cold_acqf, _ = proposals(prior=False)
    X = acqf.model.train_inputs[0][0]  # kernel features of the batched GP's rows
    assert len(X) == 6 + 4 and len(cold_acqf.model.train_inputs[0][0]) == 4
    assert X[:6, -1].eq(0).all() and X[6:, -1].eq(1).all()  # the task: prior rows 0, own 1
    # the acquisition improves on the study's own trials (and the batch's first pick), at task 1
    mine = [h.point for h in history] + [warm[0]]
    own = {tuple(row) for row in encoder.encode(mine).tolist()}
    assert {tuple(row) for row in acqf.X_baseline.tolist()} <= own
    assert warm != cold  # the prior moved the proposals
    assert proposals(prior=True)[0] == warm  # a resumed study (fresh sampler) agrees


@pytest.mark.slow
def test_with_a_usable_prior_mobo_models_after_prior_start_trials(source: Path) -> None:
    """A cold mobo draws its Sobol design for ``n_initial`` trials; given a prior it proposes
    from its model once ``prior_start`` trials of its own are complete. A prior without the
    objectives it models is not usable, and changes nothing."""
    p = _prepared(source)
    design = plan_warm_start(p.url, "new", ["tiny"], p.bound, 2)
    assert design is not None
    history = _own_history(p.bound, 2)
    options = {"n_initial": 6, "prior_start": 2, "raw_samples": 32}

    def proposal(prior: list[list[Observation]] | None) -> tuple[list[dict], object]:
        sampler = make_sampler("mobo", p.bound, p.objectives, 0, options)
        if prior is not None:
            sampler.set_prior(prior)
        return sampler.propose(history, 1), sampler.last_acquisition

    sobol = SobolSampler(p.bound, p.objectives, 0).propose(history, 1)
    assert proposal(None) == (sobol, None)
    unusable = [
        [Observation(h.point, h.state, {"accuracy": h.values["accuracy"]}) for h in g]
        for g in design.prior_observations()
    ]
    assert proposal(unusable) == (sobol, None)
    warm, acqf = proposal(design.prior_observations())
    assert acqf is not None and warm != sobol


@pytest.mark.slow
def test_warm_study_starts_from_the_source_front_then_samples(source: Path) -> None:
    spec = source / "study.yaml"
    result = cli("run", spec, "-q", "--name", "warm", "--warm-start", "tiny", "--trials", 7)
    assert result.exit_code == 0, result.output
    url = _url(source)
    points = _source_points(source)
    design = stored_design(Store(url), "warm")
    assert design is not None and len(design.points) == 5  # random's design size
    assert [len(g) for g in design.prior] == [len(SOURCE_VALUES)]
    trials = sorted(load_view("warm", url).records, key=lambda r: r.number)
    assert [r.params for r in trials[:3]] == [points[i] for i in FRONT_ORDER]
    assert [r.params for r in trials[:5]] == [dict(x) for x in design.points]
    assert all(r.params in points for r in trials[:5])
    assert all(r.params not in points for r in trials[5:]) and len(trials) == 7
    p = _prepared(source)
    cold = RandomSampler(p.bound, p.objectives, seed=0)  # the spec's sampler takes over
    assert [r.params for r in trials[5:]] == [cold.draw(5), cold.draw(6)]
    shown = cli("show", "warm", "--storage", url)
    assert shown.exit_code == 0 and "warm-started from: tiny" in shown.output


@pytest.mark.slow
def test_resumed_warm_study_proposes_each_warm_point_once(source: Path) -> None:
    spec = source / "study.yaml"
    args = ("run", spec, "-q", "--name", "resumed", "--warm-start", "tiny")
    first = cli(*args, "--trials", 2)
    assert first.exit_code == 0, first.output
    url = _url(source)
    assert len(load_view("resumed", url).records) == 2
    again = cli("run", spec, "-q", "--name", "resumed", "--trials", 6)  # no --warm-start
    assert again.exit_code == 0, again.output
    design = stored_design(Store(url), "resumed")
    assert design is not None
    keys = [point_key(r.params) for r in load_view("resumed", url).records]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert keys[:5] == [point_key(x) for x in design.points]


@pytest.mark.slow
def test_killed_warm_study_resumes_without_proposing_a_warm_point_twice(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.conftest
    from autopeft.run.driver import run_study

    # the source's complete trials share the database: watch study 'tiny' only
    monkeypatch.setattr(tests.conftest, "_mid_trial", _mid_tiny_trial)

    _make_source(study_dir, "src")
    spec = study_dir / "study.yaml"
    spec.write_text(spec.read_text().replace("max_steps: 4", "max_steps: 60"))
    db = study_dir / "studies.db"
    args = ["run", str(spec), "-q", "--warm-start", "src", "--trials", "4"]
    before, running = kill_driver_mid_trial(args, db, timeout=120)
    done = run_study(spec, trials=6)  # resumed without --warm-start: the stored design
    design = stored_design(Store(_url(study_dir)), "tiny")
    assert design is not None and len(design.points) == 5
    counted = [r for r in done.records if not r.interrupted]
    keys = [point_key(r.params) for r in counted]
    assert len(counted) == 6 and len(set(keys)) == 6
    assert keys[:5] == [point_key(x) for x in design.points]
    assert all(r.state == TrialState.COMPLETE for r in counted)
    interrupted = done.records[running[0].number]
    assert interrupted.interrupted and point_key(interrupted.params) in keys  # re-run once
    assert all(done.records[n].values == v for n, v in before.items())


def _mid_tiny_trial(db: Path) -> bool:
    """At least one trial of study 'tiny' finished and another one running."""
    query = (
        "select t.state, count(*) from trials t join studies s on s.study_id = t.study_id "
        "where s.study_name = 'tiny' group by t.state"
    )
    try:
        with sqlite3.connect(db) as con:
            rows = dict(con.execute(query).fetchall())
    except sqlite3.OperationalError:
        return False
    return rows.get("COMPLETE", 0) >= 1 and rows.get("RUNNING", 0) >= 1


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


def test_bad_warm_start_sources_exit_2_and_write_nothing(
    source: Path, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    from autopeft.run.prepare import prepare_study, register_study

    url = _url(source)
    empty = prepare_study(source / "study.yaml", name="empty")
    register_study(Store(url), empty)  # a study without trials
    other = tmp_path / "other"
    other.mkdir()
    write_tiny_csv(other / "data.csv")
    (other / "space.yaml").write_text(
        "version: 1\nname: per_layer\nmethod: lora\nmax_trainable_params: 4000\nparameters:\n"
        "  rank: {type: int, choices: [0, 1, 2], per: layer}\n  learning_rate: 0.005\n"
    )
    write_study(other, model=str(tiny_bert_dir), name="disjoint", storage=url)
    db = source / "studies.db"
    before = _dump(db)
    spec = source / "study.yaml"

    result = cli("run", spec, "-q", "--name", "new", "--warm-start", "nope")
    assert_user_error(result, "no study named 'nope'", "tiny", "empty")
    result = cli("run", spec, "-q", "--name", "new", "--warm-start", "empty")
    assert_user_error(result, "study 'empty' has no complete trials")
    result = cli("run", other / "study.yaml", "-q", "--warm-start", "tiny")
    assert_user_error(result, "study 'tiny' shares no search dimension", "rank.0")
    assert _dump(db) == before
