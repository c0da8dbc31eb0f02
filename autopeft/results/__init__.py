"""Reports of a study: Pareto fronts, trial picks, tables, CSV rows and PNG plots."""

from __future__ import annotations

from autopeft.results.picks import (
    PICKS,
    complete_records,
    pareto_front,
    pareto_indices,
    pick_trial,
    primary_objective,
)
from autopeft.results.plot import plot_front, plot_history
from autopeft.results.table import format_value, front_rows, render_table, write_csv

__all__ = [
    "PICKS",
    "complete_records",
    "format_value",
    "front_rows",
    "pareto_front",
    "pareto_indices",
    "pick_trial",
    "plot_front",
    "plot_history",
    "primary_objective",
    "render_table",
    "write_csv",
]
