"""The ``autopeft`` command line: a thin layer over the Python API.

Every command turns a :class:`~autopeft.exceptions.UserInputError` into one ``error:`` line on
stderr and exit code 2. Heavy libraries load inside commands, so ``--help`` is instant.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from autopeft.core.objectives import Pick
from autopeft.core.states import TrialState
from autopeft.exceptions import UserInputError

app = typer.Typer(
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
        help="Database URL (default: $AUTOPEFT_STORAGE, else sqlite:///autopeft.db; "
        "`run` also reads the spec's `storage`).",
    ),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    plot = "plot"


class ExecutorName(StrEnum):
    inprocess = "inprocess"
    ray = "ray"


def _friendly(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserInputError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _console() -> Any:
    from rich.console import Console

    return Console()


@app.command()
@_friendly
def validate(
    file: Annotated[Path, typer.Argument(help="A study spec or a search-space YAML file.")],
) -> None:
    """Check a study spec (with its space, dataset and model) or a search-space file."""
    from autopeft.core.validation import read_yaml
    from autopeft.exceptions import StudySpecError

    data, _ = read_yaml(file, StudySpecError)
    if "search_space" in data:
        from autopeft.run.prepare import prepare_study

        p = prepare_study(file)
        dims = len(p.bound.dimensions)
        typer.echo(
            f"ok: study {p.name!r} ({p.files.spec.task}, metric {p.files.spec.metric}): "
            f"{p.bound.layout.family} model with {p.bound.layout.num_layers} "
            f"layers, {len(p.splits.train)}/{len(p.splits.validation)}/{len(p.splits.test)} "
            f"train/validation/test examples, {dims} search dimensions"
        )
        for ref in p.references:
            where = "in the search space" if ref.point is not None else "a comparison point"
            over = ", over budget" if ref.over_budget else ""
            typer.echo(
                f"reference {ref.name}: {ref.compiled.method} "
                f"{ref.compiled.trainable_params:,} params ({where}{over})"
            )
    else:
        from autopeft.methods.binding import load_space

        space = load_space(file)
        typer.echo(
            f"ok: search space {space.name!r} ({' | '.join(space.method_choices())}, "
            f"{len(space.searched())} searched parameters)"
        )


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
def studies(storage: StorageOpt = None) -> None:
    """List the studies in a database."""
    from rich.table import Table

    from autopeft.results.views import list_studies

    table = Table(title="studies")
    for col in ("name", "trials", "front", "best metric", "model", "dataset", "sampler"):
        table.add_column(col)
    for v in list_studies(storage):
        metric = v.spec["metric"]
        direction = next((o.direction for o in v.objectives if o.name == metric), "maximize")
        pick = max if direction == "maximize" else min
        values = [r.values[metric] for r in v.complete() if metric in r.values]
        best = pick(values) if values else None
        counts = ", ".join(f"{k.lower()} {n}" for k, n in v.counts().items())
        table.add_row(
            v.name,
            counts,
            str(len(v.front())),
            "-" if best is None else f"{metric} {best:.4f}",
            v.spec["model"]["path"],
            v.spec["dataset"]["source"],
            v.spec["sampler"]["name"],
        )
    _console().print(table)


@app.command()
@_friendly
def show(
    name: Annotated[str, typer.Argument(help="Study name.")], storage: StorageOpt = None
) -> None:
    """Summarise a study: its spec, trial counts, best values, front and failures."""
    from autopeft.results import format_value
    from autopeft.results.views import load_view

    v = load_view(name, storage)
    spec, console = v.spec, _console()
    console.print(f"[bold]{v.name}[/bold]  ({v.url})")
    console.print(
        f"model {spec['model']['path']} | dataset {spec['dataset']['source']} | "
        f"space {spec['search_space']} | sampler {spec['sampler']['name']} | "
        f"spec budget {spec['n_trials']} trials"
    )
    console.print("objectives: " + ", ".join(f"{o.name} ({o.direction})" for o in v.objectives))
    if spec.get("warm_start"):
        console.print("warm-started from: " + ", ".join(spec["warm_start"]))
    console.print(
        "trials: " + (", ".join(f"{k.lower()} {n}" for k, n in v.counts().items()) or "none")
    )
    if v.rung_steps():
        factor = spec["fidelity"].get("reduction_factor", 3.0)
        console.print(
            f"multi-fidelity: rungs {' / '.join(map(str, v.rung_steps()))} steps, reduction "
            f"factor {factor:g}; finished per rung {' / '.join(map(str, v.rung_counts()))}; "
            f"{v.training_steps():,} training steps in all (fronts use the top rung)"
        )
    done = v.complete()
    if done:
        for metric, best in v.best_values().items():
            console.print(f"best {metric}: {format_value(metric, best)}")
        seconds = sum(r.metrics.get("train_seconds", 0.0) for r in done)
        console.print(f"Pareto front: {len(v.front())} trials | training time {seconds:,.0f} s")
        curve = v.hypervolume()
        marks = sorted({max(1, round(len(curve) * k / 4)) for k in range(1, 5)})
        progress = ", ".join(f"{curve[i - 1]:.4f} after {i}" for i in marks)
        console.print(f"hypervolume (normalised, see README): {progress} complete trials")
    _show_references(console, v)
    _show_memory(console, v)
    _show_confirmations(console, v, storage)
    for r in [r for r in v.records if r.state == TrialState.FAIL][-5:]:
        console.print(f"[red]trial {r.number} failed[/red]: {r.fail_reason}")


def _show_references(console: Any, v: Any) -> None:
    """Each reference against the searched front (:mod:`autopeft.results.references`)."""
    from autopeft.results.references import compare

    comparisons = compare(v.front(), v.references(), v.objectives)
    if comparisons:
        console.print("references against the front (validation split):", markup=False)
    for c in comparisons:
        over = " [over budget]" if v.over_budget(c.reference) else ""
        console.print(f"  {c.text()}{over}", markup=False)


def _show_memory(console: Any, v: Any) -> None:
    """Peak memory predicted before each trial against what it measured."""
    errors = sorted(abs(e) * 100 for e in v.memory_errors())
    if errors:
        median = statistics.median(errors)
        console.print(
            f"peak memory predicted vs measured: |error| median {median:.1f}%, max "
            f"{errors[-1]:.1f}% over {len(errors)} trials"
        )
        for r in v.complete()[-3:]:
            m = r.metrics
            if "predicted_peak_memory_mb" in m:
                console.print(
                    f"  trial {r.number}: predicted {m['predicted_peak_memory_mb']:.1f} MiB, "
                    f"measured {m['peak_memory_mb']:.1f} MiB"
                )
    skipped = [r for r in v.records if r.metrics.get("skipped")]
    if skipped:
        console.print(
            f"{len(skipped)} candidates skipped before launch (predicted over memory_cap_mb)"
        )


def _show_confirmations(console: Any, v: Any, storage: str | None) -> None:
    """How many trials `autopeft confirm` re-trained, and the best confirmed mean."""
    from autopeft.results import format_value, primary_objective
    from autopeft.results.views import open_store
    from autopeft.storage.confirmations import latest

    found = [c for c in latest(open_store(storage), v.name).values() if c.mean]
    if not found:
        return
    o = primary_objective(v.objectives)
    pick = max if o.direction == "maximize" else min
    best = pick(found, key=lambda c: c.mean[o.name])
    console.print(
        f"confirmed on the test split: {len(found)} trials (see `front --confirmed`); best "
        f"{o.name} {format_value(o.name, best.mean[o.name])} ± "
        f"{format_value(o.name, best.std[o.name])} (trial {best.trial}, {best.seeds} seeds)"
    )


@app.command()
@_friendly
def front(
    name: Annotated[str, typer.Argument(help="Study name.")],
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


@app.command()
@_friendly
def export(
    name: Annotated[str, typer.Argument(help="Study name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for adapter_config.json.")],
    trial: Annotated[int | None, typer.Option(help="Export this trial number.")] = None,
    pick: Annotated[Pick | None, typer.Option(help="Or pick from the Pareto front.")] = None,
    storage: StorageOpt = None,
    confirmed: Annotated[
        bool, typer.Option(help="Choose among confirmed trials, by their test-split means.")
    ] = False,
) -> None:
    """Write a trial's PEFT adapter_config.json, loadable with peft.PeftConfig.from_pretrained."""
    from autopeft.results import format_value
    from autopeft.results.export import export_config

    path, record = export_config(
        storage,
        name,
        out,
        trial=trial,
        pick=pick.value if pick is not None else None,
        confirmed=confirmed,
    )
    values = ", ".join(f"{k} {format_value(k, v)}" for k, v in record.values.items())
    what = (
        f"reference {record.reference} (trial {record.number})"
        if record.reference
        else (f"trial {record.number}")
    )
    typer.echo(f"exported {what} ({values}) to {path}")


@app.command()
@_friendly
def confirm(
    name: Annotated[str, typer.Argument(help="Study name.")],
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
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the spec's relative dataset path resolves (default: cwd)."),
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
        base_dir=data_dir,
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
    data_dir: Annotated[
        Path, typer.Option(help="Where submitted specs, driver logs and uploads are kept.")
    ] = Path("autopeft-service"),
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root",
            help="A directory submitted specs may take models and datasets from (repeatable); "
            "the data dir's `datasets/` always is one.",
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
        data_dir=data_dir,
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
