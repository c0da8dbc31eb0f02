"""Load and validate search-space files; bind them to a model."""

from __future__ import annotations

from pathlib import Path

from autopeft._yaml import FieldIssue, issue_message, load_model
from autopeft.exceptions import SearchSpaceError
from autopeft.methods.base import Method
from autopeft.methods.layout import ModelLayout
from autopeft.methods.registry import get_method
from autopeft.space.bound import BoundSpace
from autopeft.space.schema import ParamSpec, SearchSpace


def load_space(path: str | Path) -> SearchSpace:
    """Read ``path`` into a :class:`SearchSpace`, checked by the schema and by its method.

    Raises:
        SearchSpaceError: naming the file, line, key path, value and what is allowed.
    """
    path = Path(path)
    space, node = load_model(path, SearchSpace, SearchSpaceError)
    if space.allocation is not None and space.method != "lora":
        got = space.method if isinstance(space.method, str) else "a searched method"
        raise SearchSpaceError(
            issue_message(path, node, ("allocation",), "applies to method 'lora' only", got)
        )
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
    from autopeft.space.choice import method_space

    if not isinstance(space.method, ParamSpec):
        if space.methods:
            raise FieldIssue(
                ("methods",), "per-method blocks need a searched `method: {type: categorical}`"
            )
        _method(space.method, ("method",)).check_space(space)
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
    with a searched method binds to a :class:`~autopeft.space.choice.MethodChoiceSpace`."""
    where = str(source) if source else f"search space {space.name!r}"
    if isinstance(space.method, ParamSpec):
        from autopeft.space.choice import MethodChoiceSpace

        return MethodChoiceSpace(space, layout, where)
    return BoundSpace(space, layout, get_method(space.method), where)
