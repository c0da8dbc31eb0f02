"""Run trials on a pool of persistent Ray actors: parallel, fault-tolerant, local or on a cluster.

Why Ray core actors and not Ray Tune: Tune's per-trial machinery costs 0.2-6 s per trial here
(``reuse_actors`` on/off, measured with trivial trials; a plain actor call is a few ms), a
custom searcher runs one trial at a time unless told otherwise, and Tune wants to own the
search state and its storage, while in autopeft the database is the source of truth and the
driver is its one writer. So the pool is ``workers`` actors of :class:`TrialWorker`, each
reserving ``num_cpus=cpus_per_trial`` and ``num_gpus=gpus_per_trial`` (fractional GPUs pack
several small trials on one device; Ray only schedules, nothing caps GPU memory per actor).
Each actor loads the model and data once and runs trials back to back.

Faults: a worker that dies mid-trial (SIGKILL, segfault, a lost node) makes ``ray.get`` raise a
``RayActorError``; that trial comes back as a *lost* :class:`TrialResult` (the driver re-runs
its point up to ``max_retries`` times) and the slot gets a fresh actor, which receives trials
only once it has loaded. (Ray's own ``max_restarts`` would restart the actor in place, but calls
sent while it restarts fail with ``ActorUnavailableError`` and would burn retries of healthy
points; replacing it explicitly keeps that under our control.) Ray's memory monitor killing a
worker (``OutOfMemoryError``) marks the trial infeasible, like a CUDA out-of-memory.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from autopeft.exceptions import StudyError
from autopeft.executors.base import Executor, StepListener
from autopeft.executors.ray_session import RaySession
from autopeft.executors.worker import TrialWorker, WorkerSetup
from autopeft.trial.runner import TrialRequest, TrialResult

PROGRESS_SECONDS = 0.5
START_TIMEOUT_SECONDS = 600.0


@dataclass
class _Slot:
    """One actor of the pool and what it is doing."""

    actor: Any
    ready: Any = None  # ObjectRef of ``info()`` while the actor is loading, else None
    info: dict[str, Any] | None = None
    trial: TrialRequest | None = None
    call: Any = None  # ObjectRef of the running ``run()``
    sent_at: float = 0.0


class RayExecutor(Executor):
    """``workers`` concurrent trials on Ray actors; the driver keeps writing the database.

    Args:
        setup: What each worker loads.
        session: The Ray connection (embedded instance or cluster) and the actors' resources.
        workers: Concurrent trials.
        on_step: Step progress, forwarded from the workers (the driver's heartbeat).
        message: Where to say that a worker died or was replaced.
    """

    def __init__(
        self,
        setup: WorkerSetup,
        session: RaySession,
        workers: int,
        on_step: StepListener | None = None,
        message: Callable[[str], None] | None = None,
    ) -> None:
        import ray

        self._ray = ray
        self.capacity = workers
        self.on_step = on_step
        self._message = message or (lambda _text: None)
        self.session = session
        self._queue: deque[TrialRequest] = deque()
        self._seen: dict[int, int] = {}
        self._slots: list[_Slot] = []
        try:
            session.start(workers)
            self._setup_ref = ray.put(setup)
            self._actor_class = ray.remote(TrialWorker).options(**session.actor_options())
            self._slots = [self._new_slot() for _ in range(workers)]
            self._wait_ready(all_of=True)
        except BaseException:
            self.close()  # a failed start must not leave workers or a local Ray instance
            raise

    # -- pool --------------------------------------------------------------------------------
    def _new_slot(self) -> _Slot:
        actor: Any = self._actor_class.remote(self._setup_ref)
        return _Slot(actor=actor, ready=actor.info.remote())

    def _wait_ready(self, all_of: bool) -> None:
        """Wait for loading workers (all of them at start; at most a moment later on)."""
        deadline = time.monotonic() + (START_TIMEOUT_SECONDS if all_of else 0.0)
        while any(s.ready is not None for s in self._slots):
            refs = [s.ready for s in self._slots if s.ready is not None]
            left = max(0.0, deadline - time.monotonic())
            done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=left)
            for slot in self._slots:
                if slot.ready is not None and slot.ready in done:
                    self._mark_ready(slot)
            if not all_of or time.monotonic() >= deadline:
                break
        if all_of and any(s.ready is not None for s in self._slots):
            raise StudyError(
                f"{self.capacity} Ray workers ({self.session.describe()}) did not all start "
                f"within {START_TIMEOUT_SECONDS:.0f} s; available: "
                f"{self._ray.available_resources()}"
            )

    def _mark_ready(self, slot: _Slot) -> None:
        try:
            slot.info = self._ray.get(slot.ready)
        except self._ray.exceptions.RayError as exc:
            raise StudyError(f"a Ray worker failed to load the model and data: {exc}") from None
        slot.ready = None

    def workers_info(self) -> list[dict[str, Any] | None]:
        """``info()`` of every worker that has loaded (host, pid, device, gpu_ids, ...)."""
        return [s.info for s in self._slots]

    def worker_pid(self, number: int) -> int | None:
        """The pid of the worker running trial ``number`` (None if it is not running)."""
        for s in self._slots:
            if s.trial is not None and s.trial.number == number and s.info is not None:
                return int(s.info["pid"])
        return None

    # -- Executor ----------------------------------------------------------------------------
    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)
        self._dispatch()

    def _dispatch(self) -> None:
        for slot in self._slots:
            if not self._queue:
                return
            if slot.ready is None and slot.trial is None:
                slot.trial = self._queue.popleft()
                slot.sent_at = time.monotonic()  # before .remote(): the call may start at once
                slot.call = slot.actor.run.remote(slot.trial)

    def running(self) -> list[int]:
        busy = [s.trial.number for s in self._slots if s.trial is not None]
        return busy + [r.number for r in self._queue]

    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while True:
            self._wait_ready(all_of=False)
            self._dispatch()
            calls = [s.call for s in self._slots if s.call is not None]
            wait = max(0.0, min(PROGRESS_SECONDS, deadline - time.monotonic()))
            if not calls:
                loading = [s.ready for s in self._slots if s.ready is not None]
                if not (self._queue and loading) or wait == 0.0:
                    return []
                self._ray.wait(loading, num_returns=1, timeout=wait)  # a replacement loads
                continue
            done, _ = self._ray.wait(calls, num_returns=1, timeout=wait)
            if done:
                done, _ = self._ray.wait(calls, num_returns=len(calls), timeout=0)
                results = [self._collect(s) for s in self._slots if s.call in done]
                self._dispatch()
                return results
            self._forward_progress()
            if time.monotonic() >= deadline:
                return []

    def _collect(self, slot: _Slot) -> TrialResult:
        ray = self._ray
        request, elapsed = slot.trial, time.monotonic() - slot.sent_at
        assert request is not None  # a slot with a call has a trial
        slot.trial, call, slot.call = None, slot.call, None
        try:
            result: TrialResult = ray.get(call)
        except ray.exceptions.OutOfMemoryError as exc:
            self._replace(slot, "was killed by Ray's memory monitor")
            return TrialResult(
                request.number, False, error=f"out of memory: {_first_line(exc)}", infeasible=True
            )
        except ray.exceptions.RayActorError as exc:
            self._replace(slot, "died")
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            return TrialResult(request.number, False, error=f"worker died: {reason}", lost=True)
        except ray.exceptions.RayError as exc:  # e.g. the request could not be shipped
            return TrialResult(request.number, False, error=f"ray error: {_first_line(exc)}")
        scheduling = elapsed - float(result.metrics.get("worker_seconds", elapsed))
        return replace(result, metrics={**result.metrics, "scheduling_seconds": scheduling})

    def _replace(self, slot: _Slot, what: str) -> None:
        where = f"{slot.info['host']}:{slot.info['pid']}" if slot.info else "?"
        self._message(f"Ray worker {where} {what}; starting a replacement")
        self._ray.kill(slot.actor, no_restart=True)
        fresh = self._new_slot()
        slot.actor, slot.ready, slot.info = fresh.actor, fresh.ready, None

    def _forward_progress(self) -> None:
        busy = [s for s in self._slots if s.call is not None and s.ready is None]
        if self.on_step is None or not busy:
            return
        refs = [s.actor.progress.remote() for s in busy]
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=PROGRESS_SECONDS)
        for ref in done:
            try:
                state = self._ray.get(ref)
            except self._ray.exceptions.RayError:
                continue  # a dying worker: its run() call reports it
            if state is not None and self._seen.get(state[0]) != state[1]:
                self._seen[state[0]] = state[1]
                self.on_step(*state)

    def cancel(self, number: int) -> None:
        self._queue = deque(r for r in self._queue if r.number != number)
        for slot in self._slots:
            if slot.trial is not None and slot.trial.number == number:
                slot.trial, slot.call = None, None
                self._replace(slot, "was stopped (its trial was cancelled)")

    def close(self) -> None:
        for slot in self._slots:
            self._ray.kill(slot.actor, no_restart=True)
        self._slots = []
        self.session.stop()


def _first_line(exc: BaseException) -> str:
    lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
