"""The study loop against a real SQLite store and tiny real models: create, resume, recover."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from autopeft.exceptions import StudyError
from autopeft.executors.inprocess import InProcessExecutor
from autopeft.results.views import load_view
from autopeft.run.driver import run_study
from autopeft.run.progress import Reporter
from autopeft.trial.runner import TrialResult
from tests.conftest import kill_driver_mid_trial, write_study


def _url(d: Path) -> str:
    return f"sqlite:///{d / 'studies.db'}"


def test_study_runs_and_records_every_measurement(study_dir: Path) -> None:
    outcome = run_study(study_dir / "study.yaml")
    assert [r.state for r in outcome.records] == ["COMPLETE"] * 3
    for r in outcome.records:
        assert set(r.values) == {"accuracy", "trainable_params", "peak_memory_mb"}
        assert 0.0 <= r.values["accuracy"] <= 1.0
        assert r.values["trainable_params"] == sum(
            rank * (32 + 32 if m in "qkvo" else 96)
            for cells in r.placement.values()
            for m, rank in cells.items()
        )
        assert r.values["trainable_params"] <= 4000  # the space's budget
        assert r.metrics["head_params"] == 32 * 2 + 2  # classifier of the tiny BERT
        assert (
            r.metrics["peak_memory_mb"] > 0 and r.metrics["memory_method"] == "live_tensor_tracker"
        )
        assert r.metrics["train_seconds"] > 0 and r.module_sizes


def test_hypervolume_after_every_trial_is_stored(study_dir: Path) -> None:
    from autopeft.core.hypervolume import hypervolume_curve

    outcome = run_study(study_dir / "study.yaml")
    stored = [r.hypervolume for r in outcome.records]
    assert all(v is not None for v in stored)
    # what the driver stored trial by trial equals the curve recomputed from scratch
    assert stored == pytest.approx(hypervolume_curve(outcome.objectives, outcome.records, 4000))
    assert stored == sorted(stored)  # never moves backwards


def test_a_schema_2_database_gains_the_hypervolume_column(tmp_path: Path) -> None:
    from autopeft.storage.store import Store
    from autopeft.storage.tables import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url)
    with sqlite3.connect(tmp_path / "old.db") as db:  # make it look like schema 2
        db.execute("DROP INDEX ix_autopeft_trials_marker")  # schema 9's, on the column below
        db.execute("ALTER TABLE autopeft_trials DROP COLUMN hypervolume")
        db.execute("UPDATE autopeft_schema SET version = 2")
    Store(url)
    Store(url)  # opening a migrated database again changes nothing
    with sqlite3.connect(tmp_path / "old.db") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(autopeft_trials)")]
        assert columns.count("hypervolume") == 1
        assert db.execute("SELECT version FROM autopeft_schema").fetchall() == [(SCHEMA_VERSION,)]


@pytest.mark.slow
def test_resume_extends_without_touching_finished_trials(study_dir: Path) -> None:
    first = run_study(study_dir / "study.yaml", trials=2)
    second = run_study(study_dir / "study.yaml", trials=4)
    assert [r.number for r in second.records] == [0, 1, 2, 3]
    assert [(r.params, r.values) for r in second.records[:2]] == [
        (r.params, r.values) for r in first.records
    ]
    again = run_study(study_dir / "study.yaml", trials=4)  # already done: runs nothing
    assert len(again.records) == 4


@pytest.mark.slow
def test_same_seed_same_proposals_other_seed_differs(study_dir: Path, tmp_path_factory) -> None:
    a = run_study(study_dir / "study.yaml", trials=2, name="a")
    b = run_study(study_dir / "study.yaml", trials=2, name="b")
    assert [r.params for r in a.records] == [r.params for r in b.records]
    assert [r.values["accuracy"] for r in a.records] == [r.values["accuracy"] for r in b.records]
    spec = (study_dir / "study.yaml").read_text().replace("seed: 0", "seed: 1")
    other = tmp_path_factory.mktemp("other")
    for f in ("data.csv", "space.yaml"):
        (other / f).write_bytes((study_dir / f).read_bytes())
    (other / "study.yaml").write_text(spec.replace(str(study_dir), str(other)))
    c = run_study(other / "study.yaml", trials=2)
    assert [r.params for r in c.records] != [r.params for r in a.records]


def test_resume_with_a_different_spec_is_refused(study_dir: Path) -> None:
    run_study(study_dir / "study.yaml", trials=1)
    spec = study_dir / "study.yaml"
    spec.write_text(spec.read_text().replace("max_steps: 4", "max_steps: 5"))
    with pytest.raises(StudyError, match="different spec"):
        run_study(spec, trials=2)
    assert len(load_view("tiny", _url(study_dir)).records) == 1


class _StopAt(Reporter):
    """Raises KeyboardInterrupt (as Ctrl-C would) in the middle of trial ``number``."""

    def __init__(self, number: int) -> None:
        self.number = number

    def step(self, number: int, step: int, total: int) -> None:
        if number == self.number and step == 2:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_ctrl_c_then_rerun_completes_and_keeps_finished_trials(study_dir: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        run_study(study_dir / "study.yaml", reporter=_StopAt(1))
    view = load_view("tiny", _url(study_dir))
    assert [(r.state, r.interrupted) for r in view.records] == [("COMPLETE", False), ("FAIL", True)]
    kept = view.records[0]
    done = run_study(study_dir / "study.yaml")
    states = [(r.number, r.state, r.interrupted) for r in done.records]
    assert states == [
        (0, "COMPLETE", False),
        (1, "FAIL", True),
        (2, "COMPLETE", False),
        (3, "COMPLETE", False),
    ]
    assert done.records[0].values == kept.values
    assert done.records[2].params == view.records[1].params  # the interrupted point re-ran


class _FailSecond(InProcessExecutor):
    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        results = super().poll(timeout)
        return [
            TrialResult(r.number, False, error="CUDA out of memory", infeasible=True)
            if r.number == 1
            else r
            for r in results
        ]


@pytest.mark.slow
def test_failed_trial_is_recorded_and_counts_toward_the_budget(
    study_dir: Path, monkeypatch
) -> None:
    monkeypatch.setattr("autopeft.executors.inprocess.InProcessExecutor", _FailSecond)
    outcome = run_study(study_dir / "study.yaml")
    assert [r.state for r in outcome.records] == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = outcome.records[1]
    assert failed.infeasible and failed.fail_reason == "CUDA out of memory"


@pytest.mark.slow
def test_killed_driver_resumes_with_no_loss_and_no_duplicates(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    from tests.conftest import SPACE, write_tiny_csv

    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(tmp_path, model=str(tiny_bert_dir), n_trials=4)
    spec.write_text(spec.read_text().replace("max_steps: 4", "max_steps: 60"))
    db = tmp_path / "studies.db"
    before, running = kill_driver_mid_trial(["run", str(spec), "-q"], db, timeout=120)
    done = run_study(spec)
    complete = [r for r in done.records if r.state == "COMPLETE"]
    assert len(complete) == 4
    assert all(done.records[n].values == v for n, v in before.items())
    assert len({r.number for r in done.records}) == len(done.records)
    interrupted = done.records[running[0].number]
    assert interrupted.state == "FAIL" and interrupted.interrupted
    assert any(r.params == interrupted.params for r in complete)  # its point was re-run


@pytest.mark.slow
def test_a_trial_orphaned_between_the_two_writes_is_recovered(study_dir: Path) -> None:
    """The driver died after Optuna created the trial but before autopeft's row existed."""
    import optuna

    from autopeft.storage.store import Store

    first = run_study(study_dir / "study.yaml", trials=1)
    store = Store(_url(study_dir))
    point = first.records[0].params
    dists = {k: v for k, v in store.optuna_study("tiny").trials[0].distributions.items()}
    orphan = optuna.trial.create_trial(
        state=optuna.trial.TrialState.RUNNING, params=point, distributions=dists
    )
    store.optuna.create_new_trial(store.optuna.get_study_id_from_name("tiny"), orphan)
    done = run_study(study_dir / "study.yaml", trials=3)
    states = [(r.number, r.state, r.interrupted) for r in done.records]
    assert states == [
        (0, "COMPLETE", False),
        (1, "FAIL", True),
        (2, "COMPLETE", False),
        (3, "COMPLETE", False),
    ]
    assert done.records[2].params == point  # the orphan's point was re-run


def test_a_run_loads_and_validates_its_spec_once(study_dir: Path, monkeypatch) -> None:
    """The running check and the preparation share one load of the spec and its space."""
    from autopeft import spec as spec_module
    from autopeft.run import driver, prepare

    loads: list[Path] = []
    real = spec_module.load_study

    def counted(path):
        loads.append(Path(path))
        return real(path)

    class Prepared(Exception):
        pass

    def stop(url: str) -> None:  # the run's first write: prepared by then
        raise Prepared(url)

    monkeypatch.setattr(spec_module, "load_study", counted)
    monkeypatch.setattr(prepare, "load_study", counted)
    monkeypatch.setattr(driver, "Store", stop)
    with pytest.raises(Prepared, match=r"studies\.db"):
        run_study(study_dir / "study.yaml")
    assert loads == [study_dir / "study.yaml"]
