"""Points <-> the numeric design space the BoTorch sampler models.

* finite ordered domains (rank ladders, int ranges): the value's index ``0..n-1``, searched as a
  discrete dimension (its order is meaningful to the kernel);
* categorical domains: the category's index, modelled by a categorical (Hamming-distance)
  kernel, searched by enumeration of its values;
* floats and log-scaled ints: ``[0, 1]`` via :func:`autopeft.space.encode.to_unit`; the
  acquisition search visits them on a grid of :data:`GRID` points (observations keep their exact
  values), so it is a pure discrete local search with no gradient steps.

Points are canonicalised before encoding (:meth:`BoundSpace.canonical`): dimensions a point
does not use (ranks of modules its ``target_modules`` excludes) take a fixed value, so two
points that build the same adapter encode identically and the surrogate is not fitted to noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import finite_values, from_unit, to_unit

GRID = 17


class DesignEncoder:
    """Encode points of ``bound`` as rows of a ``d``-column tensor, and decode rows back.

    Attributes:
        bounds: ``2 x d`` lower and upper bounds of each column.
        discrete: Column -> allowed values, for ordered domains (finite, or a unit grid).
        categorical: Column -> allowed values, for categorical domains.
    """

    def __init__(self, bound: BoundSpace) -> None:
        self.bound = bound
        self.dims = bound.dimensions
        self.finite = [finite_values(d.spec) for d in self.dims]
        self.discrete: dict[int, list[float]] = {}
        self.categorical: dict[int, list[float]] = {}
        for j, (dim, values) in enumerate(zip(self.dims, self.finite, strict=True)):
            if values is None:
                self.discrete[j] = [i / (GRID - 1) for i in range(GRID)]
                continue
            target = self.categorical if dim.spec.type == "categorical" else self.discrete
            target[j] = [float(i) for i in range(len(values))]
        upper = [len(v) - 1 if v is not None else 1.0 for v in self.finite]
        self.bounds = torch.tensor([[0.0] * len(self.dims), upper], dtype=torch.double)

    @property
    def d(self) -> int:
        return len(self.dims)

    def encode(self, points: Sequence[Point]) -> torch.Tensor:
        """``n x d`` tensor of canonicalised points."""
        rows = [self._row(self.bound.canonical(p)) for p in points]
        return torch.tensor(rows, dtype=torch.double).reshape(len(rows), self.d)

    def _row(self, point: Point) -> list[float]:
        row = []
        for dim, values in zip(self.dims, self.finite, strict=True):
            value = point[dim.name]
            row.append(
                float(list(values).index(value)) if values is not None else to_unit(dim.spec, value)
            )
        return row

    def decode(self, x: torch.Tensor) -> Point:
        """The point of one encoded row (indices rounded, units clamped)."""
        point = {}
        for j, (dim, values) in enumerate(zip(self.dims, self.finite, strict=True)):
            v = float(x[j])
            if values is not None:
                point[dim.name] = values[min(len(values) - 1, max(0, round(v)))]
            else:
                point[dim.name] = from_unit(dim.spec, v)
        return point
