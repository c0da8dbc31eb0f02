"""The web UI: one static page (study list and study page) and its script, plus plotly.js from
the installed ``plotly`` package, so the page works offline (no CDN)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

router = APIRouter(include_in_schema=False)

_STATIC = {
    "app.js": "text/javascript",
    "insight.js": "text/javascript",
    "cockpit.js": "text/javascript",
    "curves.js": "text/javascript",
    "style.css": "text/css",
}


def _text(name: str) -> str:
    return resources.files("autopeft.service").joinpath("static", name).read_text("utf-8")


@router.get("/")
def index() -> HTMLResponse:
    return HTMLResponse(_text("index.html"))


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(_plotly_path(), media_type="text/javascript")


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in _STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return Response(_text(name), media_type=_STATIC[name])


@cache
def _plotly_path() -> Path:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise HTTPException(500, "the installed plotly package has no package_data/plotly.min.js")
    return path
