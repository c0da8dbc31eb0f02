"""What every ``autopeft`` command shares: the typer app, bad command-line input as one
``error:`` line, a user-input error as exit code 2, the common options and the console."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from autopeft.exceptions import UserInputError


class OneLineErrors(TyperGroup):
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
    cls=OneLineErrors,
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


def locate(study: str, storage: str | None) -> tuple[str, str, Path | None]:
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


def friendly(fn: F) -> F:
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


def make_console() -> Any:
    """A rich console; PIPE_WIDTH wide when stdout is not a terminal and COLUMNS is unset."""
    from rich.console import Console

    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return Console()
    return Console(width=PIPE_WIDTH)


class FileKind(StrEnum):
    spec = "spec"
    space = "space"
