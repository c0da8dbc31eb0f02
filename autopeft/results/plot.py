"""PNG plots of a study: the Pareto front and the search history.

matplotlib is imported inside the functions, so importing :mod:`autopeft.results` stays fast.
The figures are drawn on an Agg canvas of their own: no pyplot, no global backend switch and
no open figures left behind, so plotting is safe on headless machines and in notebooks.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from autopeft.core.files import write_atomic
from autopeft.core.objectives import Objective
from autopeft.exceptions import StudyError, UserInputError
from autopeft.results.picks import complete_records, pareto_front, pareto_indices, primary_objective
from autopeft.storage.records import TrialRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_front", "plot_history"]

_DPI = 120
_PANEL_SIZE = (6.4, 5.0)
_GREY = "#b0b0b0"
_FRONT_COLOUR = "tab:red"
_CMAP = "viridis"
_LOG_SPAN = 100.0  # a positive axis spanning this ratio or more is drawn on a log scale
_FONT_SIZE = 8
_DIGIT_WIDTH = 0.64 * _FONT_SIZE  # points; DejaVu Sans digits are 0.636 em wide
_LABEL_HEIGHT = 1.2 * _FONT_SIZE
_FRONT_RADIUS = 4.5  # points, a front marker of size 60 plus its edge
_TRIAL_RADIUS = 2.5  # points, a grey marker of size 16
# Where a trial-number label may go, as (dx, dy) points from its point, in order of preference.
_LABEL_OFFSETS = ((7, 0), (-7, 0), (5, 5), (-5, 5), (5, -5), (-5, -5), (0, 8), (0, -8))
_ALIGN_X = {1: "left", 0: "center", -1: "right"}
_ALIGN_Y = {1: "bottom", 0: "center", -1: "top"}

_Box = tuple[float, float, float, float]
"""A box in points: x0, y0, x1, y1."""


def plot_front(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    path: Path,
    *,
    title: str = "",
) -> Path:
    """Plot the Pareto front of a study as a PNG.

    One panel per objective other than the accuracy (the first maximized objective): the
    accuracy (y) against that objective (x), e.g. ``trainable_params`` (log scale) then
    ``peak_memory_mb``. Each panel shows every complete trial in grey, highlights the
    trials of the full Pareto front (coloured by the next other objective, with a colorbar,
    and annotated with their trial numbers) and draws the 2-D non-dominated staircase of the
    two plotted objectives as a step line. Objectives the study lacks give no panel.

    Args:
        records: Stored trials, in any state; incomplete ones are ignored.
        objectives: The study's objectives (names and directions); at least two.
        path: Where to write the PNG; missing parent folders are created.
        title: A title drawn above the panels.

    Returns:
        ``path``.

    Raises:
        UserInputError: If there are fewer than two objectives.
        StudyError: If no trial is complete with every objective measured.
    """
    accuracy = primary_objective(objectives)
    others = [o for o in objectives if o is not accuracy]
    if not others:
        raise UserInputError(
            f"a front plot needs at least two objectives; got only {accuracy.name!r}"
        )
    done = _require_complete(records, objectives)
    references = [r for r in done if r.reference is not None]
    done = [r for r in done if r.reference is None]
    front = pareto_front(done, objectives)
    figure = _new_figure(len(others))
    axes = figure.subplots(1, len(others), squeeze=False)[0]
    for ax, x in zip(axes, others, strict=True):
        colour = next((o for o in others if o is not x), None)
        _front_panel(ax, done, front, accuracy, x, colour, references)
    summary = f"{len(done)} complete trials, {len(front)} on the Pareto front"
    if references:
        summary += f", {len(references)} references (stars)"
    figure.suptitle(f"{title}\n{summary}" if title else summary)
    return _save(figure, path)


def plot_history(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    path: Path,
    *,
    hypervolume: Sequence[float] | None = None,
) -> Path:
    """Plot the search history of a study as a PNG.

    The best-so-far accuracy (the first maximized objective) against the trial number, over
    each complete trial's own accuracy; when given, the hypervolume against the trial
    number on a second y axis.

    Args:
        records: Stored trials, in any state; incomplete ones are ignored.
        objectives: The study's objectives (names and directions).
        path: Where to write the PNG; missing parent folders are created.
        hypervolume: The hypervolume after each complete trial (in trial-number order), or
            after each trial of ``records`` (in trial-number order), or None.

    Returns:
        ``path``.

    Raises:
        UserInputError: If ``hypervolume`` matches neither the complete trials nor all trials.
        StudyError: If no trial is complete with every objective measured.
    """
    accuracy = primary_objective(objectives)
    done = sorted(_require_complete(records, objectives), key=lambda r: r.number)
    figure = _new_figure(1)
    ax = figure.subplots()
    numbers = np.array([r.number for r in done])
    values = np.array([r.values[accuracy.name] for r in done])
    best = np.maximum.accumulate if accuracy.direction == "maximize" else np.minimum.accumulate
    ax.scatter(numbers, values, s=18, color=_GREY, label=f"{accuracy.name} of each trial")
    ax.step(numbers, best(values), where="post", color="tab:blue", label="best so far")
    _label_axes(ax, "trial number", accuracy)
    handles, labels = ax.get_legend_handles_labels()
    if hypervolume is not None:
        hv_x = _hypervolume_numbers(records, done, hypervolume)
        twin = ax.twinx()
        twin.step(hv_x, hypervolume, where="post", color="tab:orange", label="hypervolume")
        twin.set_ylabel("hypervolume", color="tab:orange")
        twin.tick_params(axis="y", colors="tab:orange")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="best", fontsize=8)
    ax.set_title(f"Search history: {len(done)} complete of {len(records)} trials")
    _integer_ticks(ax)
    return _save(figure, path)


def _require_complete(
    records: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[TrialRecord]:
    """The complete trials; StudyError when there are none."""
    done = complete_records(records, objectives)
    if not done:
        names = ", ".join(o.name for o in objectives)
        raise StudyError(
            f"nothing to plot: none of the {len(records)} trials is complete "
            f"with every objective measured ({names})"
        )
    return done


def _new_figure(panels: int) -> Figure:
    """A figure with ``panels`` side-by-side panels' room, on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = _PANEL_SIZE
    figure = Figure(figsize=(width * panels, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    """Write the figure as a PNG, creating parent folders; whole or not at all.

    Raises:
        OutputError: ``path`` cannot be written, naming it and the reason.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=_DPI, format="png")
    return write_atomic(Path(path), buffer.getvalue(), "plot")


def _front_panel(
    ax: Axes,
    done: list[TrialRecord],
    front: list[TrialRecord],
    y: Objective,
    x: Objective,
    colour: Objective | None,
    references: Sequence[TrialRecord] = (),
) -> None:
    """One panel: all trials grey, the front highlighted and numbered, the 2-D staircase, and
    each reference as a star labelled with its name."""
    xs, ys = _column(done, x), _column(done, y)
    if _use_log(x, xs):
        ax.set_xscale("log")
    ax.scatter(xs, ys, s=16, color=_GREY, label=f"complete trials ({len(done)})", zorder=1)
    _staircase(ax, xs, ys, x, y)
    front_handle = _front_points(ax, front, x, y, colour)
    _number_labels(ax, [r.number for r in front], _column(front, x), _column(front, y), (xs, ys))
    _label_axes(ax, _axis_label(x), y)
    ax.set_title(f"{y.name} vs {x.name}")
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    handles[-1] = front_handle
    if references:
        rx, ry = _column(list(references), x), _column(list(references), y)
        stars = ax.scatter(rx, ry, s=140, marker="*", color="crimson", edgecolors="black",
                           linewidths=0.6, zorder=4)  # fmt: skip
        for r, px, py in zip(references, rx, ry, strict=True):
            ax.annotate(str(r.reference), (px, py), textcoords="offset points", xytext=(5, -10),
                        fontsize=7, color="crimson")  # fmt: skip
        handles.append(stars)
        labels.append(f"references ({len(references)})")
    ax.legend(handles, labels, loc="best", fontsize=8)


def _staircase(ax: Axes, xs: np.ndarray, ys: np.ndarray, x: Objective, y: Objective) -> None:
    """The step line through the points non-dominated in (x, y) alone."""
    keep = pareto_indices(np.column_stack([ys, xs]).tolist(), [y.direction, x.direction])
    order = sorted(keep, key=lambda i: xs[i])
    where: Literal["pre", "post"] = "post" if x.direction == "minimize" else "pre"
    ax.step(
        xs[order],
        ys[order],
        where=where,
        color="black",
        linewidth=1.0,
        alpha=0.7,
        label=f"2-D front ({y.name} vs {x.name})",
        zorder=2,
    )


def _front_points(
    ax: Axes, front: list[TrialRecord], x: Objective, y: Objective, colour: Objective | None
) -> Any:
    """The front's trials, coloured by ``colour`` (with a colorbar); returns a legend handle."""
    from matplotlib.lines import Line2D

    xs, ys = _column(front, x), _column(front, y)
    style: dict[str, Any] = {"s": 60, "edgecolors": "black", "linewidths": 0.8, "zorder": 3}
    label = f"Pareto front ({len(front)})"
    face = _FRONT_COLOUR
    if colour is None:
        ax.scatter(xs, ys, color=_FRONT_COLOUR, label=label, **style)
    else:
        values = _column(front, colour)
        norm = _norm(colour, values)
        points = ax.scatter(xs, ys, c=values, cmap=_CMAP, norm=norm, label=label, **style)
        ax.figure.colorbar(points, ax=ax, label=_axis_label(colour))
        face = "white"
    return Line2D(
        [],
        [],
        marker="o",
        linestyle="",
        label=label,
        markerfacecolor=face,
        markeredgecolor="black",
        markersize=8,
    )


def _number_labels(
    ax: Axes,
    numbers: list[int],
    xs: np.ndarray,
    ys: np.ndarray,
    obstacles: tuple[np.ndarray, np.ndarray],
) -> None:
    """Annotate each point with its trial number, placed to avoid the other labels and points.

    Each label goes to the first of :data:`_LABEL_OFFSETS` that overlaps least with the
    labels already placed, the markers and the area outside the axes. Geometry is estimated
    in points from the axes' size before layout, which is close enough to avoid collisions.
    """
    to_points = _points_transform(ax)
    anchors = to_points(xs, ys)
    taken = [_square(p, _FRONT_RADIUS) for p in anchors]
    taken += [_square(p, _TRIAL_RADIUS) for p in to_points(*obstacles)]
    frame = (0.0, 0.0, *_axes_points(ax))
    for number, anchor, x, y in zip(numbers, anchors, xs, ys, strict=True):
        text = str(number)
        size = (_DIGIT_WIDTH * len(text), _LABEL_HEIGHT)
        boxes = [_label_box(anchor, offset, size) for offset in _LABEL_OFFSETS]
        costs = [_overlap(box, taken) + _area(box) - _intersection(box, frame) for box in boxes]
        best = int(np.argmin(costs))
        taken.append(boxes[best])
        dx, dy = _LABEL_OFFSETS[best]
        ax.annotate(
            text,
            (x, y),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=_ALIGN_X[int(np.sign(dx))],
            va=_ALIGN_Y[int(np.sign(dy))],
            fontsize=_FONT_SIZE,
            zorder=4,
        )


def _points_transform(ax: Axes) -> Any:
    """A function mapping data (xs, ys) to approximate points from the axes' lower left."""
    ax.autoscale_view()
    to_axes = ax.transScale + ax.transLimits
    scale = np.array(_axes_points(ax))
    return lambda xs, ys: to_axes.transform(np.column_stack([xs, ys])) * scale


def _axes_points(ax: Axes) -> tuple[float, float]:
    """The axes' approximate width and height in points."""
    box = ax.get_position()
    figure: Any = ax.figure  # a Figure (a SubFigure has no size of its own)
    width, height = figure.get_size_inches() * 72.0
    return float(box.width * width), float(box.height * height)


def _label_box(anchor: np.ndarray, offset: tuple[int, int], size: tuple[float, float]) -> _Box:
    """The box a label of ``size`` occupies at ``offset`` from ``anchor`` (all in points)."""
    (dx, dy), (width, height) = offset, size
    x0 = anchor[0] + dx - width * (0.5 - 0.5 * np.sign(dx))
    y0 = anchor[1] + dy - height * (0.5 - 0.5 * np.sign(dy))
    return (x0, y0, x0 + width, y0 + height)


def _square(centre: np.ndarray, radius: float) -> _Box:
    """The box of a marker."""
    return (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)


def _intersection(a: _Box, b: _Box) -> float:
    """The area two boxes share."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0.0) * max(height, 0.0)


def _area(box: _Box) -> float:
    """A box's area."""
    return (box[2] - box[0]) * (box[3] - box[1])


def _overlap(box: _Box, taken: list[_Box]) -> float:
    """The total area ``box`` shares with the boxes taken."""
    if not taken:
        return 0.0
    boxes = np.array(taken)
    width = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    height = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return float((np.clip(width, 0.0, None) * np.clip(height, 0.0, None)).sum())


def _column(records: Sequence[TrialRecord], objective: Objective) -> np.ndarray:
    """One objective's values over the records."""
    return np.array([r.values[objective.name] for r in records], dtype=float)


def _use_log(objective: Objective, values: np.ndarray) -> bool:
    """Log scale for parameter counts, or any positive axis spanning two decades."""
    if values.size == 0 or (values <= 0).any():
        return False
    wide = values.max() / values.min() >= _LOG_SPAN
    return objective.name == "trainable_params" or bool(wide)


def _norm(objective: Objective, values: np.ndarray) -> Any:
    """A log colour norm for wide positive ranges, else None (linear)."""
    if not _use_log(objective, values) or values.min() == values.max():
        return None
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=values.min(), vmax=values.max())


def _axis_label(objective: Objective) -> str:
    """An objective's axis label, saying which way is better."""
    better = "higher" if objective.direction == "maximize" else "lower"
    return f"{objective.name} ({better} is better)"


def _label_axes(ax: Axes, xlabel: str, y: Objective) -> None:
    """Set both axis labels."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_axis_label(y))


def _integer_ticks(ax: Axes) -> None:
    """Only whole numbers on the x axis (trial numbers)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _hypervolume_numbers(
    records: Sequence[TrialRecord], done: list[TrialRecord], hypervolume: Sequence[float]
) -> np.ndarray:
    """The trial numbers the hypervolume values belong to."""
    if len(hypervolume) == len(done):
        return np.array([r.number for r in done])
    if len(hypervolume) == len(records):
        return np.array(sorted(r.number for r in records))
    raise UserInputError(
        f"hypervolume has {len(hypervolume)} values; expected one per complete trial "
        f"({len(done)}) or one per trial ({len(records)})"
    )
