"""``autopeft show``: a study's summary, rung correlations, references, memory model,
confirmations, failures and health findings, as text or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer

from autopeft.cli.common import (
    ListFormat,
    StorageOpt,
    StudyArg,
    app,
    friendly,
    locate,
    make_console,
)
from autopeft.core.states import TrialState


@app.command()
@friendly
def show(
    name: StudyArg,
    storage: StorageOpt = None,
    format: Annotated[
        ListFormat,
        typer.Option("--format", "-f", help="table, or json (keys: see the docs, JSON output)."),
    ] = ListFormat.table,
    curves: Annotated[
        bool,
        typer.Option(
            "--curves",
            help="Also the front's learning curves: training loss per step (a sparkline with "
            "first and last loss; JSON: loss_curves) and the metric at each rung.",
        ),
    ] = False,
) -> None:
    """Summarise a study: its spec, trial counts, best values, front and failures."""
    from autopeft.results import format_value
    from autopeft.results.digest import show_digest
    from autopeft.results.views import load_view, open_store
    from autopeft.storage.confirmations import latest

    name, url, _ = locate(name, storage)
    v = load_view(name, url)
    confirmed = latest(open_store(url), v.name)
    d = show_digest(v, confirmed)
    findings = _health(v, confirmed)
    found = front_curves(v) if curves else None
    if format is ListFormat.json:
        extra = {} if found is None else {"loss_curves": _curves_json(found)}
        typer.echo(json.dumps({**d, "health": [asdict(f) for f in findings], **extra}, indent=2))
        return
    console = make_console()
    console.print(f"[bold]{v.name}[/bold]  ({v.url})")
    console.print(
        f"model {d['model']} | dataset {d['dataset']} | space {d['search_space']} | sampler "
        f"{d['sampler']} | spec budget {_budget_text(d)}"
    )
    console.print("objectives: " + ", ".join(f"{o.name} ({o.direction})" for o in v.objectives))
    if d["warm_start"]:
        console.print("warm-started from: " + ", ".join(d["warm_start"]))
    console.print(
        "trials: " + (", ".join(f"{k.lower()} {n}" for k, n in v.counts().items()) or "none")
    )
    if v.devices():
        console.print("devices: " + ", ".join(f"{dev} ({n})" for dev, n in v.devices().items()))
    if d["fidelity"]:
        f = d["fidelity"]
        console.print(
            f"multi-fidelity: rungs {' / '.join(map(str, f['rung_steps']))} steps, reduction "
            f"factor {f['reduction_factor']:g}; finished per rung "
            f"{' / '.join(map(str, f['rung_counts']))}; {f['training_steps']:,} training steps "
            "in all (fronts use the top rung)"
        )
        _show_rungs(console, f)
    if v.complete():
        for metric, best in d["best"].items():
            console.print(f"best {metric}: {format_value(metric, best)}")
        console.print(
            f"Pareto front: {d['front_size']} trials | training time {d['training_seconds']:,.0f} s"
        )
        curve = v.hypervolume()
        marks = sorted({max(1, round(len(curve) * k / 4)) for k in range(1, 5)})
        progress = ", ".join(f"{curve[i - 1]:.4f} after {i}" for i in marks)
        console.print(f"hypervolume (normalised, see README): {progress} complete trials")
    show_references(console, v)
    _show_memory(console, v, d)
    _show_confirmations(console, d)
    for r in [r for r in v.records if r.state == TrialState.FAIL][-5:]:
        console.print(f"[red]trial {r.number} failed[/red]: {r.fail_reason}")
    for finding in findings:
        console.print(f"[yellow]health[/yellow] {finding.line()}", highlight=False)
    if found is not None:
        _show_curves(console, found, primary_metric(v))


def primary_metric(v: Any) -> str:
    from autopeft.results.picks import primary_objective

    return primary_objective(v.objectives).name


def front_curves(v: Any) -> list[Any]:
    from autopeft.results.curves import curves_of

    return curves_of(v.records, [r.number for r in v.front()], primary_metric(v))


def _curves_json(found: list[Any]) -> list[dict[str, Any]]:
    from autopeft.results.curves import curves_json

    return curves_json(found)


def _show_curves(console: Any, found: list[Any], metric: str) -> None:
    """The front's training loss curves, one sparkline line per trial that stored one."""
    from autopeft.results.curves import curve_line

    lines = [line for line in (curve_line(c, metric) for c in found) if line]
    if not lines:
        console.print("learning curves: none stored for the front's trials", highlight=False)
        return
    console.print("learning curves (front, training loss per step):", highlight=False)
    for line in lines:
        console.print("  " + line, highlight=False, markup=False, soft_wrap=True)


