"""JSON bodies of the API, built from :class:`~autopeft.results.views.StudyView` (what the CLI's
``show`` and ``front`` print)."""

from __future__ import annotations

from typing import Any

from autopeft.results import front_rows
from autopeft.results.digest import study_digest, target
from autopeft.results.sample import hypervolume_steps, sample_trials
from autopeft.results.views import StudyView
from autopeft.storage.records import TrialRecord

STATES = ("running", "complete", "stopped", "failed")
"""A study's ``state``: a driver runs it (its lease is live); it has its budget of finished
trials; no driver runs it (stopped, or never started); its last driver launched by this server
exited with an error."""


def study_state(view: StudyView, *, driver_running: bool, exit_code: int | None) -> str:
    """One of :data:`STATES`."""
    if driver_running:
        return "running"
    if _done(view, exit_code):
        return "complete"
    return "failed" if exit_code not in _STOPPED or view.driver_error else "stopped"


def _done(view: StudyView, exit_code: int | None) -> bool:
    """Its ``n_trials`` finished, or its ``budget_steps`` spent: less left than the cheapest
    trial, or its driver ended on its own (exit 0) with a step budget set."""
    wanted = target(view)
    if wanted is not None and view.finished() >= wanted:
        return True
    budget = view.budget_steps()
    if budget is None:
        return False
    cheapest = min(view.rung_steps() or [int(view.spec["fidelity"].get("max_steps", 100))])
    return exit_code == 0 or budget - view.steps_spent() < cheapest


_STOPPED = (None, 0, 130, -2)  # unknown, done, SIGINT handled by the CLI, SIGINT unhandled


def summary(view: StudyView, state: str, digest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``GET /api/studies/{name}``: :func:`~autopeft.results.digest.study_digest`
    (``digest``: that of ``view``, computed already) with the study's ``state`` and
    ``eta_seconds``."""
    return {
        **(study_digest(view) if digest is None else digest),
        "state": state,
        "eta_seconds": _eta(view) if state == "running" else None,
        "error": view.driver_error if state == "failed" else None,
    }


def trials(view: StudyView, records: list[TrialRecord] | None = None) -> list[dict[str, Any]]:
    """Every trial (or those of ``records``) as a flat row (:func:`~autopeft.results.
    front_rows`) plus its state, failure reason, hypervolume and whether it is on the front."""
    on_front = {r.number for r in view.front()}
    records = view.records if records is None else records
    rows = front_rows(records, view.objectives)
    for row, record in zip(rows, records, strict=True):
        row.update(
            state=str(record.state),
            interrupted=record.interrupted,
            fail_reason=record.fail_reason,
            hypervolume=record.hypervolume,
            on_front=record.number in on_front,
        )
    return rows


def sample(view: StudyView, limit: int, version: str | None) -> dict[str, Any]:
    """The body of ``GET /api/studies/{name}/sample``: :func:`~autopeft.results.sample.
    sample_trials` as :func:`trials` rows, with the counts and the hypervolume's steps."""
    chosen = sample_trials(view, limit)
    return {
        "version": version,
        "total": chosen.total,
        "shown": len(chosen.records),
        "others": chosen.others,
        "limit": limit,
        "trials": trials(view, chosen.records),
        "hypervolume": [list(step) for step in hypervolume_steps(view.records)],
    }


def trial_detail(view: StudyView, number: int) -> dict[str, Any] | None:
    """One trial with its peft config and per-layer placement; None if there is no such trial."""
    record = next((r for r in view.records if r.number == number), None)
    if record is None:
        return None
    return {
        **front_rows([record], view.objectives)[0],
        "state": str(record.state),
        "fail_reason": record.fail_reason,
        "placement_cells": {str(k): v for k, v in record.placement.items()},
        "peft_config": record.peft_config,
        "metrics": record.metrics,
    }


def _eta(view: StudyView) -> float | None:
    """Cheap: the mean wall time of finished trials times the trials left, over the workers."""
    seconds = [r.metrics["train_seconds"] for r in view.complete() if "train_seconds" in r.metrics]
    if not seconds:
        return None
    workers = int(view.spec.get("executor", {}).get("workers", 1) or 1)
    wanted, budget = target(view), view.budget_steps()
    estimates = []
    if wanted is not None:
        estimates.append(sum(seconds) / len(seconds) * max(0, wanted - view.finished()))
    steps = sum(  # what the timed trials trained (a continued promotion: above its source)
        int(r.metrics.get("steps", 0)) - int(r.metrics.get("continued_from_step", 0))
        for r in view.complete()
        if "train_seconds" in r.metrics
    )
    if budget is not None and steps:
        estimates.append(sum(seconds) / steps * max(0, budget - view.steps_spent()))
    return min(estimates) / workers if estimates else None
