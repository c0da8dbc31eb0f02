"""The sampler contract: propose feasible points given what has been observed.

A sampler sees the whole history (complete, failed and still-running trials) on every call and
keeps no state that the database does not, so a resumed study proposes exactly what an
uninterrupted one would. Proposals must be feasible: inside the space, at least one adapter,
and within ``max_trainable_params`` (:meth:`BoundSpace.is_feasible`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.space.bound import BoundSpace, Point


@dataclass(frozen=True)
class Observation:
    """A trial as a sampler sees it.

    Attributes:
        point: The searched point.
        state: ``COMPLETE``, ``FAIL`` or ``RUNNING`` (a :class:`TrialState`).
        values: Objective name -> value for complete trials, else empty.
        infeasible: A failure caused by the configuration (to be avoided, not retried).
        fidelity: The share of the top rung's training the trial had (multi-fidelity
            studies; 1 otherwise). Samplers whose :attr:`Sampler.multi_fidelity` is False
            only ever see observations at one fidelity.
    """

    point: Point
    state: TrialState
    values: dict[str, float]
    infeasible: bool = False
    fidelity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", TrialState(self.state))  # accept the plain name too


def point_key(point: Point) -> tuple[Any, ...]:
    """A hashable identity of a point (for de-duplication)."""
    return tuple(sorted(point.items()))


class Sampler(ABC):
    """Base class of samplers. Subclasses take ``**options`` from the study spec.

    Args:
        bound: The space bound to the model (dimensions, budget, exact parameter counts).
        objectives: The study's objectives, in order.
        seed: Seeds every random choice; the same seed and history give the same proposals.
    """

    #: Whether the sampler models the fidelity of observations (see
    #: :attr:`Observation.fidelity`). In a multi-fidelity study a sampler without it sees the
    #: lowest rung only, where every configuration has a result (promotions are not new points).
    multi_fidelity: bool = False
    #: Complete trials of its own after which a sampler given a transfer prior
    #: (:meth:`set_prior`) proposes from its model; a warm-started study's initial design from
    #: the earlier fronts is that long. None: the sampler ignores priors, and the design is as
    #: long as its own initial design.
    prior_start: int | None = None

    def __init__(
        self, bound: BoundSpace, objectives: Sequence[Objective], seed: int, **options: Any
    ) -> None:
        if options:
            raise TypeError(f"unknown options {sorted(options)}")
        self.bound = bound
        self.objectives = list(objectives)
        self.seed = seed

    def set_prior(self, groups: Sequence[Sequence[Observation]]) -> None:
        """Complete observations of earlier related studies, one sequence per study, their
        points mapped onto this space (:mod:`autopeft.search.warm_start`); fixed for the life of the
        study. A sampler that can learn from them (``mobo``: a transfer prior on its surrogate)
        does; the default ignores them."""
        del groups

    def set_profiles(self, profiles: Mapping[str, Mapping[tuple[int, str], float]]) -> None:
        """Stored sensitivity / importance profiles of the study's model and data: kind ->
        (layer, module type) -> score (:attr:`autopeft.allocation.profiles.Profile.scores`),
        given before the first proposal and fixed for the life of the study. A sampler with
        structured candidates adds rank patterns that follow them
        (:mod:`autopeft.search.samplers.structured`); the default ignores them."""
        del profiles

    @abstractmethod
    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        """``n`` feasible points to evaluate next; ``history`` includes running trials."""
