"""Export a stored trial: its ``adapter_config.json``, training recipe and model card, in the
format of a training framework (:mod:`autopeft.results.formats`).

Every format writes ``adapter_config.json`` (any ``peft`` installation reads it with
``PeftConfig.from_pretrained(dir)``; ``get_peft_model(base_model, config)`` rebuilds the adapter
with the trial's exact per-module sizes), ``training.json`` (the recipe:
:mod:`autopeft.results.recipe`) and ``README.md``; ``trl``, ``axolotl`` and ``llamafactory``
add their own files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.files import ensure_directory, write_atomic
from autopeft.exceptions import StudyError
from autopeft.results.formats import CONFIG_FILE, check_format, config_json, render, trial_config
from autopeft.results.views import StudyView, choose_trial, load_view

if TYPE_CHECKING:
    from peft import PeftConfig

    from autopeft.storage.records import TrialRecord

__all__ = [
    "CONFIG_FILE",
    "Exported",
    "config_json",
    "export_config",
    "export_trial",
    "export_view",
    "load_peft_config",
    "load_trial",
    "trial_config",
]


@dataclass(frozen=True)
class Exported:
    """What an export wrote.

    Attributes:
        directory: The export directory.
        files: The files written, ``adapter_config.json`` first.
        record: The exported trial.
        lost: What the format could not express (empty: the export is exact).
    """

    directory: Path
    files: list[Path]
    record: TrialRecord
    lost: list[str]


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
    fmt: str = "peft",
) -> tuple[Path, TrialRecord]:
    """Export the chosen trial into ``out``; returns (its ``adapter_config.json``, the trial).

    See :func:`export_trial`, which also returns every file written and the ``lost:`` list.
    """
    exported = export_trial(
        storage, study, out, pick=pick, trial=trial, confirmed=confirmed, fmt=fmt
    )
    return exported.files[0], exported.record


def export_trial(
    storage: str | None,
    study: str,
    out: str | Path,
    *,
    pick: str | None = None,
    trial: int | None = None,
    confirmed: bool = False,
    fmt: str = "peft",
    with_data: bool = False,
) -> Exported:
    """Write the chosen trial's export in format ``fmt`` into ``out``.

    With ``confirmed`` the choice is among the confirmed trials (``autopeft confirm``), by
    their test-split means, and the returned record carries those means as its values. Every
    file is rendered before the first is written, so bad input (an unknown format, a trial
    that did not complete, a method the format cannot express) writes nothing; each file is
    written whole or not at all (through a temporary file in ``out``).

    Raises:
        UserInputError: An unknown format, or neither/both of ``pick`` and ``trial``.
        StudyError: No such study or trial, or the trial did not complete.
        UnsupportedError: The format cannot express the trial's method.
        OutputError: ``out`` cannot be created or written, naming the path and the reason.
    """
    check_format(fmt)
    view = load_view(study, storage)
    if confirmed:
        view = confirmed_view(view, storage)
    return export_view_files(view, out, pick=pick, trial=trial, fmt=fmt, with_data=with_data)


def export_view(
    view: StudyView, out: str | Path, *, pick: str | None = None, trial: int | None = None
) -> tuple[Path, TrialRecord]:
    """:func:`export_config` of a study already read (``view``)."""
    exported = export_view_files(view, out, pick=pick, trial=trial)
    return exported.files[0], exported.record


def export_view_files(
    view: StudyView,
    out: str | Path,
    *,
    pick: str | None = None,
    trial: int | None = None,
    fmt: str = "peft",
    with_data: bool = False,
) -> Exported:
    """:func:`export_trial` of a study already read (``view``)."""
    record = choose_trial(view, trial=trial, pick=pick)
    rendered = render(view, record, fmt, with_data=with_data)
    directory = ensure_directory(Path(out), "export directory")
    if with_data:
        ensure_directory(directory / "data", "export data directory")
    files = [
        write_atomic(directory / name, data, f"export file {name}")
        for name, data in rendered.files.items()
    ]
    return Exported(directory, files, record, rendered.lost)


def load_trial(
    storage: str | None, study: str, *, pick: str | None = "knee", trial: int | None = None
) -> tuple[PeftConfig, dict[str, Any]]:
    """The chosen trial's ``peft`` config and its training arguments, together.

    The arguments are ``trl.SFTConfig`` / ``transformers.TrainingArguments`` keywords (see
    :func:`~autopeft.results.formats.trl.sft_config`; leave out the SFT-only ``max_length``,
    ``packing`` and ``completion_only_loss`` for a plain ``Trainer``)::

        config, args = autopeft.load_trial("sqlite:///autopeft.db", "demo", pick="knee")
        trainer = SFTTrainer(model=base, args=SFTConfig(output_dir="out", **args),
                             peft_config=config, train_dataset=...)

    Args:
        storage: Database URL (None: ``$AUTOPEFT_STORAGE`` or ``sqlite:///autopeft.db``).
        study: Study name.
        pick: ``max-accuracy``, ``min-params`` or ``knee`` (ignored when ``trial`` is given).
        trial: An exact trial number instead of a pick.
    """
    from autopeft.results.formats.trl import sft_config
    from autopeft.results.recipe import training_recipe

    view = load_view(study, storage)
    record = choose_trial(view, trial=trial, pick=None if trial is not None else pick)
    return trial_config(view, record), sft_config(training_recipe(view, record))
