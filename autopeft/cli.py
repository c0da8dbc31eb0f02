"""The ``autopeft`` command line: a thin layer over the Python API.

Every command turns a :class:`~autopeft.exceptions.UserInputError` into one ``error:`` line on
stderr and exit code 2. Heavy libraries load inside commands, so ``--help`` is instant.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from autopeft.core.objectives import Pick
from autopeft.core.states import TrialState
from autopeft.exceptions import UserInputError


class _OneLineErrors(TyperGroup):
    """Bad command-line input (an unknown option, a value out of range or not among the
    choices, a missing argument) as one ``error:`` line and exit code 2, like every other bad
    input, instead of click's usage box."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with _one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line():
            return super().invoke(ctx)


@contextmanager
def _one_line() -> Iterator[None]:
    errors = _click_exceptions()
    try:
        yield
    except errors.NoArgsIsHelpError:
        raise
    except errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "autopeft"
        message = " ".join(_usage_message(exc, errors).split()).rstrip(".")
        typer.echo(f"error: {where}: {message}; see `{where} --help`", err=True)
        raise typer.Exit(2) from None


def _usage_message(exc: Any, errors: Any) -> str:
    """click's message, with the value and the rule spelled out where typer hands over a
    pydantic validation error (its own message leaves the value out)."""
    found = getattr(exc.__cause__, "errors", None)
    if not isinstance(exc, errors.BadParameter) or exc.param is None or not callable(found):
        return str(exc.format_message())
    first = found()[0]
    rule = str(first["msg"]).removeprefix("Value error, ")
    if rule.startswith("Input should be "):
        rule = f"must be {rule.removeprefix('Input should be ')}, got {first['input']!r}"
    name = "/".join(exc.param.opts) or str(exc.param.name)
    return f"invalid value for {name}: {rule}"


def _click_exceptions() -> Any:
    """click's exceptions module as typer raises them (newer typer vendors click)."""
    import importlib

    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


app = typer.Typer(
    cls=_OneLineErrors,
    name="autopeft",
    help="Search PEFT configurations (method, rank, layer placement) for the best accuracy at "
    "the fewest trainable parameters and the least memory; keep the Pareto front in SQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Database URL (default: the spec's `storage` when a spec file is given, else "
        "$AUTOPEFT_STORAGE, else sqlite:///autopeft.db).",
    ),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    plot = "plot"


class ListFormat(StrEnum):
    table = "table"
    json = "json"


StudyArg = Annotated[
    str,
    typer.Argument(
        help="Study name, or its spec file (then the spec's `name` and `storage` are used)."
    ),
]


def _locate(study: str, storage: str | None) -> tuple[str, str, Path | None]:
    from autopeft.storage.urls import study_location

    return study_location(study, storage)


class ExecutorName(StrEnum):
    inprocess = "inprocess"
    ray = "ray"


