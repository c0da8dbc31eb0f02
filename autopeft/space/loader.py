"""Read a search-space file into a :class:`SearchSpace` checked against the schema.

The method rules (which parameters each method takes) are checked one layer up, by
:func:`autopeft.methods.binding.load_space`, which is what callers use.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from autopeft.core.validation import issue_message, load_model
from autopeft.exceptions import SearchSpaceError
from autopeft.space.schema import SearchSpace


def read_space(path: str | Path) -> tuple[SearchSpace, yaml.Node | None]:
    """Read ``path`` into a :class:`SearchSpace` (schema rules only) and its YAML node tree.

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
    return space, node
