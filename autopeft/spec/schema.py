"""JSON Schema of the user files: study specs (``studies/*.yaml``) and search spaces.

The schemas come from the pydantic models (:class:`~autopeft.spec.StudySpec`,
:class:`~autopeft.space.schema.SearchSpace`), widened where a file may use a shorthand that a
``mode="before"`` validator expands (``model: minilm-l6``, ``objectives: [accuracy]``,
``per: [layer, module]``, ``strategy: sensitivity``), so that an editor (the YAML language server,
through the ``# yaml-language-server: $schema=...`` line of every shipped file) accepts exactly
what ``autopeft validate`` accepts, shape-wise. Rules that need the model or other fields (a
metric of the task, a method's parameters) stay with ``autopeft validate``.
"""

from __future__ import annotations

from typing import Any, Literal

SchemaKind = Literal["spec", "space"]
KINDS: tuple[SchemaKind, ...] = ("spec", "space")

# (definition, field) -> the shorthand a before-validator also accepts, as JSON Schema.
_STRING = {"type": "string"}
_SHORTHANDS: dict[tuple[str, str], dict[str, Any]] = {
    ("StudySpec", "model"): _STRING,
    ("StudySpec", "dataset"): _STRING,
    ("StudySpec", "sampler"): _STRING,
    ("StudySpec", "executor"): {"enum": ["inprocess", "ray"]},
    ("StudySpec", "warm_start"): _STRING,
    ("ParamSpec", "per"): {
        "type": "array",
        "oneOf": [{"const": ["layer"]}, {"const": ["layer", "module"]}],
    },
    ("AllocationSpec", "strategy"): {"enum": ["uniform", "sensitivity", "importance", "adalora"]},
    ("AllocationSpec", "budget"): {"type": "integer"},
    ("AllocationSpec", "temperature"): {"type": "number"},
    ("FidelitySpec", "rungs"): {"type": "integer", "minimum": 2, "maximum": 10},
}


def json_schema(kind: SchemaKind) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a study spec (``spec``) or a search space (``space``).

    Raises:
        ValueError: ``kind`` is neither ``spec`` nor ``space``.
    """
    if kind == "spec":
        from autopeft.spec import StudySpec

        schema = StudySpec.model_json_schema()
    elif kind == "space":
        from autopeft.space.schema import SearchSpace

        schema = SearchSpace.model_json_schema()
    else:
        raise ValueError(f"unknown schema {kind!r}; expected one of: {', '.join(KINDS)}")
    _widen(schema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _widen(schema: dict[str, Any]) -> None:
    definitions = {**schema.get("$defs", {}), schema.get("title", ""): schema}
    for (owner, field), extra in _SHORTHANDS.items():
        props = definitions.get(owner, {}).get("properties", {})
        if field in props:
            props[field] = _either(props[field], extra)
    objectives = definitions.get("StudySpec", {}).get("properties", {}).get("objectives")
    if objectives is not None:
        objectives["items"] = {"anyOf": [objectives["items"], _STRING]}


def _either(prop: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    keep: dict[str, Any] = {k: prop[k] for k in ("title", "description", "default") if k in prop}
    rest = {k: v for k, v in prop.items() if k not in keep}
    return {**keep, "anyOf": [rest, extra]}
