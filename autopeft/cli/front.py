"""Commands that read a study's results: ``front`` (table, JSON, CSV, plots), ``report``
(the HTML report) and ``export`` (a trial's config for peft, TRL, Axolotl, LLaMA-Factory)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from autopeft.cli.common import Format, StorageOpt, StudyArg, app, friendly, locate, make_console
from autopeft.cli.show import front_curves, primary_metric
from autopeft.core.objectives import Pick
from autopeft.exceptions import UserInputError


@app.command()
@friendly
def front(
    name: StudyArg,
    storage: StorageOpt = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    plot: Annotated[Path | None, typer.Option(help="Also write the front as a PNG here.")] = None,
    confirmed: Annotated[
        bool,
        typer.Option(help="The confirmed trials: test-split mean and std (`autopeft confirm`)."),
    ] = False,
) -> None:
    """Print the Pareto front (accuracy vs trainable params vs peak memory) of a study.

    `--format plot` writes the PNG to --plot (default: front_NAME[_confirmed].png)."""
    name, storage = locate(name, storage)[:2]
    if format is Format.plot and plot is None:
        plot = Path(f"front_{name}{'_confirmed' if confirmed else ''}.png")
    if confirmed:
        print_confirmed(name, storage, plot, format)
    else:
        print_front(name, storage, plot, format)


def print_confirmed(name: str, storage: str | None, plot: Path | None, fmt: Format) -> None:
    from autopeft.results.confirmed import (
        confirmed_rows,
        confirmed_table,
        flat_rows,
        plot_confirmed,
    )
    from autopeft.results.table import write_csv
    from autopeft.results.views import load_view, open_store
    from autopeft.storage.confirmations import latest

    v = load_view(name, storage)
    rows = confirmed_rows(v.records, latest(open_store(storage), name), v.objectives)
    if not rows:
        raise UserInputError(
            f"study {name!r} has no confirmed trials; run `autopeft confirm {name}`"
        )
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
    elif fmt is Format.csv:
        write_csv(flat_rows(rows), sys.stdout)
    elif fmt is Format.table:
        title = f"confirmed trials of {name} (test split, * = confirmed front)"
        make_console().print(confirmed_table(rows, v.objectives, title=title))
    if plot is not None:
        path = plot_confirmed(rows, v.objectives, plot, title=f"{name}: confirmed on test")
        typer.echo(f"plot: {path}", err=fmt in (Format.json, Format.csv))


def print_front(
    name: str, storage: str | None, plot: Path | None, fmt: Format = Format.table
) -> None:
    from autopeft.results import front_rows, plot_front, plot_history, render_table, write_csv
    from autopeft.results.views import load_view

    v = load_view(name, storage)
    points = v.front() + v.references()  # the references beside the front, never in it
    rows = front_rows(points, v.objectives, v.budget)
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
    elif fmt is Format.csv:
        write_csv(rows, sys.stdout)
    elif fmt is Format.table:
        title = f"Pareto front of {name}" + (" and its references" if v.references() else "")
        make_console().print(render_table(points, v.objectives, title=title, budget=v.budget))
    if plot is not None and points:
        plot_front(v.records, v.objectives, plot, title=f"{name}: Pareto front")
        history = plot.with_name(f"{plot.stem}_history{plot.suffix or '.png'}")
        plot_history(v.searched(), v.objectives, history, hypervolume=v.hypervolume())
        typer.echo(f"plot: {plot}\nhistory: {history}", err=fmt is not Format.table)
        curves = front_curves(v)
        if any(c.loss for c in curves):
            from autopeft.results.curves import plot_curves

            out = plot.with_name(f"{plot.stem}_curves{plot.suffix or '.png'}")
            plot_curves(
                curves, out, metric=primary_metric(v), title=f"{name}: learning curves (front)"
            )
            typer.echo(f"curves: {out}", err=fmt is not Format.table)


@app.command(short_help="Write a self-contained HTML report: front, placement, importance, health.")
@friendly
def report(
    name: Annotated[str, typer.Argument(help="Study name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    pick: Annotated[
        Pick, typer.Option(help="The trial whose placement and config the report shows.")
    ] = Pick.knee,
    png: Annotated[
        Path | None,
        typer.Option(help="Also write the placement maps (chosen trial and front) as a PNG."),
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Write one self-contained HTML report of a study: the front in both projections,
    placement maps, importance, health checks, references and the chosen trial's config."""
    from autopeft.results.html_report import write_report
    from autopeft.results.views import load_view

    view = load_view(name, storage)
    write_report(view, out, pick=pick.value)
    typer.echo(f"wrote {out}")
    if png is not None:
        from autopeft.results.picks import pick_trial
        from autopeft.results.placement_map import front_usage, plot_placements, trial_grid

        chosen = pick_trial(view.records, view.objectives, pick.value)
        axes = front_usage(view.complete())[0]  # axes: every cell any trial used
        grids = [trial_grid(chosen, axes.layers, axes.modules), *front_usage(view.front())]
        plot_placements(grids, png, title=f"{name}: trial {chosen.number} and the front")
        typer.echo(f"wrote {png}")


@app.command(short_help="Write a trial's config for peft, TRL, Axolotl or LLaMA-Factory.")
@friendly
def export(
    name: StudyArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the exported files.")],
    trial: Annotated[int | None, typer.Option(help="Export this trial number.")] = None,
    pick: Annotated[Pick | None, typer.Option(help="Or pick from the Pareto front.")] = None,
    storage: StorageOpt = None,
    confirmed: Annotated[
        bool, typer.Option(help="Choose among confirmed trials, by their test-split means.")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="peft, trl, axolotl or llamafactory.")
    ] = "peft",
    with_data: Annotated[
        bool, typer.Option(help="Also write the study's train/validation rows under data/.")
    ] = False,
) -> None:
    """Write a trial's adapter_config.json, training.json and README.md (plus the format's
    own files: TRL's sft_config.json and train.py, axolotl.yaml or llamafactory.yaml)."""
    from autopeft.results import format_value
    from autopeft.results.export import export_trial

    name, storage = locate(name, storage)[:2]
    exported = export_trial(
        storage,
        name,
        out,
        trial=trial,
        pick=pick.value if pick is not None else None,
        confirmed=confirmed,
        fmt=fmt,
        with_data=with_data,
    )
    record = exported.record
    values = ", ".join(f"{k} {format_value(k, v)}" for k, v in record.values.items())
    what = (
        f"reference {record.reference} (trial {record.number})"
        if record.reference
        else f"trial {record.number}"
    )
    typer.echo(f"exported {what} ({values}) to {exported.files[0]}")
    names = ", ".join(str(p.relative_to(exported.directory)) for p in exported.files)
    typer.echo(f"files: {names} in {exported.directory}")
    if exported.lost:
        typer.echo(f"lost ({fmt} cannot express):")
        for item in exported.lost:
            typer.echo(f"  - {item}")
