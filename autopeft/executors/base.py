"""The executor contract (after Syne Tune's backends): submit, poll, cancel.

The driver submits up to :attr:`Executor.capacity` trials, then polls for results; the
executor never touches the database (the driver is the one writer). ``on_step(number, step,
total)`` reports training progress, and doubles as the driver's heartbeat.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from autopeft.trial.runner import TrialRequest, TrialResult

StepListener = Callable[[int, int, int], None]


class Executor(ABC):
    """Runs trials somewhere; :meth:`close` releases every resource it holds."""

    capacity: int = 1
    #: Step listener; the driver sets it when it is None (an executor passed in from outside).
    on_step: StepListener | None = None

    @abstractmethod
    def submit(self, request: TrialRequest) -> None:
        """Queue ``request`` to run; returns at once when capacity allows."""

    @abstractmethod
    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        """Results finished since the last poll; waits up to ``timeout`` for at least one."""

    @abstractmethod
    def running(self) -> list[int]:
        """Numbers of submitted trials without a result yet."""

    def cancel(self, number: int) -> None:  # noqa: B027 - optional hook
        """Stop a submitted trial if possible (its result is then not reported)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers, processes and memory."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
