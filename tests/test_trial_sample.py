"""What a page draws of a large study (autopeft.results.sample): the front, references and
running trials always, at most ``limit`` others evenly over trial numbers, the same every time;
the hypervolume as its steps."""

from __future__ import annotations

import itertools
import random

import pytest

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.results.sample import evenly, hypervolume_steps, sample_trials
from autopeft.results.views import StudyView
from autopeft.storage.records import TrialRecord

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]


def big_view(n: int = 400, seed: int = 0) -> StudyView:
    """``n`` trials: mostly complete, every 50th failed, two references, the last running."""
    rng = random.Random(seed)
    records, best = [], 0.0
    for i in range(n):
        if i == n - 1:
            records.append(TrialRecord(i, TrialState.RUNNING))
            continue
        if i % 50 == 7:
            records.append(TrialRecord(i, TrialState.FAIL, fail_reason="diverged"))
            continue
        values = {"accuracy": rng.random(), "trainable_params": rng.uniform(1e3, 1e6)}
        best = max(best, values["accuracy"] / 2)  # a stepwise rising "hypervolume"
        reference = "lora-r8" if i == 3 else "full-head" if i == 300 else None
        records.append(TrialRecord(i, "COMPLETE", values, hypervolume=best, reference=reference))
    return StudyView("big", "sqlite://", {}, "model", 10**6, OBJECTIVES, records)


def numbers(records: list[TrialRecord]) -> list[int]:
    return [r.number for r in records]


def test_the_sample_keeps_the_front_references_and_running_and_a_bounded_rest() -> None:
    view = big_view()
    kept = {r.number for r in view.front()} | {3, 300, 399}
    sample = sample_trials(view, 40)
    chosen = numbers(sample.records)
    assert sample.total == 400 and sample.others == 400 - len(kept)
    assert kept <= set(chosen)
    assert len(chosen) == len(kept) + 40 == len(set(chosen))
    assert chosen == sorted(chosen)
    others = [n for n in chosen if n not in kept]
    assert others[0] < 20 and others[-1] > 380  # spread over the whole history
    assert max(b - a for a, b in itertools.pairwise(others)) <= 20
    assert not sample.complete
    # deterministic: the same study (read again) and limit give the same trials
    assert numbers(sample_trials(big_view(), 40).records) == chosen
    only = sample_trials(view, 0)
    assert set(numbers(only.records)) == kept and only.total == 400
    everything = sample_trials(view, 5000)
    assert numbers(everything.records) == list(range(400)) and everything.complete


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        sample_trials(big_view(10), -1)


def test_evenly_takes_the_middle_of_equal_runs() -> None:
    assert evenly(list(range(10)), 5) == [1, 3, 5, 7, 9]
    assert evenly(list(range(10)), 1) == [5]
    assert evenly(list(range(3)), 5) == [0, 1, 2]
    assert evenly(list(range(7)), 0) == []
    picked = evenly(list(range(4890)), 500)
    assert len(set(picked)) == 500 and picked == sorted(picked)


def test_hypervolume_steps_draw_the_same_step_line() -> None:
    view = big_view()
    steps = hypervolume_steps(view.records)
    stored = [(r.number, r.hypervolume) for r in view.complete() if r.hypervolume is not None]
    assert len(steps) < len(stored) / 10 and steps[-1] == stored[-1] and steps[0] == stored[0]
    for number, value in stored:  # each trial's value is that of the last step at or before it
        assert [v for n, v in steps if n <= number][-1] == value
    assert hypervolume_steps([]) == []
