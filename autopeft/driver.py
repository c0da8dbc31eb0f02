"""The driver: create or resume a prepared study and run it — propose, compile, run, record —
until the budget. The driver is the only writer to the database.

Being the only writer, the driver keeps a :class:`TrialMirror` of the study's records: loaded
from the database when a run starts, then updated after each of its own writes, so its cost
per trial stays flat as a study grows (no re-reading every trial per poll).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.hypervolume import FRAME_TRIALS, Frame, hypervolume_updates
from autopeft.core.objectives import Objective
from autopeft.prepare import PreparedStudy, prepare_study, register_study
from autopeft.progress import Reporter, StudyStatus, study_status
from autopeft.samplers import Observation, make_sampler
from autopeft.space.encode import distribution
from autopeft.storage.records import TrialRecord, placement_summary
from autopeft.storage.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from autopeft.executors.base import Executor
    from autopeft.executors.worker import WorkerSetup
    from autopeft.space.bound import Point
    from autopeft.spec import ExecutorSpec
    from autopeft.trial.runner import TrialRequest, TrialResult

HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 120.0


@dataclass(frozen=True)
class StudyOutcome:
    """What :func:`run_study` leaves behind."""

    name: str
    url: str
    records: list[TrialRecord]
    objectives: list[Objective]


def run_study(
    path: str | Path,
    *,
    trials: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    executor_options: dict[str, Any] | None = None,
) -> StudyOutcome:
    """Create the study (or resume it) and run trials until it has ``trials`` finished ones.

    Args:
        path: The study spec file.
        trials: Total finished trials wanted (default: the spec's ``n_trials``).
        storage: Database URL (default: spec, ``$AUTOPEFT_STORAGE``, ``sqlite:///autopeft.db``).
        name: Study name (default: the spec's ``name``).
        reporter: Progress hooks (default: silent).
        executor: Where trials run (default: built from the spec's ``executor``).
        executor_options: Overrides of the spec's ``executor`` fields (``name``, ``workers``,
            ``address``, ...; None values ignored). They never change the study's fingerprint.
    """
    from autopeft.executors.factory import override_executor

    prepared = prepare_study(path, storage=storage, name=name)
    executor_spec = override_executor(prepared.files.spec.executor, executor_options or {})
    store = Store(prepared.url)
    profiles = _allocation_profiles(prepared, store, reporter)
    register_study(store, prepared)
    if profiles:
        from autopeft.profiling import attach_to_study

        attach_to_study(store, prepared.name, profiles)
    runner = StudyRunner(prepared, store, reporter or Reporter(), executor, executor_spec)
    return runner.run(trials or prepared.files.spec.n_trials)


def _allocation_profiles(p: PreparedStudy, store: Store, reporter: Reporter | None) -> dict:
    """Profiles an ``allocation:`` space needs: read from the store, or measured once."""
    if p.files.space.allocation is None:
        return {}
    from autopeft.profiling import ensure_profiles

    return ensure_profiles(p, store, reporter)


class StudyRunner:
    """The driver loop; the only writer to the database.

    It keeps ``executor.capacity`` trials running. Free slots are filled first with re-runs of
    interrupted trials (a stopped driver, a dead worker), then with one batch of proposals from
    the sampler, which sees every RUNNING trial as pending. Results are recorded as they come
    back; running trials get a heartbeat every ``HEARTBEAT_SECONDS``. What the loop needs to
    know about the study it reads from :attr:`mirror`, loaded when :meth:`run` starts.
    """

    def __init__(
        self,
        prepared: PreparedStudy,
        store: Store,
        reporter: Reporter,
        executor: Executor | None,
        executor_spec: ExecutorSpec | None = None,
    ) -> None:
        spec = prepared.files.spec
        self.p, self.store, self.reporter = prepared, store, reporter
        self.sampler = make_sampler(
            spec.sampler.name, prepared.bound, prepared.objectives, spec.seed, spec.sampler.options
        )
        self._executor = executor
        self.executor_spec = executor_spec or spec.executor
        self._beats: dict[int, float] = {}
        self._last_beat = time.monotonic()
        self._clock = (time.monotonic(), 0)  # (start, finished trials at start)
        self.distributions = {d.name: distribution(d.spec) for d in prepared.bound.dimensions}
        self.mirror: TrialMirror  # loaded by run()

    def run(self, target: int) -> StudyOutcome:
        name = self.p.name
        for number in self.store.recover_stale(name, STALE_AFTER_SECONDS):
            self.reporter.message(f"trial {number} was left running by a stopped driver: re-queued")
        budget = self.p.bound.space.max_trainable_params
        self.mirror = TrialMirror(self.store, name, self.p.objectives, budget)
        if self._finished() >= target:  # nothing to run: start no workers
            if self._executor is not None:
                self._executor.close()
            return StudyOutcome(name, self.p.url, self.store.records(name), self.p.objectives)
        executor = self._executor or self._default_executor()
        if executor.on_step is None:
            executor.on_step = self._on_step
        self._clock = (time.monotonic(), min(self._finished(), target))
        self.reporter.study_started(name, self._clock[1], target)
        self._report_status(target, executor)
        try:
            while self._finished() < target:
                free = executor.capacity - len(executor.running())
                for request in self._start_batch(min(free, self._wanted(executor, target))):
                    executor.submit(request)
                for result in executor.poll(timeout=1.0):
                    self._record(result, target)
                    self._report_status(target, executor)
                self._beat_running(executor)
        except BaseException:
            for number in executor.running():
                self.store.fail_trial(
                    name, number, "interrupted: the driver was stopped", interrupted=True
                )
            raise
        finally:
            executor.close()
        return StudyOutcome(name, self.p.url, self.store.records(name), self.p.objectives)

    def _default_executor(self) -> Executor:
        from autopeft.executors.factory import make_executor

        setup = worker_setup(self.p, self.executor_spec)
        return make_executor(setup, self.executor_spec, self._on_step, self.reporter.message)

    def _finished(self) -> int:
        return self.mirror.finished

    def _wanted(self, executor: Executor, target: int) -> int:
        return max(0, target - self._finished() - len(executor.running()))

    def _start_batch(self, n: int) -> list[TrialRequest]:
        """Up to ``n`` new trials: pending re-runs first, then one batch of proposals."""
        requests: list[TrialRequest] = []
        while len(requests) < n and (retry := self.mirror.next_retry()) is not None:
            requests.append(self._start(retry[1], retry_of=retry[0]))
        if len(requests) < n:
            requests += [self._start(point) for point in self._propose(n - len(requests))]
        return requests

    def _start(self, point: Point, retry_of: int | None = None) -> TrialRequest:
        from autopeft.trial.runner import TrialRequest

        compiled = self.p.bound.compile(point)
        number = self.store.start_trial(self.p.name, point, self.distributions, compiled)
        self.mirror.refresh(number)
        if retry_of is not None:
            self.store.mark_retried(self.p.name, retry_of, number)
            self.mirror.retried(retry_of)
        summary = f"{compiled.method} {compiled.trainable_params:,} params " + placement_summary(
            compiled.placement
        )
        if retry_of is not None:
            summary += f" (re-run of trial {retry_of})"
        self.reporter.trial_started(number, summary, self.p.files.spec.fidelity.max_steps)
        self._beats[number] = time.monotonic()
        return TrialRequest(number, compiled, self.p.files.spec.seed)

    def _propose(self, n: int) -> list[Point]:
        return self.sampler.propose(self.mirror.history(), n)

    def _on_step(self, number: int, step: int, total: int) -> None:
        self.reporter.step(number, step, total)
        if time.monotonic() - self._beats.get(number, 0.0) > HEARTBEAT_SECONDS:
            self.store.heartbeat(self.p.name, number)
            self._beats[number] = time.monotonic()

    def _beat_running(self, executor: Executor) -> None:
        """Heartbeat every running trial, also those between training steps (or queued)."""
        if time.monotonic() - self._last_beat < HEARTBEAT_SECONDS:
            return
        for number in executor.running():
            self.store.heartbeat(self.p.name, number)
            self._beats[number] = time.monotonic()
        self._last_beat = time.monotonic()

    def _record(self, result: TrialResult, target: int) -> None:
        name = self.p.name
        self._beats.pop(result.number, None)
        if result.ok:
            values = [float(result.metrics[o.name]) for o in self.p.objectives]
            self.store.complete_trial(name, result.number, values, result.metrics)
            self.mirror.refresh(result.number)
            self._store_hypervolume()
            m = result.metrics
            line = (
                f"{self.p.files.spec.metric} {m[self.p.files.spec.metric]:.4f} | "
                f"{m['trainable_params']:,} params | {m['peak_memory_mb']:.1f} MiB | "
                f"{m['train_seconds']:.1f} s"
            )
        elif result.lost and self._may_retry(result.number):
            reason = f"interrupted: {result.error or 'its worker died'}"
            self.store.fail_trial(name, result.number, reason, interrupted=True)
            self.mirror.refresh(result.number)
            line = f"LOST ({result.error}); its point is re-queued"
        else:
            self.store.fail_trial(
                name,
                result.number,
                result.error or "unknown error",
                infeasible=result.infeasible,
                metrics=result.metrics,
            )
            self.mirror.refresh(result.number)
            kind = "infeasible" if result.infeasible else "lost" if result.lost else "error"
            line = f"FAILED ({kind}): {result.error}"
        self.reporter.trial_finished(result.number, line, min(self._finished(), target))

    def _store_hypervolume(self) -> None:
        updates = self.mirror.hypervolume_updates()
        self.store.set_hypervolumes(self.p.name, updates)
        self.mirror.set_hypervolumes(updates)

    def _may_retry(self, number: int) -> bool:
        """A trial lost with its worker is re-run until its chain has ``max_retries`` re-runs."""
        return self.store.retries_before(self.p.name, number) < self.executor_spec.max_retries

    def _report_status(self, target: int, executor: Executor) -> None:
        if not self.reporter.wants_status:
            return
        start, done_before = self._clock
        running, elapsed = len(executor.running()), time.monotonic() - start
        self.reporter.status(self.mirror.status(target, running, elapsed, done_before))


class TrialMirror:
    """The driver's copy of one study's records, by trial number.

    Loaded from the store once; after each of its own writes the driver re-reads the one
    trial it wrote (:meth:`refresh`), so the mirror equals :meth:`Store.records` as long as the
    driver is the only writer. It keeps at hand what the loop asks for on every poll: the
    finished count, the sampler's history, whether interrupted trials wait for a re-run, the
    hypervolume curve (extended trial by trial once its frame is fixed) and the status line.
    """

    def __init__(self, store: Store, name: str, objectives: list[Objective], budget: int) -> None:
        self.store, self.name, self.objectives, self.budget = store, name, objectives, budget
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

    def history(self) -> list[Observation]:
        """What the sampler sees: complete, failed and running trials, not interrupted ones."""
        return list(self._history.values())

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
        """:func:`~autopeft.progress.study_status` of the records, from the counts kept here
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
        done = min(self.finished, target)
        eta = None
        if done > done_before:
            eta = elapsed / (done - done_before) * max(0, target - done)
        best, hv = dict(self._best), self._hypervolume
        return StudyStatus(done, running, self.failed, target, elapsed, eta, best, hv)

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
        old = self._records.get(n)
        self._records[n] = record
        self.finished += _counts(record) - (old is not None and _counts(old))
        self.failed += _failed(record) - (old is not None and _failed(old))
        if record.state in ("COMPLETE", "FAIL", "RUNNING") and not record.interrupted:
            self._history[n] = Observation(
                record.params, record.state, record.values, record.infeasible
            )
        else:
            self._history.pop(n, None)
        if record.state == "RUNNING":
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


def worker_setup(prepared: PreparedStudy, spec: ExecutorSpec) -> WorkerSetup:
    """What every worker of ``prepared`` loads, under the executor settings ``spec``."""
    from autopeft.executors.worker import WorkerSetup

    study = prepared.files.spec
    cap = None if spec.memory_cap_mb is None else int(spec.memory_cap_mb * 2**20)
    return WorkerSetup(
        model=study.model.path,
        base_dir=prepared.files.base_dir,
        splits=prepared.splits,
        fidelity=study.fidelity,
        seed=study.seed,
        metric=study.metric,
        device=spec.device,
        num_hidden_layers=study.model.num_hidden_layers,
        threads=spec.trial_threads,
        memory_cap_bytes=cap,
    )


def _counts(record: TrialRecord) -> bool:
    return record.state in ("COMPLETE", "FAIL") and not record.interrupted


def _failed(record: TrialRecord) -> bool:
    return record.state == "FAIL" and not record.interrupted


def _complete(record: TrialRecord) -> bool:
    return record.state == "COMPLETE" and bool(record.values)
