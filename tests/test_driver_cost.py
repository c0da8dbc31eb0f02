"""The driver's in-memory mirror of its study: it must match the database trial by trial, and
the driver must not re-read the whole study per trial (counted calls, not timings)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from autopeft.executors.base import Executor
from autopeft.run.driver import StudyRunner
from autopeft.run.prepare import prepare_study, register_study
from autopeft.run.progress import Reporter, StudyStatus, study_status
from autopeft.search.samplers import Observation
from autopeft.storage.store import Store
from autopeft.trial.runner import TrialRequest, TrialResult


class ScriptedExecutor(Executor):
    """Runs nothing: answers every trial at once with made-up measurements, newest first (so
    with capacity > 1, results come back out of trial order). ``script`` maps a trial number to
    ``"infeasible"``, ``"error"``, ``"lost"`` or ``"stop"`` (Ctrl-C while it runs)."""

    def __init__(self, capacity: int = 1, script: dict[int, str] | None = None) -> None:
        self.capacity = capacity
        self.script = script or {}
        self._queue: deque[TrialRequest] = deque()

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    def running(self) -> list[int]:
        return [r.number for r in self._queue]

    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        if any(self.script.get(r.number) == "stop" for r in self._queue):
            raise KeyboardInterrupt
        results = [self._result(r) for r in reversed(self._queue)]  # newest first
        self._queue.clear()
        return results

    def _result(self, request: TrialRequest) -> TrialResult:
        n, c = request.number, request.compiled
        what = self.script.get(n)
        if what == "infeasible":
            return TrialResult(n, False, error="CUDA out of memory", infeasible=True)
        if what == "error":
            return TrialResult(n, False, error="ValueError: boom")
        if what == "lost":
            return TrialResult(n, False, error="worker died", lost=True)
        lr = float(c.training.get("learning_rate", 1e-3))
        accuracy = 0.5 + 0.4 * c.trainable_params / (c.trainable_params + 500) + 3 * lr
        return TrialResult(
            n,
            True,
            {
                "accuracy": accuracy,
                "trainable_params": c.trainable_params,
                "peak_memory_mb": 40.0 + c.trainable_params / 100 + 100 * lr,
                "train_seconds": 0.1,
            },
        )


def _runner(spec: Path, executor: Executor, reporter: Reporter | None = None) -> StudyRunner:
    prepared = prepare_study(spec)
    store = Store(prepared.url)
    register_study(store, prepared)
    return StudyRunner(prepared, store, reporter or Reporter(), executor)


def _history(store: Store, name: str) -> list[Observation]:
    """The sampler's history read from the database, as the driver once built it."""
    return [
        Observation(r.params, r.state, r.values, r.infeasible)
        for r in store.records(name)
        if r.state in ("COMPLETE", "FAIL", "RUNNING") and not r.interrupted
    ]


@pytest.mark.slow
def test_mirror_matches_the_database_through_failures_retries_and_a_stop(
    study_dir: Path,
) -> None:
    from autopeft.core.hypervolume import hypervolume_curve

    spec = study_dir / "study.yaml"
    script = {3: "infeasible", 5: "error", 7: "lost", 12: "lost", 16: "stop"}
    first = _runner(spec, ScriptedExecutor(capacity=3, script=script))
    seen = []
    propose = first.sampler.propose

    def checked(history, n):  # the sampler sees exactly what the database says
        seen.append(len(history))
        assert history == _history(first.store, "tiny")
        return propose(history, n)

    first.sampler.propose = checked  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        first.run(30)
    assert seen
    stopped = {r.number for r in first.store.records("tiny") if r.interrupted} - {7, 12}
    assert 16 in stopped  # the trials running at Ctrl-C, written as the driver stopped

    def others(records):
        return [r for r in records if r.number not in stopped]

    assert others(first.mirror.records()) == others(first.store.records("tiny"))

    second = _runner(spec, ScriptedExecutor(capacity=3, script={22: "lost"}))
    outcome = second.run(30)
    records = second.store.records("tiny")
    assert second.mirror.records() == records == outcome.records
    states = {r.number: (r.state, r.interrupted) for r in records}
    assert states[3] == states[5] == ("FAIL", False)
    assert {n for n, s in states.items() if s == ("FAIL", True)} == {7, 12, 22} | stopped
    rerun = {n for n in states if n > 7 and records[n].params == records[7].params}
    assert rerun  # the lost trial's point ran again
    assert second.mirror.finished == 30 == sum(1 for s in states.values() if not s[1])
    assert second.store.retry_queue("tiny") == []
    # hypervolumes stored while results came back out of order equal the curve, exactly
    complete = [r for r in records if r.state == "COMPLETE"]
    curve = hypervolume_curve(outcome.objectives, records, 4000)
    assert [r.hypervolume for r in complete] == curve


@pytest.mark.slow
def test_stored_hypervolumes_equal_the_curve_after_25_trials(study_dir: Path) -> None:
    from autopeft.core.hypervolume import hypervolume_curve

    runner = _runner(study_dir / "study.yaml", ScriptedExecutor())
    outcome = runner.run(25)
    assert len(outcome.records) == 25
    curve = hypervolume_curve(outcome.objectives, outcome.records, 4000)
    assert [r.hypervolume for r in outcome.records] == curve
    assert len(set(curve)) > 3  # the front moved several times


