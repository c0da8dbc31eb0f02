"""Which database a command uses, when the user names none."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORAGE = "sqlite:///autopeft.db"
"""The database of a study that names none: a SQLite file in the working directory."""


def resolve_storage(url: str | None, spec_url: str | None = None) -> str:
    """The CLI flag, then the spec's ``storage``, then ``$AUTOPEFT_STORAGE``, then the default."""
    return url or spec_url or os.environ.get("AUTOPEFT_STORAGE") or DEFAULT_STORAGE


def study_location(study: str, storage: str | None = None) -> tuple[str, str, Path | None]:
    """Where a read command finds ``study``: (study name, database URL, spec file or None).

    ``study`` is a study name, or a study spec file (``.yaml``/``.yml``, or any existing file),
    whose ``name`` is the study and whose ``storage`` is the database unless ``storage`` (the
    ``--storage`` flag) names one: the order :func:`resolve_storage` applies, as ``run`` does.

    Raises:
        StudySpecError: ``study`` names a spec file that is missing or invalid.
    """
    path = Path(study)
    if path.suffix not in (".yaml", ".yml") and not path.is_file():
        return study, resolve_storage(storage), None
    from autopeft.core.validation import load_model
    from autopeft.exceptions import StudySpecError
    from autopeft.spec import StudySpec

    spec, _ = load_model(path, StudySpec, StudySpecError)
    return spec.name, resolve_storage(storage, spec.storage), path.resolve()
