"""Pareto fronts over stored trials, and the rules that pick one trial from a front."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autopeft.core.objectives import PARAMS_OBJECTIVE, Objective, Pick
from autopeft.core.pareto import pareto_indices
from autopeft.core.states import TrialState
from autopeft.exceptions import StudyError, UserInputError
from autopeft.storage.records import TrialRecord

__all__ = [
    "PARAMS_OBJECTIVE",
    "PICKS",
    "complete_records",
    "pareto_front",
    "pareto_indices",
    "pick_trial",
    "primary_objective",
]

PICKS = tuple(p.value for p in Pick)
"""The names :func:`pick_trial` accepts."""

_KNEE_TIE_TOLERANCE = 1e-12


def complete_records(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[TrialRecord]:
    """The trials that are ``COMPLETE`` and carry a finite value for every objective.

    Args:
        records: Stored trials, in any state.
        objectives: The study's objectives.

    Returns:
        The complete trials, in their input order.
    """
    return [r for r in records if r.state == TrialState.COMPLETE and _has_values(r, objectives)]


def pareto_front(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[TrialRecord]:
    """The complete trials that no other complete trial dominates.

    Args:
        records: Stored trials, in any state; incomplete ones are ignored.
        objectives: The study's objectives (names and directions).

    Returns:
        The non-dominated complete trials, best first by the first objective (the order of
        :func:`pareto_indices`). Of trials with identical values only the first is kept.
    """
    done = complete_records(records, objectives)
    table = [[r.values[o.name] for o in objectives] for r in done]
    return [done[i] for i in pareto_indices(table, [o.direction for o in objectives])]


# Measured costs: never the "accuracy" of a study.
_COSTS = frozenset({"trainable_params", "peak_memory_mb", "train_seconds"})


def primary_objective(objectives: Sequence[Objective]) -> Objective:
    """The objective that reports call "accuracy" (the task metric): the first maximized one,
    else the first that is not a measured cost, else the first.

    Args:
        objectives: The study's objectives.

    Returns:
        The first objective whose direction is ``maximize`` (``accuracy``, ``exact_match``), or
        the first one that is not ``trainable_params``, ``peak_memory_mb`` or ``train_seconds``
        (``eval_loss``), or the first objective.

    Raises:
        UserInputError: If ``objectives`` is empty.
    """
    if not objectives:
        raise UserInputError("a study needs at least one objective; got none")
    maximized = next((o for o in objectives if o.direction == "maximize"), None)
    if maximized is not None:
        return maximized
    return next((o for o in objectives if o.name not in _COSTS), objectives[0])


def pick_trial(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], how: str
) -> TrialRecord:
    """Pick one trial from the Pareto front of the complete trials.

    The rules (``how``):

    * ``max-accuracy``: the best value of the task metric (:func:`primary_objective`: the
      highest accuracy or exact match, the lowest ``eval_loss``).
      Ties go to fewer ``trainable_params`` (when that is an objective), then to the lower
      trial number. The candidates are the front's trials, so the pick is never dominated;
      its accuracy is the best of all complete trials.
    * ``min-params``: the fewest ``trainable_params`` on the front. Ties go to the higher
      accuracy, then to the lower trial number. Needs ``trainable_params`` as an objective.
    * ``knee``: the best compromise. Each objective is rescaled linearly over the front's
      trials to [0, 1] with 1 the best value on the front and 0 the worst (an objective that
      is constant over the front scores 1 everywhere). The pick is the front trial closest,
      by Euclidean distance, to the ideal point where every score is 1. Ties go to the lower
      trial number. The knee depends only on the front, so trials that are dominated never
      move it.

    Args:
        records: Stored trials, in any state; incomplete ones are ignored.
        objectives: The study's objectives (names and directions).
        how: One of :data:`PICKS`.

    Returns:
        The picked trial.

    Raises:
        UserInputError: If ``how`` is not one of :data:`PICKS`, or is ``min-params`` while
            ``trainable_params`` is not an objective.
        StudyError: If no trial is complete with every objective measured.
    """
    if how not in PICKS:
        raise UserInputError(f"unknown pick {how!r}; expected one of: {', '.join(PICKS)}")
    front = pareto_front(records, objectives)
    if not front:
        names = ", ".join(o.name for o in objectives)
        raise StudyError(
            f"cannot pick a trial: none of the {len(records)} trials is complete "
            f"with every objective measured ({names})"
        )
    if how == "max-accuracy":
        return _pick_max_accuracy(front, objectives)
    if how == "min-params":
        return _pick_min_params(front, objectives)
    return _pick_knee(front, objectives)


def _has_values(record: TrialRecord, objectives: Sequence[Objective]) -> bool:
    """Whether the record holds a finite value for every objective."""
    for objective in objectives:
        value = record.values.get(objective.name)
        if value is None or not math.isfinite(float(value)):
            return False
    return True


def _sign(objective: Objective) -> float:
    """+1 when larger is better, -1 when smaller is better."""
    return 1.0 if objective.direction == "maximize" else -1.0


def _pick_max_accuracy(front: list[TrialRecord], objectives: Sequence[Objective]) -> TrialRecord:
    """The front trial with the best accuracy; ties -> fewer params, then lower number."""
    accuracy = primary_objective(objectives)
    has_params = any(o.name == PARAMS_OBJECTIVE for o in objectives)

    def key(r: TrialRecord) -> tuple[float, float, int]:
        params = r.values[PARAMS_OBJECTIVE] if has_params else 0.0
        return (-_sign(accuracy) * r.values[accuracy.name], params, r.number)

    return min(front, key=key)


def _pick_min_params(front: list[TrialRecord], objectives: Sequence[Objective]) -> TrialRecord:
    """The front trial with the fewest params; ties -> higher accuracy, then lower number."""
    if not any(o.name == PARAMS_OBJECTIVE for o in objectives):
        names = ", ".join(o.name for o in objectives)
        raise UserInputError(
            f"'min-params' needs a {PARAMS_OBJECTIVE!r} objective; objectives are: {names}"
        )
    accuracy = primary_objective(objectives)

    def key(r: TrialRecord) -> tuple[float, float, int]:
        return (r.values[PARAMS_OBJECTIVE], -_sign(accuracy) * r.values[accuracy.name], r.number)

    return min(front, key=key)


def _knee_scores(front: list[TrialRecord], objectives: Sequence[Objective]) -> np.ndarray:
    """Each front trial's objectives rescaled to [0, 1] over the front, 1 the best."""
    table = np.array([[r.values[o.name] for o in objectives] for r in front], dtype=float)
    table *= np.array([_sign(o) for o in objectives])  # larger is better in every column
    low, high = table.min(axis=0), table.max(axis=0)
    span = high - low
    scaled = (table - low) / np.where(span > 0, span, 1.0)
    return np.where(span > 0, scaled, 1.0)


def _pick_knee(front: list[TrialRecord], objectives: Sequence[Objective]) -> TrialRecord:
    """The front trial closest to the ideal point of the rescaled front; ties -> lower number."""
    distances = np.linalg.norm(1.0 - _knee_scores(front, objectives), axis=1)
    closest = distances.min()
    tied = [r for r, d in zip(front, distances, strict=True) if d <= closest + _KNEE_TIE_TOLERANCE]
    return min(tied, key=lambda r: r.number)
