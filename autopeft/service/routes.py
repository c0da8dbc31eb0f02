"""The HTTP API: ``/health`` and ``/api/...`` (the OpenAPI document at ``/openapi.json`` is
the reference)."""

from __future__ import annotations

import io
import tempfile
from enum import StrEnum
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from autopeft.core.objectives import Pick
from autopeft.results.digest import study_digest
from autopeft.results.sample import DEFAULT_LIMIT
from autopeft.results.views import StudyView
from autopeft.service import summary
from autopeft.service.auth import Read, Write
from autopeft.service.launcher import check_name
from autopeft.service.responses import SafeJSONResponse
from autopeft.service.state import ServiceState
from autopeft.storage.lease import LeaseInfo, live_lease, request_stop
from autopeft.storage.liveness import STALE_AFTER_SECONDS

router = APIRouter()

StudyName = Annotated[str, Path(min_length=1, max_length=512, description="Study name.")]


class FrontFormat(StrEnum):
    json = "json"
    csv = "csv"


class Submission(BaseModel):
    """A study to run: the spec and its search space as YAML text."""

    spec: str = Field(max_length=1 << 20, description="The study spec YAML (studies/*.yaml).")
    search_space: str = Field(max_length=1 << 20, description="The search-space YAML.")
    name: str | None = Field(default=None, max_length=128, description="Default: the spec's.")
    n_trials: int | None = Field(default=None, ge=1, le=100_000, description="Trials wanted.")


class Created(BaseModel):
    name: str


class Action(BaseModel):
    name: str
    state: str


def _service(request: Request) -> ServiceState:
    service: ServiceState = request.app.state.service
    return service


def _view(service: ServiceState, name: str) -> StudyView:
    with service.lock:
        if name not in service.store.study_names():
            raise HTTPException(404, f"no study named {name!r}")
        return service.views.view(service.store, name)


def _state(service: ServiceState, view: StudyView) -> str:
    """From the database: a live lease means a driver runs the study, wherever it runs
    (this server's, another server's, an `autopeft run`, a Ray actor); a driver this server
    launched that has not taken the lease yet counts too."""
    launcher = service.launcher
    running = _driver_lease(service, view.name) is not None or launcher.running(view.name)
    return summary.study_state(
        view, driver_running=running, exit_code=launcher.exit_code(view.name)
    )


def _summary(service: ServiceState, view: StudyView) -> dict[str, Any]:
    """A study's summary; all but its state made once per version of the study, which it
    names (``version``: a page redraws the study's trials only when it moved)."""
    digest = service.views.derived(view, "digest", lambda: study_digest(view))
    return {
        **summary.summary(view, _state(service, view), digest),
        "version": service.views.version(view),
    }


def _driver_lease(service: ServiceState, name: str) -> LeaseInfo | None:
    with service.lock:
        return live_lease(service.store, name, STALE_AFTER_SECONDS)


@router.get("/health", tags=["service"])
def health() -> dict[str, str]:
    """Liveness; needs no token."""
    return {"status": "ok"}


@router.get("/api/studies", tags=["studies"], dependencies=[Read])
def list_studies(request: Request) -> list[dict[str, Any]]:
    """Every study in the database, oldest first, summarised."""
    service = _service(request)
    with service.lock:
        views = [service.views.view(service.store, n) for n in service.store.study_names()]
    return [_summary(service, v) for v in views]


@router.get("/api/studies/{name}", tags=["studies"], dependencies=[Read])
def get_study(request: Request, name: StudyName) -> dict[str, Any]:
    """State, trial counts, hypervolume, best values, ETA."""
    service = _service(request)
    return _summary(service, _view(service, name))


