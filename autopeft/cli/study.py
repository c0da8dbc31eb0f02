"""Commands that check, scaffold and run a study: ``validate``, ``schema``, ``init``,
``inspect``, ``run`` and ``studies``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from autopeft.cli.common import (
    ExecutorName,
    FileKind,
    ListFormat,
    StorageOpt,
    app,
    friendly,
    locate,
    make_console,
)
from autopeft.exceptions import UserInputError


@app.command()
@friendly
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
@friendly
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
@friendly
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


@app.command(
    short_help="Show a model's layers and module roles, and which presets and methods apply to it."
)
@friendly
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
@friendly
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
    from autopeft.cli.front import print_front
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
    print_front(outcome.name, outcome.url, None)


@app.command()
@friendly
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
        _, url, found = locate(str(spec), storage)
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
    make_console().print(table)
