"""The FastAPI application of ``autopeft serve``: the HTTP API, the web UI and error mapping.

The database stays the source of truth: every request reads it through one open
:class:`~autopeft.storage.store.Store` (a study is loaded again only when its change marker
moved: :mod:`autopeft.results.view_cache`), a study runs while its driver holds its lease, and each
submitted study runs in a driver of its own, a local process or a detached Ray actor
(:mod:`autopeft.service.launcher`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from autopeft.exceptions import StorageError, UserInputError
from autopeft.service.launcher import Launcher
from autopeft.service.responses import SafeJSONResponse
from autopeft.service.state import MAX_SPEC_BYTES, MAX_UPLOAD_BYTES, ServiceState
from autopeft.storage.store import Store


def create_app(
    storage_url: str,
    *,
    public_read: bool = False,
    roots: Sequence[str | Path] = (),
    data_dir: str | Path = "autopeft-service",
    max_spec_bytes: int = MAX_SPEC_BYTES,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    address: str | None = None,
) -> FastAPI:
    """The ASGI app serving the study database ``storage_url``.

    Args:
        storage_url: The database (created if it is a missing SQLite file).
        public_read: Serve GET endpoints without a token.
        roots: Directories submitted specs may take models and datasets from (besides the
            built-ins and ``data_dir/datasets``, where uploads go).
        data_dir: Where submitted specs, driver logs and pid files, and uploads are kept.
        max_spec_bytes: The limit of a submitted spec or search space, each.
        max_upload_bytes: The limit of an uploaded dataset.
        address: Run every submitted study's driver (a detached actor) and its trials on this
            Ray cluster (``auto``, ``host:port``, ``ray://host:port``); None: each driver is a
            local process and runs trials as its spec's ``executor`` says.
    """
    from autopeft.service import insight_routes, routes, ui

    service = ServiceState(
        store=Store(storage_url),
        launcher=Launcher(Path(data_dir), storage_url, [Path(r) for r in roots], address),
        public_read=public_read,
        max_spec_bytes=max_spec_bytes,
        max_upload_bytes=max_upload_bytes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.launcher.close()  # leave the Ray cluster; drivers keep running

    app = FastAPI(
        lifespan=lifespan,
        title="autopeft",
        version=_version(),
        summary="Submit PEFT configuration searches, watch their Pareto fronts, export configs.",
        default_response_class=SafeJSONResponse,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN; the UI is offline
        redoc_url=None,
    )
    app.state.service = service
    app.include_router(routes.router)
    app.include_router(insight_routes.router)
    app.include_router(ui.router)
    app.add_middleware(BodyLimit, limit=2 * max_spec_bytes + 4096, upload_limit=max_upload_bytes)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        return JSONResponse({"detail": _line(exc)}, status_code=503)

    @app.exception_handler(UserInputError)
    async def _user(request: Request, exc: UserInputError) -> JSONResponse:
        return JSONResponse({"detail": service.launcher.hide_paths(_line(exc))}, status_code=400)

    return app


class BodyLimit:
    """Refuse a request whose declared body is over the limit (413), or whose body has no
    declared length (411: a chunked body), before reading it."""

    def __init__(self, app: ASGIApp, *, limit: int, upload_limit: int) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            upload = scope["path"] == "/api/datasets"
            limit = self.upload_limit + 64 * 1024 if upload else self.limit
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            status, detail = 0, ""
            if length is None and b"transfer-encoding" in headers:
                status, detail = 411, "a request body needs a Content-Length header"
            elif length is not None and (not length.isdigit() or int(length) > limit):
                status, detail = 413, f"request body over the limit of {limit} bytes"
            if status:
                await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _version() -> str:
    from autopeft import __version__

    return __version__