def _budget_text(d: dict) -> str:
    """``20 trials``, ``4,000 steps (1,234 spent)`` or both (``show``)."""
    parts = [] if d["target"] is None else [f"{d['target']} trials"]
    if d["budget_steps"] is not None:
        parts.append(f"{d['budget_steps']:,} steps ({d['steps_spent']:,} spent)")
    return ", ".join(parts)


def _show_rungs(console: Any, f: dict[str, Any]) -> None:
    """Each low rung's rank correlation with the top rung, and the front's learning curves."""
    if f["correlations"]:
        console.print(
            "rank correlation with the top rung: "
            + ", ".join(
                f"rung {c['rung']} {c['rho']:.2f} ({c['pairs']} configs"
                + (", distrusted)" if c["distrusted"] else ")")
                for c in f["correlations"]
            ),
            highlight=False,
        )
    curves = [f"#{n} " + " > ".join(f"{x:.3f}" for x in c) for n, c in f["curves"].items() if c]
    if curves:
        console.print("metric per rung (front): " + "; ".join(curves[:5]), highlight=False)


def _health(v: Any, confirmed: Any) -> list[Any]:
    """The study's health findings (:mod:`autopeft.results.health`)."""
    from autopeft.results.health import check_study, stored_bounds

    return check_study(v, confirmations=confirmed, bounds=stored_bounds(v))


def show_references(console: Any, v: Any) -> None:
    """Each reference against the searched front (:mod:`autopeft.results.references`)."""
    from autopeft.results.references import compare

    comparisons = compare(v.front(), v.references(), v.objectives)
    if comparisons:
        console.print("references against the front (validation split):", markup=False)
    for c in comparisons:
        over = " [over budget]" if v.over_budget(c.reference) else ""
        console.print(f"  {c.text()}{over}", markup=False)


def _show_memory(console: Any, v: Any, d: dict[str, Any]) -> None:
    """Peak memory predicted before each trial against what it measured."""
    if d["memory"]:
        m = d["memory"]
        console.print(
            f"peak memory predicted vs measured: |error| median "
            f"{m['median_abs_error_pct']:.1f}%, max {m['max_abs_error_pct']:.1f}% over "
            f"{m['trials']} trials"
        )
        for r in v.complete()[-3:]:
            metrics = r.metrics
            if "predicted_peak_memory_mb" in metrics:
                console.print(
                    f"  trial {r.number}: predicted {metrics['predicted_peak_memory_mb']:.1f} "
                    f"MiB, measured {metrics['peak_memory_mb']:.1f} MiB"
                )
    if d["skipped"]:
        console.print(
            f"{d['skipped']} candidates skipped before launch (predicted over memory_cap_mb)"
        )


def _show_confirmations(console: Any, d: dict[str, Any]) -> None:
    """How many trials `autopeft confirm` re-trained, and the best confirmed mean."""
    from autopeft.results import format_value

    c = d["confirmed"]
    if not c:
        return
    name, best = c["objective"], c["best"]
    console.print(
        f"confirmed on the test split: {c['trials']} trials (see `front --confirmed`); best "
        f"{name} {format_value(name, best['mean'][name])} ± "
        f"{format_value(name, best['std'][name])} (trial {best['trial']}, {best['seeds']} seeds)"
    )
