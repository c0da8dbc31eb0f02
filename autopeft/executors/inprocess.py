"""Run trials one at a time in the driver process: for tests, debugging and small studies."""

from __future__ import annotations

from collections import deque

import torch

from autopeft.executors.base import Executor, StepListener
from autopeft.trial.context import TrialContext
from autopeft.trial.runner import TrialRequest, TrialResult, run_trial


class InProcessExecutor(Executor):
    """Runs each submitted trial synchronously inside :meth:`poll`.

    Args:
        context: The loaded model and data, reused by every trial.
        threads: torch intra-op threads for trials (None leaves torch's setting alone).
        on_step: Called after every training step with (trial number, step, total steps).
    """

    capacity = 1

    def __init__(
        self, context: TrialContext, threads: int | None = None, on_step: StepListener | None = None
    ) -> None:
        self.context = context
        self.on_step = on_step
        self._queue: deque[TrialRequest] = deque()
        if threads is not None:
            torch.set_num_threads(threads)

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        if not self._queue:
            return []
        request = self._queue[0]
        listener = self.on_step
        callback = None if listener is None else (lambda s, t: listener(request.number, s, t))
        result = run_trial(self.context, request, callback)
        self._queue.popleft()
        return [result]

    def running(self) -> list[int]:
        return [r.number for r in self._queue]

    def cancel(self, number: int) -> None:
        self._queue = deque(r for r in self._queue if r.number != number)
