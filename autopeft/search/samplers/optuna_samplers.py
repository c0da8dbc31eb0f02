"""Baselines from Optuna: ``tpe``, ``nsga2`` and ``gp`` (Optuna's own multi-objective GPSampler).

Stateless, as the sampler contract asks: every :meth:`~OptunaSampler.propose` builds a fresh
in-memory Optuna study whose sampler is seeded from ``(seed, len(history))``, replays the
history into it with ``add_trial`` (complete trials with their values, failures as FAIL,
running trials as RUNNING, so TPE's constant liar and GPSampler's pending points see them),
and asks ``n`` times. A resumed study therefore proposes what an uninterrupted one would, and
nothing from an earlier call (Optuna's random state, GPSampler's cached kernel parameters)
leaks into the next. NSGA-II keeps its generations in trial attributes: the replay derives
them from the history (:meth:`Nsga2Sampler.replay_attrs`). Ordered finite domains (rank
ladders) are shown to Optuna as integer indices so TPE and GP see their order; categorical
domains stay categorical. Asks that are over budget or repeat a point of the history or of the
batch are told FAIL (in the throw-away study) and asked again, then fall back to seeded random.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.search.samplers.base import Observation, Sampler, point_key
from autopeft.search.samplers.random import RandomSampler
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import distribution, finite_values

MAX_ASKS = 64


class OptunaSampler(Sampler):
    """Base of the Optuna baselines; subclasses build the Optuna sampler in :meth:`make`.

    ``DESIGN``: the option that sizes the sampler's random start and its default (the size
    of a warm-start design that replaces it, :attr:`n_initial`); None if it has none."""

    DESIGN: tuple[str, int] | None = None

    def __init__(
        self, bound: BoundSpace, objectives: Sequence[Objective], seed: int, **options: Any
    ) -> None:
        super().__init__(bound, objectives, seed)
        self.options = options
        self._fallback = RandomSampler(bound, objectives, seed)
        self.make(seed)  # fail early on bad options

    @property
    def n_initial(self) -> int | None:
        """Trials of the random start before the model is used (the ``DESIGN`` option)."""
        if self.DESIGN is None:
            return None
        option, default = self.DESIGN
        value = self.options.get(option, default)
        return value if isinstance(value, int) else default

    def make(self, seed: int) -> Any:
        raise NotImplementedError

    def replay_attrs(self, sampler: Any, history: Sequence[Observation]) -> list[dict[str, Any]]:
        """System attributes of the replayed trials (none by default)."""
        return [{} for _ in history]

    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        seed = int(np.random.default_rng([self.seed, len(history)]).integers(2**31))
        sampler = self.make(seed)
        study = optuna.create_study(
            directions=[o.direction for o in self.objectives], sampler=sampler
        )
        study.add_trials(self._replay(history, self.replay_attrs(sampler, history)))
        seen = {point_key(h.point) for h in history}
        points: list[Point] = []
        for i in range(n):
            points.append(self._ask(study, seen, len(history) + i))
            seen.add(point_key(points[-1]))
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

    def _replay(self, history: Sequence[Observation], attrs: Sequence[dict[str, Any]]) -> list[Any]:
        """The history as Optuna trials: COMPLETE (every objective measured), RUNNING (not
        finished: pending), or FAIL (anything else)."""
        import optuna

        OptunaState = optuna.trial.TrialState
        dists = self._distributions()
        trials = []
        for h, system_attrs in zip(history, attrs, strict=True):
            values = self._values(h)
            state = OptunaState.FAIL
            if values is not None:
                state = OptunaState.COMPLETE
            elif not h.state.is_finished():
                state = OptunaState.RUNNING
            trials.append(
                optuna.trial.create_trial(
                    params=self._to_optuna(h.point),
                    distributions=dists,
                    values=values,
                    state=state,
                    system_attrs=system_attrs,
                )
            )
        return trials

    def _values(self, h: Observation) -> list[float] | None:
        """The objective values of a complete trial that measured them all, else None."""
        if h.state != TrialState.COMPLETE or any(o.name not in h.values for o in self.objectives):
            return None
        return [h.values[o.name] for o in self.objectives]

    def _ask(self, study: Any, seen: set[tuple[Any, ...]], index: int) -> Point:
        """A feasible new point; rejected asks are told FAIL. The fallback (seeded random) is
        added as RUNNING so that the rest of the batch treats it as pending."""
        import optuna

        dists = self._distributions()
        for _ in range(MAX_ASKS):
            trial = study.ask(dists)
            point = self._from_optuna(trial.params)
            if self.bound.is_feasible(point) and point_key(point) not in seen:
                return point
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        point = self._fallback.draw(index)
        study.add_trial(
            optuna.trial.create_trial(
                params=self._to_optuna(point),
                distributions=dists,
                state=optuna.trial.TrialState.RUNNING,
            )
        )
        return point


class TpeSampler(OptunaSampler):
    """Multivariate TPE with the constant liar for running trials."""

    DESIGN = ("n_startup_trials", 10)

    def make(self, seed: int) -> Any:
        import optuna

        opts = {"multivariate": True, "constant_liar": True, "n_startup_trials": 10}
        opts.update(self.options)
        return _build(optuna.samplers.TPESampler, seed, opts)


class Nsga2Sampler(OptunaSampler):
    """NSGA-II (population 16 by default: studies here are tens of trials)."""

    DESIGN = ("population_size", 16)  # its first generation is random

    def make(self, seed: int) -> Any:
        import optuna

        return _build(optuna.samplers.NSGAIISampler, seed, {"population_size": 16, **self.options})

    def replay_attrs(self, sampler: Any, history: Sequence[Observation]) -> list[dict[str, Any]]:
        """Each trial's generation, as NSGA-II would have set it had the history been asked
        and told in order: ``(complete trials before it) // population_size``."""
        key = sampler._get_generation_key()
        out, complete = [], 0
        for h in history:
            out.append({key: complete // sampler.population_size})
            complete += self._values(h) is not None
        return out


class GpSampler(OptunaSampler):
    """Optuna's GPSampler: LogEHVI for several objectives, native categorical kernel."""

    DESIGN = ("n_startup_trials", 10)

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
