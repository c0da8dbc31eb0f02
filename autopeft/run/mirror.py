"""The driver's in-memory copy of its study: what the loop asks for on every poll, kept at hand.

The driver is the only writer to a study's database, so after loading the records once it can
keep them up to date by re-reading just the trial it has written. That keeps the driver's cost
per trial flat as a study grows (``bench/driver.py`` measures it).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from autopeft.core.hypervolume import FRAME_TRIALS, Frame, hypervolume_updates
from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.run.progress import StudyStatus, study_status
from autopeft.search.promotion import RungEntry, promotions
from autopeft.search.samplers import Observation
from autopeft.storage.records import TrialRecord
from autopeft.storage.store import Store

if TYPE_CHECKING:
    import torch

#: The states a sampler's history holds (interrupted trials excepted); a PRUNED trial (a
#: multi-fidelity trial finished below the top rung) is shown to samplers as COMPLETE.
_SEEN_BY_SAMPLERS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


class TrialMirror:
    """The driver's copy of one study's records, by trial number.

    Loaded from the store once; after each of its own writes the driver re-reads the one
    trial it wrote (:meth:`refresh`), so the mirror equals :meth:`Store.records` as long as the
    driver is the only writer. It keeps at hand what the loop asks for on every poll: the
    finished count, the sampler's history, whether interrupted trials wait for a re-run, the
    hypervolume curve (extended trial by trial once its frame is fixed) and the status line.

    In a multi-fidelity study (``rungs``: training steps per rung, two or more) ``finished``
    counts configurations (trials finished at the lowest rung; promotions are not new trials of
    the budget), :meth:`history` gives each trial's fidelity, and :meth:`promotions` applies
    the promotion rule (:mod:`autopeft.search.promotion`) to the records.
    """

    def __init__(
        self,
        store: Store,
        name: str,
        objectives: list[Objective],
        budget: int,
        rungs: tuple[int, ...] = (),
    ) -> None:
        self.store, self.name, self.objectives, self.budget = store, name, objectives, budget
        self.rungs = rungs
        self._version = 0  # bumped by every change of a record (keys the promotions' cache)
        self._promotions: tuple[tuple[Any, ...], list[int]] | None = None
        self.finished, self.failed = 0, 0
        self._best: dict[str, float] = {}  # best value of each objective over complete trials
        self._records: dict[int, TrialRecord] = {}
        self._history: dict[int, Observation] = {}
        self._running: set[int] = set()
        self._complete: list[int] = []  # numbers of complete trials, ascending
        self._curve: _Curve | None = None
        self._hypervolume: float | None = None
        for record in store.records(name):
            self._put(record)
        self._retries = store.retry_queue(name)

    def records(self) -> list[TrialRecord]:
        """Every trial, by number (what :meth:`Store.records` returns)."""
        return list(self._records.values())

    def history(self, fidelity: bool = True) -> list[Observation]:
        """What the sampler sees: complete, failed and running trials, not interrupted ones.

        In a multi-fidelity study, every rung's trials with their fidelity; with ``fidelity``
        False (a sampler that does not model it) the lowest rung's only, each configuration
        once.
        """
        if fidelity or len(self.rungs) < 2:
            return list(self._history.values())
        return [h for n, h in self._history.items() if not self._records[n].rung]

    def configurations_started(self) -> int:
        """Configurations finished or running at the lowest rung (multi-fidelity studies);
        what the trial budget counts."""
        return self.finished + sum(1 for n in self._running if not self._records[n].rung)

    def promotions(
        self,
        draining: bool,
        reduction_factor: float,
        cap: bool = False,
        distrusted: frozenset[int] = frozenset(),
    ) -> list[int]:
        """Trials to promote now, highest rung first (:func:`~autopeft.search.promotion.
        promotions` of the stored trials); ``draining``: no new configuration will start;
        ``cap``: at most a rung's quota promoted; ``distrusted``: rungs that select nothing."""
        if len(self.rungs) < 2:
            return []
        key = (self._version, draining, reduction_factor, cap, distrusted)
        if self._promotions is not None and self._promotions[0] == key:
            return list(self._promotions[1])
        promoted = {r.promoted_from for r in self._records.values() if r.promoted_from is not None}
        entries = [
            RungEntry(
                r.number,
                r.rung or 0,
                r.state.is_finished(),
                dict(r.values) if r.state in (TrialState.COMPLETE, TrialState.PRUNED) else {},
                r.number in promoted,
            )
            for r in self._records.values()
            if not r.interrupted and not r.metrics.get("skipped") and r.state in _SEEN_BY_SAMPLERS
        ]
        chosen = promotions(
            entries,
            self.objectives,
            len(self.rungs),
            reduction_factor,
            draining=draining,
            cap=cap,
            distrusted=distrusted,
        )
        self._promotions = (key, chosen)
        return list(chosen)

    def record(self, number: int) -> TrialRecord:
        """Trial ``number`` as last read."""
        return self._records[number]

    def refresh(self, number: int) -> None:
        """Re-read trial ``number`` from the store, after the driver wrote it."""
        old = self._records.get(number)
        record = self.store.record(self.name, number, self.objectives)
        self._put(record)
        if record.interrupted and not (old is not None and old.interrupted):
            bisect.insort(self._retries, number)

    def next_retry(self) -> tuple[int, dict[str, Any]] | None:
        """:meth:`Store.next_retry`, asked only when an interrupted trial waits for a re-run."""
        retry = self.store.next_retry(self.name) if self._retries else None
        if retry is None:
            self._retries.clear()
        return retry

    def retried(self, number: int) -> None:
        """Interrupted trial ``number`` has been started again (under a new number)."""
        if number in self._retries:
            self._retries.remove(number)

    def set_hypervolumes(self, values: dict[int, float]) -> None:
        """What :meth:`Store.set_hypervolumes` has just stored."""
        for number, value in values.items():
            self._records[number] = replace(self._records[number], hypervolume=value)

    def status(self, target: int, running: int, elapsed: float, done_before: int) -> StudyStatus:
        """:func:`~autopeft.run.progress.study_status` of the records, from the counts kept here
        (it reads them all once per run, for the hypervolume, if no trial has completed yet)."""
        if self._complete and self._hypervolume is None:
            status = study_status(
                self.records(),
                self.objectives,
                budget=self.budget,
                target=target,
                running=running,
                elapsed=elapsed,
                done_before=done_before,
            )
            self._hypervolume = status.hypervolume
            return status
        return StudyStatus.at(
            self.finished,
            running=running,
            failed=self.failed,
            target=target,
            elapsed=elapsed,
            done_before=done_before,
            best=dict(self._best),
            hypervolume=self._hypervolume,
        )

    def hypervolume_updates(self) -> dict[int, float]:
        """:func:`~autopeft.core.hypervolume.hypervolume_updates` of the records, in a cost
        that does not grow with the study once the frame (the first complete trials) is fixed."""
        if not self._complete:
            return {}
        first = [self._records[n] for n in self._complete[:FRAME_TRIALS]]
        if len(self._complete) <= FRAME_TRIALS:
            self._curve = None
            updates = hypervolume_updates(self.objectives, first, self.budget)
        else:
            frame = Frame.from_observations(self.objectives, first, self.budget)
            if self._curve is None or self._curve.frame != frame:
                self._curve = _Curve(frame)
                for n in self._complete:
                    self._curve.add(n, self._records[n].values)
            settled = min(self._running, default=None)  # below it no trial can still complete
            updates = self._curve.updates(lambda n: self._records[n].hypervolume, settled)
        last = self._complete[-1]
        self._hypervolume = updates.get(last, self._records[last].hypervolume)
        return updates

    def _put(self, record: TrialRecord) -> None:
        n = record.number
        self._version += 1
        old = self._records.get(n)
        self._records[n] = record
        self.finished += record.counts_for_budget - (old is not None and old.counts_for_budget)
        self.failed += _failed(record) - (old is not None and _failed(old))
        if record.state in _SEEN_BY_SAMPLERS and not record.interrupted:
            state = TrialState.COMPLETE if record.state == TrialState.PRUNED else record.state
            fidelity = 1.0
            if record.rung is not None and len(self.rungs) > 1:
                fidelity = self.rungs[min(record.rung, len(self.rungs) - 1)] / self.rungs[-1]
            self._history[n] = Observation(
                record.params, state, record.values, record.infeasible, fidelity
            )
        else:
            self._history.pop(n, None)
        if record.state == TrialState.RUNNING:
            self._running.add(n)
        else:
            self._running.discard(n)
        if _complete(record) and not (old is not None and _complete(old)):
            bisect.insort(self._complete, n)
            self._hypervolume = None
            for o in self.objectives:
                value = record.values[o.name]
                pick = max if o.direction == "maximize" else min
                self._best[o.name] = pick(self._best.get(o.name, value), value)
            if self._curve is not None:
                self._curve.add(n, record.values)


