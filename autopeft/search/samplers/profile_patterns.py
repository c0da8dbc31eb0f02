"""Ladder values that follow a sensitivity / importance profile: the profile family of
:mod:`autopeft.search.samplers.structured`.

A profile scores every (layer, module type) cell of the model (:class:`~autopeft.allocation.
profiles.Profile`: SPT-style gradient sensitivity, Taylor importance, AdaLoRA's learned ranks).
A rank pattern that follows it gives the best-scored cells the highest rungs of the ladder and
switches the lowest-scored ones off: the allocation that SPT and AdaLoRA make, here as one more
structured candidate of an ordinary per-cell space.

The pattern of a size ``f`` (a fraction of the ladder's top value on every cell) is the
proportional allocation of :func:`~autopeft.allocation.allocators.allocate_ranks` (temperature
1: each cell's value ``lam * score``, clamped to the top rung, ``lam`` spending
``f * top * cells`` value units), then each value snapped to the ladder: to "off" below half the
lowest active rung, else to the nearest rung in ratio (``6`` -> ``8`` on ``0, 2, 4, 8``). So
the values never decrease with the score. The sizes are those of the ladder's uniform
configurations below the top (``2/8`` and ``4/8`` on ``0, 2, 4, 8``), or a quarter, half and
three quarters of the cells on a ladder with one active value (``ia3.active``: off / on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autopeft.allocation.allocators import RankLimits, allocate_ranks

__all__ = ["follow", "group_scores", "sizes"]

Cell = tuple[int, str]
#: Sizes of the patterns on a ladder with one active value: shares of the cells switched on.
ON_OFF_FRACTIONS = (0.25, 0.5, 0.75)


def group_scores(
    scores: Mapping[Cell, float],
    layers: Sequence[int],
    modules: Sequence[str | None],
    targeted: Sequence[str],
) -> list[float | None]:
    """The profile's score of each cell of a layered parameter: the cell's own score where the
    parameter is per cell (None for a module type outside ``targeted``: the module set places
    nothing there), the sum over the layer's targeted module types where it is per layer
    (``modules`` None)."""
    chosen = set(targeted)
    out: list[float | None] = []
    for layer, module in zip(layers, modules, strict=True):
        if module is None:
            out.append(sum(s for (lyr, m), s in scores.items() if lyr == layer and m in chosen))
        else:
            out.append(scores.get((layer, module), 0.0) if module in chosen else None)
    return out


def sizes(ladder: Sequence[Any]) -> tuple[float, ...]:
    """Sizes of the patterns on ``ladder``, as fractions of its top value on every cell."""
    active = _active(ladder)
    if len(active) == 1:
        return ON_OFF_FRACTIONS
    top = float(active[-1])
    return tuple(float(v) / top for v in active[:-1])


def follow(scores: Sequence[float | None], ladder: Sequence[Any], size: float) -> list[Any] | None:
    """Ladder values of cells scored ``scores`` that spend ``size`` (a fraction of the top value
    on every scored cell) in proportion to the scores (see the module docstring); cells scored
    None take the lowest value. None when the ladder is not integer (or boolean) or no cell has
    a positive score."""
    if not all(isinstance(v, int) for v in ladder) or not any(s for s in scores if s):
        return None
    top = int(max(_active(ladder)))
    scored = {(i, ""): max(0.0, s) for i, s in enumerate(scores) if s is not None}
    ranks = allocate_ranks(
        scored,
        dict.fromkeys(scored, 1),
        round(size * top * len(scored)),
        temperature=1.0,
        limits=RankLimits(min_rank=0, max_rank=top, unit=1),
    )
    return [
        snap(ranks[(i, "")], ladder) if (i, "") in ranks else ladder[0] for i in range(len(scores))
    ]


def snap(value: float, ladder: Sequence[Any]) -> Any:
    """The rung of ``ladder`` for ``value``: "off" (a lowest value 0 / False) below half the
    lowest active rung, else the active rung nearest in ratio."""
    active = _active(ladder)
    if len(active) < len(ladder) and value < float(active[0]) / 2:
        return ladder[0]
    if value <= 0:
        return active[0]
    return min(active, key=lambda v: abs(math.log(value / float(v))))


def _active(ladder: Sequence[Any]) -> Sequence[Any]:
    return ladder[1:] if ladder[0] == 0 or ladder[0] is False else ladder
