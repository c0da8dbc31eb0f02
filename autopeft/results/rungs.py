"""Does a low rung rank configurations as the top rung does? (multi-fidelity studies)

For each rung below the top, the Spearman correlation (:func:`~autopeft.results.health.
spearman`) of the primary metric at that rung with the metric at the top rung, over the
configurations that reached both (a top-rung trial's promotion chain leads back to its value at
every rung below). A rung whose correlation is below :data:`RUNG_CORRELATION` over at least
:data:`MIN_RUNG_PAIRS` configurations is *distrusted*: its measurements do not say which
configurations are worth more steps, so the driver stops selecting there
(:func:`autopeft.search.promotion.promotions`'s ``distrusted``: every trial finished at it moves
on, which costs no extra steps because a promotion continues its training) and says so in one
``note:`` line. The decision is a function of the stored trials, so a restarted driver makes the
same one; a rung is trusted again if more pairs bring its correlation back over the threshold.

Without ``roots`` the pairs are the promoted configurations, which the rung itself selected: a
biased sample (on a constructed low-correlation problem it read 0.59-0.75 where the rung's
Spearman over random configurations is -0.08). A fixed-rung study therefore judges its rungs on
its calibration configurations only (``roots``: :func:`autopeft.search.budget.calibration`),
which are trained to the top rung whatever they measure; ``rungs: auto`` measures unselected
configurations the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autopeft.results.health import MIN_RUNG_PAIRS, RUNG_CORRELATION, spearman
from autopeft.storage.records import TrialRecord


@dataclass(frozen=True)
class RungCorrelation:
    """One rung's agreement with the top rung."""

    rung: int
    rho: float
    pairs: int

    @property
    def distrusted(self) -> bool:
        """Enough pairs, and a correlation below the threshold."""
        return self.pairs >= MIN_RUNG_PAIRS and self.rho < RUNG_CORRELATION


def rung_correlations(
    records: Sequence[TrialRecord],
    metric: str,
    rungs: int,
    roots: frozenset[int] | None = None,
) -> list[RungCorrelation]:
    """Each rung below the top (``rungs``: how many there are) and its correlation with the
    top rung on ``metric``; rungs with fewer than two pairs are left out. ``roots``: only the
    promotion chains that start at these trial numbers (None: every chain)."""
    by_number = {r.number: r for r in records}
    chains = None if roots is None else {r.number for r in records if _root(by_number, r) in roots}
    top = rungs - 1
    pairs: dict[int, list[tuple[float, float]]] = {k: [] for k in range(top)}
    for r in records:
        if r.rung != top or metric not in r.values or r.interrupted:
            continue
        if chains is not None and r.number not in chains:
            continue
        source = by_number.get(r.promoted_from) if r.promoted_from is not None else None
        while source is not None:
            if source.rung is not None and metric in source.values:
                pairs[source.rung].append((source.values[metric], r.values[metric]))
            nxt = source.promoted_from
            source = by_number.get(nxt) if nxt is not None else None
    return [
        RungCorrelation(k, spearman([a for a, _ in p], [b for _, b in p]), len(p))
        for k, p in pairs.items()
        if len(p) >= 2
    ]


def distrusted_rungs(
    records: Sequence[TrialRecord],
    metric: str,
    rungs: int,
    roots: frozenset[int] | None = None,
) -> frozenset[int]:
    """The rungs whose correlation with the top rung is too low to select on (``roots``: as
    :func:`rung_correlations`)."""
    correlations = rung_correlations(records, metric, rungs, roots)
    return frozenset(c.rung for c in correlations if c.distrusted)


def _root(by_number: dict[int, TrialRecord], record: TrialRecord) -> int:
    while record.promoted_from is not None and record.promoted_from in by_number:
        record = by_number[record.promoted_from]
    return record.number


def learning_curve(records: Sequence[TrialRecord], number: int, metric: str) -> list[float]:
    """Trial ``number``'s ``metric`` at each rung it reached, lowest first (its promotion
    chain)."""
    by_number = {r.number: r for r in records}
    out: list[float] = []
    record = by_number.get(number)
    while record is not None:
        if metric in record.values:
            out.append(record.values[metric])
        nxt = record.promoted_from
        record = by_number.get(nxt) if nxt is not None else None
    return out[::-1]
