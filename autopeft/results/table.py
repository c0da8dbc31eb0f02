"""Flat rows (for JSON and CSV) and rich tables of trials."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from autopeft.core.objectives import Objective
from autopeft.storage.records import TrialRecord

if TYPE_CHECKING:
    import rich.table

__all__ = ["format_value", "front_rows", "render_table", "write_csv"]

PARAM_PREFIX = "param."
_FORMATS = {
    "accuracy": "{:.4f}",
    "macro_f1": "{:.4f}",
    "exact_match": "{:.4f}",
    "eval_loss": "{:.4f}",
    "perplexity": "{:.3f}",
    "trainable_params": "{:,.0f}",
    "peak_memory_mb": "{:.1f}",
}


def front_rows(
    records: Sequence[TrialRecord], objectives: Sequence[Objective], budget: int | None = None
) -> list[dict[str, Any]]:
    """One flat, JSON-able dict per record, for JSON and CSV output.

    The keys, in order: ``trial``, ``reference`` (the reference's name; None for a searched
    trial), ``over_budget`` (with a ``budget``: more trainable parameters than it), one key per
    objective name (None when not measured), ``method``, ``head_params`` and ``device`` (from
    the metrics; None when absent), ``placement`` (the compact per-layer summary) and every
    searched parameter as ``param.<name>``.

    Args:
        records: The trials to flatten, in the order wanted.
        objectives: The study's objectives.
        budget: The space's ``max_trainable_params`` (None: no ``over_budget`` key).

    Returns:
        The rows, in the order of ``records``.
    """
    return [_row(record, objectives, budget) for record in records]


def render_table(
    records: Sequence[TrialRecord],
    objectives: Sequence[Objective],
    *,
    title: str,
    budget: int | None = None,
) -> rich.table.Table:
    """A rich table of trials: number, objectives, device (where recorded), method and
    placement.

    Accuracy shows 4 decimals, ``trainable_params`` thousands separators and
    ``peak_memory_mb`` 1 decimal; other objectives use :func:`format_value`.

    Args:
        records: The trials to show, in the order wanted.
        objectives: The study's objectives (one column each).
        title: The table's title.
        budget: The space's ``max_trainable_params``: a reference above it is marked.

    Returns:
        A :class:`rich.table.Table`, ready for ``Console.print``. With references among the
        records, a ``reference`` column names them.
    """
    from rich.table import Table

    table = Table(title=title)
    table.add_column("#", justify="right", style="bold")
    for objective in objectives:
        arrow = "↑" if objective.direction == "maximize" else "↓"
        table.add_column(f"{objective.name} {arrow}", justify="right")
    rungs = any(r.rung is not None for r in records)  # a multi-fidelity study
    if rungs:
        table.add_column("rung (steps)", justify="right")
    devices = any("device" in r.metrics for r in records)  # trials that recorded their device
    if devices:
        table.add_column("device")
    references = any(r.reference is not None for r in records)
    if references:
        table.add_column("reference")
    table.add_column("method")
    table.add_column("placement", overflow="fold")
    for record in records:
        cells = [format_value(o.name, record.values.get(o.name)) for o in objectives]
        if rungs:
            steps = record.metrics.get("steps")
            cells.append(f"{record.rung} ({steps})" if steps else str(record.rung))
        if devices:
            cells.append(str(record.metrics.get("device", "-")))
        if references:
            cells.append(_reference_label(record, budget))
        table.add_row(str(record.number), *cells, record.method or "-", record.placement_summary())
    return table


def format_value(name: str, value: float | None) -> str:
    """A measured value as shown in tables.

    Args:
        name: The objective's name; ``accuracy``, ``trainable_params`` and ``peak_memory_mb``
            have fixed formats.
        value: The value, or None when not measured.

    Returns:
        The text: ``-`` for a missing or NaN value, otherwise the formatted number
        (4 significant digits for an unknown name, thousands separators for whole numbers).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if name in _FORMATS:
        return _FORMATS[name].format(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def write_csv(rows: list[dict[str, Any]], stream: TextIO) -> None:
    """Write rows as CSV with a header line.

    The header is the union of the rows' keys in first-seen order. A missing key or None
    writes an empty cell; lists and dicts are written as JSON.

    Args:
        rows: Flat dicts, e.g. from :func:`front_rows`.
        stream: A text stream; a file should be opened with ``newline=""``.
    """
    header = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(stream, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_cell(value) for key, value in row.items()})


def _reference_label(record: TrialRecord, budget: int | None) -> str:
    if record.reference is None:
        return ""
    over = budget is not None and _params(record) > budget
    return record.reference + (" (over budget)" if over else "")


def _params(record: TrialRecord) -> int:
    return int(record.values.get("trainable_params", record.metrics.get("trainable_params", 0)))


def _row(
    record: TrialRecord, objectives: Sequence[Objective], budget: int | None = None
) -> dict[str, Any]:
    """The flat dict of one record."""
    row: dict[str, Any] = {"trial": record.number, "reference": record.reference}
    if budget is not None:
        row["over_budget"] = _params(record) > budget
    row.update({o.name: record.values.get(o.name) for o in objectives})
    if record.rung is not None:
        row.update(rung=record.rung, steps=record.metrics.get("steps"))
    row["method"] = record.method
    row["head_params"] = record.metrics.get("head_params")
    row["device"] = record.metrics.get("device")
    row["placement"] = record.placement_summary()
    row.update({f"{PARAM_PREFIX}{name}": value for name, value in record.params.items()})
    return row


def _csv_cell(value: Any) -> Any:
    """A CSV cell: empty for None, JSON for containers, the value otherwise."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return value
