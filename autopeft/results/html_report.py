"""``autopeft report``: one self-contained HTML file about a study, for a pull request or a model
card.

It holds the front in both projections (the metric against trainable parameters and against
peak memory), the search history, placement maps of the chosen trial and of the front, the
importance of the search dimensions, the front's learning curves (where its trials stored
them), the health checks, reference configurations when the study
has them, and the exported peft config of the chosen trial. Figures are PNGs embedded as
``data:`` URIs and the style is inline: the file needs no network and no other file.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.files import write_atomic
from autopeft.exceptions import StudyError
from autopeft.results.curves import curves_of, plot_curves
from autopeft.results.health import Finding, check_study, stored_bounds
from autopeft.results.importance import Importance, importances
from autopeft.results.picks import pick_trial, primary_objective
from autopeft.results.placement_map import front_usage, plot_placements, trial_grid
from autopeft.results.plot import plot_front, plot_history
from autopeft.results.table import front_rows

if TYPE_CHECKING:
    from autopeft.results.views import StudyView
    from autopeft.storage.records import TrialRecord

__all__ = ["build_report", "write_report"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:3px 7px}
th{background:#f4f4f4}td.num{text-align:right}img{max-width:100%}
.finding{background:#fff4e5;border-left:4px solid #f0a030;padding:.4em .8em;margin:.4em 0}
.ok{background:#eef8ee;border-left:4px solid #4a4;padding:.4em .8em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}.muted{color:#777}
"""


def write_report(view: StudyView, out: Path, *, pick: str = "knee") -> Path:
    """Write the report of ``view`` to ``out`` (atomically); returns ``out``.

    Raises:
        StudyError: If the study has no complete trial.
    """
    write_atomic(out, build_report(view, pick=pick).encode("utf-8"), "report")
    return out


