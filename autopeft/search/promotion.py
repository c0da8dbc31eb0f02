"""Asynchronous multi-objective successive halving: which trials move up a rung.

A multi-fidelity study trains every new configuration for the lowest rung's steps first. A
trial at rung ``k`` is promoted (its training continued from its checkpoint up to rung
``k + 1``'s steps: :mod:`autopeft.trial.continuation`) once it is among the best
``floor(m / reduction_factor)`` of the ``m`` finished trials at rung ``k``: ASHA's rule (Li et
al., 2020). Failed trials count in ``m`` and rank last. Promotions are asynchronous: they are
decided whenever a worker is free, never waiting for a rung to fill, so workers never idle.

**"Best"** (``order``, the spec's ``fidelity.promotion_order``):

* ``crowding`` (the default): non-dominated sorting on all objectives, NSGA-II's crowding
  distance as tie-break (Syne Tune's MOASHA ranks the same way), so no weights are needed and
  a change of units changes nothing up to the tie-break. A front's extremes (infinite crowding)
  go first, the cheapest configuration included, whatever its metric.
* ``metric`` (promote on what the rung measures): a rung measures the objectives that depend on
  training (the metric, ``train_seconds``); the cost objectives (:data:`STEP_INDEPENDENT`:
  ``trainable_params``, ``peak_memory_mb``) are already what they will be at the top rung.
  Non-dominated sorting in which ``a`` dominates ``b`` when it is at least as good on every
  training objective and better on one, and at most :data:`COST_TOLERANCE` (1) times as costly
  on every cost objective; within a front by the training objectives, then trial number. A new
  smallest configuration with a poor metric is on the front but ranks after every front member
  that measured better, so it moves up only once the rung's quota reaches it.

Measured (``bench/fidelity.py --rule``, ``bench/results/fidelity_synthetic_2026-12-07.txt``):
at equal training steps ``crowding`` had the higher hypervolume on 11 of the 16 synthetic
classes (3 seeds, random sampler through the rungs) and on the one ``mobo`` comparison run, so
it stays the default: promoting the cheap end of the front pays on these problems. A cost
tolerance of 2 lost on all 16 classes.

Plain ASHA promotes every trial that is in the top fraction when it is looked at; under a
sampler that keeps improving most new trials are, so a rung can end with far more than
``1 / reduction_factor`` of its trials promoted and the search spends more steps than
``n_trials`` and the rungs suggest (measured on the synthetic benchmark, 135 configurations,
4 rungs, factor 3: 1.4-3.2 times the expected steps under ``mobo``). ``cap=True`` (the spec's
``fidelity.promotion: quota``) never lets a rung have more than ``floor(m / reduction_factor)``
trials promoted, so the steps are what the schedule promises, at the price of fewer
top-rung trials for the front. Nothing overrides the cap: a rung that selects nothing
(``distrusted``: its ranking is not trusted, or ``rungs: auto`` has not measured it yet)
promotes every complete trial without it, but under it only up to its quota, in trial order
(not by its rank, which is what is not trusted); and fixed rungs do not calibrate under it
(:mod:`autopeft.search.budget`). ``fidelity.budget_steps`` (:mod:`autopeft.search.budget`) bounds
the steps under either rule: the driver starts nothing the budget cannot pay for.

Once no new configuration will be started (the study's trial budget is spent), a rung whose
trials have all finished, with nothing running or being promoted below it, promotes at least
its best trial, so the top rung is reached and the study ends with a front.

The rule is a function of the stored trials alone (which trial is at which rung, finished or
running, its values, whether it has been promoted), so a driver that restarts decides exactly
what an uninterrupted one would have decided next, and a trial is promoted once: a promotion is
the new trial at the next rung that names its source (``promoted_from``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from autopeft.core.objectives import PARAMS_OBJECTIVE, Objective
from autopeft.core.pareto import nondominated_ranks

#: Objectives that do not depend on how long a trial trains: known exactly at any rung.
STEP_INDEPENDENT = frozenset({PARAMS_OBJECTIVE, "peak_memory_mb"})
#: A better-measuring trial dominates a cheaper one unless it costs more than this many times.
COST_TOLERANCE = 1.0


@dataclass(frozen=True)
class RungEntry:
    """One trial as the promotion rule sees it.

    Attributes:
        number: The trial number.
        rung: Its rung index (0 = the lowest).
        finished: It has finished (complete or failed); False while it runs.
        values: Objective name -> value when it completed; empty when it failed or runs.
        promoted: A trial at the next rung has been started from it.
    """

    number: int
    rung: int
    finished: bool
    values: dict[str, float] = field(default_factory=dict)
    promoted: bool = False


def promotions(
    entries: Sequence[RungEntry],
    objectives: Sequence[Objective],
    rungs: int,
    reduction_factor: float,
    *,
    draining: bool = False,
    cap: bool = False,
    distrusted: frozenset[int] = frozenset(),
    order: str = "crowding",
) -> list[int]:
    """Trial numbers to promote now, highest rung first, best first within a rung.

    Args:
        entries: Every trial of the study that counts (interrupted ones left out: their
            re-runs stand for them).
        objectives: The study's objectives (names and directions).
        rungs: Number of rungs; trials at the top rung are never promoted.
        reduction_factor: Keep the best ``1 / reduction_factor`` of each rung (> 1).
        draining: No new configuration will be started; a settled rung then promotes at
            least one trial (see the module docstring).
        cap: At most ``floor(m / reduction_factor)`` promoted per rung (see the module
            docstring); plain ASHA without it.
        distrusted: Rungs that do not rank configurations as the top rung does
            (the driver measures them): no selection there, every complete trial moves up
            (with ``cap``: up to the rung's quota, in trial order).
        order: ``crowding`` or ``metric`` (see the module docstring).
    """
    out: list[list[int]] = []
    moving_up = False  # a trial runs at, or is being promoted into, a rung <= the current one
    for rung in range(rungs - 1):
        here = [e for e in entries if e.rung == rung]
        moving_up = moving_up or any(not e.finished for e in here)
        settled = draining and not moving_up
        if rung in distrusted and not cap:
            chosen = [e.number for e in here if e.finished and e.values and not e.promoted]
        else:
            by_rank = rung not in distrusted
            chosen = _best(here, objectives, reduction_factor, settled, cap, order, by_rank)
        out.append(chosen)
        moving_up = moving_up or bool(chosen)
    return [number for chosen in reversed(out) for number in chosen]


def _best(
    entries: Sequence[RungEntry],
    objectives: Sequence[Objective],
    reduction_factor: float,
    settled: bool,
    cap: bool,
    order: str = "crowding",
    by_rank: bool = True,
) -> list[int]:
    """Numbers of the not-yet-promoted complete trials among the best of one rung
    (``by_rank`` False: the first by trial number, up to what the quota leaves)."""
    finished = [e for e in entries if e.finished]
    quota = math.floor(len(finished) / reduction_factor + 1e-9)
    complete = [e for e in finished if e.values]
    if settled and complete:
        quota = max(quota, 1)
    left = quota - sum(1 for e in entries if e.promoted) if cap else quota
    if left <= 0 or not complete:
        return []
    if not by_rank:
        return sorted(e.number for e in complete if not e.promoted)[:left]
    ranked = (
        rung_order(complete, objectives) if order == "metric" else _crowded(complete, objectives)
    )
    return [complete[i].number for i in ranked[:quota] if not complete[i].promoted][:left]


def _crowded(entries: Sequence[RungEntry], objectives: Sequence[Objective]) -> list[int]:
    """Indices of complete ``entries``, best first: non-dominated sorting, crowding tie-break."""
    table = [[float(e.values[o.name]) for o in objectives] for e in entries]
    ranks = nondominated_ranks(table, [o.direction for o in objectives])
    return sorted(range(len(entries)), key=lambda i: (ranks[i][0], -ranks[i][1], entries[i].number))


def rung_order(entries: Sequence[RungEntry], objectives: Sequence[Objective]) -> list[int]:
    """Indices of complete ``entries`` (one rung's), best first under ``order: metric``."""
    trained = [o for o in objectives if o.name not in STEP_INDEPENDENT]
    costs = [o for o in objectives if o.name in STEP_INDEPENDENT]
    numbers = [e.number for e in entries]
    if not trained:
        table = [[float(e.values[o.name]) for o in objectives] for e in entries]
        plain = nondominated_ranks(table, [o.direction for o in objectives])
        return sorted(range(len(entries)), key=lambda i: (plain[i][0], -plain[i][1], numbers[i]))
    sign = {"maximize": 1.0, "minimize": -1.0}
    # larger is better in every column of ``good``; smaller is better in every column of ``cost``
    good = np.array(
        [[sign[o.direction] * float(e.values[o.name]) for o in trained] for e in entries]
    ).reshape(len(entries), len(trained))
    cost = np.array(
        [[-sign[o.direction] * float(e.values[o.name]) for o in costs] for e in entries]
    ).reshape(len(entries), len(costs))
    good = np.nan_to_num(good, nan=-np.inf)
    ge = (good[:, None, :] >= good[None, :, :]).all(axis=-1)
    gt = (good[:, None, :] > good[None, :, :]).any(axis=-1)
    limit = np.where(cost >= 0, cost * COST_TOLERANCE, cost / COST_TOLERANCE)
    cheap = (cost[:, None, :] <= limit[None, :, :]).all(axis=-1)
    beats = ge & gt & cheap  # beats[a, b]: a dominates b (acyclic: a's training values are better)
    ranks = _peel(beats)
    return sorted(range(len(entries)), key=lambda i: (ranks[i], *(-good[i]), numbers[i]))


def _peel(beats: np.ndarray) -> list[int]:
    """Front index of each row under the domination matrix ``beats`` (0: dominated by none)."""
    count = beats.sum(axis=0)
    left = np.ones(len(beats), dtype=bool)
    ranks = [0] * len(beats)
    rank = 0
    while left.any():
        front = np.flatnonzero(left & (count == 0))
        for i in front:
            ranks[int(i)] = rank
        left[front] = False
        count = count - beats[front].sum(axis=0)
        rank += 1
    return ranks
