"""The driver's in-memory copy of its study: what the loop asks for on every poll, kept at hand.

The driver is the only writer to a study's database, so after loading the records once it can
keep them up to date by re-reading just the trial it has written. That keeps the driver's cost
per trial flat as a study grows (``bench/driver.py`` measures it).

The mirror is a cache and nothing more (as Optuna's ``_CachedStorage`` is over its storage):
every rule it applies is asked of the record (:class:`~autopeft.storage.records.TrialRecord`:
what counts, what failed, what samplers and the promotion rule see), of ``core`` (which trials
have a result, :class:`~autopeft.core.hypervolume.HypervolumeCurve`'s fold, the objectives'
best) or of :class:`~autopeft.run.progress.StudyTally`, which :func:`~autopeft.run.progress.
study_status` keeps the same way from the whole study.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from typing import Any

from autopeft.core.hypervolume import (
    FRAME_TRIALS,
    HypervolumeCurve,
    hypervolume_curve,
    hypervolume_updates,
    study_frame,
)
from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.run.progress import StudyStatus, StudyTally
from autopeft.search.budget import charged_steps
from autopeft.search.promotion import RungEntry, promotions
from autopeft.search.samplers import Observation
from autopeft.storage.records import TrialRecord
from autopeft.storage.store import Store


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
        self._tally = StudyTally(objectives)  # finished, failed, best values
        self._records: dict[int, TrialRecord] = {}
        self._history: dict[int, Observation] = {}
        self._running: set[int] = set()
        self._complete: list[int] = []  # numbers of complete trials, ascending
        self._curve: HypervolumeCurve | None = None
        self._hypervolume: float | None = None
        self._charged: dict[int, int] = {}  # trial number -> steps charged to budget_steps
        for record in store.records(name):
            self._put(record)
        self._retries = store.retry_queue(name)

    @property
    def finished(self) -> int:
        """Trials that count against the budget (:attr:`TrialRecord.counts_for_budget`)."""
        return self._tally.finished

    @property
    def failed(self) -> int:
        """Those of them that failed (:attr:`TrialRecord.counts_as_failed`)."""
        return self._tally.failed

    def records(self) -> list[TrialRecord]:
        """Every trial, by number (what :meth:`Store.records` returns)."""
        return list(self._records.values())

    def history(
        self, fidelity: bool = True, hidden: frozenset[int] = frozenset()
    ) -> list[Observation]:
        """What the sampler sees: complete, failed and running trials, not interrupted ones.

        In a multi-fidelity study, every rung's trials with their fidelity, except the results
        at the rungs in ``hidden`` (measured to rank configurations unlike the top rung:
        :mod:`autopeft.results.rungs`), which would only mislead the surrogate; failures and
        running trials there are still shown. With ``fidelity`` False (a sampler that does not
        model it) the lowest rung's only, each configuration once.
        """
        if len(self.rungs) < 2:
            return list(self._history.values())
        if fidelity:
            return [
                h
                for n, h in self._history.items()
                if not (h.state == TrialState.COMPLETE and self._records[n].rung in hidden)
            ]
        return [h for n, h in self._history.items() if self._records[n].new_configuration]

    @property
    def steps_spent(self) -> int:
        """Training steps charged to finished and running trials
        (:func:`~autopeft.search.budget.charged_steps`): what ``budget_steps`` counts."""
        return sum(self._charged.values())

    def rung_entries(self) -> list[RungEntry]:
        """Every trial the promotion rule sees, as it sees them."""
        promoted = {r.promoted_from for r in self._records.values() if r.promoted_from is not None}
        return [
            RungEntry(
                r.number, r.rung or 0, r.state.is_finished(), r.rung_values, r.number in promoted
            )
            for r in self._records.values()
            if r.ranked_for_promotion
        ]

    def configurations_started(self) -> int:
        """Configurations finished or running at the lowest rung (multi-fidelity studies);
        what the trial budget counts."""
        return self.finished + sum(1 for n in self._running if self._records[n].searched_new)

    def promotions(
        self,
        draining: bool,
        reduction_factor: float,
        cap: bool = False,
        distrusted: frozenset[int] = frozenset(),
        order: str = "crowding",
    ) -> list[int]:
        """Trials to promote now, highest rung first (:func:`~autopeft.search.promotion.
        promotions` of the stored trials); ``draining``: no new configuration will start;
        ``cap``: at most a rung's quota promoted; ``distrusted``: rungs that select nothing."""
        if len(self.rungs) < 2:
            return []
        key = (self._version, draining, reduction_factor, cap, distrusted, order)
        if self._promotions is not None and self._promotions[0] == key:
            return list(self._promotions[1])
        chosen = promotions(
            self.rung_entries(),
            self.objectives,
            len(self.rungs),
            reduction_factor,
            draining=draining,
            cap=cap,
            distrusted=distrusted,
            order=order,
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

    @property
    def retries_waiting(self) -> bool:
        """Whether an interrupted trial may be waiting for its re-run."""
        return bool(self._retries)

    def retried(self, number: int) -> None:
        """Interrupted trial ``number`` has been started again (under a new number)."""
        if number in self._retries:
            self._retries.remove(number)

    def set_hypervolumes(self, values: dict[int, float]) -> None:
        """What :meth:`Store.set_hypervolumes` has just stored."""
        for number, value in values.items():
            self._records[number] = replace(self._records[number], hypervolume=value)

    def status(
        self,
        target: int | None,
        running: int,
        elapsed: float,
        done_before: int,
        budget_steps: int | None = None,
    ) -> StudyStatus:
        """:func:`~autopeft.run.progress.study_status` of the records, from the tally kept here;
        the hypervolume is folded from the complete trials once when a run starts, and kept by
        :meth:`hypervolume_updates` after that."""
        if self._complete and self._hypervolume is None:
            complete = [self._records[n] for n in self._complete]
            self._hypervolume = hypervolume_curve(self.objectives, complete)[-1]
        return self._tally.status(
            self._hypervolume,
            target=target,
            running=running,
            elapsed=elapsed,
            done_before=done_before,
            steps=None if budget_steps is None else (self.steps_spent, budget_steps),
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
            frame = study_frame(self.objectives, first)
            if self._curve is None or self._curve.frame != frame:
                self._curve = HypervolumeCurve(frame)
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
        self._tally.swap(old, record)
        self._charged[n] = charged_steps(record, self.rungs or (0,))
        if record.seen_by_samplers:
            self._history[n] = Observation(
                record.params,
                record.sampler_state,
                record.values,
                record.infeasible,
                record.fidelity(self.rungs),
            )
        else:
            self._history.pop(n, None)
        if record.state == TrialState.RUNNING:
            self._running.add(n)
        else:
            self._running.discard(n)
        if record.searched_result and not (old is not None and old.searched_result):
            bisect.insort(self._complete, n)
            self._hypervolume = None
            if self._curve is not None:
                self._curve.add(n, record.values)
