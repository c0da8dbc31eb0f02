"""Pareto filtering and non-dominated sorting of a table of objective values (BoTorch's
``is_non_dominated``; NSGA-II's crowding distance)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autopeft.core.objectives import DIRECTIONS
from autopeft.exceptions import UserInputError


def pareto_indices(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated rows of a table of objective values.

    Row ``a`` dominates row ``b`` when ``a`` is at least as good as ``b`` in every column and
    strictly better in at least one, "better" meaning larger for a ``maximize`` column and
    smaller for a ``minimize`` one. Of several identical rows only the first is kept. Rows
    holding a NaN are never on the front.

    Args:
        values: One row per point (``n x m``), one column per objective.
        directions: ``"maximize"`` or ``"minimize"``, one per column (``m``).

    Returns:
        The indices of the non-dominated rows, sorted by the first objective, best first
        (ties broken by the following objectives, then by index).

    Raises:
        UserInputError: If a direction is unknown or a row's length differs from
            ``len(directions)``.
    """
    signs = _signs(directions)
    if len(values) == 0:
        return []
    table = _as_matrix(values, len(signs)) * signs  # larger is better in every column
    finite = np.flatnonzero(~np.isnan(table).any(axis=1))
    if finite.size == 0:
        return []
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    mask = is_non_dominated(torch.from_numpy(table[finite]), maximize=True, deduplicate=True)
    keep = [int(i) for i in finite[mask.numpy()]]
    return sorted(keep, key=lambda i: (*(-table[i]), i))


def nondominated_ranks(
    values: Sequence[Sequence[float]], directions: Sequence[str]
) -> list[tuple[int, float]]:
    """Each row's (non-dominated sorting rank, crowding distance); rank 0 is the Pareto front.

    Ranks peel fronts as :func:`pareto_indices` finds them (of identical rows the first is the
    one in a front, the others rank after it), from one domination matrix (Deb's fast
    non-dominated sort, ``O(n^2 m)`` in numpy). Columns are normalised to ``[0, 1]`` over the
    table before the crowding distance (NSGA-II's, infinite at a front's extremes) is taken,
    so it does not depend on units. Sorting rows by ``(rank, -crowding)`` orders them best
    first, the same under any monotone rescaling of an objective up to the crowding tie-break.
    Rows holding a NaN take the last rank.
    """
    if len(values) == 0:
        return []
    signs = _signs(directions)
    table = _as_matrix(values, len(signs))
    finite = np.flatnonzero(~np.isnan(table).any(axis=1))
    out: list[tuple[int, float]] = [(0, 0.0)] * len(table)
    rank = 0
    if finite.size:
        rows = table[finite] * signs  # larger is better in every column
        low, high = rows.min(axis=0), rows.max(axis=0)
        scaled = (rows - low) / np.where(high > low, high - low, 1.0)
        beaten = _dominated_by(rows)
        count = beaten.sum(axis=0)  # how many rows dominate each row
        left = np.ones(len(rows), dtype=bool)
        while left.any():
            front = np.flatnonzero(left & (count == 0))
            for i, distance in zip(front, _crowding(scaled[front]), strict=True):
                out[int(finite[i])] = (rank, distance)
            left[front] = False
            count -= beaten[front].sum(axis=0)
            rank += 1
    for j in np.flatnonzero(np.isnan(table).any(axis=1)):
        out[int(j)] = (rank, 0.0)
    return out


def _dominated_by(rows: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``D[i, j]``: row ``i`` dominates row ``j`` (all columns >=, one >), or equals it and
    comes first (so identical rows fall into successive fronts, as :func:`pareto_indices`
    keeps only the first)."""
    n = len(rows)
    out = np.zeros((n, n), dtype=bool)
    later = np.arange(n)[None, :] > np.arange(n)[:, None]
    for start in range(0, n, chunk):
        a = rows[start : start + chunk, None, :]
        ge, gt = (a >= rows[None]).all(axis=-1), (a > rows[None]).any(axis=-1)
        equal = ge & ~gt
        out[start : start + chunk] = (ge & gt) | (equal & later[start : start + chunk])
    return out


def _crowding(values: np.ndarray) -> list[float]:
    """NSGA-II crowding distance of the rows of ``values`` (``n x m``, normalised)."""
    n = len(values)
    distance = np.zeros(n)
    for column in values.T:
        order = np.argsort(column, kind="stable")
        distance[order[0]] = distance[order[-1]] = math.inf
        for k in range(1, n - 1):
            distance[order[k]] += column[order[k + 1]] - column[order[k - 1]]
    return [float(d) for d in distance]


def _signs(directions: Sequence[str]) -> np.ndarray:
    """+1 for maximize, -1 for minimize; rejects anything else."""
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise UserInputError(
            f"unknown objective direction {bad[0]!r}; expected one of {DIRECTIONS}"
        )
    return np.array([1.0 if d == "maximize" else -1.0 for d in directions])


def _as_matrix(values: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """The rows as a float matrix of ``width`` columns."""
    for i, row in enumerate(values):
        if len(row) != width:
            raise UserInputError(
                f"row {i} has {len(row)} values; expected {width} (one per direction)"
            )
    return np.asarray(values, dtype=float).reshape(len(values), width)
