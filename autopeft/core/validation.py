"""Read YAML files into frozen pydantic models, with errors that point at the file and line.

Every user-facing file (study specs, search spaces) goes through :func:`load_model`, so every
bad file gets the same kind of message::

    search_spaces/x.yaml:12: parameters.rank.low: must be >= 0 (got -1)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from autopeft.exceptions import UserInputError

M = TypeVar("M", bound=BaseModel)
Loc = Sequence[str | int]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class StrictModel(BaseModel):
    """A frozen model that rejects unknown keys, naming the keys it allows, and NaN or
    infinite numbers (YAML's ``.nan``, ``.inf``), which no field of a user file means."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set(cls.model_fields) | {
                f.alias for f in cls.model_fields.values() if f.alias
            }
            unknown = [k for k in data if k not in allowed]
            if unknown:
                names = ", ".join(sorted(allowed))
                raise ValueError(f"unknown key {unknown[0]!r}; allowed keys: {names}")
        return data


class FieldIssue(ValueError):
    """An invalid value at a key path, raised by validators that run after pydantic."""

    def __init__(self, loc: Loc, message: str, value: Any = _MISSING) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message
        self.value = value


def read_yaml(path: Path, error: type[UserInputError]) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file into plain data plus its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read file: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}{where}: malformed YAML: {problem}") from None
    except RecursionError:
        raise error(f"{path}: malformed YAML: nested too deeply") from None
    except ValueError as exc:  # a scalar YAML resolves but Python cannot build: an int of
        # more than 4300 digits, a timestamp like 2020-13-45
        raise error(
            f"{path}: malformed YAML: a value cannot be read ({_first_line(exc)})"
        ) from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of keys at the top level, got {_kind(data)}")
    return data, node


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that rejects a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not _hashable(key):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a {_kind(key)} cannot be a key", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the deepest node found along ``loc`` (None without a node tree)."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, key)
    if node is not None:
        line = node.start_mark.line + 1
    return line


def issue_message(path: Path, node: yaml.Node | None, loc: Loc, message: str, value: Any) -> str:
    """``file:line: key.path: message (got value)``, the one format of every file error."""
    line = line_of(node, loc)
    where = f"{path}:{line}" if line else str(path)
    key = ".".join(str(k) for k in loc) or "<top level>"
    got = "" if value is _MISSING else f" (got {value!r})"
    return f"{where}: {key}: {message}{got}"


def load_model(
    path: Path, model: type[M], error: type[UserInputError], context: dict[str, Any] | None = None
) -> tuple[M, yaml.Node | None]:
    """Load ``path`` and validate it into ``model``; the first problem becomes ``error``."""
    data, node = read_yaml(path, error)
    try:
        return model.model_validate(data, context=context), node
    except ValidationError as exc:
        raise error(_first_problem(path, node, exc)) from None


def _first_problem(path: Path, node: yaml.Node | None, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [k for k in first["loc"] if not _is_union_tag(k)]
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input", _MISSING)
    unknown = re.match(r"unknown key '([^']+)'", message)
    if unknown:
        loc.append(unknown.group(1))
        value = _MISSING
    if first["type"] == "missing":
        value = _MISSING
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if isinstance(value, dict | list):
        value = _MISSING
    return issue_message(path, node, loc, message, value) + more


def _is_union_tag(key: str | int) -> bool:
    # pydantic inserts the member type name into the loc of union errors ("ParamSpec", "int").
    return isinstance(key, str) and (key[:1].isupper() or key in {"int", "float", "str", "bool"})


def _child(node: yaml.Node, key: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if str(k.value) == str(key):
                return v
    elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def _kind(data: Any) -> str:
    return "nothing" if data is None else type(data).__name__


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].split(";")[0] if lines else type(exc).__name__


def _hashable(key: Any) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True
