"""The states of a trial, one vocabulary for the store, the driver, samplers and reports.

The values equal Optuna's ``TrialState`` names, which is how the store reads them; a state
compares equal to its name (``TrialState.COMPLETE == "COMPLETE"``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class TrialState(StrEnum):
    """Where a trial is in its life: queued, running, or finished one way or another."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAIL = "FAIL"
    PRUNED = "PRUNED"

    def is_finished(self) -> bool:
        """Whether the trial will not change any more (complete, failed or pruned)."""
        return self in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def has_result(trial: Any) -> bool:
    """Whether ``trial`` (a stored record or a sampler's observation: anything with ``state``
    and ``values``) finished at the top rung with its objective values: COMPLETE, with values.

    Only such trials enter fronts, best values and hypervolumes (a multi-fidelity trial that
    finished below the top rung is PRUNED: its values are its rung's).
    """
    return trial.state == TrialState.COMPLETE and bool(trial.values)