def build_report(view: StudyView, *, pick: str = "knee") -> str:
    """The report of ``view`` as one HTML document (see the module docstring)."""
    if not view.complete():
        raise StudyError(f"study {view.name!r} has no complete trial to report on")
    chosen = pick_trial(view.records, view.objectives, pick)
    front = view.front()
    with tempfile.TemporaryDirectory(prefix="autopeft-report-") as tmp:
        figures = _figures(view, chosen, front, Path(tmp))
    findings = check_study(view, confirmations=_confirmations(view), bounds=_bounds(view))
    parts = [
        f"<h1>autopeft study {_e(view.name)}</h1>",
        _summary(view),
        "<h2>Health checks</h2>",
        _findings(findings),
        "<h2>Pareto front</h2>",
        _img(figures.get("front"), "Pareto front"),
        _front_table(view),
        _references(view),
        "<h2>Search history</h2>",
        _img(figures.get("history"), "search history"),
        f"<h2>Where the capacity went (trial {chosen.number}, picked by {_e(pick)})</h2>",
        _img(figures.get("placement"), "placement maps"),
        "<h2>Learning curves of the front</h2>" if "curves" in figures else "",
        _img(figures.get("curves"), "learning curves"),
        "<h2>What moved the objectives</h2>",
        _importances(importances(view)),
        f"<h2>Exported config of trial {chosen.number}</h2>",
        f"<pre>{_e(_config_text(view, chosen))}</pre>",
    ]
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>autopeft: {_e(view.name)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def _figures(
    view: StudyView, chosen: TrialRecord, front: Sequence[TrialRecord], tmp: Path
) -> dict[str, str]:
    """PNG figures as base64 strings; a figure that cannot be drawn is left out."""
    out: dict[str, str] = {}
    metric = primary_objective(view.objectives).name
    layers_modules = front_usage(view.complete())[0]  # axes: every cell any trial used
    grids = [trial_grid(chosen, layers_modules.layers, layers_modules.modules)]
    grids += list(front_usage(front))
    drawers = {
        "front": lambda p: plot_front(view.records, view.objectives, p, title=view.name),
        "history": lambda p: plot_history(
            view.searched(), view.objectives, p, hypervolume=view.hypervolume()
        ),
        "placement": lambda p: plot_placements(grids, p),
        "curves": lambda p: plot_curves(
            curves_of(view.records, [r.number for r in front], metric), p, metric=metric
        ),
    }
    for key, draw in drawers.items():
        path = tmp / f"{key}.png"
        try:
            draw(path)
        except (StudyError, ValueError):
            continue
        out[key] = base64.b64encode(path.read_bytes()).decode("ascii")
    return out


def _summary(view: StudyView) -> str:
    spec = view.spec
    counts = ", ".join(f"{k.lower()} {n}" for k, n in view.counts().items()) or "none"
    best = ", ".join(f"{k} {v:.4g}" for k, v in view.best_values().items())
    rows = [
        ("model", spec.get("model", {}).get("path", view.model_path)),
        ("dataset", spec.get("dataset", {}).get("source", "")),
        ("task", spec.get("task", "")),
        ("search space", spec.get("search_space", "")),
        ("sampler", (spec.get("sampler") or {}).get("name", "")),
        ("objectives", ", ".join(f"{o.name} ({o.direction})" for o in view.objectives)),
        ("parameter budget", f"{view.budget:,}"),
        ("trials", counts),
        ("best values", best),
        ("front size", str(len(view.front()))),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _findings(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p class='ok'>No finding: nothing in the stored trials suggests a problem.</p>"
    return "".join(
        f"<div class='finding'><b>{_e(f.check)}</b>: {_e(f.message)}<br>"
        f"<span class='muted'>evidence: {_e(f.evidence)}</span><br>what to do: {_e(f.action)}"
        "</div>"
        for f in findings
    )


def _front_table(view: StudyView) -> str:
    rows = front_rows(view.front(), view.objectives)
    if not rows:
        return ""
    keys = [k for k in rows[0] if not k.startswith("param.")]  # the per-cell point is long
    head = "".join(f"<th>{_e(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(_cell(row.get(k)) for k in keys) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _references(view: StudyView) -> str:
    """The reference configurations the study trained, if it names any (a trial whose stored
    metrics or params carry a ``reference`` name)."""
    refs = [r for r in view.complete() if _reference_name(r)]
    if not refs:
        return ""
    primary = primary_objective(view.objectives).name
    items = "".join(
        f"<tr><td>{_e(_reference_name(r))}</td><td class='num'>{r.number}</td>"
        f"<td class='num'>{r.values.get(primary, float('nan')):.4f}</td>"
        f"<td class='num'>{r.values.get('trainable_params', 0):,.0f}</td></tr>"
        for r in refs
    )
    return (
        "<h3>References</h3><table><tr><th>reference</th><th>trial</th>"
        f"<th>{_e(primary)}</th><th>trainable params</th></tr>{items}</table>"
    )


def _reference_name(record: TrialRecord) -> str:
    name: Any = getattr(record, "reference", None) or record.metrics.get("reference")
    return str(name) if name else ""


def _importances(found: Sequence[Importance]) -> str:
    parts = []
    for imp in found:
        if imp.note:
            parts.append(
                f"<p><b>{_e(imp.objective)}</b>: <span class='muted'>{_e(imp.note)}</span></p>"
            )
            continue
        groups = "".join(
            f"<td><b>by {_e(kind)}</b><br>"
            + "<br>".join(
                f"{_e(label)}: {100 * share:.1f}%" for label, share in list(g.items())[:8]
            )
            + "</td>"
            for kind, g in imp.groups.items()
        )
        top = "<br>".join(f"{_e(d)}: {100 * s:.1f}%" for d, s in list(imp.dims.items())[:8])
        parts.append(
            f"<p><b>{_e(imp.objective)}</b> <span class='muted'>({_e(imp.method)}, "
            f"{imp.trials} trials)</span></p><table><tr><td><b>top dimensions</b><br>{top}</td>"
            f"{groups}</tr></table>"
        )
    return "".join(parts)


def _config_text(view: StudyView, record: TrialRecord) -> str:
    from autopeft.results.export import config_json, trial_config

    try:
        return config_json(trial_config(view, record)).decode("utf-8")
    except StudyError as exc:
        return str(exc)


def _confirmations(view: StudyView) -> dict[int, Any]:
    from autopeft.storage.confirmations import latest
    from autopeft.storage.store import Store

    return latest(Store(view.url, create=False), view.name)


def _bounds(view: StudyView) -> dict[str, tuple[Any, ...]]:
    return stored_bounds(view)


def _img(data: str | None, alt: str) -> str:
    if data is None:
        return f"<p class='muted'>({_e(alt)}: not enough data to draw)</p>"
    return f"<img alt='{_e(alt, quote=True)}' src='data:image/png;base64,{data}'>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td class='num'>{value:.4g}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value:,}</td>"
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return f"<td>{_e('' if value is None else str(value))}</td>"


def _e(text: str, *, quote: bool = False) -> str:
    return html.escape(text, quote=quote)
