"""Export formats: one module per training framework.

``peft`` writes the three files every export carries (``adapter_config.json``,
``training.json``, ``README.md``); ``trl``, ``axolotl`` and ``llamafactory`` add their own
config (and, for TRL, a runnable ``train.py``). :func:`render` builds every file in memory, so
a format that cannot express a trial fails before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autopeft.exceptions import UserInputError
from autopeft.results.formats.base import CONFIG_FILE, Rendered, config_json, trial_config

if TYPE_CHECKING:
    from autopeft.results.views import StudyView
    from autopeft.storage.records import TrialRecord

__all__ = [
    "CONFIG_FILE",
    "FORMATS",
    "Rendered",
    "check_format",
    "config_json",
    "render",
    "trial_config",
]

FORMATS = ("peft", "trl", "axolotl", "llamafactory")
"""The export formats, in the order the help lists them."""


def check_format(fmt: str) -> str:
    """``fmt`` when it is one of :data:`FORMATS`.

    Raises:
        UserInputError: An unknown format, listing the known ones.
    """
    if fmt not in FORMATS:
        raise UserInputError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def render(
    view: StudyView, record: TrialRecord, fmt: str = "peft", *, with_data: bool = False
) -> Rendered:
    """Every file of ``record``'s export in format ``fmt``, and what the format lost.

    ``with_data`` adds the study's own training and validation rows
    (:mod:`autopeft.results.study_data`) and their label names to ``training.json``.

    Raises:
        UserInputError: An unknown format.
        StudyError: The trial did not complete.
        UnsupportedError: The format cannot express the trial's method.
    """
    import json

    from autopeft.results.formats import axolotl, llamafactory, trl
    from autopeft.results.model_card import CARD_FILE, model_card
    from autopeft.results.recipe import RECIPE_FILE, training_recipe

    check_format(fmt)
    recipe = training_recipe(view, record)
    data: dict[str, bytes] = {}
    if with_data:
        from autopeft.results.study_data import study_rows

        data, labels = study_rows(view)
        if labels:
            recipe["data"]["labels"] = labels
    config = trial_config(view, record)
    base = {
        CONFIG_FILE: config_json(config),
        RECIPE_FILE: json.dumps(recipe, indent=2).encode("utf-8"),
    }
    if fmt == "trl":
        rendered = trl.render(recipe, base)
    elif fmt == "axolotl":
        rendered = axolotl.render(recipe, base, config)
    elif fmt == "llamafactory":
        rendered = llamafactory.render(recipe, base, config, list(view.sites))
    else:
        rendered = Rendered(base)
    card = model_card(view, record, recipe, fmt, rendered.lost)
    files = {**rendered.files, CARD_FILE: card.encode("utf-8"), **data}
    return Rendered(files, rendered.lost)