class _Curve:
    """The hypervolume curve of complete trials (by number) in one fixed frame, kept as a fold:
    the front (non-dominated scaled points) after the settled trials is remembered, so a new
    trial costs a front update, plus one hypervolume when the front changes.

    A front holds the points, in trial order, that botorch's ``is_non_dominated`` keeps of all
    points so far (the first of equal points), so the hypervolume of a front equals
    :func:`~autopeft.core.hypervolume.hypervolume` of all those points, bit for bit.
    """

    def __init__(self, frame: Frame) -> None:
        import torch

        self.frame = frame
        self.numbers: list[int] = []
        self.points: list[torch.Tensor] = []
        self.first_new = 0  # points from here on have no hypervolume computed yet
        empty = torch.empty((0, len(frame.directions)), dtype=torch.double)
        self.base: tuple[int, torch.Tensor, float] = (0, empty, 0.0)  # front after points[:i]

    def add(self, number: int, values: dict[str, float]) -> None:
        import torch

        i = bisect.bisect(self.numbers, number)
        self.numbers.insert(i, number)
        self.points.insert(i, torch.tensor(self.frame.scaled(values), dtype=torch.double))
        self.first_new = min(self.first_new, i)
        if i < self.base[0]:  # a trial below the settled ones: fold again from the start
            self.base = (0, self.base[1][:0], 0.0)

    def updates(
        self, stored: Callable[[int], float | None], settled: int | None
    ) -> dict[int, float]:
        """Number -> hypervolume for the trials whose ``stored`` value differs from the curve;
        the front is remembered up to the trials numbered below ``settled`` (all if None)."""
        keep = len(self.numbers) if settled is None else bisect.bisect_left(self.numbers, settled)
        start, front, hv = self.base
        out = {}
        for i in range(start, len(self.numbers)):
            if i == keep:
                self.base = (i, front, hv)
            front, hv = _fold(front, hv, self.points[i])
            if i >= self.first_new:
                old = stored(self.numbers[i])
                if old is None or abs(old - hv) > 1e-12:
                    out[self.numbers[i]] = hv
        if keep == len(self.numbers):
            self.base = (keep, front, hv)
        self.first_new = len(self.numbers)
        return out


def _fold(front: torch.Tensor, hv: float, point: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The front and its hypervolume once ``point`` is in."""
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import (
        DominatedPartitioning,
    )
    from botorch.utils.multi_objective.pareto import is_non_dominated

    candidates = torch.cat([front, point[None]])
    kept = is_non_dominated(candidates)
    if not kept[-1]:  # dominated by (or equal to) a point of the front: nothing changes
        return front, hv
    front = candidates[kept]
    ref = torch.zeros(front.shape[-1], dtype=torch.double)
    return front, float(DominatedPartitioning(ref_point=ref, Y=front).compute_hypervolume())


def _failed(record: TrialRecord) -> bool:
    return record.state == TrialState.FAIL and not record.interrupted and not record.rung


def _complete(record: TrialRecord) -> bool:
    return record.state == TrialState.COMPLETE and bool(record.values)
