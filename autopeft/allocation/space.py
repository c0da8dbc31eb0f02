"""Ranks of a point of a space with an ``allocation:`` block, on a bound model layout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autopeft.allocation.allocators import RankLimits, allocate_ranks

if TYPE_CHECKING:
    from autopeft.space.allocation import AllocationSpec
    from autopeft.space.view import Point, SpaceView

Cell = tuple[int, str]


def allocation_cells(bound: SpaceView, modules: tuple[str, ...]) -> list[Cell]:
    """The cells an allocation spreads over: every layer x the targeted module types."""
    return [(layer, m) for layer, m in bound.searched_cells if m in modules]


def cell_widths(bound: SpaceView, cells: list[Cell]) -> dict[Cell, int]:
    """LoRA parameters per unit of rank of each cell: ``d_in + d_out``."""
    out = {}
    for cell in cells:
        site = bound.layout.site(*cell)
        out[cell] = site.in_features + site.out_features
    return out


def allocated_ranks(bound: SpaceView, point: Point) -> dict[Cell, int]:
    """Per-cell LoRA ranks (0 included) of ``point``: the strategy's profile scores (equal
    scores for ``uniform``) allocated over the targeted cells within the point's budget."""
    spec: AllocationSpec = bound.space.allocation  # type: ignore[assignment]
    strategy, budget, temperature = spec.knobs(point)
    cells = allocation_cells(bound, bound.target_modules(point))
    if strategy == "uniform":
        scores = dict.fromkeys(cells, 1.0)
    else:
        profile = bound.profiles.get(strategy)
        if profile is None:
            raise RuntimeError(
                f"the {strategy!r} profile is not loaded: run autopeft.allocation.ensure_profiles "
                "(run_study does) before compiling points of an allocation space"
            )
        scores = {c: profile.scores.get(c, 0.0) for c in cells}
    caps = {}
    for cell in cells:
        site = bound.layout.site(*cell)
        caps[cell] = min(site.in_features, site.out_features)
    limits = RankLimits(spec.min_rank, spec.max_rank, spec.rank_unit)
    return allocate_ranks(scores, cell_widths(bound, cells), budget, temperature, limits, caps)


def min_allocation_params(bound: SpaceView) -> int:
    """The fewest parameters a non-empty allocation can have: ``min_rank`` on every targeted
    cell, or (``min_rank`` 0) one rank unit on the narrowest cell."""
    spec: AllocationSpec = bound.space.allocation  # type: ignore[assignment]
    costs = []
    for modules in bound.target_options():
        widths = cell_widths(bound, allocation_cells(bound, modules))
        if spec.min_rank:
            costs.append(spec.min_rank * sum(widths.values()))
        else:
            costs.append(spec.rank_unit * min(widths.values()))
    return min(costs)


def check_allocation(bound: SpaceView) -> None:
    """The budget range must lie within ``max_trainable_params`` and above the cost of
    ``min_rank`` on every cell of every ``target_modules`` option."""
    spec: AllocationSpec = bound.space.allocation  # type: ignore[assignment]
    lo, hi = spec.budget
    if hi > bound.space.max_trainable_params:
        bound.fail(
            ("allocation", "budget"),
            f"high must be <= max_trainable_params ({bound.space.max_trainable_params:,})",
            hi,
        )
    for modules in bound.target_options():
        need = spec.min_rank * sum(cell_widths(bound, allocation_cells(bound, modules)).values())
        if need > lo:
            bound.fail(
                ("allocation", "budget"),
                f"low is below min_rank={spec.min_rank} on every {'/'.join(modules)} cell "
                f"of this model ({need:,} parameters)",
                lo,
            )
