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


def test_the_curve_is_a_fold_equal_to_the_hypervolume_of_each_prefix_bit_for_bit() -> None:
    """One fold (core.hypervolume.fold) serves the status line, the stored curve and ``show``;
    it equals the hypervolume of every prefix exactly, duplicates and dominated points too."""
    import random

    from autopeft.core.hypervolume import hypervolume, study_frame

    rng = random.Random(0)
    three = [*OBJECTIVES, Objective("peak_memory_mb", "minimize")]
    for objectives in (OBJECTIVES, three):
        records = []
        for n in range(40):
            values = {"accuracy": rng.choice([0.5, 0.6, rng.random()])}
            values["trainable_params"] = rng.choice([1000, 2000, rng.randrange(100, 4000)])
            values["peak_memory_mb"] = rng.choice([40.0, rng.uniform(30, 60)])
            records.append(TrialRecord(n, "COMPLETE", values=values))
            if n % 7 == 3:
                records.append(TrialRecord(100 + n, "FAIL"))  # no result: not on the curve
        complete = [r for r in records if r.state == "COMPLETE"]
        frame = study_frame(objectives, complete)
        direct = [hypervolume(frame, [r.values for r in complete[: i + 1]]) for i in range(40)]
        assert hypervolume_curve(objectives, records) == direct
        assert len(set(direct)) > 3  # the front moved


def test_counts_and_best_values_follow_the_records_rules() -> None:
    """What the status line counts, by the record's own rules: a trial skipped before launch
    and a promotion neither count nor fail; a partial-rung result sets no best value."""
    from autopeft.run.progress import StudyTally

    skipped = TrialRecord(1, "FAIL", infeasible=True, metrics={"skipped": True})
    promoted_failed = TrialRecord(2, "FAIL", rung=1, promoted_from=0)
    partial = TrialRecord(3, "PRUNED", values={"accuracy": 0.99, "trainable_params": 10}, rung=0)
    failed = TrialRecord(4, "FAIL", fail_reason="boom")
    interrupted = TrialRecord(5, "FAIL", interrupted=True)
    records = [_done(0, 0.6, 1000), skipped, promoted_failed, partial, failed, interrupted]
    assert [r.counts_for_budget for r in records] == [True, False, False, True, True, False]
    assert [r.counts_as_failed for r in records] == [False, False, False, False, True, False]
    s = study_status(
        records, OBJECTIVES, budget=4000, target=10, running=0, elapsed=1.0, done_before=0
    )
    assert (s.done, s.failed) == (3, 1)
    assert s.best == {"accuracy": 0.6, "trainable_params": 1000}
    tally = StudyTally(OBJECTIVES)  # record by record, as the driver's mirror keeps it
    for r in records:
        running = TrialRecord(r.number, "RUNNING", rung=r.rung, promoted_from=r.promoted_from)
        tally.swap(None, running)
        tally.swap(running, r)
        tally.swap(r, r)  # read again unchanged: nothing counts twice
    assert (tally.finished, tally.failed, tally.best) == (s.done, s.failed, s.best)


def test_what_samplers_and_the_promotion_rule_see_of_a_record() -> None:
    rungs = (10, 30, 90)
    partial = TrialRecord(0, "PRUNED", values={"accuracy": 0.7}, rung=1, promoted_from=5)
    assert partial.seen_by_samplers and partial.sampler_state == "COMPLETE"
    assert partial.rung_values == {"accuracy": 0.7} and partial.fidelity(rungs) == 30 / 90
    assert partial.ranked_for_promotion and not partial.new_configuration
    # a configuration started above dropped rungs (rungs: auto) is new: no source
    entry = TrialRecord(6, "PRUNED", values={"accuracy": 0.7}, rung=1)
    assert entry.new_configuration and entry.counts_for_budget
    skipped = TrialRecord(1, "FAIL", infeasible=True, metrics={"skipped": True}, rung=0)
    assert skipped.seen_by_samplers and not skipped.ranked_for_promotion  # learnt, not ranked
    assert skipped.sampler_state == "FAIL" and skipped.rung_values == {}
    interrupted = TrialRecord(2, "FAIL", interrupted=True)
    assert not interrupted.seen_by_samplers and not interrupted.ranked_for_promotion
    assert not TrialRecord(3, "WAITING").seen_by_samplers
    assert (
        TrialRecord(4, "RUNNING").seen_by_samplers
        and TrialRecord(4, "RUNNING").fidelity(rungs) == 1
    )
    assert _done(5, 0.5, 100).fidelity(()) == 1.0 and _done(5, 0.5, 100).new_configuration
