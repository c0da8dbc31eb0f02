"""A bounded, deterministic selection of a study's trials, for views that cannot draw them all.

A page that redraws a 5,000-trial study on every poll spends seconds on points nobody can tell
apart. :func:`sample_trials` keeps what the reader looks for (the Pareto front, the references
and the running trials) and at most ``limit`` of the others, chosen evenly over trial numbers
(the centre of each of ``limit`` equal runs of them, so the search's history is covered from
its first trial to its last); with the total, a page can say "552 of 5,000 trials shown". The
same study and limit always give the same selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from autopeft.core.states import TrialState
from autopeft.results.views import StudyView
from autopeft.storage.records import TrialRecord

T = TypeVar("T")

DEFAULT_LIMIT = 500
"""Trials besides the front, references and running ones that a page draws by default."""


@dataclass(frozen=True)
class TrialSample:
    """The selected ``records`` (by trial number), the study's ``total`` trials, and of them
    the ``others`` that could be left out (neither on the front, references nor running), of
    which ``len(records) - (total - others)`` are kept."""

    records: list[TrialRecord]
    total: int
    others: int

    @property
    def complete(self) -> bool:
        """Whether every trial is in the selection."""
        return len(self.records) == self.total


def sample_trials(view: StudyView, limit: int = DEFAULT_LIMIT) -> TrialSample:
    """The front, the references and the running trials of ``view``, plus at most ``limit``
    of its other trials chosen evenly over trial numbers (all of them when there are no more
    than ``limit``)."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    front = {r.number for r in view.front()}
    kept: list[TrialRecord] = []
    others: list[TrialRecord] = []
    for record in sorted(view.records, key=lambda r: r.number):
        always = (
            record.number in front
            or record.reference is not None
            or record.state == TrialState.RUNNING
        )
        (kept if always else others).append(record)
    chosen = kept + evenly(others, limit)
    chosen.sort(key=lambda r: r.number)
    return TrialSample(chosen, len(view.records), len(others))


def evenly(items: Sequence[T], k: int) -> list[T]:
    """``k`` of ``items`` spread evenly over them, in their order: the middle item of each of
    ``k`` equal runs (all of ``items`` when there are no more than ``k``)."""
    n = len(items)
    if n <= k:
        return list(items)
    return [items[(2 * i + 1) * n // (2 * k)] for i in range(k)]


def hypervolume_steps(records: Sequence[TrialRecord]) -> list[tuple[int, float]]:
    """``(trial number, hypervolume)`` after each complete trial that stored one, by trial
    number, keeping only the trials where it changed and the last one: the same step line
    with a point per improvement instead of one per trial."""
    stored = sorted(
        (r.number, float(r.hypervolume))
        for r in records
        if r.state == TrialState.COMPLETE and r.hypervolume is not None
    )
    steps = [p for i, p in enumerate(stored) if i == 0 or p[1] != stored[i - 1][1]]
    if stored and steps[-1] != stored[-1]:
        steps.append(stored[-1])
    return steps
