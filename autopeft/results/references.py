"""The search against its references: does a front member match or beat each default?

Always searched trials against references: a reference is never its own win. For each
reference, :func:`compare` finds the cheapest front member (fewest trainable parameters) whose
task metric matches or beats the reference's; if none does, the best front member at or below
the reference's size, with the metric difference. :func:`dominates` is the stricter test the
benchmark reports: as good a metric at no more parameters, better in one of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autopeft.core.objectives import Objective
from autopeft.results.picks import primary_objective
from autopeft.results.table import format_value
from autopeft.storage.records import TrialRecord

__all__ = ["Comparison", "compare", "dominates", "first_dominating"]

PARAMS = "trainable_params"
MEMORY = "peak_memory_mb"


@dataclass(frozen=True)
class Comparison:
    """One reference against the front.

    Attributes:
        reference: The reference's trial.
        match: The cheapest front member whose metric matches or beats the reference's.
        closest: Without a match: the best front member at or below the reference's size.
        metric: The task metric's objective.
    """

    reference: TrialRecord
    match: TrialRecord | None
    closest: TrialRecord | None
    metric: Objective

    def ratios(self, member: TrialRecord) -> dict[str, float]:
        """``member``'s trainable parameters and peak memory as shares of the reference's."""
        out = {}
        for key in (PARAMS, MEMORY):
            mine, theirs = _measure(member, key), _measure(self.reference, key)
            if mine is not None and theirs:
                out[key] = mine / theirs
        return out

    def text(self) -> str:
        """One line: the reference, then the member that matches it or the closest one."""
        ref, m = self.reference, self.metric.name
        head = (
            f"{ref.reference} (trial {ref.number}): {m} {format_value(m, ref.values.get(m))}, "
            f"{format_value(PARAMS, _measure(ref, PARAMS))} params"
        )
        member = self.match or self.closest
        if member is None:
            return f"{head}: no front member at or below its size"
        ratios = self.ratios(member)
        sizes = ", ".join(
            f"{label} x{ratios[key]:.2f}"
            for key, label in ((PARAMS, "params"), (MEMORY, "memory"))
            if key in ratios
        )
        value = format_value(m, member.values.get(m))
        if self.match is not None:
            return f"{head}: matched or beaten by trial {member.number} ({m} {value}; {sizes})"
        diff = member.values[m] - ref.values[m]
        return (
            f"{head}: not matched; best at or below its size is trial {member.number} "
            f"({m} {value}, {diff:+.4f}; {sizes})"
        )


def compare(
    front: Sequence[TrialRecord],
    references: Sequence[TrialRecord],
    objectives: Sequence[Objective],
) -> list[Comparison]:
    """Each complete reference against the searched ``front`` (references in it are ignored)."""
    metric = primary_objective(objectives)
    members = [r for r in front if r.reference is None and metric.name in r.values]
    out = []
    for ref in references:
        if metric.name not in ref.values:
            continue
        target = ref.values[metric.name]
        matches = [r for r in members if _at_least(r.values[metric.name], target, metric)]
        match = min(matches, key=lambda r: (_size(r), r.number)) if matches else None
        closest = None
        if match is None:
            smaller = [r for r in members if _size(r) <= _size(ref)]
            if smaller:
                closest = min(smaller, key=lambda r: (_rank(r, metric), _size(r), r.number))
        out.append(Comparison(ref, match, closest, metric))
    return out


def dominates(member: TrialRecord, ref: TrialRecord, metric: Objective) -> bool:
    """``member`` has a metric at least as good at no more trainable parameters than ``ref``,
    and is strictly better in one of the two."""
    a, b = member.values.get(metric.name), ref.values.get(metric.name)
    if a is None or b is None:
        return False
    same_or_better = _at_least(a, b, metric) and _size(member) <= _size(ref)
    return same_or_better and (a != b or _size(member) < _size(ref))


def first_dominating(
    searched: Sequence[TrialRecord], ref: TrialRecord, metric: Objective
) -> int | None:
    """How many searched trials (complete ones, in order) the search ran before one of them
    dominated ``ref`` (:func:`dominates`); None if none did."""
    for count, record in enumerate(searched, start=1):
        if record.values and dominates(record, ref, metric):
            return count
    return None


def _at_least(value: float, target: float, metric: Objective) -> bool:
    return value >= target if metric.direction == "maximize" else value <= target


def _rank(record: TrialRecord, metric: Objective) -> float:
    value = record.values[metric.name]
    return -value if metric.direction == "maximize" else value


def _measure(record: TrialRecord, key: str) -> float | None:
    value = record.values.get(key, record.metrics.get(key))
    return None if value is None else float(value)


def _size(record: TrialRecord) -> float:
    size = _measure(record, PARAMS)
    return float("inf") if size is None else size
