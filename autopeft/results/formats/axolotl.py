"""``--format axolotl``: an Axolotl config YAML that reproduces a LoRA trial exactly.

Axolotl (checked against axolotl 0.18.0, ``src/axolotl/utils/schemas/peft.py`` and
``src/axolotl/loaders/adapter.py`` at commit 067b021 of
https://github.com/axolotl-ai-cloud/axolotl) forwards ``lora_r``, ``lora_alpha``,
``lora_dropout``, ``lora_target_modules``, ``lora_rank_pattern``, ``lora_alpha_pattern``,
``peft_layers_to_transform``, ``peft_use_dora`` and ``peft_use_rslora`` into peft's
``LoraConfig`` with ``bias="none"``: per-module ranks travel without loss. Target modules are
written as full module names, which peft matches exactly. Axolotl trains LoRA (and QLoRA)
only: any other method is refused; it loads causal LMs, so a classification study's head is
listed as lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopeft.exceptions import UnsupportedError
from autopeft.results.formats.base import Rendered, lora_fields, yaml_text

if TYPE_CHECKING:
    from peft import PeftConfig

CONFIG_NAME = "axolotl.yaml"

# peft LoraConfig field -> Axolotl key; every other field must keep peft's default
FIELDS = {
    "r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "lora_target_modules",
    "rank_pattern": "lora_rank_pattern",
    "alpha_pattern": "lora_alpha_pattern",
    "layers_to_transform": "peft_layers_to_transform",
    "use_dora": "peft_use_dora",
    "use_rslora": "peft_use_rslora",
}
_IGNORED = {"base_model_name_or_path", "task_type", "peft_type", "peft_version", "revision"}
_IGNORED |= {"inference_mode", "bias", "auto_mapping", "modules_to_save"}


def unexpressed(lora: dict[str, Any]) -> list[str]:
    """Fields of a LoRA config that differ from peft's defaults and that no Axolotl key
    carries."""
    from peft import LoraConfig

    default = json_default(LoraConfig())
    return sorted(
        k
        for k, v in lora.items()
        if k not in FIELDS and k not in _IGNORED and default.get(k, v) != v
    )


def json_default(config: Any) -> dict[str, Any]:
    import json

    from autopeft.results.formats.base import config_json

    return dict(json.loads(config_json(config)))


def render(recipe: dict[str, Any], base: dict[str, bytes], config: PeftConfig) -> Rendered:
    """The shared files plus ``axolotl.yaml``.

    Raises:
        UnsupportedError: A method other than LoRA, or a LoRA field Axolotl cannot set.
    """
    lora = lora_fields(config, "axolotl")
    extra = unexpressed(lora)
    if lora.get("bias", "none") != "none":
        extra.append("bias")
    if extra:
        raise UnsupportedError(
            f"--format axolotl cannot express LoRA field(s) {', '.join(extra)} of this trial; "
            "export it with --format peft or --format trl"
        )
    t, quant = recipe["training"], recipe["training"]["quantization"]
    data: dict[str, Any] = {
        "base_model": recipe["model"]["base_model_name_or_path"],
        "adapter": "qlora" if quant == "nf4" else "lora",
        "load_in_4bit": quant == "nf4",
        "load_in_8bit": quant == "int8",
    }
    data.update({FIELDS[k]: lora[k] for k in FIELDS if lora.get(k) not in (None, {}, [])})
    data.update(
        {
            "learning_rate": t["learning_rate"],
            "lr_scheduler": t["lr_scheduler"],
            "warmup_steps": t["warmup_steps"],
            "weight_decay": t["weight_decay"],
            "optimizer": "adamw_torch",
            "max_grad_norm": 0.0,
            "max_steps": t["max_steps"],
            "micro_batch_size": t["batch_size"],
            "gradient_accumulation_steps": 1,
            "sequence_len": t["seq_len"],
            "bf16": t["precision"] == "bf16",
            "fp16": t["precision"] == "fp16",
            "gradient_checkpointing": t["gradient_checkpointing"],
            "seed": t["seed"],
        }
    )
    lost = []
    if recipe["task"] == "seq_cls":
        lost.append(
            "task seq_cls: Axolotl trains causal LMs; the adapter is exact, the "
            "classification head and its training are not expressed"
        )
    header = [
        f"Axolotl config of autopeft study {recipe['study']!r}, trial {recipe['trial']}.",
        "Add your `datasets:` block (the study's data fields are in training.json).",
        *(f"lost: {item}" for item in lost),
    ]
    files = dict(base)
    files[CONFIG_NAME] = yaml_text(data, header)
    return Rendered(files, lost)
