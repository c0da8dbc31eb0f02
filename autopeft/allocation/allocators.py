"""Turn a score per (layer, module) cell and a parameter budget into LoRA ranks.

Proportional allocation with a temperature: each cell's *target* rank is ``lam * w_c`` with
``w_c = s_c ** T / max(s) ** T`` (``T = 0``: every cell weighs the same, i.e. uniform ranks;
large ``T``: the best-scored cells take everything), clamped into ``[min_rank, max_rank]``, and
``lam`` is found by bisection so the targets spend exactly the budget, where a rank-``r`` LoRA
on a ``d_in -> d_out`` matrix costs ``r * (d_in + d_out)`` parameters (the arithmetic of
:class:`~autopeft.methods.lora.LoraMethod`). Ranks are then rounded to multiples of
``rank_unit``: every cell gets the floor of its target, and cells with the largest rounding
loss get one more unit (never above the ceiling of their target) while that fits; ties (as
under ``T = 0``) are spread evenly over the cells rather than filling the first layers.

Guarantees (tested property-style in ``tests/test_allocation.py``):

* the allocation never exceeds the budget;
* the shortfall is less than one rank unit of any cell that could still grow
  (``budget - used < rank_unit * width_c`` for every cell below its rounded-up target);
* ``T = 0`` gives ranks that differ by at most one unit (equal when the budget allows);
* every rank lies in ``[min_rank, max_rank]`` and is a multiple of ``rank_unit``;
  rank 0 (no adapter) is allowed when ``min_rank`` is 0.

References: SPT (He et al., 2023, https://arxiv.org/abs/2308.13228) allocates by gradient
sensitivity; AdaLoRA (Zhang et al., 2023, https://arxiv.org/abs/2303.10512) by importance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from autopeft.exceptions import SearchSpaceError

Cell = tuple[int, str]


@dataclass(frozen=True)
class RankLimits:
    """Rank rules: ranks are multiples of ``unit`` within ``[min_rank, max_rank]``."""

    min_rank: int = 0
    max_rank: int = 64
    unit: int = 1


def allocate_ranks(
    scores: Mapping[Cell, float],
    widths: Mapping[Cell, int],
    budget: int,
    temperature: float,
    limits: RankLimits = RankLimits(),
    caps: Mapping[Cell, int] | None = None,
) -> dict[Cell, int]:
    """Ranks per cell (0 included) whose parameters ``sum(rank * width)`` fit ``budget``.

    Args:
        scores: Non-negative score of every cell to allocate over.
        widths: Parameters per unit of rank of every cell (``d_in + d_out`` for LoRA).
        budget: The most adapter parameters to spend.
        temperature: ``>= 0``; 0 = uniform, larger = more concentrated on high scores.
        limits: Rank clamps and the rank unit.
        caps: Optional per-cell rank ceilings (e.g. ``min(d_in, d_out)``).

    Raises:
        SearchSpaceError: if even ``min_rank`` everywhere exceeds the budget.
    """
    cells = list(scores)
    if not cells:
        return {}
    if temperature < 0 or not math.isfinite(temperature):
        raise SearchSpaceError(f"allocation temperature must be >= 0, got {temperature}")
    unit = limits.unit
    caps = caps or {}
    high = {c: _floor(min(limits.max_rank, caps.get(c, limits.max_rank)), unit) for c in cells}
    low = {c: min(limits.min_rank, high[c]) for c in cells}
    floor_cost = sum(low[c] * widths[c] for c in cells)
    if floor_cost > budget:
        raise SearchSpaceError(
            f"allocation budget {budget:,} is below the cost of min_rank={limits.min_rank} on "
            f"every cell ({floor_cost:,} parameters)"
        )
    weights = _weights(scores, temperature)
    targets = _water_fill(weights, widths, budget, low, high)
    ranks = {c: max(low[c], _floor(targets[c], unit)) for c in cells}
    left = budget - sum(ranks[c] * widths[c] for c in cells)
    # Largest rounding loss first. Ties (equal targets, e.g. T = 0) go round-robin over the
    # layers with the module type rotated per layer, which spreads the extra units evenly over
    # layers and module types instead of filling the first layers. Each cell may go up to its
    # target's ceiling.
    spread = _round_robin(cells)
    order = sorted(cells, key=lambda c: (ranks[c] - targets[c], spread[c]))
    for c in order:
        ceiling = min(high[c], _ceil(targets[c], unit))
        if ranks[c] + unit <= ceiling and unit * widths[c] <= left:
            ranks[c] += unit
            left -= unit * widths[c]
    return ranks


def allocation_params(ranks: Mapping[Cell, int], widths: Mapping[Cell, int]) -> int:
    """Exact LoRA parameters of an allocation: ``sum(rank * width)``."""
    return sum(r * widths[c] for c, r in ranks.items())


def _round_robin(cells: list[Cell]) -> dict[Cell, tuple[int, int]]:
    """Tie-break keys: round ``r`` visits every layer once, layer ``i`` at its module
    ``(r + i) mod n``; so any prefix of the order is balanced over layers."""
    by_layer: dict[int, list[Cell]] = {}
    for c in cells:
        by_layer.setdefault(c[0], []).append(c)
    keys = {}
    for i, layer in enumerate(sorted(by_layer)):
        row = by_layer[layer]
        for j, c in enumerate(row):
            keys[c] = ((j - i) % len(row), i)
    return keys


def _weights(scores: Mapping[Cell, float], temperature: float) -> dict[Cell, float]:
    """``s ** T`` normalised by the largest score, computed in log space (no overflow)."""
    values = {c: max(0.0, float(s)) for c, s in scores.items()}
    top = max(values.values())
    if temperature == 0 or top <= 0:
        return dict.fromkeys(values, 1.0)
    return {
        c: 0.0 if s <= 0 else math.exp(temperature * (math.log(s) - math.log(top)))
        for c, s in values.items()
    }


def _water_fill(
    weights: Mapping[Cell, float],
    widths: Mapping[Cell, int],
    budget: int,
    low: Mapping[Cell, int],
    high: Mapping[Cell, int],
) -> dict[Cell, float]:
    """Continuous targets ``clip(lam * w, low, high)`` spending ``budget`` (bisection on lam)."""

    def targets(lam: float) -> dict[Cell, float]:
        return {c: min(high[c], max(low[c], lam * w)) for c, w in weights.items()}

    def cost(lam: float) -> float:
        return sum(t * widths[c] for c, t in targets(lam).items())

    if cost(1e300) <= budget:
        return targets(1e300)
    lo, hi = 0.0, 1.0
    while cost(hi) < budget:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return targets(lo)


def _floor(value: float, unit: int) -> int:
    return math.floor(value / unit) * unit


def _ceil(value: float, unit: int) -> int:
    return math.ceil(value / unit - 1e-9) * unit
