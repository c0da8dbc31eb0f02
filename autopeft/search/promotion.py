"""Asynchronous multi-objective successive halving: which trials move up a rung.

A multi-fidelity study trains every new configuration for the lowest rung's steps first. A
trial at rung ``k`` is promoted (its configuration trained again, from scratch, for rung
``k + 1``'s steps) once it is among the best ``floor(m / reduction_factor)`` of the ``m``
finished trials at rung ``k``: ASHA's rule (Li et al., 2020), with "best" the order of
non-dominated sorting and crowding distance (NSGA-II's; Syne Tune's MOASHA ranks the same way),
so no weighting of the objectives is needed and the order is the same under any monotone
rescaling of an objective up to the crowding tie-break. Failed trials count in ``m`` and rank
last. Promotions are asynchronous: they are decided whenever a worker is free, never waiting
for a rung to fill, so workers never idle.

Plain ASHA promotes every trial that is in the top fraction when it is looked at; under a
sampler that keeps improving most new trials are, so a rung can end with far more than
``1 / reduction_factor`` of its trials promoted and the search spends more steps than
``n_trials`` and the rungs suggest (measured on the synthetic benchmark, 135 configurations,
4 rungs, factor 3: 1.4-3.2 times the expected steps under ``mobo``). ``cap=True`` (the spec's
``fidelity.promotion: quota``) never lets a rung have more than ``floor(m / reduction_factor)``
trials promoted, so the steps are what the schedule promises, at the price of fewer
top-rung trials for the front.

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

from autopeft.core.objectives import Objective
from autopeft.core.pareto import nondominated_ranks


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
    """
    out: list[list[int]] = []
    moving_up = False  # a trial runs at, or is being promoted into, a rung <= the current one
    for rung in range(rungs - 1):
        here = [e for e in entries if e.rung == rung]
        moving_up = moving_up or any(not e.finished for e in here)
        chosen = _best(here, objectives, reduction_factor, draining and not moving_up, cap)
        out.append(chosen)
        moving_up = moving_up or bool(chosen)
    return [number for chosen in reversed(out) for number in chosen]


def _best(
    entries: Sequence[RungEntry],
    objectives: Sequence[Objective],
    reduction_factor: float,
    settled: bool,
    cap: bool,
) -> list[int]:
    """Numbers of the not-yet-promoted complete trials among the best of one rung."""
    finished = [e for e in entries if e.finished]
    quota = math.floor(len(finished) / reduction_factor + 1e-9)
    complete = [e for e in finished if e.values]
    if settled and complete:
        quota = max(quota, 1)
    left = quota - sum(1 for e in entries if e.promoted) if cap else quota
    if left <= 0 or not complete:
        return []
    table = [[float(e.values[o.name]) for o in objectives] for e in complete]
    ranks = nondominated_ranks(table, [o.direction for o in objectives])
    order = sorted(
        range(len(complete)), key=lambda i: (ranks[i][0], -ranks[i][1], complete[i].number)
    )
    return [complete[i].number for i in order[:quota] if not complete[i].promoted][:left]
