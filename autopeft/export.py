"""Turn a stored trial into a standard PEFT ``adapter_config.json`` or a ``peft`` config object.

Nothing but ``adapter_config.json`` is written, so any ``peft`` installation reads the export
with ``PeftConfig.from_pretrained(dir)``; ``get_peft_model(base_model, config)`` rebuilds the
adapter with the trial's exact per-module sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autopeft.exceptions import StudyError, UserInputError
from autopeft.results import StudyView, choose_trial, load_view

if TYPE_CHECKING:
    from peft import PeftConfig

    from autopeft.storage.records import TrialRecord


def trial_config(view: StudyView, record: TrialRecord) -> PeftConfig:
    """The ``peft`` config of a stored trial, with ``base_model_name_or_path`` set: the
    learned one (AdaLoRA's ranks as plain LoRA) when the trial stored one, else the compiled
    one."""
    from autopeft.methods.base import config_from_json

    if not record.peft_config:
        raise StudyError(f"trial {record.number} of study {view.name!r} has no compiled config")
    # a method that learns its sizes while training (AdaLoRA) stores what it learned
    learned = record.metrics.get("learned_peft_config")
    config = config_from_json(learned if isinstance(learned, dict) else record.peft_config)
    config.base_model_name_or_path = view.model_path
    return config


def load_peft_config(
    storage: str | None, study: str, *, pick: str | None = "knee", trial: int | None = None
) -> PeftConfig:
    """The ``peft`` config of a study's chosen trial, ready for ``get_peft_model``.

    Args:
        storage: Database URL (None: ``$AUTOPEFT_STORAGE`` or ``sqlite:///autopeft.db``).
        study: Study name.
        pick: ``max-accuracy``, ``min-params`` or ``knee`` (ignored when ``trial`` is given).
        trial: An exact trial number instead of a pick.
    """
    view = load_view(study, storage)
    record = choose_trial(view, trial=trial, pick=None if trial is not None else pick)
    return trial_config(view, record)


def export_config(
    storage: str | None,
    study: str,
    out: str | Path,
    *,
    pick: str | None = None,
    trial: int | None = None,
) -> tuple[Path, TrialRecord]:
    """Write the chosen trial's ``adapter_config.json`` into ``out``; returns (file, trial)."""
    view = load_view(study, storage)
    record = choose_trial(view, trial=trial, pick=pick)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserInputError(f"cannot create export directory {out}: {exc.strerror}") from None
    path = out / "adapter_config.json"
    try:
        trial_config(view, record).save_pretrained(str(out))
    except OSError as exc:  # e.g. adapter_config.json is a directory, or the disk is full
        raise UserInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path, record