@router.get(
    "/api/studies/{name}/trials",
    tags=["studies"],
    dependencies=[Read],
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def get_trials(request: Request, name: StudyName) -> Response:
    """Every trial: objectives, placement, parameters, state, hypervolume, front membership
    (a JSON list of objects, one per trial, by trial number)."""
    service = _service(request)
    view = _view(service, name)
    # the whole body, rendered once per version of the study: thousands of trials are
    # megabytes of JSON, and the web UI fetches them on every poll
    body = service.views.derived(
        view, "trials", lambda: SafeJSONResponse(summary.trials(view)).body
    )
    return Response(body, media_type="application/json")


@router.get(
    "/api/studies/{name}/sample",
    tags=["studies"],
    dependencies=[Read],
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
def get_sample(
    request: Request,
    name: StudyName,
    limit: Annotated[
        int, Query(ge=0, le=100_000, description="Other trials to keep, at most.")
    ] = DEFAULT_LIMIT,
    unless: Annotated[
        str | None, Query(max_length=64, description="A version the caller has already.")
    ] = None,
) -> Response:
    """What the web UI draws of a study: the Pareto front, the references and the running
    trials, plus at most ``limit`` of the other trials chosen evenly over trial numbers
    (:mod:`autopeft.results.sample`; the same for the same study and limit). Body:
    ``{version, total, shown, others, limit, trials: [rows as /trials gives them],
    hypervolume: [[trial, value], ...]}`` (``others``: the trials that may be left out; the
    hypervolume only where it changed, and after the last trial). With ``unless`` naming the
    study's current version: ``{version, unchanged: true}`` alone (a poll of a page that has
    it)."""
    service = _service(request)
    view = _view(service, name)
    version = service.views.version(view)
    if unless is not None and unless == version:
        return SafeJSONResponse({"version": version, "unchanged": True})

    def body() -> bytes:
        return bytes(SafeJSONResponse(summary.sample(view, limit, version)).body)

    # the default limit (the page's) rendered once per version of the study
    if limit == DEFAULT_LIMIT:
        return Response(service.views.derived(view, "sample", body), media_type="application/json")
    return Response(body(), media_type="application/json")


@router.get("/api/studies/{name}/trials/{number}", tags=["studies"], dependencies=[Read])
def get_trial(
    request: Request, name: StudyName, number: Annotated[int, Path(ge=0, le=1 << 31)]
) -> dict[str, Any]:
    """One trial with its peft config and per-layer placement."""
    detail = summary.trial_detail(_view(_service(request), name), number)
    if detail is None:
        raise HTTPException(404, f"study {name!r} has no trial {number}")
    return detail


@router.get(
    "/api/studies/{name}/front",
    tags=["studies"],
    dependencies=[Read],
    responses={200: {"content": {"text/csv": {}}}},
)
def get_front(request: Request, name: StudyName, format: FrontFormat = FrontFormat.json) -> Any:
    """The Pareto front (``autopeft front --format json|csv``)."""
    from autopeft.results import front_rows, write_csv

    service = _service(request)
    view = _view(service, name)
    rows = service.views.derived(
        view,
        "front",
        lambda: front_rows(view.front() + view.references(), view.objectives, view.budget),
    )
    if format is FrontFormat.json:  # rendered once per version, like the trials
        body = service.views.derived(view, "front.json", lambda: SafeJSONResponse(rows).body)
        return Response(body, media_type="application/json")
    out = io.StringIO()
    write_csv(rows, out)
    return Response(out.getvalue(), media_type="text/csv")


@router.get(
    "/api/studies/{name}/plot.png",
    tags=["studies"],
    dependencies=[Read],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_plot(request: Request, name: StudyName) -> Response:
    """The front plot of ``autopeft front --plot`` as a PNG."""
    from autopeft.results import plot_front

    view = _view(_service(request), name)
    with tempfile.TemporaryDirectory() as tmp:
        path = plot_front(view.records, view.objectives, FsPath(tmp) / "front.png", title=name)
        return Response(path.read_bytes(), media_type="image/png")


class ExportBundle(StrEnum):
    zip = "zip"
    json = "json"


@router.get(
    "/api/studies/{name}/export",
    tags=["studies"],
    dependencies=[Read],
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "application/zip": {}}}},
)
def get_export(
    request: Request,
    name: StudyName,
    pick: Pick | None = None,
    trial: Annotated[int | None, Query(ge=0, le=1 << 31)] = None,
    format: Annotated[str, Query(max_length=32)] = "peft",
    bundle: ExportBundle | None = None,
) -> Response:
    """The chosen trial's export, byte for byte what ``autopeft export --format FORMAT``
    writes: without ``bundle``, its ``adapter_config.json``; ``bundle=zip``, every file in a
    zip; ``bundle=json``, ``{"trial", "format", "lost", "files": {name: text}}``. The trial
    number is in the ``X-Autopeft-Trial`` header."""
    import json
    import zipfile

    from autopeft.results.export import export_view_files

    view = _view(_service(request), name)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_view_files(
            view, tmp, pick=pick.value if pick else None, trial=trial, fmt=format
        )
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in exported.files}
    headers = {"X-Autopeft-Trial": str(exported.record.number)}
    if bundle is ExportBundle.zip:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file_name, data in files.items():
                archive.writestr(file_name, data)
        headers["Content-Disposition"] = (
            f'attachment; filename="{name}_trial{exported.record.number}.zip"'
        )
        return Response(buffer.getvalue(), media_type="application/zip", headers=headers)
    if bundle is ExportBundle.json:
        body = {
            "trial": exported.record.number,
            "format": format,
            "lost": exported.lost,
            "files": {k: v.decode("utf-8") for k, v in files.items()},
        }
        return Response(json.dumps(body), media_type="application/json", headers=headers)
    headers["Content-Disposition"] = 'attachment; filename="adapter_config.json"'
    return Response(files["adapter_config.json"], media_type="application/json", headers=headers)


