"""Baselines: uniform random and scrambled Sobol designs, with rejection of infeasible points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from autopeft.core.objectives import Objective
from autopeft.exceptions import SearchSpaceError
from autopeft.search.samplers.base import Observation, Sampler
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import from_unit

MAX_ATTEMPTS = 20_000


class RandomSampler(Sampler):
    """Independent uniform draws per dimension (log-uniform where ``log: true``).

    Proposal ``k`` (the k-th trial of the study) draws from ``default_rng([seed, k])`` until a
    draw is feasible, so proposals depend only on the seed and the trial index.
    """

    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        start = len(history)
        return [self.draw(start + i) for i in range(n)]

    def _first_unit(self, index: int) -> np.ndarray | None:
        return None

    def draw(self, index: int) -> Point:
        """The feasible point of trial ``index`` (a pure function of the seed and the index)."""
        rng = np.random.default_rng([self.seed, index])
        first = self._first_unit(index)
        dims = self.bound.dimensions
        for attempt in range(MAX_ATTEMPTS):
            u = first if attempt == 0 and first is not None else rng.random(len(dims))
            point = {d.name: from_unit(d.spec, float(x)) for d, x in zip(dims, u, strict=True)}
            if self.bound.is_feasible(point):
                return point
        note = getattr(self.bound, "constraint_note", "")  # a method-choice space has none
        raise SearchSpaceError(
            f"no feasible point in {MAX_ATTEMPTS} random draws: max_trainable_params="
            f"{self.bound.space.max_trainable_params:,}{note} is too tight for this space"
        )


class SobolSampler(RandomSampler):
    """Scrambled Sobol design: trial ``k`` takes the k-th point of a seeded Sobol sequence, and
    falls back to seeded random draws if that point is infeasible (over budget).

    Args:
        structured: The first ``structured`` trials alternate Sobol points (even ``k``) with
            structured configurations (odd ``k``: uniform ranks per module set, contiguous
            layer ranges, rank patterns of the stored profiles given by :meth:`set_profiles`;
            :class:`~autopeft.search.samplers.structured.StructuredDesign`), whose
            other dimensions (learning rate, ...) are those of the k-th Sobol point. 0 (the
            default of the ``sobol`` sampler): Sobol points only.
    """

    def __init__(
        self,
        bound: BoundSpace,
        objectives: Sequence[Objective],
        seed: int,
        *,
        structured: int = 0,
    ) -> None:
        super().__init__(bound, objectives, seed)
        if structured < 0:
            raise TypeError("structured must be >= 0")
        self.structured = structured
        self._structured: dict[int, Point] | None = None
        self._profiles: dict[str, Mapping[tuple[int, str], float]] = {}

    def set_profiles(self, profiles: Mapping[str, Mapping[tuple[int, str], float]]) -> None:
        self._profiles = dict(profiles)
        self._structured = None  # the design is rebuilt with the profiles' patterns

    def draw(self, index: int) -> Point:
        if index < self.structured and index % 2 == 1:
            point = self._structured_points().get(index)
            if point is not None:
                return point
        return super().draw(index)

    def _structured_points(self) -> dict[int, Point]:
        """Trial index -> its structured point (computed once; the design may run out)."""
        if self._structured is None:
            from autopeft.search.samplers.structured import StructuredDesign

            design = StructuredDesign(self.bound, self.seed, self._profiles)
            slots = list(range(1, self.structured, 2))
            dims = self.bound.dimensions
            bases = []
            for k in slots:
                u = self._first_unit(k)
                if u is None:
                    u = np.random.default_rng([self.seed, k]).random(len(dims))
                bases.append(
                    {d.name: from_unit(d.spec, float(x)) for d, x in zip(dims, u, strict=True)}
                )
            points = design.initial(bases) if design else []
            self._structured = dict(zip(slots, points, strict=False))
        return self._structured

    def _first_unit(self, index: int) -> np.ndarray | None:
        from torch.quasirandom import SobolEngine

        dims = len(self.bound.dimensions)
        if dims > SobolEngine.MAXDIM:
            return None
        engine = SobolEngine(dims, scramble=True, seed=self.seed)
        engine.fast_forward(index)
        return engine.draw(1).double().numpy()[0]
