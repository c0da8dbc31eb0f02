"""Progress reporting for studies: a rich live view, or nothing (library use, tests)."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Silent base reporter; the study loop calls these hooks."""

    def study_started(self, name: str, done: int, total: int) -> None: ...
    def trial_started(self, number: int, summary: str, steps: int) -> None: ...
    def step(self, number: int, step: int, total: int) -> None: ...
    def trial_finished(self, number: int, line: str, done: int) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class RichReporter(Reporter):
    """Two bars: trials finished out of the budget, and the running trial's training steps."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self._study: Any = None
        self._trial: Any = None

    def study_started(self, name: str, done: int, total: int) -> None:
        self._study = self.progress.add_task(f"study {name}", total=total, completed=done)

    def trial_started(self, number: int, summary: str, steps: int) -> None:
        self.progress.console.print(f"[dim]trial {number}: {summary}[/dim]")
        if self._trial is not None:
            self.progress.remove_task(self._trial)
        self._trial = self.progress.add_task(f"  trial {number} steps", total=steps)

    def step(self, number: int, step: int, total: int) -> None:
        if self._trial is not None:
            self.progress.update(self._trial, completed=step, total=total)

    def trial_finished(self, number: int, line: str, done: int) -> None:
        self.progress.console.print(f"trial {number}: {line}")
        if self._study is not None:
            self.progress.update(self._study, completed=done)

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def close(self) -> None:
        self.progress.stop()
