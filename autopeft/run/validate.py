"""``autopeft validate``: tell a study spec from a search-space file, check it, summarise it.

Which of the two a file is follows from its top-level keys: each schema defines a set of keys
the other lacks (:func:`file_kind`). A file with keys of both, or of neither, is refused with
the keys it has and the keys each kind needs, unless the caller names the kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from autopeft.core.validation import read_yaml
from autopeft.exceptions import StudySpecError

Kind = Literal["spec", "space"]
KINDS: tuple[Kind, ...] = ("spec", "space")


def _own_keys() -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(spec-only keys, space-only keys, spec-required, space-required), from the schemas."""
    from autopeft.space.schema import SearchSpace
    from autopeft.spec import StudySpec

    spec_keys, space_keys = set(StudySpec.model_fields), set(SearchSpace.model_fields)
    required = [
        frozenset(k for k, f in model.model_fields.items() if f.is_required())
        for model in (StudySpec, SearchSpace)
    ]
    return (
        frozenset(spec_keys - space_keys),
        frozenset(space_keys - spec_keys),
        required[0],
        required[1],
    )


def file_kind(path: Path) -> Kind:
    """Whether ``path`` is a study spec or a search-space file, by its top-level keys.

    Raises:
        StudySpecError: the file is not a YAML mapping, or its keys fit both kinds or neither
            (the message lists the keys found and what each kind needs).
    """
    data, _ = read_yaml(path, StudySpecError)  # a mapping, or an error saying it is not
    spec_only, space_only, spec_needs, space_needs = _own_keys()
    keys = {str(k) for k in data}
    is_spec, is_space = bool(keys & spec_only), bool(keys & space_only)
    if is_spec != is_space:
        return "spec" if is_spec else "space"
    found = ", ".join(sorted(keys)) or "none"
    why = "keys of both" if is_spec else "none of the keys of either"
    raise StudySpecError(
        f"{path}: cannot tell a study spec from a search space: it has {why} (found: {found}); "
        f"a study spec needs {', '.join(sorted(spec_needs))}, a search space needs "
        f"{', '.join(sorted(space_needs))}; or pass --kind spec|space"
    )


def validate_file(path: Path, kind: Kind | None = None) -> str:
    """Check a study spec (with its space, dataset and model) or a search-space file.

    Args:
        path: The YAML file.
        kind: ``spec`` or ``space``; None: tell by the file's keys (:func:`file_kind`).

    Returns:
        The summary (``ok: ...``), then a line per reference the spec lists.

    Raises:
        UserInputError: the file is invalid, or its kind cannot be told.
    """
    if (kind or file_kind(path)) == "spec":
        from autopeft.run.prepare import prepare_study

        p = prepare_study(path)
        splits = f"{len(p.splits.train)}/{len(p.splits.validation)}/{len(p.splits.test)}"
        lines = [
            f"ok: study {p.name!r} ({p.files.spec.task}, metric {p.files.spec.metric}): "
            f"{p.bound.layout.family} model with {p.bound.layout.num_layers} layers, {splits} "
            f"train/validation/test examples, {len(p.bound.dimensions)} search dimensions"
        ]
        for ref in p.references:
            where = "in the search space" if ref.point is not None else "a comparison point"
            over = ", over budget" if ref.over_budget else ""
            lines.append(
                f"reference {ref.name}: {ref.compiled.method} "
                f"{ref.compiled.trainable_params:,} params ({where}{over})"
            )
        return "\n".join(lines)
    from autopeft.methods.binding import load_space

    space = load_space(path)
    return (
        f"ok: search space {space.name!r} ({' | '.join(space.method_choices())}, "
        f"{len(space.searched())} searched parameters)"
    )
