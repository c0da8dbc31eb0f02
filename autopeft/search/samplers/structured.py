"""Structured candidates: the configurations people type by hand, and coarse moves between them.

Independent per-cell draws almost never land on a uniform configuration ("LoRA r=8 on q,v in
every layer": on a 6-layer model with a 4-rung ladder, one draw in ``4 ** 36``), yet such
configurations are what practitioners start from and are often strong. This module generates,
in the space's own encoding (points of :class:`~autopeft.space.bound.BoundSpace`, names from its
:class:`~autopeft.space.view.Dimension`), four families of candidates:

* **uniform**: one ladder value for every cell of a layered parameter (``rank.<layer>.<module>``,
  ``ia3.active.<layer>``), for each choice of its ``target_modules`` (module set);
* **layer ranges**: a uniform value on a contiguous range of layers (bottom, top or middle
  quarter / half / three quarters), the lowest value ("off" on a ladder with 0) elsewhere;
* **profile patterns**, when the study has stored sensitivity / importance profiles of its model
  and data (measured by ``autopeft profile`` or an allocation study; the driver passes them in,
  it never measures them): per-cell values that follow each profile, the best-scored cells on
  the highest rungs and the lowest-scored ones off, at the sizes of the uniform configurations
  (:mod:`autopeft.search.samplers.profile_patterns`);
* **moves** of a given point (observed points, the Pareto set): every rank scaled by 2 or by
  1/2, one module type dropped or added everywhere, the module set switched, the layer pattern
  shifted by one layer, the active cells made uniform.

The other dimensions (learning rate, ...) come from a base point the caller supplies (a Sobol
point of the design, a seeded draw), and ``method`` is set to the method a layered parameter
belongs to in a method-choice space (``lora.rank`` -> ``lora``). Every candidate returned is
canonical and feasible (:meth:`BoundSpace.is_feasible`: budget, memory rule); the order is a
function of the seed (and the profiles) only. Without profiles the profile family is empty
and the other families are exactly what they are with them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autopeft.search.samplers import profile_patterns
from autopeft.search.samplers.base import point_key
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import finite_values, from_unit

__all__ = ["Group", "StructuredDesign"]

#: A structured point before it meets a base: (group, module set or None, cell values).
Recipe = tuple["Group", Any, list[Any]]
#: Profile scores by kind: kind -> (layer, module type) -> score (``Profile.scores``).
Profiles = Mapping[str, Mapping[tuple[int, str], float]]

#: Fractions of the layers a layer range covers.
RANGE_FRACTIONS = (0.25, 0.5, 0.75)
#: Structured candidates :meth:`StructuredDesign.pool` draws on each base point.
PER_BASE = 4


@dataclass(frozen=True)
class Group:
    """The dimensions of one layered parameter with an ordered finite domain.

    Attributes:
        param: The parameter (``rank``, ``lora.rank``, ``ia3.active``).
        names: Dimension names, in space order.
        layers: The layer of each dimension.
        modules: The module type of each dimension (None for ``per: layer``).
        ladder: The domain's values in order (``[0, 2, 4, 8]``).
        targets: The ``target_modules`` dimension of this parameter's method, if searched.
        method: ``(dimension, value)`` selecting this parameter's method in a method-choice
            space, else None.
    """

    param: str
    names: tuple[str, ...]
    layers: tuple[int, ...]
    modules: tuple[str | None, ...]
    ladder: tuple[Any, ...]
    targets: tuple[str, tuple[Any, ...]] | None
    method: tuple[str, Any] | None

    @property
    def lowest(self) -> Any:
        return self.ladder[0]

    @property
    def active(self) -> tuple[Any, ...]:
        """Ladder values that place an adapter (all but an "off" lowest value)."""
        return self.ladder[1:] if _is_off(self.ladder[0]) else self.ladder


class StructuredDesign:
    """Structured candidates of ``bound`` (see the module docstring).

    Args:
        bound: The space bound to the model (a method-choice space too).
        seed: Orders the candidates; the same seed gives the same candidates in the same order.
        profiles: Per-cell scores by profile kind (``sensitivity``, ``importance``,
            ``adalora``: :attr:`Profile.scores <autopeft.allocation.profiles.Profile>`) for the
            profile family; None or empty: no profile candidates.
    """

    def __init__(self, bound: Any, seed: int, profiles: Profiles | None = None) -> None:
        self.bound: BoundSpace = bound
        self.seed = seed
        self.groups = _groups(bound)
        self._layers = sorted({layer for g in self.groups for layer in g.layers})
        self.profiles = {k: dict(v) for k, v in sorted((profiles or {}).items()) if v}
        self._patterns: list[tuple[str, Recipe]] | None = None

    def __bool__(self) -> bool:
        return bool(self.groups)

    # -- the families -------------------------------------------------------------------
    def uniform(self, base: Point) -> list[Point]:
        """Every (group, module set, ladder value) uniform configuration on ``base``."""
        return [
            self._overlay(base, group, target, [value] * len(group.names))
            for group in self.groups
            for target in _target_values(group)
            for value in group.active
        ]

    def layer_ranges(self, base: Point) -> list[Point]:
        """Uniform values on contiguous layer ranges (bottom, top, middle), off elsewhere."""
        return [
            self._overlay(base, group, target, _on_range(group, value, span))
            for group in self._ranged()
            for span in self._ranges()
            for target in _target_values(group)
            for value in group.active
        ]

    def profiled(self, base: Point) -> list[Point]:
        """Per-cell values following each profile (kind), for each module set and size."""
        return [self._overlay(base, *recipe) for _, recipe in self._profile_recipes()]

    def moves(self, point: Point) -> list[Point]:
        """Coarse moves of ``point``: ranks x2 and x1/2, a module type dropped or added
        everywhere, another module set, the layer pattern shifted by one, uniform ranks."""
        out = []
        for group in self.groups:
            if group.method is not None and point.get(group.method[0]) != group.method[1]:
                continue  # another method is active: its cells build nothing
            values = [point[n] for n in group.names]
            on = [v for v in values if not _is_off(v)]
            if not on:
                continue
            mode = max(set(on), key=lambda v: (on.count(v), group.ladder.index(v)))
            for step in (1, -1):  # x2 and x1/2 on a doubling ladder: one rung up or down
                out.append(self._set(point, group, [_shift_rung(group, v, step) for v in values]))
            out.append(self._set(point, group, [mode if not _is_off(v) else v for v in values]))
            for module in sorted({m for m in group.modules if m is not None}):
                if not _is_off(group.lowest):
                    break
                cells = [i for i, m in enumerate(group.modules) if m == module]
                if any(not _is_off(values[i]) for i in cells):
                    drop = [group.lowest if i in cells else v for i, v in enumerate(values)]
                    out.append(self._set(point, group, drop))
                else:
                    add = [mode if i in cells else v for i, v in enumerate(values)]
                    out.append(self._set(point, group, add))
            for shift in (1, -1):
                out.append(self._set(point, group, self._shifted(group, values, shift)))
            if group.targets is not None:  # another module set, new module types at the mode
                filled = self._filled(group, values, mode)
                name, choices = group.targets
                for choice in choices:
                    if choice != point[name]:
                        out.append({**self._set(point, group, filled), name: choice})
        own = point_key(self.bound.canonical(point))
        return [p for p in self.feasible(out) if point_key(p) != own]

    # -- assembly -----------------------------------------------------------------------
    def initial(self, bases: Sequence[Point]) -> list[Point]:
        """One structured point per base (the design's own points supply the other
        dimensions), drawn round-robin over the families and module sets in a seeded order,
        so a short design still covers uniform configurations of each module set."""
        rng = np.random.default_rng([self.seed, 4099])
        streams = [list(s) for s in self._streams(rng) if s]
        out: list[Point] = []
        seen: set[Any] = set()
        for k, base in enumerate(bases):
            found = None
            for t in range(len(streams)):
                stream = streams[(k + t) % len(streams)]
                while stream and found is None:
                    group, target, values = stream.pop(0)
                    candidate = self.feasible([self._overlay(base, group, target, values)])
                    if candidate and point_key(candidate[0]) not in seen:
                        found = candidate[0]
                if found is not None:
                    break
            if found is None:
                break
            seen.add(point_key(found))
            out.append(found)
        return out

    def pool(
        self, bases: Sequence[Point], parents: Sequence[Point], rng: np.random.Generator
    ) -> list[Point]:
        """Candidates for an acquisition pool: uniform, layer-range and profile configurations
        on the seeded ``bases`` (each base serves a few), and the moves of ``parents``."""
        structured = []
        for base in bases:
            candidates = self.uniform(base) + self.layer_ranges(base) + self.profiled(base)
            if not candidates:
                break
            take = rng.choice(len(candidates), size=min(len(candidates), PER_BASE), replace=False)
            structured += [candidates[int(i)] for i in take]
        moved = [p for parent in parents for p in self.moves(parent)]
        return self.feasible(structured) + moved

    def feasible(self, points: Sequence[Point]) -> list[Point]:
        """The feasible points of ``points``, canonical, without duplicates, in order."""
        out: dict[Any, Point] = {}
        for point in points:
            if self.bound.is_feasible(point):
                point = self.bound.canonical(point)
                out.setdefault(point_key(point), point)
        return list(out.values())

    # -- helpers ------------------------------------------------------------------------
    def _streams(self, rng: np.random.Generator) -> Iterator[list[Recipe]]:
        """Recipes per (group, module set): its uniform values in a seeded order, then its
        layer ranges in a seeded order; last, one stream of the profile patterns, taking the
        kinds in turn, each kind's patterns in a seeded order."""
        ranged = self._ranged()
        for group in self.groups:
            for target in _target_values(group):
                values = list(group.active)
                rng.shuffle(values)
                recipes = [(group, target, [v] * len(group.names)) for v in values]
                if group in ranged:
                    spans = self._ranges()
                    for j in rng.permutation(len(spans) * len(values)):
                        span, v = spans[int(j) // len(values)], values[int(j) % len(values)]
                        recipes.append((group, target, _on_range(group, v, span)))
                yield recipes
        yield self._profile_stream(rng)

    def _profile_stream(self, rng: np.random.Generator) -> list[Recipe]:
        """The profile recipes, the kinds taken in turn, each kind's in a seeded order."""
        by_kind: dict[str, list[Recipe]] = {}
        for kind, recipe in self._profile_recipes():
            by_kind.setdefault(kind, []).append(recipe)
        for recipes in by_kind.values():
            order = rng.permutation(len(recipes))
            recipes[:] = [recipes[int(i)] for i in order]
        longest = max((len(r) for r in by_kind.values()), default=0)
        return [r[i] for i in range(longest) for r in by_kind.values() if i < len(r)]

    def _profile_recipes(self) -> list[tuple[str, Recipe]]:
        """(kind, recipe) of every profile, group, module set and size (computed once)."""
        if self._patterns is None:
            self._patterns = [
                (kind, (group, target, values))
                for kind, scores in self.profiles.items()
                for group in self.groups
                for target in _target_values(group)
                for values in self._follow(scores, group, target)
            ]
        return self._patterns

    def _follow(
        self, scores: Mapping[tuple[int, str], float], group: Group, target: Any
    ) -> list[list[Any]]:
        """``group``'s values following ``scores`` on the module set ``target``, per size."""
        template = {d.name: from_unit(d.spec, 0.5) for d in self.bound.dimensions}
        point = self._overlay(template, group, target, [template[n] for n in group.names])
        targeted = self.bound.target_modules(point)  # reads only the module set and method
        cells = profile_patterns.group_scores(scores, group.layers, group.modules, targeted)
        patterns = [
            profile_patterns.follow(cells, group.ladder, size)
            for size in profile_patterns.sizes(group.ladder)
        ]
        return [values for values in patterns if values is not None]

    def _ranged(self) -> list[Group]:
        """The groups that can switch layers off (their lowest value is 0)."""
        if len(self._layers) < 2:
            return []
        return [g for g in self.groups if _is_off(g.lowest)]

    def _ranges(self) -> list[tuple[int, int]]:
        """Layer ranges ``[lo, hi)``: bottom, top and middle of each fraction, distinct."""
        first, n = self._layers[0], len(self._layers)
        out: list[tuple[int, int]] = []
        for fraction in RANGE_FRACTIONS:
            k = max(1, min(n - 1, round(n * fraction)))
            for start in (0, n - k, (n - k) // 2):
                span = (first + start, first + start + k)
                if span not in out:
                    out.append(span)
        return out

    @staticmethod
    def _overlay(base: Point, group: Group, target: Any, values: Sequence[Any]) -> Point:
        """``base`` with ``group``'s cells set to ``values``, its module set to ``target``
        (None: unchanged) and its method chosen."""
        point = {**base, **dict(zip(group.names, values, strict=True))}
        if group.targets is not None and target is not None:
            point[group.targets[0]] = target
        if group.method is not None:
            point[group.method[0]] = group.method[1]
        return point

    @staticmethod
    def _set(point: Point, group: Group, values: Sequence[Any]) -> Point:
        return {**point, **dict(zip(group.names, values, strict=True))}

    @staticmethod
    def _filled(group: Group, values: list[Any], mode: Any) -> list[Any]:
        """Module types with no active cell take ``mode`` on the layers that have one."""
        active_layers = {group.layers[i] for i, v in enumerate(values) if not _is_off(v)}
        active_modules = {group.modules[i] for i, v in enumerate(values) if not _is_off(v)}
        return [
            mode
            if _is_off(v)
            and group.modules[i] not in active_modules
            and group.layers[i] in active_layers
            else v
            for i, v in enumerate(values)
        ]

    def _shifted(self, group: Group, values: list[Any], shift: int) -> list[Any]:
        """The values of layer ``l`` move to layer ``l + shift``; vacated layers take the
        lowest value."""
        by_cell = {(group.layers[i], group.modules[i]): v for i, v in enumerate(values)}
        return [
            by_cell.get((layer - shift, module), group.lowest)
            for layer, module in zip(group.layers, group.modules, strict=True)
        ]


def _groups(bound: Any) -> list[Group]:
    by_param: dict[str, list[Any]] = {}
    for dim in bound.dimensions:
        if dim.layer is not None:
            by_param.setdefault(dim.param, []).append(dim)
    names = {d.name: d for d in bound.dimensions}
    method_dim = names.get("method")
    groups = []
    for param, dims in by_param.items():
        ladder = finite_values(dims[0].spec)
        if ladder is None or dims[0].spec.type == "categorical" or len(ladder) < 2:
            continue
        prefix = param.rsplit(".", 1)[0] if "." in param else ""
        method = None
        if prefix and method_dim is not None and prefix in (method_dim.spec.choices or ()):
            method = ("method", prefix)
        target_name = f"{prefix}.target_modules" if prefix else "target_modules"
        target_dim = names.get(target_name)
        targets = None
        if target_dim is not None and target_dim.spec.choices:
            targets = (target_name, tuple(target_dim.spec.choices))
        groups.append(
            Group(
                param=param,
                names=tuple(d.name for d in dims),
                layers=tuple(d.layer for d in dims),
                modules=tuple(d.module for d in dims),
                ladder=tuple(ladder),
                targets=targets,
                method=method,
            )
        )
    return groups


def _on_range(group: Group, value: Any, span: tuple[int, int]) -> list[Any]:
    """``value`` on the cells of layers ``span[0] <= layer < span[1]``, off elsewhere."""
    return [value if span[0] <= layer < span[1] else group.lowest for layer in group.layers]


def _target_values(group: Group) -> tuple[Any, ...]:
    return group.targets[1] if group.targets is not None else (None,)


def _is_off(value: Any) -> bool:
    return value == 0 or value is False


def _shift_rung(group: Group, value: Any, step: int) -> Any:
    """The next rung up (``step`` 1) or down (-1) of an active value; off stays off, and the
    bottom active rung does not go down to off."""
    if _is_off(value):
        return value
    active = list(group.active)
    i = active.index(value) if value in active else 0
    return active[int(np.clip(i + step, 0, len(active) - 1))]
