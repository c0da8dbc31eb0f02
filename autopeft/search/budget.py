"""A study's budget in training steps (``fidelity.budget_steps``), and ``rungs: auto``.

**What a trial costs** (:func:`scheduled_steps`, :func:`charged_steps`): the optimizer steps it
trains. A single-fidelity trial: ``max_steps``. A new configuration starting at rung ``b``:
``rungs[b]``. A promotion from rung ``a`` to rung ``b``: ``rungs[b] - rungs[a]`` when it
continues its source's checkpoint (:mod:`autopeft.trial.continuation`), ``rungs[b]`` when it
trains from scratch (no checkpoint, or a method whose configuration depends on the step count).
A finished trial is charged what it reports (``steps - continued_from_step``), a running one (or
a failed one that reported nothing) what it was scheduled. Not charged: interrupted trials
(their re-run is), trials skipped before launch (never trained) and references (as they do not
count against ``n_trials``). The spent steps are therefore a function of the stored trials: a
resumed driver goes on from them.

**When the driver may start a trial** (:class:`StepBudget`), with ``spent`` the steps charged
to finished and running trials:

* a new configuration at rung ``e`` while ``spent + rungs[e] + owed <= budget``, where ``owed``
  (:func:`owed_steps`) is what the promotions the rungs still owe under the schedule would
  cost: at each rung ``k`` below the top, ``m_k / reduction_factor`` of its ``m_k`` trials
  (those expected up from below included) move up, less those already promoted;
* a promotion from rung ``a`` while ``spent + cost + (rungs[top] - rungs[a + 1]) <= budget``:
  only if the steps left would also carry it to the top rung, where its result counts.

So scheduled steps never exceed the budget; a promotion whose checkpoint turns out to be missing
trains from scratch and is charged that when it reports, the one way the charged steps can pass
the budget (by at most one rung's steps per such promotion).

**``rungs: auto``** (:func:`entry_rung`, :func:`unmeasured_rungs`): the rungs are a geometric
ladder below ``max_steps`` (:attr:`autopeft.spec.FidelitySpec.rung_steps`). A rung selects
nothing (every trial finished there moves up, which with continuation costs no extra steps)
until it has :data:`AUTO_MIN_PAIRS` configurations whose top-rung result gives its rank
correlation (:mod:`autopeft.results.rungs`); then it selects if the correlation is at least the
threshold, and if not it is distrusted, as in any multi-fidelity study. The lowest rungs, as
long as each is measured and distrusted, are *dropped*: new configurations start at the first
rung above them, so no steps go on measurements that do not rank configurations. A dropped rung
gets no new pairs, so it stays dropped.

**Calibration of fixed rungs** (``rungs: [12, 25, 50, 100]``; :func:`calibration`): a rung that
judged its correlation only from the configurations it promoted would judge a sample it
selected itself (on a constructed low-correlation problem, ``bench/fidelity_budget.py``'s
``lowcorr``, promoted configurations gave 0.59-0.75 where the rung's true Spearman is -0.08).
So the first :data:`AUTO_MIN_PAIRS` new configurations of the search (by trial number; not
references, not trials skipped before launch, an interrupted one's re-run standing for it) are
trained through to the top rung whatever they measure (their promotions are charged like any
other and pass the same :meth:`StepBudget.admits_promotion`), and the distrusted rungs of a
fixed-rung study are judged on these calibration configurations alone, once every one of them
has reached the top rung or stopped (failed, or its promotion refused by the budget). As with
``rungs: auto``, the lowest rungs that are distrusted are then skipped: new configurations start
at the first rung above them. The calibration configurations are read from the stored trials,
so a resumed study neither repeats nor forgets them.

Calibration is the default promotion rule's (``promotion: asha``) only. ``promotion: quota`` is
an explicit cap on how many of a rung's trials move up, and calibration would exceed it (six
configurations forced to the top where a rung of six may promote two): under it fixed rungs do
not calibrate, and a rung is distrusted, as before calibration existed, on every configuration
that reached the top rung (the promoted, biased sample); a distrusted rung then promotes up to
its quota in trial order instead of by rank (:mod:`autopeft.search.promotion`), and no rung is
skipped. ``rungs: auto`` under ``quota`` measures its rungs the same way: an unmeasured rung
promotes up to its quota in trial order, so its pairs are not selected by its own ranking but
accumulate only as fast as the quota lets configurations through to the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autopeft.search.promotion import RungEntry

if TYPE_CHECKING:
    from autopeft.storage.records import TrialRecord

#: ``rungs: auto``: configurations whose chain reached the top rung before a rung is judged.
AUTO_MIN_PAIRS = 6


def scheduled_steps(rungs: Sequence[int], rung: int | None, continued: bool = True) -> int:
    """Steps a trial at ``rung`` trains (``rung`` None: single fidelity, the top rung's);
    ``continued``: a promotion that continues its source from the rung below."""
    if rung is None:
        return int(rungs[-1])
    below = rungs[rung - 1] if continued and rung > 0 else 0
    return int(rungs[rung] - below)


def charged_steps(record: TrialRecord, rungs: Sequence[int]) -> int:
    """Steps ``record`` is charged against ``budget_steps`` (see the module docstring;
    :meth:`~autopeft.storage.records.TrialRecord.charged_steps`)."""
    return record.charged_steps(rungs)


def owed_steps(
    entries: Sequence[RungEntry], rungs: Sequence[int], reduction_factor: float
) -> float:
    """Expected steps of the promotions the rungs still owe (promotions continue their source):
    at each rung below the top, ``1 / reduction_factor`` of its trials (finished or running,
    plus those expected up from below) less the ones already promoted."""
    coming = 0.0
    owed = 0.0
    for k in range(len(rungs) - 1):
        here = [e for e in entries if e.rung == k]
        promoted = sum(1 for e in here if e.promoted)
        coming = max(0.0, (len(here) + coming) / reduction_factor - promoted)
        owed += coming * (rungs[k + 1] - rungs[k])
    return owed


@dataclass(frozen=True)
class StepBudget:
    """The start rules of a study with ``budget_steps`` (None: no step budget).

    Attributes:
        budget: ``fidelity.budget_steps``, or None.
        rungs: Training steps per rung (one entry: single fidelity).
        reduction_factor: ``fidelity.reduction_factor``.
    """

    budget: int | None
    rungs: tuple[int, ...]
    reduction_factor: float = 3.0

    def admits_new(self, spent: float, entries: Sequence[RungEntry], entry: int = 0) -> bool:
        """Whether a new configuration starting at rung ``entry`` fits (``entries``: the
        trials the promotion rule sees, running ones included)."""
        if self.budget is None:
            return True
        cost = self.rungs[entry] if len(self.rungs) > 1 else self.rungs[-1]
        owed = 0.0
        if len(self.rungs) > 1:
            newcomer = RungEntry(-1, entry, False)
            owed = owed_steps([*entries, newcomer], self.rungs, self.reduction_factor)
        return spent + cost + owed <= self.budget + 1e-9

    def admits_promotion(self, spent: float, source_rung: int, continued: bool = True) -> bool:
        """Whether a promotion from ``source_rung`` fits, with the steps on to the top rung."""
        if self.budget is None:
            return True
        cost = scheduled_steps(self.rungs, source_rung + 1, continued)
        onward = self.rungs[-1] - self.rungs[source_rung + 1]
        return spent + cost + onward <= self.budget + 1e-9


def unmeasured_rungs(pairs: dict[int, int], rungs: int) -> frozenset[int]:
    """``rungs: auto``: rungs below the top with fewer than :data:`AUTO_MIN_PAIRS` pairs
    (``pairs``: rung -> configurations measured there and at the top)."""
    return frozenset(k for k in range(rungs - 1) if pairs.get(k, 0) < AUTO_MIN_PAIRS)


def entry_rung(
    pairs: dict[int, int], distrusted: frozenset[int], rungs: int, min_pairs: int = AUTO_MIN_PAIRS
) -> int:
    """The rung new configurations start at: above the lowest rungs that are measured
    (``min_pairs`` pairs: :data:`AUTO_MIN_PAIRS` under ``rungs: auto``) and distrusted (the top
    rung itself when every rung below is)."""
    entry = 0
    while entry < rungs - 1 and entry in distrusted and pairs.get(entry, 0) >= min_pairs:
        entry += 1
    return entry


@dataclass(frozen=True)
class Calibration:
    """A fixed-rung study's calibration configurations (see the module docstring).

    Attributes:
        roots: Trial numbers of the calibration configurations at their entry rung.
        pending: Calibration trials finished below the top rung with results and not yet
            promoted: promoted whatever their rank, highest rung first.
        done: Every calibration configuration has been started and none runs or waits for a
            promotion: the rungs can be judged on them.
    """

    roots: frozenset[int]
    pending: tuple[int, ...]
    done: bool


def chain_root(by_number: dict[int, TrialRecord], record: TrialRecord) -> int:
    """The number of the new-configuration trial ``record``'s promotion chain started from."""
    while record.promoted_from is not None and record.promoted_from in by_number:
        record = by_number[record.promoted_from]
    return record.number


def calibration(records: Sequence[TrialRecord], rungs: int, k: int = AUTO_MIN_PAIRS) -> Calibration:
    """The calibration state of a fixed-rung study with ``rungs`` rungs, from its trials."""
    by_number = {r.number: r for r in records}
    new = sorted(r.number for r in records if r.searched_new and r.ranked_for_promotion)
    roots = frozenset(new[:k])
    promoted = {r.promoted_from for r in records if r.promoted_from is not None}
    pending: list[tuple[int, int]] = []
    running = False
    for r in records:
        if not r.ranked_for_promotion or chain_root(by_number, r) not in roots:
            continue
        if not r.state.is_finished():
            running = True
        elif r.rung_values and (r.rung or 0) < rungs - 1 and r.number not in promoted:
            pending.append((-(r.rung or 0), r.number))
    done = len(roots) == k and not running and not pending
    return Calibration(roots, tuple(n for _, n in sorted(pending)), done)


__all__ = [
    "AUTO_MIN_PAIRS",
    "Calibration",
    "StepBudget",
    "calibration",
    "chain_root",
    "charged_steps",
    "entry_rung",
    "owed_steps",
    "scheduled_steps",
    "unmeasured_rungs",
]
