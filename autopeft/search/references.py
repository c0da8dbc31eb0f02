"""References: fixed configurations trained in a study beside the search, to compare against.

A spec's ``references:`` lists names from :data:`~autopeft.search.reference_catalog.CATALOG`
or configurations in the space's own vocabulary::

    references:
      - lora-r8-qv                                   # from the catalog
      - {name: lora-r16-all-linear, learning_rate: 5.0e-3}   # catalog entry, learning rate set
      - {name: my-lora, method: lora, target_modules: attn, rank: 4, learning_rate: 5.0e-3}

Each reference becomes a one-point search space of its method (every parameter a constant),
bound to the study's model with the same machinery as the searched space, so module types and
presets resolve on any architecture and a reference that cannot be built on this model is
refused at validation. When the study's space can express the reference exactly (same method,
same adapted modules and sizes, same learning rate, within the budget), :attr:`Reference.point`
is its point in that space: the driver stores it with that point, so the sampler sees it as an
ordinary observation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopeft.core.compiled import CompiledConfig
from autopeft.core.validation import FieldIssue, issue_message, line_of, read_yaml
from autopeft.exceptions import SearchSpaceError, StudySpecError
from autopeft.methods.binding import bind_space, check_methods
from autopeft.models.layout import ModelLayout
from autopeft.search.reference_catalog import CATALOG
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.schema import ParamSpec, SearchSpace

__all__ = ["Reference", "resolve_references"]

_NOT_PARAMETERS = frozenset({"name", "method", "source"})


@dataclass(frozen=True)
class Reference:
    """A reference of a study, compiled for its model.

    Attributes:
        name: The catalog name or the user's ``name``.
        compiled: The configuration as a worker runs it.
        point: Its point in the study's search space when the space can express it exactly
            (given to the sampler as an observation); None otherwise.
        over_budget: Its trainable parameters exceed the space's ``max_trainable_params``
            (it still trains, as a comparison point).
        source: Where the default comes from (catalog entries), or ``user``.
    """

    name: str
    compiled: CompiledConfig
    point: Point | None
    over_budget: bool
    source: str


def resolve_references(
    entries: Sequence[str | dict[str, Any]],
    *,
    spec_path: Path,
    layout: ModelLayout,
    study: BoundSpace,
    task_type: str,
    learning_rate: float,
) -> list[Reference]:
    """Compile a spec's ``references:`` for the study's model; writes nothing.

    Raises:
        StudySpecError: an unknown catalog name, a duplicate name, or a reference that cannot be
            built on this model (one line naming the spec file, the entry and the reason).
    """
    out: list[Reference] = []
    for i, entry in enumerate(entries):
        try:
            definition = _definition(entry)
            if definition["name"] in {r.name for r in out}:
                raise FieldIssue(("name",), "is listed twice", definition["name"])
            out.append(_compile(definition, layout, study, task_type, learning_rate))
        except FieldIssue as issue:
            _fail(spec_path, ("references", i, *issue.loc), issue.message, issue.value)
        except SearchSpaceError as exc:
            _fail(spec_path, ("references", i), f"cannot be built on this model: {exc}")
    return out


def _fail(path: Path, loc: tuple[str | int, ...], message: str, *value: Any) -> None:
    _, node = read_yaml(path, StudySpecError)
    if value:
        raise StudySpecError(issue_message(path, node, loc, message, value[0]))
    line = line_of(node, loc)
    where = f"{path}:{line}" if line else str(path)
    raise StudySpecError(f"{where}: {'.'.join(map(str, loc))}: {message}")


def _definition(entry: str | dict[str, Any]) -> dict[str, Any]:
    """The full definition of an entry: a catalog entry (with overrides) or the user's own."""
    given = {"name": entry} if isinstance(entry, str) else dict(entry)
    name = given.get("name")
    if not isinstance(name, str) or not name:
        raise FieldIssue(("name",), "a reference needs a `name`", name)
    if "method" in given:
        return {"source": "user", **given}
    if name not in CATALOG:
        raise FieldIssue(
            ("name",) if isinstance(entry, dict) else (),
            "unknown reference; the catalog has "
            + ", ".join(CATALOG)
            + " (or give `method:` and its parameters)",
            name,
        )
    return {**CATALOG[name], **given}


