"""The ``autopeft`` command line: a thin layer over the Python API.

Every command turns a :class:`~autopeft.exceptions.UserInputError` into one ``error:`` line on
stderr and exit code 2 (:mod:`autopeft.cli.common`). Heavy libraries load inside commands, so
``--help`` is instant. The commands, in the order ``--help`` lists them: :mod:`~autopeft.cli.
study` (validate, schema, init, inspect, run, studies), :mod:`~autopeft.cli.show`,
:mod:`~autopeft.cli.front` (front, report, export), :mod:`~autopeft.cli.measure` (confirm,
profile) and :mod:`~autopeft.cli.service` (token, serve).
"""

from __future__ import annotations

import importlib

from autopeft.cli.common import app

for _module in ("study", "show", "front", "measure", "service"):  # registers the commands,
    importlib.import_module(f"autopeft.cli.{_module}")  # in the order --help lists them

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point.

    Ctrl-C (SIGINT) always stops a command cleanly, even when the process was started with
    SIGINT ignored (a background job of a non-interactive shell: ``autopeft serve &`` passes
    that on to the drivers it launches, which it stops with SIGINT)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    app()
