"""Load and validate search-space files; bind them to a model."""

from __future__ import annotations

from pathlib import Path

from autopeft._yaml import FieldIssue, issue_message, load_model
from autopeft.exceptions import SearchSpaceError
from autopeft.methods.layout import ModelLayout
from autopeft.methods.registry import get_method
from autopeft.space.bound import BoundSpace
from autopeft.space.schema import SearchSpace


def load_space(path: str | Path) -> SearchSpace:
    """Read ``path`` into a :class:`SearchSpace`, checked by the schema and by its method.

    Raises:
        SearchSpaceError: naming the file, line, key path, value and what is allowed.
    """
    path = Path(path)
    space, node = load_model(path, SearchSpace, SearchSpaceError)
    try:
        method = get_method(space.method)
    except SearchSpaceError as exc:
        raise SearchSpaceError(
            issue_message(path, node, ("method",), str(exc), space.method)
        ) from None
    if space.allocation is not None and space.method != "lora":
        raise SearchSpaceError(
            issue_message(
                path, node, ("allocation",), "applies to method 'lora' only", space.method
            )
        )
    try:
        method.check_space(space)
    except FieldIssue as issue:
        raise SearchSpaceError(
            issue_message(path, node, issue.loc, issue.message, issue.value)
        ) from None
    return space


def bind_space(space: SearchSpace, layout: ModelLayout, source: str | Path = "") -> BoundSpace:
    """Bind a space to a model layout (validates module types, sizes and the budget)."""
    where = str(source) if source else f"search space {space.name!r}"
    return BoundSpace(space, layout, get_method(space.method), where)
