"""The live status line: counts, ETA, best values and hypervolume by the study's rule."""

from __future__ import annotations

import pytest

from autopeft.core.hypervolume import hypervolume_curve
from autopeft.core.objectives import Objective
from autopeft.run.progress import study_status
from autopeft.storage.records import TrialRecord

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]


def _done(n: int, acc: float, params: int) -> TrialRecord:
    return TrialRecord(n, "COMPLETE", values={"accuracy": acc, "trainable_params": params})


def test_status_counts_best_values_eta_and_hypervolume() -> None:
    records = [
        _done(0, 0.6, 1000),
        TrialRecord(1, "FAIL", infeasible=True),
        TrialRecord(2, "FAIL", interrupted=True),  # re-run later: not finished
        _done(3, 0.8, 3000),
        TrialRecord(4, "RUNNING"),
    ]
    s = study_status(
        records, OBJECTIVES, budget=4000, target=10, running=1, elapsed=60.0, done_before=1
    )
    assert (s.done, s.failed, s.running, s.target) == (3, 1, 1, 10)
    assert s.best == {"accuracy": 0.8, "trainable_params": 1000}
    assert s.eta == pytest.approx(60.0 / 2 * 7)  # this run finished 2 trials in 60 s
    assert s.hypervolume == pytest.approx(hypervolume_curve(OBJECTIVES, records, 4000)[-1])
    line = s.line()
    assert line.startswith("3/10 done, 1 running, 1 failed | 1m00s, ~3m30s left | best ")
    assert f"HV {s.hypervolume:.4f}" in line


def test_status_before_any_result_has_no_eta_or_hypervolume() -> None:
    s = study_status([], OBJECTIVES, budget=4000, target=5, running=2, elapsed=3.0, done_before=0)
    assert s.eta is None and s.hypervolume is None and s.best == {}
    assert s.line() == "0/5 done, 2 running, 0 failed | 0m03s"
