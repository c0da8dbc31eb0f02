"""Confirmed trials (``autopeft confirm``): test-split means and standard deviations as
records, rows, a table and a plot with error bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.objectives import Objective
from autopeft.results.picks import pareto_front, primary_objective
from autopeft.results.plot import _new_figure, _save
from autopeft.results.table import format_value
from autopeft.storage.confirmations import Confirmation
from autopeft.storage.records import TrialRecord

if TYPE_CHECKING:
    import rich.table

__all__ = ["confirmed_records", "confirmed_rows", "confirmed_table", "plot_confirmed"]


def confirmed_records(
    records: Sequence[TrialRecord], confirmations: Mapping[int, Confirmation]
) -> list[TrialRecord]:
    """The confirmed trials with their confirmed means as ``values`` (the search's values are
    dropped); trials whose every seed failed are left out. By trial number."""
    out = []
    for r in records:
        c = confirmations.get(r.number)
        if c is not None and c.mean:
            out.append(replace(r, values=dict(c.mean)))
    return out


def confirmed_rows(
    records: Sequence[TrialRecord],
    confirmations: Mapping[int, Confirmation],
    objectives: Sequence[Objective],
) -> list[dict[str, Any]]:
    """One JSON-able row per confirmed trial, the confirmed front's members first (by the
    primary objective's mean): ``trial``, ``steps``, ``seeds``, ``finished`` (seeds that ran
    to the end), ``split``, ``on_front`` (non-dominated by confirmed means) and ``objectives``:
    name -> ``{"mean", "std", "search"}`` (``search``: the trial's value in the search);
    ``reference``: the reference's name (None for a searched trial; references are never on
    the confirmed front, which is the search's)."""
    search = {r.number: r.values for r in records}
    confirmed = confirmed_records(records, confirmations)
    searched = [r for r in confirmed if r.reference is None]
    front = {r.number for r in pareto_front(searched, objectives)}
    primary = primary_objective(objectives)
    sign = -1.0 if primary.direction == "maximize" else 1.0
    confirmed.sort(key=lambda r: (r.number not in front, sign * r.values[primary.name], r.number))
    rows = []
    for r in confirmed:
        c = confirmations[r.number]
        per = {
            o.name: {
                "mean": c.mean[o.name],
                "std": c.std[o.name],
                "search": search[r.number].get(o.name),
            }
            for o in objectives
        }
        rows.append(
            {
                "trial": r.number,
                "reference": r.reference,
                "steps": c.steps,
                "seeds": c.seeds,
                "finished": c.finished,
                "split": c.split,
                "on_front": r.number in front,
                "objectives": per,
            }
        )
    return rows


def flat_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`confirmed_rows` flattened for CSV: ``<objective>_mean``, ``_std``, ``_search``."""
    flat = []
    for row in rows:
        out = {k: v for k, v in row.items() if k != "objectives"}
        for name, stats in row["objectives"].items():
            out |= {f"{name}_{k}": v for k, v in stats.items()}
        flat.append(out)
    return flat


def confirmed_table(
    rows: Sequence[dict[str, Any]], objectives: Sequence[Objective], *, title: str
) -> rich.table.Table:
    """A rich table: trial, front membership, seeds and ``mean ± std (search value)`` per
    objective."""
    from rich.table import Table

    table = Table(title=title)
    references = any(row.get("reference") for row in rows)
    for col in ("trial", "front", *(("reference",) if references else ()), "seeds"):
        table.add_column(col, justify="right")
    for o in objectives:
        table.add_column(o.name, justify="right")
    for row in rows:
        cells = []
        for o in objectives:
            s = row["objectives"][o.name]
            search = "-" if s["search"] is None else format_value(o.name, s["search"])
            cells.append(
                f"{format_value(o.name, s['mean'])} ± {format_value(o.name, s['std'])} "
                f"(search {search})"
            )
        seeds = f"{row['finished']}/{row['seeds']} x {row['steps']} steps"
        marks = ["*" if row["on_front"] else ""]
        if references:
            marks.append(row.get("reference") or "")
        table.add_row(str(row["trial"]), *marks, seeds, *cells)
    return table


def plot_confirmed(
    rows: Sequence[dict[str, Any]], objectives: Sequence[Objective], path: Path, *, title: str
) -> Path:
    """The primary objective's test mean ± std against each other objective (one panel
    each), with error bars on both axes; the confirmed front's members are filled."""
    primary = primary_objective(objectives)
    others = [o for o in objectives if o.name != primary.name] or [primary]
    figure = _new_figure(len(others))
    axes = figure.subplots(1, len(others), squeeze=False)[0]
    for ax, o in zip(axes, others, strict=True):
        for on_front in (True, False):
            part = [r for r in rows if r["on_front"] is on_front]
            if not part:
                continue
            ax.errorbar(
                [r["objectives"][o.name]["mean"] for r in part],
                [r["objectives"][primary.name]["mean"] for r in part],
                xerr=[r["objectives"][o.name]["std"] for r in part],
                yerr=[r["objectives"][primary.name]["std"] for r in part],
                fmt="o",
                mfc=None if on_front else "none",
                capsize=3,
                label="confirmed front" if on_front else "confirmed, dominated",
            )
            for r in part:
                x, y = r["objectives"][o.name]["mean"], r["objectives"][primary.name]["mean"]
                label = r.get("reference") or str(r["trial"])  # references by name
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel(f"{o.name} (test mean ± std)")
        ax.set_ylabel(f"{primary.name} (test mean ± std)")
        ax.legend(loc="best", fontsize="small")
    figure.suptitle(title)
    return _save(figure, path)
