"""Baselines: uniform random and scrambled Sobol designs, with rejection of infeasible points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autopeft.exceptions import SearchSpaceError
from autopeft.search.samplers.base import Observation, Sampler
from autopeft.space.bound import Point
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
    falls back to seeded random draws if that point is infeasible (over budget)."""

    def _first_unit(self, index: int) -> np.ndarray | None:
        from torch.quasirandom import SobolEngine

        dims = len(self.bound.dimensions)
        if dims > SobolEngine.MAXDIM:
            return None
        engine = SobolEngine(dims, scramble=True, seed=self.seed)
        engine.fast_forward(index)
        return engine.draw(1).double().numpy()[0]
