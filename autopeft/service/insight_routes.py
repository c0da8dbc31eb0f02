"""What a study learned, over HTTP: health findings, importance, placement grids, learning
curves and the self-contained HTML report (``autopeft report``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from autopeft.core.objectives import Pick
from autopeft.service.auth import Read
from autopeft.service.routes import StudyName, _service, _view

router = APIRouter()

TrialNumber = Annotated[int | None, Query(ge=0, le=1 << 31, description="A trial number.")]


@router.get("/api/studies/{name}/insight", tags=["studies"], dependencies=[Read])
def get_insight(request: Request, name: StudyName) -> dict[str, Any]:
    """Health findings (``autopeft show``), fANOVA importance per objective (summed per
    parameter, layer and module type) and the front's placement usage grids."""
    from autopeft.results.health import check_study, stored_bounds
    from autopeft.results.importance import importances
    from autopeft.results.placement_map import front_usage
    from autopeft.storage.confirmations import latest

    service = _service(request)
    view = _view(service, name)
    with service.lock:
        confirmed = latest(service.store, name)
    # what depends on the study alone is made once per version of it (a fANOVA over
    # thousands of trials takes minutes); confirmations live beside it, so findings do not
    bounds = service.views.derived(view, "bounds", lambda: stored_bounds(view))
    findings = check_study(view, confirmations=confirmed, bounds=bounds)
    share, mean = front_usage(view.front())
    importance = service.views.derived(
        view,
        "importance",
        lambda: [asdict(i) for i in importances(view)] if view.complete() else [],
    )
    return {
        "health": [asdict(f) for f in findings],
        "importance": importance,
        "front_usage": {"share": asdict(share), "mean": asdict(mean)},
    }


@router.get("/api/studies/{name}/placement", tags=["studies"], dependencies=[Read])
def get_placement(request: Request, name: StudyName, trial: TrialNumber = None) -> dict[str, Any]:
    """One trial's layers x module types grid of adapter sizes, on the axes of every cell any
    trial of the study used (so two trials' grids line up side by side)."""
    from autopeft.results.placement_map import front_usage, trial_grid

    view = _view(_service(request), name)
    record = next((r for r in view.records if r.number == trial), None)
    if record is None:
        raise HTTPException(404, f"study {name!r} has no trial {trial}")
    axes = front_usage(view.complete() or [record])[0]
    return asdict(trial_grid(record, axes.layers, axes.modules))


@router.get("/api/studies/{name}/curves", tags=["studies"], dependencies=[Read])
def get_curves(request: Request, name: StudyName, trial: TrialNumber = None) -> dict[str, Any]:
    """Learning curves (:mod:`autopeft.results.curves`) of one trial, or of the Pareto front's
    trials without ``trial``: ``{metric, curves: [{trial, loss: [[step, loss], ...], rungs:
    [[steps, value], ...]}]}``. Trials stored before curves were recorded have empty lists."""
    from autopeft.results.curves import curves_json, curves_of
    from autopeft.results.picks import primary_objective

    view = _view(_service(request), name)
    metric = primary_objective(view.objectives).name
    numbers = [r.number for r in view.front()] if trial is None else [trial]
    found = curves_of(view.records, numbers, metric)
    if trial is not None and not found:
        raise HTTPException(404, f"study {name!r} has no trial {trial}")
    return {"metric": metric, "curves": curves_json(found)}


@router.get(
    "/api/studies/{name}/report",
    tags=["studies"],
    dependencies=[Read],
    response_class=HTMLResponse,
)
def get_report(request: Request, name: StudyName, pick: Pick = Pick.knee) -> HTMLResponse:
    """The self-contained HTML report of ``autopeft report``."""
    from autopeft.results.html_report import build_report

    view = _view(_service(request), name)
    return HTMLResponse(build_report(view, pick=pick.value))
