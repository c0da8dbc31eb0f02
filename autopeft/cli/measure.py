"""Commands that train to measure: ``confirm`` (chosen trials re-trained with several seeds,
scored on the test split) and ``profile`` (a study's allocation profiles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autopeft.cli.common import (
    ExecutorName,
    StorageOpt,
    StudyArg,
    app,
    friendly,
    locate,
    make_console,
)


@app.command()
@friendly
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

    name, storage, spec = locate(name, storage)
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
@friendly
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
    console = make_console()
    for p in profiles.values():
        console.print(profile_table(p, title=f"{label}: {p.kind} ({p.seconds:.1f} s to measure)"))
    path = plot_profiles(profiles, out or Path(f"profile_{label}.png"), title=label)
    typer.echo(f"heatmap: {path}")