def _print_version(value: bool) -> None:
    if value:
        from autopeft import __version__

        typer.echo(f"autopeft {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


def _friendly(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserInputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


#: Width of tables written to a file or a pipe (make demo's log, CI) when COLUMNS is unset:
#: rich's 80-column default wraps the front's seven columns into unreadable cells.
PIPE_WIDTH = 160


def _console() -> Any:
    """A rich console; PIPE_WIDTH wide when stdout is not a terminal and COLUMNS is unset."""
    from rich.console import Console

    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH)


class FileKind(StrEnum):
    spec = "spec"
    space = "space"


@app.command()
@_friendly
def validate(
    file: Annotated[Path, typer.Argument(help="A study spec or a search-space YAML file.")],
    kind: Annotated[
        FileKind | None,
        typer.Option(help="What the file is (default: told by its top-level keys)."),
    ] = None,
) -> None:
    """Check a study spec (with its space, dataset and model) or a search-space file."""
    from autopeft.run.validate import validate_file

    typer.echo(validate_file(file, kind.value if kind is not None else None))


@app.command()
@_friendly
def schema(
    kind: Annotated[FileKind, typer.Argument(help="spec (studies/*.yaml) or space.")],
) -> None:
    """Print the JSON Schema of a study spec or a search-space file (for editors)."""
    from autopeft.spec.schema import json_schema

    typer.echo(json.dumps(json_schema(kind.value), indent=2))


class TaskName(StrEnum):
    seq_cls = "seq_cls"
    causal_lm = "causal_lm"


@app.command()
@_friendly
def init(
    model: Annotated[
        str,
        typer.Option(
            help="A Hugging Face Hub ID, a local model directory, a .gguf file or a "
            "built-in model (minilm-l6, smollm2-135m)."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            help="A data file (.jsonl/.json/.csv/.parquet), a save_to_disk directory "
            "or a built-in dataset."
        ),
    ],
    task: Annotated[
        TaskName | None, typer.Option(help="Default: guessed from the data's columns.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where study.yaml and space.yaml go.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Study name (default: model_data).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="The spec's n_trials.")] = 20,
    max_steps: Annotated[int, typer.Option(min=1, help="Training steps per trial.")] = 100,
    revision: Annotated[str | None, typer.Option(help="Hub revision of --model.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite study.yaml/space.yaml in --out.")] = False,
) -> None:
    """Write a study spec and a search space sized to MODEL and DATA, validated as written."""
    from autopeft.run.scaffold import BUDGET_FRACTION, scaffold_study

    s = scaffold_study(
        model, data, out=out, task=task.value if task else None, name=name, trials=trials,
        max_steps=max_steps, revision=revision, force=force,
    )  # fmt: skip
    train, validation, test = s.examples
    typer.echo(
        f"model: {s.family}, {s.num_layers} layers, {s.model_params:,} parameters; presets: "
        f"{', '.join(s.presets)}\n"
        f"data: {s.data} ({s.task}), {train}/{validation}/{test} train/validation/test, "
        f"seq_len {s.seq_len}\n"
        f"budget: {s.budget:,} trainable parameters ({BUDGET_FRACTION:.0%} of the model)\n"
        f"wrote {s.spec_path} and {s.space_path}; next: autopeft run {s.spec_path}"
    )


@app.command()
@_friendly
def inspect(
    model: Annotated[
        str, typer.Argument(help="A built-in model name, a model directory or a .gguf file.")
    ],
    task: Annotated[
        str | None,
        typer.Option(help="causal_lm or seq_cls (default: from the model's config)."),
    ] = None,
) -> None:
    """Show a model's family, layers, module roles (shapes, parameters) and which presets and
    methods apply to it: what to write a search space against."""
    from autopeft.run.inspect_model import inspect_model

    for line in inspect_model(model, task).lines():
        typer.echo(line)


@app.command()
@_friendly
def run(
    study: Annotated[Path, typer.Argument(help="Study spec YAML (see studies/demo.yaml).")],
    trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Total finished trials wanted (in a multi-fidelity study: configurations; "
            "promotions come on top).",
        ),
    ] = None,
    storage: StorageOpt = None,
    name: Annotated[str | None, typer.Option(help="Study name (default: the spec's name).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    executor: Annotated[
        ExecutorName | None, typer.Option(help="Where trials run (default: the spec's).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Concurrent trials (Ray executor).")
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="GPUs the study may use (0: CPU only; default: every GPU torch sees, one Ray "
            "worker each, or more per GPU when they fit).",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="Join a Ray cluster: auto, host:port or ray://host:port."),
    ] = None,
    warm_start: Annotated[
        list[str] | None,
        typer.Option(
            "--warm-start",
            help="Seed a new study from this stored study's front (repeatable; added to the "
            "spec's `warm_start`).",
        ),
    ] = None,
    ray_token_file: Annotated[
        Path | None,
        typer.Option(
            help="Token of a token-auth Ray cluster (default: $RAY_AUTH_TOKEN, the file in "
            "$RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token; RAY_AUTH_MODE is set for you).",
        ),
    ] = None,
) -> None:
    """Create a study, or resume it, and run trials until it has its budget of finished trials.

    Ctrl-C stops it; run the same command again to resume: finished trials are kept, the
    interrupted ones are re-run. --executor/--workers/--address override the spec's
    `executor` block; they may differ between runs of the same study.
    """
    from autopeft.run.driver import run_study
    from autopeft.run.progress import Reporter, RichReporter

    if ray_token_file is not None:
        from autopeft.executors.ray_auth import use_token_file

        use_token_file(ray_token_file)
    options = {
        "name": executor.value if executor is not None else None,
        "workers": workers,
        "address": address,
        "gpus": gpus,
    }
    reporter = Reporter() if quiet else RichReporter()
    try:
        outcome = run_study(
            study,
            trials=trials,
            storage=storage,
            name=name,
            reporter=reporter,
            executor_options=options,
            warm_start=warm_start or (),
        )
    except KeyboardInterrupt:
        reporter.close()
        typer.echo(
            "interrupted: finished trials are stored; run the same command to resume", err=True
        )
        raise typer.Exit(130) from None
    finally:
        reporter.close()
    _print_front(outcome.name, outcome.url, None)


@app.command()
@_friendly
def studies(
    spec: Annotated[
        Path | None,
        typer.Argument(help="A study spec: list the studies in the database it names."),
    ] = None,
    storage: StorageOpt = None,
    format: Annotated[
        ListFormat,
        typer.Option("--format", "-f", help="table, or json (keys: see the docs, JSON output)."),
    ] = ListFormat.table,
) -> None:
    """List the studies in a database."""
    from rich.table import Table

    from autopeft.results.digest import study_digest
    from autopeft.results.views import list_studies

    url = storage
    if spec is not None:
        _, url, found = _locate(str(spec), storage)
        if found is None:
            raise UserInputError(f"{spec}: no such study spec file (`studies` takes a spec)")
    digests = [study_digest(v) for v in list_studies(url)]
    if format is ListFormat.json:
        typer.echo(json.dumps(digests, indent=2))
        return
    table = Table(title="studies")
    for col in ("name", "trials", "front", "best metric", "model", "dataset", "sampler"):
        table.add_column(col)
    for d in digests:
        metric, counts = d["metric"], {k: n for k, n in d["counts"].items() if n}
        best = d["best"].get(metric)
        table.add_row(
            d["name"],
            ", ".join(f"{k} {n}" for k, n in counts.items()),
            str(d["front_size"]),
            "-" if best is None else f"{metric} {best:.4f}",
            d["model"],
            d["dataset"],
            d["sampler"],
        )
    _console().print(table)


@app.command()
@_friendly
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

    name, url, _ = _locate(name, storage)
    v = load_view(name, url)
    confirmed = latest(open_store(url), v.name)
    d = show_digest(v, confirmed)
    findings = _health(v, confirmed)
    front_curves = _front_curves(v) if curves else None
    if format is ListFormat.json:
        extra = {} if front_curves is None else {"loss_curves": _curves_json(front_curves)}
        typer.echo(json.dumps({**d, "health": [asdict(f) for f in findings], **extra}, indent=2))
        return
    console = _console()
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
    _show_references(console, v)
    _show_memory(console, v, d)
    _show_confirmations(console, d)
    for r in [r for r in v.records if r.state == TrialState.FAIL][-5:]:
        console.print(f"[red]trial {r.number} failed[/red]: {r.fail_reason}")
    for finding in findings:
        console.print(f"[yellow]health[/yellow] {finding.line()}", highlight=False)
    if front_curves is not None:
        _show_curves(console, front_curves, _primary(v))


def _primary(v: Any) -> str:
    from autopeft.results.picks import primary_objective

    return primary_objective(v.objectives).name


def _front_curves(v: Any) -> list[Any]:
    from autopeft.results.curves import curves_of

    return curves_of(v.records, [r.number for r in v.front()], _primary(v))


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


def _show_references(console: Any, v: Any) -> None:
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


@app.command()
@_friendly
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
    name, storage = _locate(name, storage)[:2]
    if format is Format.plot and plot is None:
        plot = Path(f"front_{name}{'_confirmed' if confirmed else ''}.png")
    if confirmed:
        _print_confirmed(name, storage, plot, format)
    else:
        _print_front(name, storage, plot, format)


def _print_confirmed(name: str, storage: str | None, plot: Path | None, fmt: Format) -> None:
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
        _console().print(confirmed_table(rows, v.objectives, title=title))
    if plot is not None:
        path = plot_confirmed(rows, v.objectives, plot, title=f"{name}: confirmed on test")
        typer.echo(f"plot: {path}", err=fmt in (Format.json, Format.csv))


def _print_front(
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
        _console().print(render_table(points, v.objectives, title=title, budget=v.budget))
    if plot is not None and points:
        plot_front(v.records, v.objectives, plot, title=f"{name}: Pareto front")
        history = plot.with_name(f"{plot.stem}_history{plot.suffix or '.png'}")
        plot_history(v.searched(), v.objectives, history, hypervolume=v.hypervolume())
        typer.echo(f"plot: {plot}\nhistory: {history}", err=fmt is not Format.table)
        curves = _front_curves(v)
        if any(c.loss for c in curves):
            from autopeft.results.curves import plot_curves

            out = plot.with_name(f"{plot.stem}_curves{plot.suffix or '.png'}")
            plot_curves(curves, out, metric=_primary(v), title=f"{name}: learning curves (front)")
            typer.echo(f"curves: {out}", err=fmt is not Format.table)


@app.command()
@_friendly
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


@app.command()
@_friendly
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

    name, storage = _locate(name, storage)[:2]
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


@app.command()
@_friendly
def confirm(
    name: StudyArg,
    front: Annotated[
        bool,
        typer.Option("--front", help="Confirm the Pareto front and the references (default)."),
    ] = False,
    top: Annotated[
        int | None, typer.Option(help="Confirm the K best trials by the task metric.")
    ] = None,
    trial: Annotated[
        list[int] | None, typer.Option(help="Confirm this trial (repeatable).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Runs per trial, seeds spec.seed + 0..S-1.")] = 3,
    steps: Annotated[
        int | None, typer.Option(help="Training steps per run (default: the study's).")
    ] = None,
    storage: StorageOpt = None,
    spec_dir: Annotated[
        Path | None,
        typer.Option(
            help="The directory the study's spec was in: its relative dataset path resolves "
            "here (default: the spec file's directory when NAME is a spec, else cwd).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(hidden=True, help="Old spelling of --spec-dir (still accepted).")
    ] = None,
    executor: Annotated[
        ExecutorName | None, typer.Option(help="Where runs go (default: the study's).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Concurrent runs (Ray).")] = None,
    address: Annotated[str | None, typer.Option(help="Join a Ray cluster.")] = None,
) -> None:
    """Re-train chosen trials with several seeds and score them on the held-out test split.

    Stores test mean and std per objective (see `front --confirmed`, `export --confirmed`).
    Trials already confirmed with the same steps and seeds are not run again."""
    from autopeft.run.confirm import confirm_study

    name, storage, spec = _locate(name, storage)
    base_dir = spec_dir or data_dir or (spec.parent if spec is not None else None)
    options = {
        "name": executor.value if executor is not None else None,
        "workers": workers,
        "address": address,
    }
    outcome = confirm_study(
        name,
        storage,
        front=front,
        top=top,
        trials=trial or (),
        seeds=seeds,
        steps=steps,
        base_dir=base_dir,
        executor_options=options,
        message=lambda line: typer.echo(line, err=True),
    )
    for c in [*outcome.reused, *outcome.confirmed]:
        stats = (
            ", ".join(f"{k} {c.mean[k]:.4g} ± {c.std[k]:.2g}" for k in c.mean)
            or "every seed failed"
        )
        typer.echo(
            f"trial {c.trial}: {stats} ({c.finished}/{c.seeds} seeds, {c.steps} steps, test)"
        )
    typer.echo(
        f"confirmed {len(outcome.confirmed)} trial(s); {len(outcome.reused)} already confirmed"
    )


@app.command()
@_friendly
def profile(
    study_or_spec: Annotated[
        str, typer.Argument(help="A study spec YAML (measures once, then reuses) or a study name.")
    ],
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Profile kind: sensitivity, importance, adalora (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Heatmap PNG (default: profile_NAME.png).")
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Print a study's allocation profiles (layers x modules) and write them as a heatmap."""
    from autopeft.exceptions import UserInputError as InputError
    from autopeft.results.heatmap import plot_profiles, profile_table
    from autopeft.run.profiling import profiles_for

    known = ("sensitivity", "importance", "adalora")
    for k in kind or ():
        if k not in known:
            raise InputError(f"unknown profile kind {k!r}; kinds: {', '.join(known)}")
    label, profiles = profiles_for(study_or_spec, storage, kinds=kind)
    console = _console()
    for p in profiles.values():
        console.print(profile_table(p, title=f"{label}: {p.kind} ({p.seconds:.1f} s to measure)"))
    path = plot_profiles(profiles, out or Path(f"profile_{label}.png"), title=label)
    typer.echo(f"heatmap: {path}")


token_app = typer.Typer(help="API tokens of `autopeft serve` (only their hashes are stored).")
app.add_typer(token_app, name="token")


class Scope(StrEnum):
    read = "read"
    write = "write"


def _token_store(storage: str | None) -> Any:
    from autopeft.storage.store import Store
    from autopeft.storage.urls import resolve_storage

    return Store(resolve_storage(storage))


@token_app.command("create")
@_friendly
def token_create(
    scope: Annotated[Scope, typer.Option(help="read: GET endpoints; write: everything.")],
    storage: StorageOpt = None,
) -> None:
    """Create a token; it is printed once, as the last line, and only its hash is stored."""
    from autopeft.storage.tokens import create_token

    token_id, token = create_token(_token_store(storage), scope.value)
    typer.echo(f"created {scope.value} token {token_id} (shown once; store it now):")
    typer.echo(token)


@token_app.command("list")
@_friendly
def token_list(storage: StorageOpt = None) -> None:
    """List tokens: id, scope, created, revoked."""
    from autopeft.storage.tokens import list_tokens

    for t in list_tokens(_token_store(storage)):
        revoked = f"revoked {t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "active"
        typer.echo(f"{t.id}\t{t.scope}\tcreated {t.created_at:%Y-%m-%d %H:%M:%S}\t{revoked}")


@token_app.command("revoke")
@_friendly
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The id `token list` shows.")],
    storage: StorageOpt = None,
) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    from autopeft.storage.tokens import revoke_token

    info = revoke_token(_token_store(storage), token_id)
    typer.echo(f"revoked token {info.id} ({info.scope})")


@app.command()
@_friendly
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    storage: StorageOpt = None,
    public_read: Annotated[
        bool, typer.Option("--public-read", help="Serve reads without a token.")
    ] = False,
    service_dir: Annotated[
        Path,
        typer.Option(
            help="The server's own directory: submitted specs, driver logs and uploaded "
            "datasets are kept here."
        ),
    ] = Path("autopeft-service"),
    data_dir: Annotated[
        Path | None,
        typer.Option(hidden=True, help="Old spelling of --service-dir (still accepted)."),
    ] = None,
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root",
            help="A directory submitted specs may take models and datasets from (repeatable); "
            "the service dir's `datasets/` always is one.",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Run every submitted study's driver (a detached Ray actor) and its trials on "
            "this Ray cluster; without it, drivers are local processes."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the web UI (needs the `service` extra)."""
    try:
        import uvicorn

        from autopeft.service import create_app
    except ImportError as exc:
        from autopeft.exceptions import UnsupportedError

        raise UnsupportedError(
            f"`autopeft serve` needs the service extra: pip install 'autopeft[service]' ({exc})"
        ) from None
    from autopeft.storage.urls import resolve_storage

    application = create_app(
        resolve_storage(storage),
        public_read=public_read,
        roots=root or (),
        data_dir=data_dir or service_dir,
        address=address,
    )
    uvicorn.run(application, host=host, port=port, log_level="info")


def main() -> None:
    """Console-script entry point.

    Ctrl-C (SIGINT) always stops a command cleanly, even when the process was started with
    SIGINT ignored (a background job of a non-interactive shell: ``autopeft serve &`` passes
    that on to the drivers it launches, which it stops with SIGINT)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    app()


if __name__ == "__main__":
    main()
