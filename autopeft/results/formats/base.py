"""What every export format shares: the rendered files, what a format could not express, and
the three files every export carries (``adapter_config.json``, ``training.json``,
``README.md``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import StudyError, UnsupportedError

if TYPE_CHECKING:
    from peft import PeftConfig

    from autopeft.results.views import StudyView
    from autopeft.storage.records import TrialRecord

CONFIG_FILE = "adapter_config.json"
"""The file ``peft.PeftConfig.from_pretrained`` reads."""


@dataclass(frozen=True)
class Rendered:
    """One export, rendered in memory before anything is written.

    Attributes:
        files: File name (relative to the export directory) -> content, in writing order.
        lost: What the format could not express, one line each (empty: the export is exact).
    """

    files: dict[str, bytes]
    lost: list[str] = field(default_factory=list)


def trial_config(view: StudyView, record: TrialRecord) -> PeftConfig:
    """The ``peft`` config of a stored trial, with ``base_model_name_or_path`` the model as a
    training job names it (:func:`~autopeft.results.recipe.model_reference`): the learned one
    (AdaLoRA's ranks as plain LoRA) when the trial stored one, else the compiled one."""
    from autopeft.methods.base import config_from_json
    from autopeft.results.recipe import model_reference

    if not record.peft_config:
        raise StudyError(f"trial {record.number} of study {view.name!r} has no compiled config")
    # a method that learns its sizes while training (AdaLoRA) stores what it learned
    learned = record.metrics.get("learned_peft_config")
    config = config_from_json(learned if isinstance(learned, dict) else record.peft_config)
    config.base_model_name_or_path = model_reference(view)
    return config


def config_json(config: PeftConfig) -> bytes:
    """``config`` as ``PeftConfig.save_pretrained`` writes it (sorted keys), but with sets
    written sorted: peft writes a set in hash order, which varies by process."""
    data = {k: sorted(v, key=str) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    return json.dumps(data, indent=2, sort_keys=True).encode("utf-8")


def lora_fields(config: PeftConfig, fmt: str) -> dict[str, Any]:
    """The LoRA fields of ``config`` (a plain ``LoraConfig``: the searched LoRA, or AdaLoRA's
    learned ranks); any other method is refused, naming ``fmt``.

    Raises:
        UnsupportedError: ``config`` is not a LoRA config.
    """
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    if peft_type != "LORA":
        raise UnsupportedError(
            f"--format {fmt} cannot express a {peft_type} adapter (it trains LoRA only); "
            "export it with --format peft or --format trl"
        )
    data = {k: _integral(v) for k, v in json.loads(config_json(config)).items()}
    targets = data.get("target_modules")
    data["target_modules"] = sorted(targets) if isinstance(targets, list) else targets
    return data


def _integral(value: Any) -> Any:
    """Whole floats as ints (``lora_alpha: 16.0`` -> ``16``), also inside a pattern dict: the
    frameworks type alphas as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def yaml_text(data: dict[str, Any], header: list[str]) -> bytes:
    """``data`` as block YAML (keys in insertion order) under ``# `` comment lines."""
    import yaml

    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
    return (comments + body).encode("utf-8")
