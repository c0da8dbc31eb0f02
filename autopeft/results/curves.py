"""Learning curves of trials: the training loss at each step (:mod:`autopeft.trial.curve`) and,
in a multi-fidelity study, the primary metric at each rung the configuration reached.

What ``autopeft show --curves`` prints (:func:`curve_line`, a sparkline per trial), ``autopeft
front --plot`` and the HTML report draw (:func:`plot_curves`) and the service's
``/api/studies/{name}/curves`` returns (:func:`curves_json`). A trial stored before curves
were recorded has an empty loss curve: it is drawn and printed as nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.exceptions import StudyError
from autopeft.storage.records import TrialRecord
from autopeft.trial.curve import stored_curve

_BARS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class TrialCurves:
    """One trial's learning curves.

    Attributes:
        trial: The trial number.
        loss: ``(step, mean training loss)`` points, steps from the configuration's first
            step (a promotion's curve includes its source's); empty when none is stored.
        rungs: ``(steps, metric value)`` at each rung its configuration reached, lowest
            first; empty in a single-fidelity study.
    """

    trial: int
    loss: list[tuple[int, float]]
    rungs: list[tuple[int, float]]


def trial_curves(records: Sequence[TrialRecord], number: int, metric: str) -> TrialCurves | None:
    """The curves of trial ``number`` (None if there is no such trial); ``metric``: the
    objective the rung markers show."""
    by_number = {r.number: r for r in records}
    record = by_number.get(number)
    if record is None:
        return None
    rungs: list[tuple[int, float]] = []
    step: TrialRecord | None = record
    while step is not None and step.rung is not None:
        if metric in step.values and "steps" in step.metrics:
            rungs.append((int(step.metrics["steps"]), float(step.values[metric])))
        source = step.promoted_from
        step = by_number.get(source) if source is not None else None
    return TrialCurves(number, stored_curve(record.metrics), rungs[::-1])


def curves_of(
    records: Sequence[TrialRecord], numbers: Sequence[int], metric: str
) -> list[TrialCurves]:
    """:func:`trial_curves` of each trial in ``numbers`` that exists, in that order."""
    found = (trial_curves(records, n, metric) for n in numbers)
    return [c for c in found if c is not None]


def curves_json(curves: Sequence[TrialCurves]) -> list[dict[str, Any]]:
    """JSON-able curves: ``[{trial, loss: [[step, loss], ...], rungs: [[steps, value], ...]}]``."""
    return [
        {"trial": c.trial, "loss": [list(p) for p in c.loss], "rungs": [list(p) for p in c.rungs]}
        for c in curves
    ]


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """``values`` as a line of block characters, low to high (resampled to at most ``width``
    characters by averaging neighbours); empty for no values."""
    if not values:
        return ""
    n = min(width, len(values))
    cuts = [round(i * len(values) / n) for i in range(n + 1)]
    means = [sum(values[a:b]) / (b - a) for a, b in itertools.pairwise(cuts)]
    low, high = min(means), max(means)
    if high - low <= 1e-12 * max(1.0, abs(high)):
        return _BARS[len(_BARS) // 2] * n
    top = len(_BARS) - 1
    return "".join(_BARS[round((v - low) / (high - low) * top)] for v in means)


def curve_line(curves: TrialCurves, metric: str = "metric") -> str:
    """One line: ``#N ▇▅▃▂▁ loss 0.693 -> 0.147 over 120 steps`` (and, after ``; metric``,
    its value at each rung: ``0.51@20 > 0.62@60``); empty when the trial stored no loss
    curve."""
    if not curves.loss:
        return ""
    (_, first), (last_step, last) = curves.loss[0], curves.loss[-1]
    line = f"#{curves.trial} {sparkline([v for _, v in curves.loss])} loss {first:.4g} -> "
    line += f"{last:.4g} over {last_step} steps"
    if curves.rungs:
        line += f"; {metric} " + " > ".join(f"{v:.3f}@{s}" for s, v in curves.rungs)
    return line


def plot_curves(
    curves: Sequence[TrialCurves], path: Path, *, metric: str = "", title: str = ""
) -> Path:
    """Plot training loss against step, one line per trial, as a PNG; where a trial reached
    several rungs, its ``metric`` at each rung as markers on a second axis.

    Raises:
        StudyError: If no trial in ``curves`` has a stored loss curve.
    """
    from autopeft.results.plot import _new_figure, _save

    drawn = [c for c in curves if c.loss]
    if not drawn:
        raise StudyError("nothing to plot: none of these trials stored a training loss curve")
    figure = _new_figure(1)
    ax = figure.add_subplot(1, 1, 1)
    marked = ax.twinx() if any(len(c.rungs) > 1 for c in drawn) else None
    for i, c in enumerate(drawn):
        colour = f"C{i % 10}"
        ax.plot(*zip(*c.loss, strict=True), color=colour, lw=1.4, label=f"#{c.trial}")
        if marked is not None and c.rungs:
            marked.plot(*zip(*c.rungs, strict=True), color=colour, marker="o", ls=":", lw=0.8)
    ax.set_xlabel("training step (from the configuration's start)")
    ax.set_ylabel("training loss (window mean)")
    if marked is not None:
        marked.set_ylabel(f"{metric} at each rung (markers)")
    figure.legend(loc="outside lower center", fontsize=8, ncols=min(len(drawn), 10))
    ax.set_title(title or "learning curves")
    return _save(figure, path)
