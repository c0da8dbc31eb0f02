"""Load a search-space file with its method rules, and bind a space to a model.

This is where a space meets the method registry: :func:`load_space` runs each method's checks
on the file, :func:`bind_space` picks the :class:`~autopeft.methods.base.Method` that compiles
the space's points (a searched method binds to a :class:`~autopeft.methods.choice.
MethodChoiceSpace`; a LoRA space with an ``allocation:`` block to the allocated-LoRA method).
"""

from __future__ import annotations

from pathlib import Path

from autopeft.core.validation import FieldIssue, issue_message
from autopeft.exceptions import SearchSpaceError
from autopeft.methods.base import Method
from autopeft.methods.builtin import get_method
from autopeft.methods.choice import MethodChoiceSpace, method_space
from autopeft.models.layout import ModelLayout
from autopeft.space.bound import BoundSpace
from autopeft.space.loader import read_space
from autopeft.space.schema import ParamSpec, SearchSpace

#: The registry name of LoRA with ranks from an ``allocation:`` block (``autopeft.allocation``).
ALLOCATED_LORA = "allocated_lora"


def method_for(space: SearchSpace) -> Method:
    """The method that compiles the points of a single-method space."""
    assert isinstance(space.method, str)
    if space.allocation is not None:
        return get_method(ALLOCATED_LORA)
    return get_method(space.method)


def load_space(path: str | Path) -> SearchSpace:
    """Read ``path`` into a :class:`SearchSpace`, checked by the schema and by its method.

    Raises:
        SearchSpaceError: naming the file, line, key path, value and what is allowed.
    """
    path = Path(path)
    space, node = read_space(path)
    try:
        check_methods(space)
    except FieldIssue as issue:
        raise SearchSpaceError(
            issue_message(path, node, issue.loc, issue.message, issue.value)
        ) from None
    return space


def check_methods(space: SearchSpace) -> None:
    """Method rules: known names; with a searched method, a well-formed ``methods:`` block and
    each chosen method's checks on its shared + own parameters (issues located in the file)."""
    if not isinstance(space.method, ParamSpec):
        if space.methods:
            raise FieldIssue(
                ("methods",), "per-method blocks need a searched `method: {type: categorical}`"
            )
        _method(space.method, ("method",))
        method_for(space).check_space(space)
        return
    spec = space.method
    if spec.type != "categorical" or spec.per != "study":
        raise FieldIssue(("method", "type"), "a searched method must be categorical", spec.type)
    for i, name in enumerate(space.method_choices()):
        _method(name, ("method", "choices", i))
    for name in space.methods:
        if name not in space.method_choices():
            raise FieldIssue(
                ("methods", name), f"is not a method choice {list(space.method_choices())}"
            )
    for name in space.method_choices():
        own = space.methods.get(name, {})
        try:
            get_method(name).check_space(method_space(space, name))
        except FieldIssue as issue:
            loc = issue.loc
            if loc[:1] == ("parameters",) and len(loc) > 1 and loc[1] in own:
                loc = ("methods", name, *loc[1:])
            elif loc == ("parameters",):
                loc = ("methods", name)
            raise FieldIssue(loc, f"({name}) {issue.message}", issue.value) from None


def _method(name: str, loc: tuple[str | int, ...]) -> Method:
    try:
        return get_method(name)
    except SearchSpaceError as exc:
        raise FieldIssue(loc, str(exc), name) from None


def bind_space(space: SearchSpace, layout: ModelLayout, source: str | Path = "") -> BoundSpace:
    """Bind a space to a model layout (validates module types, sizes and the budget); a space
    with a searched method binds to a :class:`~autopeft.methods.choice.MethodChoiceSpace`."""
    where = str(source) if source else f"search space {space.name!r}"
    if isinstance(space.method, ParamSpec):
        return MethodChoiceSpace(space, layout, where)
    return BoundSpace(space, layout, method_for(space), where)