@pytest.mark.slow
def test_a_lost_stored_hypervolume_is_put_back_on_resume(study_dir: Path) -> None:
    """As before the mirror: the first result after a resume repairs every stored value."""
    from autopeft.core.hypervolume import hypervolume_curve
    from autopeft.storage.tables import TrialRow

    spec = study_dir / "study.yaml"
    _runner(spec, ScriptedExecutor()).run(15)
    store = Store(f"sqlite:///{study_dir / 'studies.db'}")
    with store.session() as s:  # as if the driver died before storing these
        for number in (4, 14):
            s.get(TrialRow, ("tiny", number)).hypervolume = None
    outcome = _runner(spec, ScriptedExecutor()).run(16)
    curve = hypervolume_curve(outcome.objectives, outcome.records, 4000)
    assert [r.hypervolume for r in outcome.records] == curve


class _CheckStatus(Reporter):
    """Checks every status line against one computed from the database from scratch."""

    wants_status = True

    def __init__(self) -> None:
        self.runner: StudyRunner | None = None
        self.checked = 0

    def status(self, status: StudyStatus) -> None:
        assert self.runner is not None
        fresh = study_status(
            self.runner.store.records("tiny"),
            self.runner.p.objectives,
            budget=4000,
            target=status.target,
            running=status.running,
            elapsed=status.elapsed,
            done_before=self.runner._clock[1],
        )
        assert status == fresh
        self.checked += 1


@pytest.mark.slow
def test_status_lines_equal_a_status_computed_from_the_database(study_dir: Path) -> None:
    spec = study_dir / "study.yaml"
    # a run, then a resume whose first results are failures (no new hypervolume to store)
    runs = ((0, 14, {4: "error"}), (14, 20, {14: "error", 15: "infeasible"}))
    for before, trials, script in runs:
        reporter = _CheckStatus()
        runner = reporter.runner = _runner(spec, ScriptedExecutor(2, script), reporter)
        runner.run(trials)
        assert reporter.checked == 1 + trials - before  # at the start, then after each result


@pytest.mark.slow
def test_the_driver_reads_the_whole_study_a_fixed_number_of_times(
    study_dir: Path, monkeypatch
) -> None:
    calls = {"records": 0, "record": 0, "next_retry": 0}
    for method in calls:
        original = getattr(Store, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            calls[_method] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Store, method, counted)
    spec = study_dir / "study.yaml"
    per_run = []
    for trials in (5, 20):
        for key in calls:
            calls[key] = 0
        _runner(spec, ScriptedExecutor(capacity=2)).run(trials)
        per_run.append(dict(calls))
    # whole-study reads: stale recovery, loading the mirror, the outcome; one trial is read
    # back after each write (start, finish); no retry is asked for when none waits
    assert per_run[0] == {"records": 3, "record": 2 * 5, "next_retry": 0}
    assert per_run[1] == {"records": 3, "record": 2 * (20 - 5), "next_retry": 0}


def test_the_mirror_counts_as_the_database_does_skipped_trials_included(tmp_path: Path) -> None:
    """A proposal skipped before launch (predicted over the memory cap) is a failed trial that
    neither counts nor is counted failed: by the mirror as by a status from the database."""
    from types import SimpleNamespace

    import optuna

    from autopeft.core.objectives import Objective
    from autopeft.run.mirror import TrialMirror

    objectives = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    row = dict.fromkeys(
        ("spec_yaml", "space_yaml", "spec_json", "fingerprint", "layout_json", "model_path"), ""
    )
    row["objectives_json"] = (
        '[{"name": "accuracy", "direction": "maximize"}, '
        '{"name": "trainable_params", "direction": "minimize"}]'
    )
    store.create_study("s", objectives, row)
    dists = {"x": optuna.distributions.FloatDistribution(0, 1)}
    mirror = TrialMirror(store, "s", objectives, 4000)

    def start(x: float) -> int:
        compiled = SimpleNamespace(method="lora", trainable_params=int(1000 * x))
        number = store.start_trial("s", {"x": x}, dists, compiled)  # type: ignore[arg-type]
        mirror.refresh(number)
        return number

    def check() -> None:
        fresh = study_status(
            store.records("s"), objectives, budget=4000, target=9, running=0, elapsed=2.0,
            done_before=0,
        )  # fmt: skip
        assert mirror.status(9, 0, 2.0, 0) == fresh

    for x, outcome in ((0.5, "complete"), (0.6, "skipped"), (0.7, "error"), (0.2, "skipped")):
        number = start(x)
        if outcome == "complete":
            store.complete_trial(
                "s", number, [0.7, 500], {"accuracy": 0.7, "trainable_params": 500}
            )
        else:
            skipped = outcome == "skipped"
            metrics = {"skipped": True} if skipped else {}
            store.fail_trial("s", number, outcome, infeasible=skipped, metrics=metrics)
        mirror.refresh(number)
        check()
    assert (mirror.finished, mirror.failed) == (2, 1)
    assert [h.state for h in mirror.history()] == ["COMPLETE", "FAIL", "FAIL", "FAIL"]