def _compile(
    definition: dict[str, Any],
    layout: ModelLayout,
    study: BoundSpace,
    task_type: str,
    learning_rate: float,
) -> Reference:
    params = {k: v for k, v in definition.items() if k not in _NOT_PARAMETERS}
    params.setdefault("learning_rate", learning_rate)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    space = SearchSpace.model_validate(
        {
            "name": f"reference {definition['name']}",
            "method": definition["method"],
            "max_trainable_params": 10**15,
            "module_presets": dict(study.space.module_presets),
            "parameters": params,
        }
    )
    check_methods(space)
    bound = bind_space(space, layout, f"reference {definition['name']!r}")
    compiled = bound.compile({}, task_type)
    point = _point_in(study, space, bound, compiled, task_type)
    over = compiled.trainable_params > study.space.max_trainable_params
    return Reference(definition["name"], compiled, point, over, str(definition["source"]))


def _point_in(
    study: BoundSpace,
    ref_space: SearchSpace,
    ref_bound: BoundSpace,
    compiled: CompiledConfig,
    task_type: str,
) -> Point | None:
    """The point of the study's space that compiles to the same configuration, if any."""
    if study.space.method != ref_space.method or study.space.allocation is not None:
        return None
    targets = ref_bound.target_modules({})
    point: Point = {}
    for dim in study.dimensions:
        value = _value_for(study, dim.param, dim.spec, dim.module, ref_space, targets)
        if value is None or not dim.spec.contains(value):
            return None
        point[dim.name] = value
    try:
        if not study.is_feasible(point):
            return None
        mine = study.compile(point, task_type)
    except SearchSpaceError:
        return None
    return point if _same(mine, compiled) else None


def _value_for(
    study: BoundSpace,
    param: str,
    spec: ParamSpec,
    module: str | None,
    ref_space: SearchSpace,
    targets: tuple[str, ...],
) -> Any:
    """The study dimension's value that reproduces the reference (None: none does)."""
    if param == "target_modules":
        for choice, resolved in zip(spec.choices or (), study.target_options(), strict=False):
            if set(resolved) == set(targets):
                return choice
        return None
    if param not in ref_space.parameters:
        values = spec.values()
        return values[0] if values else spec.low
    value = ref_space.parameters[param]
    if module is not None and module not in targets:
        values = spec.values() or ()
        return 0 if 0 in values else value
    return value


def _same(a: CompiledConfig, b: CompiledConfig) -> bool:
    """Whether two compiled configurations train the same adapter the same way."""
    if (a.method, a.module_sizes, a.trainable_params) != (
        b.method,
        b.module_sizes,
        b.trainable_params,
    ):
        return False
    lr_a, lr_b = a.training.get("learning_rate"), b.training.get("learning_rate")
    if (lr_a is None) != (lr_b is None) or (
        lr_a is not None and lr_b is not None and not math.isclose(lr_a, lr_b, rel_tol=1e-9)
    ):
        return False
    return _normal(a) == _normal(b)


_PATTERN_KEYS = ("target_modules", "rank_pattern", "alpha_pattern", "r", "lora_alpha", "alpha")


def _normal(c: CompiledConfig) -> dict[str, Any]:
    """The peft config without how it names its cells, plus each cell's effective alpha."""
    config = {k: v for k, v in c.peft_config.items() if k not in _PATTERN_KEYS}
    alpha = c.peft_config.get("lora_alpha", c.peft_config.get("alpha"))
    pattern = c.peft_config.get("alpha_pattern") or {}
    config["alphas"] = {m: pattern.get(m, alpha) for m in c.module_sizes}
    return config
