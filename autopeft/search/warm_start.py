"""Warm start: seed a new study from earlier studies, with an initial design chosen from their
fronts and a transfer prior on the surrogate.

A study spec's ``warm_start: [names]`` (or ``autopeft run --warm-start NAME``) names stored
studies of the same database. Their complete trials are mapped onto the new space by dimension
name (:func:`map_point`) and ranked by their own Pareto fronts (:func:`ranked_points`):

* **initial design:** the top ones, up to :func:`design_size` of them, become the study's
  first proposals, served by :class:`WarmStartSampler` before it hands over to the study's
  sampler (``mobo``, which learns from the prior below, takes over after ``prior_start``
  points; a sampler without a surrogate after its own initial-design size);
* **transfer prior:** up to :data:`PRIOR_TRIALS` of each source, best first, are handed to the
  study's sampler (:meth:`autopeft.search.samplers.Sampler.set_prior`); ``mobo`` fits them with its
  own trials, the task as one more GP input (:mod:`autopeft.search.samplers.transfer`). Samplers
  without a surrogate ignore them.

Both are chosen once, when the study is created, and stored with it (an Optuna study user
attribute), so a resumed study serves the same points and learns from the same prior even if
the source studies have grown since; a point is served only while no trial of the study holds
it, so a restarted driver never proposes a warm point twice. (Designs stored before the prior
existed have none, and their studies resume as they ran.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.core.pareto import nondominated_ranks
from autopeft.core.states import TrialState
from autopeft.exceptions import StudyError
from autopeft.search.samplers import Observation, Sampler
from autopeft.search.samplers.base import point_key
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import finite_values, from_unit
from autopeft.space.schema import ParamSpec
from autopeft.storage.records import TrialRecord
from autopeft.storage.store import Store

#: The Optuna study user attribute that holds a study's warm-start design.
WARM_ATTR = "warm_start"
#: Warm points for a sampler without an initial design of its own (``n_initial``).
DEFAULT_POINTS = 5
#: Trials of each source study kept for the transfer prior (the best ranked first).
PRIOR_TRIALS = 200


@dataclass(frozen=True)
class WarmDesign:
    """The first proposals of a warm-started study.

    Attributes:
        sources: The studies it was chosen from, in the order given.
        points: The points to propose first, best first, each a point of the new space.
        prior: Per source, its complete trials as ``(point of the new space, objective
            values)``, best first: the transfer prior.
    """

    sources: tuple[str, ...]
    points: tuple[Point, ...]
    prior: tuple[tuple[tuple[Point, dict[str, float]], ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        prior = [[{"point": dict(p), "values": dict(v)} for p, v in group] for group in self.prior]
        return {"sources": list(self.sources), "points": [dict(p) for p in self.points]} | (
            {"prior": prior} if prior else {}
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WarmDesign:
        prior = tuple(
            tuple((dict(row["point"]), dict(row["values"])) for row in group)
            for group in data.get("prior", [])
        )
        return cls(tuple(data["sources"]), tuple(dict(p) for p in data["points"]), prior)

    def prior_observations(self) -> list[list[Observation]]:
        """The transfer prior as the sampler sees it."""
        return [
            [Observation(p, TrialState.COMPLETE, dict(v)) for p, v in group] for group in self.prior
        ]


class WarmStartSampler(Sampler):
    """Proposes the warm points not yet held by a trial, then delegates to ``inner``.

    Stateless like every sampler: which warm points are left is read from the history, so a
    resumed study continues where it stopped. Warm points proposed in the same batch as the
    inner sampler's points are shown to it as pending trials.
    """

    def __init__(
        self,
        inner: Sampler,
        points: Sequence[Point],
        prior: Sequence[Sequence[Observation]] = (),
    ) -> None:
        super().__init__(inner.bound, inner.objectives, inner.seed)
        self.inner = inner
        self.multi_fidelity = inner.multi_fidelity
        self.points = [dict(p) for p in points]
        self.set_prior(prior)

    def set_prior(self, groups: Sequence[Sequence[Observation]]) -> None:
        self.inner.set_prior(groups)

    def set_profiles(self, profiles: Mapping[str, Mapping[tuple[int, str], float]]) -> None:
        self.inner.set_profiles(profiles)

    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        seen = {point_key(h.point) for h in history}
        warm = [dict(p) for p in self.points if point_key(p) not in seen][:n]
        if len(warm) == n:
            return warm
        pending = [Observation(p, TrialState.RUNNING, {}) for p in warm]
        return warm + self.inner.propose([*history, *pending], n - len(warm))


def design_size(sampler: Sampler) -> int:
    """How many warm points replace the sampler's initial design: its
    :attr:`~autopeft.search.samplers.Sampler.prior_start` if it learns from the transfer prior
    (``mobo``), else its ``n_initial`` (the Optuna samplers' ``n_startup_trials``, NSGA-II's
    ``population_size``)."""
    size = sampler.prior_start or getattr(sampler, "n_initial", None)
    return size if isinstance(size, int) and size > 0 else DEFAULT_POINTS


def plan_warm_start(
    url: str, study: str, sources: Sequence[str], bound: BoundSpace, size: int
) -> WarmDesign | None:
    """The design of a new study ``study`` warm-started from ``sources``; None when ``study``
    exists already (a resumed study keeps the design it stored). Writes nothing.

    Raises:
        StudyError: A source is not in the database, shares no dimension with ``bound``, has no
            complete trial, or none of its points fits the new space's budget.
    """
    store = Store(url, create=False)
    names = store.study_names()
    if study in names:
        return None
    for source in sources:
        if source not in names:
            known = ", ".join(names) or "none"
            raise StudyError(f"warm_start: no study named {source!r} in {url!r}; studies: {known}")
    groups = [(store.objectives(s), _source_records(store, s, bound)) for s in sources]
    return design_from(sources, groups, bound, size)


def design_from(
    sources: Sequence[str],
    groups: Sequence[tuple[Sequence[Any], Sequence[TrialRecord]]],
    bound: BoundSpace,
    size: int,
) -> WarmDesign:
    """The design chosen from each source's ``(objectives, complete records)`` (the part of
    :func:`plan_warm_start` that reads no database).

    Raises:
        StudyError: None of the sources' points fits the new space's budget.
    """
    ranked: list[tuple[tuple[float, ...], dict[str, Any]]] = []
    prior = []
    for index, (objectives, records) in enumerate(groups):
        order = ranked_points(records, objectives)
        for (rank, crowding), record in order:
            ranked.append(((rank, -crowding, index, record.number), record.params))
        prior.append(
            tuple(
                (map_point(r.params, bound), {k: float(v) for k, v in r.values.items()})
                for _, r in order[:PRIOR_TRIALS]
            )
        )
    points: dict[tuple[Any, ...], Point] = {}
    for _, params in sorted(ranked, key=lambda item: item[0]):
        point = map_point(params, bound)
        key = point_key(bound.canonical(point))
        if key not in points and bound.is_feasible(point):
            points[key] = point
        if len(points) == size:
            break
    if not points:
        raise StudyError(
            f"warm_start: no point of {', '.join(map(repr, sources))} fits the new space "
            f"(max_trainable_params={bound.space.max_trainable_params:,})"
        )
    return WarmDesign(tuple(sources), tuple(points.values()), tuple(prior))


def _source_records(store: Store, source: str, bound: BoundSpace) -> list[TrialRecord]:
    """The complete trials of ``source``, once it is known to share a dimension with ``bound``."""
    records = store.records(source)
    dims = {d.name for d in bound.dimensions}
    searched = {name for r in records for name in r.params}
    if records and not searched & dims:
        raise StudyError(
            f"warm_start: study {source!r} shares no search dimension with the new space "
            f"(it has {_few(searched)}; the new space has {_few(dims)})"
        )
    complete = [
        r
        for r in records
        if r.state == TrialState.COMPLETE
        and r.values
        and all(math.isfinite(float(v)) for v in r.values.values())
    ]
    if not complete:
        raise StudyError(f"warm_start: study {source!r} has no complete trials to start from")
    return complete


def _few(names: set[str], limit: int = 6) -> str:
    shown = sorted(names)[:limit]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def ranked_points(
    records: Sequence[TrialRecord], objectives: Sequence[Any]
) -> list[tuple[tuple[int, float], TrialRecord]]:
    """Each record with its (non-dominated sorting rank, crowding distance), best first
    (:func:`~autopeft.core.pareto.nondominated_ranks`: rank 0 is the Pareto front; the
    crowding distance is taken on objectives normalised within ``records``, so it compares
    across studies)."""
    table = [[float(r.values[o.name]) for o in objectives] for r in records]
    ranks = nondominated_ranks(table, [o.direction for o in objectives])
    out = list(zip(ranks, records, strict=True))
    return sorted(out, key=lambda item: (item[0][0], -item[0][1], item[1].number))


def map_point(params: dict[str, Any], bound: BoundSpace) -> Point:
    """A source trial's point in the new space, by dimension name: a dimension the source lacks
    takes the new domain's centre, a value outside the new domain is clipped to the range or
    snapped to the nearest numeric choice (else the centre)."""
    point: Point = {}
    for dim in bound.dimensions:
        centre = from_unit(dim.spec, 0.5)
        value = _fit(dim.spec, params[dim.name]) if dim.name in params else centre
        point[dim.name] = value if dim.spec.contains(value) else centre
    return point


def _fit(spec: ParamSpec, value: Any) -> Any:
    finite = finite_values(spec)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if finite is not None:
        if value in finite:
            return finite[finite.index(value)]
        if numeric and all(isinstance(v, int | float) for v in finite):
            return min(finite, key=lambda v: abs(float(v) - float(value)))
        return from_unit(spec, 0.5)
    if not numeric:
        return from_unit(spec, 0.5)
    low, high = float(spec.low), float(spec.high)  # type: ignore[arg-type]
    clipped = min(max(float(value), low), high)
    return round(clipped) if spec.type == "int" else clipped


def store_design(store: Store, study: str, design: WarmDesign) -> None:
    """Keep ``design`` with the (just created) study ``study``."""
    store.optuna_study(study).set_user_attr(WARM_ATTR, design.to_json())


def stored_design(store: Store, study: str) -> WarmDesign | None:
    """The design study ``study`` was created with; None for a cold-started study."""
    data = store.optuna_study(study).user_attrs.get(WARM_ATTR)
    return WarmDesign.from_json(data) if data else None


def with_warm_start(sampler: Sampler, store: Store, study: str) -> Sampler:
    """``sampler`` behind a :class:`WarmStartSampler` if study ``study`` stored a design."""
    design = stored_design(store, study)
    if design is None:
        return sampler
    return WarmStartSampler(sampler, design.points, design.prior_observations())
