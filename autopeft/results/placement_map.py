"""Placement maps: where the adapter capacity of a trial, or of a whole front, went.

A placement is a grid of layers (rows) x module types (columns). For one trial each cell holds
its adapter size (a LoRA rank, a bottleneck width; 1 for on/off methods such as IA3). For a
front, each cell holds how many front members use it and the mean size they give it, which is
what the AutoPEFT and AdaLoRA papers plot to show where capacity pays off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autopeft.results.plot import _new_figure, _save
from autopeft.storage.records import TrialRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PlacementGrid", "front_usage", "plot_placements", "trial_grid"]


@dataclass(frozen=True)
class PlacementGrid:
    """A layers x module types grid of numbers.

    Attributes:
        title: What the grid shows (``trial 7 (lora)``, ``front: share of members``).
        layers: Row labels, the layer indices in order.
        modules: Column labels, the module types in the order the model has them.
        cells: ``cells[i][j]`` is the value of layer ``layers[i]``, module ``modules[j]``;
            0 where nothing is placed.
        unit: What a value means (``rank``, ``% of front``, ``mean rank``).
    """

    title: str
    layers: tuple[int, ...]
    modules: tuple[str, ...]
    cells: tuple[tuple[float, ...], ...]
    unit: str

    def total(self) -> float:
        return sum(sum(row) for row in self.cells)

    def by_layer(self) -> dict[int, float]:
        """Row sums: how much each layer gets."""
        return {layer: sum(row) for layer, row in zip(self.layers, self.cells, strict=True)}

    def by_module(self) -> dict[str, float]:
        """Column sums: how much each module type gets."""
        return {m: sum(row[j] for row in self.cells) for j, m in enumerate(self.modules)}


def _placement(record: TrialRecord) -> dict[int, dict[str, int]]:
    return {int(layer): cells for layer, cells in record.placement.items()}


# Module types in the order a transformer block has them (attention, then the MLP); others after,
# alphabetically, so every grid of a study puts its columns in the same order.
_ORDER = ("q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down")


def _axes_of(records: Sequence[TrialRecord]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    layers: set[int] = set()
    modules: set[str] = set()
    for r in records:
        for layer, cells in _placement(r).items():
            layers.add(layer)
            modules.update(cells)
    rank = {m: i for i, m in enumerate(_ORDER)}
    ordered = sorted(modules, key=lambda m: (rank.get(m, len(_ORDER)), m))
    return tuple(sorted(layers)), tuple(ordered)


def trial_grid(
    record: TrialRecord,
    layers: Sequence[int] | None = None,
    modules: Sequence[str] | None = None,
) -> PlacementGrid:
    """One trial's sizes per (layer, module type); axes default to the trial's own cells."""
    own_layers, own_modules = _axes_of([record])
    rows = tuple(layers) if layers is not None else own_layers
    cols = tuple(modules) if modules is not None else own_modules
    placement = _placement(record)
    cells = tuple(tuple(float(placement.get(i, {}).get(m, 0)) for m in cols) for i in rows)
    title = f"trial {record.number} ({record.method or '?'})"
    return PlacementGrid(title, rows, cols, cells, "size")


def front_usage(front: Sequence[TrialRecord]) -> tuple[PlacementGrid, PlacementGrid]:
    """Over the members of a front: the share of members that place an adapter in each cell
    (in %), and the mean size of the cell among the members that use it."""
    layers, modules = _axes_of(front)
    n = max(1, len(front))
    placements = [_placement(r) for r in front]
    share, mean = [], []
    for layer in layers:
        share_row, mean_row = [], []
        for m in modules:
            used = (p.get(layer, {}).get(m, 0) for p in placements)
            sizes = [float(size) for size in used if size > 0]
            share_row.append(100.0 * len(sizes) / n)
            mean_row.append(sum(sizes) / len(sizes) if sizes else 0.0)
        share.append(tuple(share_row))
        mean.append(tuple(mean_row))
    return (
        PlacementGrid(
            f"front ({len(front)} members): cells used",
            layers,
            modules,
            tuple(share),
            "% of members",
        ),
        PlacementGrid("front: mean size where used", layers, modules, tuple(mean), "mean size"),
    )


def plot_placements(grids: Sequence[PlacementGrid], path: Path, *, title: str = "") -> Path:
    """One heatmap panel per grid, side by side (layers as rows, module types as columns),
    each cell annotated with its value; written as a PNG."""
    figure = _new_figure(max(1, len(grids)))
    axes = figure.subplots(1, max(1, len(grids)), squeeze=False)[0]
    for ax, grid in zip(axes, grids, strict=False):
        _panel(ax, grid, figure)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def _panel(ax: Axes, grid: PlacementGrid, figure: object) -> None:
    import numpy as np

    values = np.array(grid.cells, dtype=float).reshape(len(grid.layers), len(grid.modules))
    image = ax.imshow(values, cmap="viridis", aspect="auto", vmin=0.0)
    ax.set_xticks(range(len(grid.modules)), list(grid.modules), rotation=45, ha="right")
    # label every layer up to 32 rows, then every k-th so that labels stay readable
    step = max(1, len(grid.layers) // 32)
    ax.set_yticks(range(0, len(grid.layers), step), [str(v) for v in grid.layers[::step]])
    ax.set_xlabel("module type")
    ax.set_ylabel("layer")
    ax.set_title(f"{grid.title}\n({grid.unit})", fontsize=9)
    if values.size and len(grid.layers) * len(grid.modules) <= 200:
        top = values.max() or 1.0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if values[i, j]:
                    colour = "k" if values[i, j] > 0.6 * top else "w"
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.3g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
    figure.colorbar(image, ax=ax)  # type: ignore[attr-defined]
