"""Turn a stored trial into a standard PEFT ``adapter_config.json`` or a ``peft`` config object.

Nothing but ``adapter_config.json`` is written, so any ``peft`` installation reads the export
with ``PeftConfig.from_pretrained(dir)``; ``get_peft_model(base_model, config)`` rebuilds the
adapter with the trial's exact per-module sizes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from autopeft.core.files import ensure_directory, write_atomic
from autopeft.exceptions import StudyError
from autopeft.results.views import StudyView, choose_trial, load_view

if TYPE_CHECKING:
    from peft import PeftConfig

    from autopeft.storage.records import TrialRecord

CONFIG_FILE = "adapter_config.json"
"""The file ``peft.PeftConfig.from_pretrained`` reads."""


def trial_config(view: StudyView, record: TrialRecord) -> PeftConfig:
    """The ``peft`` config of a stored trial, with ``base_model_name_or_path`` set: the
    learned one (AdaLoRA's ranks as plain LoRA) when the trial stored one, else the compiled
    one."""
    from autopeft.methods.base import config_from_json
    from autopeft.models.hub import hub_id_of

    if not record.peft_config:
        raise StudyError(f"trial {record.number} of study {view.name!r} has no compiled config")
    # a method that learns its sizes while training (AdaLoRA) stores what it learned
    learned = record.metrics.get("learned_peft_config")
    config = config_from_json(learned if isinstance(learned, dict) else record.peft_config)
    # a Hub model is named by its ID, so the adapter loads on any machine; else the local path
    config.base_model_name_or_path = hub_id_of(view.model_path) or view.model_path
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


def confirmed_view(view: StudyView, storage: str | None) -> StudyView:
    """``view`` restricted to its confirmed trials, valued by their confirmed means."""
    from dataclasses import replace

    from autopeft.results.confirmed import confirmed_records
    from autopeft.results.views import open_store
    from autopeft.storage.confirmations import latest

    records = confirmed_records(view.records, latest(open_store(storage), view.name))
    if not records:
        raise StudyError(
            f"study {view.name!r} has no confirmed trials; run `autopeft confirm {view.name}`"
        )
    return replace(view, records=records)


def export_config(
    storage: str | None,
    study: str,
    out: str | Path,
    *,
    pick: str | None = None,
    trial: int | None = None,
    confirmed: bool = False,
) -> tuple[Path, TrialRecord]:
    """Write the chosen trial's ``adapter_config.json`` into ``out``; returns (file, trial).

    With ``confirmed`` the choice is among the confirmed trials (``autopeft confirm``), by
    their test-split means, and the returned record carries those means as its values. The
    file is written whole or not at all (through a temporary file in ``out``): an old
    ``adapter_config.json`` there stays intact when the write fails.

    Raises:
        OutputError: ``out`` cannot be created or written (a file in the way, a read-only or
            full disk), naming the path and the reason.
    """
    view = load_view(study, storage)
    if confirmed:
        view = confirmed_view(view, storage)
    return export_view(view, out, pick=pick, trial=trial)


def export_view(
    view: StudyView, out: str | Path, *, pick: str | None = None, trial: int | None = None
) -> tuple[Path, TrialRecord]:
    """:func:`export_config` of a study already read (``view``)."""
    record = choose_trial(view, trial=trial, pick=pick)
    out = ensure_directory(Path(out), "export directory")
    path = out / CONFIG_FILE
    return write_atomic(path, config_json(trial_config(view, record)), "adapter config"), record


def config_json(config: PeftConfig) -> bytes:
    """``config`` as ``PeftConfig.save_pretrained`` writes it (sorted keys), but with sets
    written sorted: peft writes a set in hash order, which varies by process."""
    data = {k: sorted(v, key=str) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    return json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