@router.post("/api/studies", tags=["runs"], status_code=201, dependencies=[Write])
def submit(request: Request, body: Submission) -> Created:
    """Validate a study (as ``autopeft validate``: bad input is a 400 with the CLI's message
    and leaves nothing behind), register it and start its driver."""
    from autopeft.service.submit import submit_study

    service = _service(request)
    for label, text in (("spec", body.spec), ("search_space", body.search_space)):
        _check_size(service, label, text)
    name = submit_study(service, body.spec, body.search_space, body.name, body.n_trials)
    return Created(name=name)


@router.post("/api/studies/{name}/stop", tags=["runs"], status_code=202, dependencies=[Write])
def stop(request: Request, name: StudyName) -> Action:
    """Stop the study's driver. A driver process of this server's machine is interrupted
    (SIGINT): its running trials are marked interrupted and re-run on resume. Any other driver
    (another server's, a Ray actor's, an `autopeft run` elsewhere) is asked through the
    database: it starts no new trial, lets its running ones finish, and exits."""
    service = _service(request)
    _view(service, name)
    if service.launcher.submitted(name) and service.launcher.stop(name):
        return Action(name=name, state="stopping")
    with service.lock:
        asked = request_stop(service.store, name, STALE_AFTER_SECONDS)
    if asked is None:
        raise HTTPException(409, f"study {name!r} has no driver running")
    return Action(name=name, state="stopping")


@router.post("/api/studies/{name}/resume", tags=["runs"], status_code=202, dependencies=[Write])
def resume(request: Request, name: StudyName) -> Action:
    """Start the study's driver again; it re-runs interrupted trials and goes on to its target."""
    service = _service(request)
    _view(service, name)
    if not service.launcher.submitted(name):
        raise HTTPException(409, f"study {name!r} was not submitted to this server")
    if service.launcher.running(name) or _driver_lease(service, name) is not None:
        raise HTTPException(409, f"study {name!r} is already running")
    service.launcher.start(name)
    return Action(name=name, state="running")


@router.post("/api/datasets", tags=["runs"], status_code=201, dependencies=[Write])
async def upload_dataset(request: Request, file: UploadFile) -> dict[str, str]:
    """Upload a ``.csv`` or ``.jsonl`` dataset; a spec then names it as ``dataset: FILE``."""
    service = _service(request)
    filename = check_name(file.filename or "", "dataset file name")
    if not filename.endswith((".csv", ".jsonl")):
        raise HTTPException(400, f"dataset file name must end in .csv or .jsonl, got {filename!r}")
    target = service.launcher.uploads / filename
    if target.exists():
        raise HTTPException(409, f"dataset {filename!r} exists already; upload under a new name")
    data = await file.read(service.max_upload_bytes + 1)
    if len(data) > service.max_upload_bytes:
        raise HTTPException(413, f"dataset over the limit of {service.max_upload_bytes} bytes")
    target.write_bytes(data)
    return {"dataset": filename}


def _check_size(service: ServiceState, label: str, text: str) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise HTTPException(400, f"{label} is not valid UTF-8 text") from None
    if size > service.max_spec_bytes:
        raise HTTPException(
            413, f"{label} is {size} bytes, over the limit of {service.max_spec_bytes}"
        )
