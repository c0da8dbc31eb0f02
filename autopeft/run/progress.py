"""Progress reporting for studies: a rich live view, or nothing (library use, tests).

The live view shows trials done / running / failed, elapsed time and an estimate of the time
left, the best value of each objective so far and the hypervolume so far (the rule of
:mod:`autopeft.core.hypervolume`), plus one step bar per running trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopeft.core.objectives import Objective
    from autopeft.storage.records import TrialRecord


@dataclass(frozen=True)
class StudyStatus:
    """A snapshot of a running study.

    Attributes:
        done: Finished trials (complete or failed; interrupted ones do not count).
        running: Trials running or queued on the executor.
        failed: Finished trials that failed.
        target: Finished trials wanted (None: no trial limit, ``budget_steps`` ends the study).
        elapsed: Seconds since this run started.
        eta: Estimated seconds left (None before the first trial of this run finishes).
        best: Best value of each objective over complete trials.
        hypervolume: Normalised hypervolume of the complete trials (None when there are none).
        steps: (training steps spent, ``budget_steps``) of a study with a step budget, else None.
    """

    done: int
    running: int
    failed: int
    target: int | None
    elapsed: float
    eta: float | None
    best: dict[str, float] = field(default_factory=dict)
    hypervolume: float | None = None
    steps: tuple[int, int] | None = None

    @classmethod
    def at(
        cls,
        finished: int,
        *,
        running: int,
        failed: int,
        target: int | None,
        elapsed: float,
        done_before: int,
        best: dict[str, float],
        hypervolume: float | None,
        steps: tuple[int, int] | None = None,
    ) -> StudyStatus:
        """The status with ``finished`` trials done; the ETA extrapolates this run's pace
        (``done_before`` trials were done when it started, ``elapsed`` seconds ago); none
        without a trial target."""
        done = finished if target is None else min(finished, target)
        eta = None
        if target is not None and done > done_before:
            eta = elapsed / (done - done_before) * max(0, target - done)
        return cls(done, running, failed, target, elapsed, eta, best, hypervolume, steps)

    def line(self) -> str:
        """One line: ``7/12 done, 2 running, 1 failed, 850/4,000 steps | 3m10s, ~2m left |
        best ... | HV ...`` (the steps only with ``budget_steps``)."""
        done = f"{self.done}" if self.target is None else f"{self.done}/{self.target}"
        head = f"{done} done, {self.running} running, {self.failed} failed"
        if self.steps is not None:
            head += f", {self.steps[0]:,}/{self.steps[1]:,} steps"
        clock = _duration(self.elapsed) + (
            "" if self.eta is None else f", ~{_duration(self.eta)} left"
        )
        parts = [head, clock]
        if self.best:
            from autopeft.results import format_value

            parts.append(
                "best " + ", ".join(f"{k} {format_value(k, v)}" for k, v in self.best.items())
            )
        if self.hypervolume is not None:
            parts.append(f"HV {self.hypervolume:.4f}")
        return " | ".join(parts)


@dataclass
class StudyTally:
    """The counts and best values a status line shows, kept record by record.

    Every rule is the record's (:attr:`~autopeft.storage.records.TrialRecord.
    counts_for_budget`, :attr:`~autopeft.storage.records.TrialRecord.counts_as_failed`,
    :func:`~autopeft.core.states.has_result`) or the objective's (:meth:`~autopeft.core.
    objectives.Objective.best`); :func:`study_status` and the driver's mirror both keep one.
    A record only ever moves forward (RUNNING to finished), so a best value is never undone.
    """

    objectives: Sequence[Objective]
    finished: int = 0
    failed: int = 0
    best: dict[str, float] = field(default_factory=dict)

    def swap(self, old: TrialRecord | None, new: TrialRecord) -> None:
        """Trial ``new.number`` now reads ``new`` (``old``: as it read before, if at all)."""
        self.finished += new.counts_for_budget - (old is not None and old.counts_for_budget)
        self.failed += new.counts_as_failed - (old is not None and old.counts_as_failed)
        if new.searched_result and not (old is not None and old.searched_result):
            for o in self.objectives:
                value = new.values[o.name]
                self.best[o.name] = o.best((self.best.get(o.name, value), value))

    def status(
        self, hypervolume: float | None, *, target: int | None, running: int, elapsed: float,
        done_before: int, steps: tuple[int, int] | None = None,
    ) -> StudyStatus:  # fmt: skip
        """The status line of these counts (see :meth:`StudyStatus.at`)."""
        return StudyStatus.at(
            self.finished,
            running=running,
            failed=self.failed,
            target=target,
            elapsed=elapsed,
            done_before=done_before,
            best=dict(self.best),
            hypervolume=hypervolume,
            steps=steps,
        )


def study_status(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    *,
    budget: int,
    target: int,
    running: int,
    elapsed: float,
    done_before: int,
) -> StudyStatus:
    """Summarise ``records``; the ETA extrapolates this run's pace. The hypervolume is the
    last point of the study's curve (:func:`~autopeft.core.hypervolume.hypervolume_curve`)."""
    from autopeft.core.hypervolume import hypervolume_curve

    tally = StudyTally(objectives)
    for record in records:
        tally.swap(None, record)
    curve = hypervolume_curve(objectives, records, budget)
    hypervolume = curve[-1] if curve else None
    return tally.status(
        hypervolume, target=target, running=running, elapsed=elapsed, done_before=done_before
    )


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Reporter:
    """Silent base reporter; the study loop calls these hooks.

    ``wants_status``: whether the driver should compute a :class:`StudyStatus` (hypervolume
    included) after every trial and pass it to :meth:`status`.
    """

    wants_status = False

    def study_started(self, name: str, done: int, total: int | None) -> None: ...
    def trial_started(self, number: int, summary: str, steps: int) -> None: ...
    def step(self, number: int, step: int, total: int) -> None: ...
    def trial_finished(self, number: int, line: str, done: int) -> None: ...
    def status(self, status: StudyStatus) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class RichReporter(Reporter):
    """A study bar (with the status line) plus one step bar per running trial."""

    wants_status = True

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
        )
        self.progress.start()
        self._study: Any = None
        self._trials: dict[int, Any] = {}

    def study_started(self, name: str, done: int, total: int | None) -> None:
        self._study = self.progress.add_task(f"study {name}", total=total, completed=done, note="")

    def trial_started(self, number: int, summary: str, steps: int) -> None:
        self.progress.console.print(f"[dim]trial {number}: {summary}[/dim]")
        self._trials[number] = self.progress.add_task(
            f"  trial {number} steps", total=steps, note=""
        )

    def step(self, number: int, step: int, total: int) -> None:
        task = self._trials.get(number)
        if task is not None:
            self.progress.update(task, completed=step, total=total)

    def trial_finished(self, number: int, line: str, done: int) -> None:
        self.progress.console.print(f"trial {number}: {line}")
        task = self._trials.pop(number, None)
        if task is not None:
            self.progress.remove_task(task)
        if self._study is not None:
            self.progress.update(self._study, completed=done)

    def status(self, status: StudyStatus) -> None:
        if self._study is not None:
            self.progress.update(self._study, completed=status.done, note=status.line())

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()
