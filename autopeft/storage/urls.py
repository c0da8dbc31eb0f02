"""Which database a command uses, when the user names none."""

from __future__ import annotations

import os

DEFAULT_STORAGE = "sqlite:///autopeft.db"
"""The database of a study that names none: a SQLite file in the working directory."""


def resolve_storage(url: str | None, spec_url: str | None = None) -> str:
    """The CLI flag, then the spec's ``storage``, then ``$AUTOPEFT_STORAGE``, then the default."""
    return url or spec_url or os.environ.get("AUTOPEFT_STORAGE") or DEFAULT_STORAGE
