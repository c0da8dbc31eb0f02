"""A study as plain JSON-able dicts: what ``autopeft studies``/``show --format json`` print and
the service's study bodies start from. The keys are a stable contract (README: JSON output);
add keys, never rename or drop them."""

from __future__ import annotations

import statistics
from typing import Any

from autopeft.core.states import TrialState
from autopeft.results.picks import primary_objective
from autopeft.results.views import StudyView
from autopeft.storage.confirmations import Confirmation


def target(view: StudyView) -> int | None:
    """Finished trials the study's last run asked for (its stored spec's ``n_trials``; None:
    no trial limit, its ``fidelity.budget_steps`` ends it)."""
    value = view.spec.get("n_trials")
    return None if value is None else int(value)


def counts(view: StudyView) -> dict[str, int]:
    """Trials by state, lower-case, with ``complete``, ``running``, ``fail`` and
    ``interrupted`` always present."""
    out = {"complete": 0, "running": 0, "fail": 0, "interrupted": 0}
    out.update({k.lower(): n for k, n in view.counts().items()})
    return out


def study_digest(view: StudyView) -> dict[str, Any]:
    """One study in brief (a row of ``autopeft studies --format json``).

    Keys: ``name``; ``target`` (the spec's ``n_trials``, null when only ``budget_steps``
    limits the study); ``finished`` (trials the budget counts); ``budget_steps`` (the spec's
    ``fidelity.budget_steps`` or null); ``steps_spent`` (training steps charged against it,
    :mod:`autopeft.search.budget`); ``counts`` (state -> trials, see :func:`counts`);
    ``hypervolume`` (normalised, after the last complete trial, or null); ``best``
    (objective -> best value over complete trials); ``front_size``; ``objectives``
    (``[{name, direction}]``); ``metric``; ``model``; ``dataset``; ``sampler``; ``search_space``.
    """
    curve = view.hypervolume() if view.complete() else []
    spec = view.spec
    return {
        "name": view.name,
        "target": target(view),
        "finished": view.finished(),
        "budget_steps": view.budget_steps(),
        "steps_spent": view.steps_spent(),
        "counts": counts(view),
        "hypervolume": curve[-1] if curve else None,
        "best": view.best_values(),
        "front_size": len(view.front()),
        "objectives": [{"name": o.name, "direction": o.direction} for o in view.objectives],
        "metric": spec["metric"],
        "model": spec["model"]["path"],
        "dataset": spec["dataset"]["source"],
        "sampler": spec["sampler"]["name"],
        "search_space": spec["search_space"],
    }


def show_digest(view: StudyView, confirmations: dict[int, Confirmation]) -> dict[str, Any]:
    """Everything ``autopeft show`` prints, as one dict (``show --format json``).

    Keys: those of :func:`study_digest`, and ``url``; ``warm_start`` (study names);
    ``front`` (trial numbers on the Pareto front, best first); ``training_seconds`` (summed
    over complete trials); ``fidelity`` (null, or ``{rung_steps, rung_counts,
    reduction_factor, training_steps, correlations: [{rung, rho, pairs, distrusted}],
    curves: {trial: [metric per rung]}}`` for a multi-fidelity study, curves of the front);
    ``memory`` (null, or
    ``{trials, median_abs_error_pct, max_abs_error_pct}``: predicted vs measured peak
    memory); ``skipped`` (candidates skipped before launch); ``confirmed`` (null, or
    ``{trials, objective, best: {trial, mean, std, seeds}}`` from ``autopeft confirm``);
    ``failures`` (``[{trial, reason}]``, every failed trial).
    """
    rungs = view.rung_steps()
    fidelity = None
    if rungs:
        fidelity = {
            "rung_steps": rungs,
            "rung_counts": view.rung_counts(),
            "reduction_factor": float(view.spec["fidelity"].get("reduction_factor", 3.0)),
            "training_steps": view.training_steps(),
            **_rung_digest(view, len(rungs)),
        }
    return {
        **study_digest(view),
        "url": view.url,
        "warm_start": list(view.spec.get("warm_start") or []),
        "front": [r.number for r in view.front()],
        "training_seconds": sum(r.metrics.get("train_seconds", 0.0) for r in view.complete()),
        "fidelity": fidelity,
        "memory": memory_digest(view),
        "skipped": sum(1 for r in view.records if r.metrics.get("skipped")),
        "confirmed": confirmed_digest(view, confirmations),
        "failures": [
            {"trial": r.number, "reason": r.fail_reason}
            for r in view.records
            if r.state == TrialState.FAIL
        ],
    }


def memory_digest(view: StudyView) -> dict[str, Any] | None:
    """Predicted vs measured peak memory over the trials that stored both; None if none."""
    errors = sorted(abs(e) * 100 for e in view.memory_errors())
    if not errors:
        return None
    return {
        "trials": len(errors),
        "median_abs_error_pct": statistics.median(errors),
        "max_abs_error_pct": errors[-1],
    }


def confirmed_digest(
    view: StudyView, confirmations: dict[int, Confirmation]
) -> dict[str, Any] | None:
    """How many trials were confirmed, and the best by the primary objective's test mean."""
    found = [c for c in confirmations.values() if c.mean]
    if not found:
        return None
    o = primary_objective(view.objectives)
    pick = max if o.direction == "maximize" else min
    best = pick(found, key=lambda c: c.mean[o.name])
    return {
        "trials": len(found),
        "objective": o.name,
        "best": {"trial": best.trial, "mean": best.mean, "std": best.std, "seeds": best.seeds},
    }


def _rung_digest(view: StudyView, rungs: int) -> dict[str, Any]:
    """Each low rung's rank correlation with the top rung and the front's learning curves
    (:mod:`autopeft.results.rungs`)."""
    from autopeft.results.rungs import learning_curve, rung_correlations

    metric = primary_objective(view.objectives).name
    correlations = [
        {"rung": c.rung, "rho": c.rho, "pairs": c.pairs, "distrusted": c.distrusted}
        for c in rung_correlations(view.records, metric, rungs)
    ]
    curves = {r.number: learning_curve(view.records, r.number, metric) for r in view.front()}
    return {"correlations": correlations, "curves": curves}
