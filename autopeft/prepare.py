"""Prepare a study: validate everything before anything is written, and register it.

:func:`prepare_study` reads the spec and its search space, loads and splits the dataset,
resolves the model, binds the space to the model's layout and builds the sampler once, so bad
input never leaves a half-written study behind. :func:`register_study` then creates the study
in the store, or checks that a stored study of the same name was made from the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autopeft.core.objectives import Objective
from autopeft.exceptions import StudyError
from autopeft.samplers import make_sampler
from autopeft.spec import StudyFiles, load_study
from autopeft.storage.urls import resolve_storage

if TYPE_CHECKING:
    from autopeft.data import Splits
    from autopeft.space.bound import BoundSpace
    from autopeft.storage.store import Store


@dataclass
class PreparedStudy:
    """A fully validated study, not yet written anywhere.

    Attributes:
        files: The spec and search space as loaded.
        name: The study name (``--name``, else the spec's).
        url: The database URL (see :func:`~autopeft.storage.urls.resolve_storage`).
        splits: The seeded train/validation/test split of the dataset.
        model_path: The local model directory.
        bound: The search space bound to the model's layout.
        objectives: The study's objectives, in Optuna's value order.
    """

    files: StudyFiles
    name: str
    url: str
    splits: Splits
    model_path: Path
    bound: BoundSpace
    objectives: list[Objective]

    def fingerprint(self) -> str:
        """What defines the search: resuming with a different fingerprint is refused."""
        return self.files.spec.fingerprint() + self.files.space.model_dump_json()


def prepare_study(
    path: str | Path, *, storage: str | None = None, name: str | None = None
) -> PreparedStudy:
    """Load and cross-check a study spec against its data and model; writes nothing."""
    from transformers import AutoConfig

    from autopeft.assets import resolve_model
    from autopeft.data import load_dataset, split_dataset
    from autopeft.methods.binding import bind_space
    from autopeft.models.layout import layout_on_meta

    files = load_study(path)
    spec = files.spec
    data = load_dataset(
        spec.dataset.source,
        text_column=spec.dataset.text_column,
        label_column=spec.dataset.label_column,
        base_dir=files.base_dir,
    )
    splits = split_dataset(
        data, validation=spec.split.validation, test=spec.split.test, seed=spec.split.seed
    )
    model_path = resolve_model(spec.model.path, files.base_dir)
    extra = (
        {"num_hidden_layers": spec.model.num_hidden_layers} if spec.model.num_hidden_layers else {}
    )
    config = AutoConfig.from_pretrained(model_path, local_files_only=True, **extra)
    layout = layout_on_meta(config, len(data.label_names))
    bound = bind_space(files.space, layout, files.space_path)
    objectives = [Objective(n, d) for n, d in spec.objective_list()]  # type: ignore[arg-type]
    make_sampler(spec.sampler.name, bound, objectives, spec.seed, spec.sampler.options)
    return PreparedStudy(
        files,
        name or spec.name,
        resolve_storage(storage, spec.storage),
        splits,
        model_path,
        bound,
        objectives,
    )


def register_study(store: Store, p: PreparedStudy) -> None:
    """Create the study in ``store``, or check that the stored one has the same fingerprint."""
    fingerprint = p.fingerprint()
    if p.name in store.study_names():
        if store.study_row(p.name).fingerprint != fingerprint:
            raise StudyError(
                f"study {p.name!r} in {p.url!r} was created from a different spec or search space "
                "(model, data, space, fidelity, objectives or sampler differ); resume it with the "
                "same files, or start a new study with --name"
            )
        return
    store.create_study(
        p.name,
        p.objectives,
        {
            "spec_yaml": p.files.path.read_text(encoding="utf-8"),
            "space_yaml": p.files.space_path.read_text(encoding="utf-8"),
            "spec_json": p.files.spec.model_dump_json(),
            "fingerprint": fingerprint,
            "layout_json": json.dumps(p.bound.layout.to_dict()),
            "model_path": str(p.model_path),
            "objectives_json": json.dumps([o.__dict__ for o in p.objectives]),
        },
    )
