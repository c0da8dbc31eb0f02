"""Allocation profiles as a table and as a layers x modules heatmap PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.results.plot import _new_figure, _save

if TYPE_CHECKING:
    from autopeft.allocation.profiles import Profile

__all__ = ["plot_profiles", "profile_table"]


def profile_table(profile: Profile, title: str = "") -> Any:
    """A rich table: one row per layer, one column per module type, plus the layer score.
    Scores are percentages of the profile's total."""
    from rich.table import Table

    modules = profile.modules()
    table = Table(title=title or f"{profile.kind} profile ({profile.seconds:.1f} s to measure)")
    table.add_column("layer", justify="right")
    for m in modules:
        table.add_column(m, justify="right")
    table.add_column("layer score", justify="right")
    for layer in profile.layers():
        cells = [_pct(profile.scores.get((layer, m))) for m in modules]
        table.add_row(str(layer), *cells, _pct(profile.layer_scores.get(layer)))
    return table


def plot_profiles(profiles: Mapping[str, Profile], path: Path, *, title: str = "") -> Path:
    """One heatmap panel per profile: layers (rows) x module types (columns), colour = share
    of the profile's total score (in %), each cell annotated."""
    import numpy as np

    figure = _new_figure(max(1, len(profiles)))
    axes = figure.subplots(1, max(1, len(profiles)), squeeze=False)[0]
    for ax, (kind, profile) in zip(axes, sorted(profiles.items()), strict=False):
        modules, layers = profile.modules(), profile.layers()
        grid = np.array(
            [[100 * profile.scores.get((layer, m), 0.0) for m in modules] for layer in layers]
        )
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(modules)), modules)
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("module type")
        ax.set_ylabel("layer")
        ax.set_title(f"{kind} (% of total)")
        for i in range(len(layers)):
            for j in range(len(modules)):
                colour = "k" if grid[i, j] > 0.6 * grid.max() else "w"  # readable on yellow
                ax.text(
                    j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7, color=colour
                )
        figure.colorbar(image, ax=ax)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
