"""Baselines from Optuna: ``tpe``, ``nsga2`` and ``gp`` (Optuna's own multi-objective GPSampler).

Each wraps one in-memory Optuna study per sampler instance. Points this sampler asked for are
told their results when they appear in the history (so samplers that keep state in their
trials, such as NSGA-II's generations, work); trials it did not ask for (a resumed study,
another sampler's) are replayed with ``add_trial``. Ordered finite domains (rank ladders) are
shown to Optuna as integer indices so TPE and GP see their order; categorical domains stay
categorical. Over-budget asks are told FAIL and asked again, then fall back to seeded random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.samplers.base import Observation, Sampler, point_key
from autopeft.samplers.random import RandomSampler
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import distribution, finite_values

MAX_ASKS = 64


class OptunaSampler(Sampler):
    """Base of the Optuna baselines; subclasses build the Optuna sampler in :meth:`make`."""

    def __init__(
        self, bound: BoundSpace, objectives: Sequence[Objective], seed: int, **options: Any
    ) -> None:
        super().__init__(bound, objectives, seed)
        self.options = options
        self._study: Any = None
        self._asked: dict[tuple[Any, ...], int] = {}
        self._known: set[tuple[Any, ...]] = set()
        self._fallback = RandomSampler(bound, objectives, seed)
        self.make(seed)  # fail early on bad options

    def make(self, seed: int) -> Any:
        raise NotImplementedError

    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self._study is None:
            directions = [o.direction for o in self.objectives]
            self._study = optuna.create_study(directions=directions, sampler=self.make(self.seed))
        self._sync(history)
        points: list[Point] = []
        for i in range(n):
            points.append(self._ask(history, len(history) + i))
        return points

    # -- Optuna bookkeeping -------------------------------------------------------------
    def _distributions(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        out: dict[str, Any] = {}
        for d in self.bound.dimensions:
            values = _ordered(d.spec)
            if d.spec.type == "categorical":
                out[d.name] = CategoricalDistribution(list(d.spec.choices or ()))
            elif values is not None:
                out[d.name] = IntDistribution(0, len(values) - 1)
            else:
                out[d.name] = distribution(d.spec)
        return out

    def _to_optuna(self, point: Point) -> dict[str, Any]:
        out = {}
        for d in self.bound.dimensions:
            values = _ordered(d.spec)
            out[d.name] = values.index(point[d.name]) if values is not None else point[d.name]
        return out

    def _from_optuna(self, params: dict[str, Any]) -> Point:
        out = {}
        for d in self.bound.dimensions:
            values = _ordered(d.spec)
            out[d.name] = values[params[d.name]] if values is not None else params[d.name]
        return out

    def _sync(self, history: Sequence[Observation]) -> None:
        import optuna

        OptunaState = optuna.trial.TrialState
        for h in history:
            key = point_key(h.point)
            if not h.state.is_finished() or key in self._known:
                continue
            complete = h.state == TrialState.COMPLETE
            values = [h.values[o.name] for o in self.objectives] if complete else None
            if key in self._asked:
                state = OptunaState.COMPLETE if values else OptunaState.FAIL
                self._study.tell(self._asked[key], values, state=state)
            else:
                self._study.add_trial(
                    optuna.trial.create_trial(
                        params=self._to_optuna(h.point),
                        distributions=self._distributions(),
                        values=values,
                        state=OptunaState.COMPLETE if values else OptunaState.FAIL,
                    )
                )
            self._known.add(key)

    def _ask(self, history: Sequence[Observation], index: int) -> Point:
        import optuna

        dists = self._distributions()
        for _ in range(MAX_ASKS):
            trial = self._study.ask(dists)
            point = self._from_optuna(trial.params)
            if self.bound.is_feasible(point) and point_key(point) not in self._asked:
                self._asked[point_key(point)] = trial.number
                return point
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return self._fallback.draw(index)


class TpeSampler(OptunaSampler):
    """Multivariate TPE with the constant liar for running trials."""

    def make(self, seed: int) -> Any:
        import optuna

        opts = {"multivariate": True, "constant_liar": True, "n_startup_trials": 10, **self.options}
        return _build(optuna.samplers.TPESampler, seed, opts)


class Nsga2Sampler(OptunaSampler):
    """NSGA-II (population 16 by default: studies here are tens of trials)."""

    def make(self, seed: int) -> Any:
        import optuna

        return _build(optuna.samplers.NSGAIISampler, seed, {"population_size": 16, **self.options})


class GpSampler(OptunaSampler):
    """Optuna's GPSampler: LogEHVI for several objectives, native categorical kernel."""

    def make(self, seed: int) -> Any:
        import optuna

        return _build(optuna.samplers.GPSampler, seed, {"n_startup_trials": 10, **self.options})


def _ordered(spec: Any) -> list[Any] | None:
    """The values of an ordered finite domain (shown to Optuna as indices); None otherwise."""
    return None if spec.type == "categorical" else finite_values(spec)


def _build(cls: Any, seed: int, options: dict[str, Any]) -> Any:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return cls(seed=seed, **options)
        except TypeError as exc:
            raise TypeError(f"{exc}".replace("__init__()", cls.__name__)) from None
