"""``--format llamafactory``: the closest LLaMA-Factory YAML, and what it loses.

LLaMA-Factory (checked against 0.9.6.dev0, ``src/llamafactory/hparams/finetuning_args.py``
and ``src/llamafactory/model/adapter.py`` at commit ff6d4d1 of
https://github.com/hiyouga/LLaMA-Factory) builds ``LoraConfig(r=lora_rank,
lora_alpha=lora_alpha, lora_dropout=..., target_modules=lora_target.split(","),
use_rslora=..., use_dora=..., task_type=CAUSAL_LM)``: one rank, one alpha, module names that
match in every layer. So a trial with several ranks gets the largest one, several alphas the
one of the largest rank, a subset of layers every layer, and each of these is listed under
``lost:`` (printed, and written as comments at the top of the YAML). A method other than LoRA
is refused.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import UnsupportedError
from autopeft.results.formats.base import Rendered, lora_fields, yaml_text

if TYPE_CHECKING:
    from peft import PeftConfig

CONFIG_NAME = "llamafactory.yaml"
_EXPRESSED = {"r", "lora_alpha", "lora_dropout", "target_modules", "use_dora", "use_rslora"}
_EXPRESSED |= {"rank_pattern", "alpha_pattern", "layers_to_transform", "layers_pattern"}
_IGNORED = {"base_model_name_or_path", "task_type", "peft_type", "peft_version", "revision"}
_IGNORED |= {"inference_mode", "auto_mapping", "modules_to_save"}


def module_suffix(name: str) -> str:
    """A full module name without its layer prefix: ``model.layers.3.self_attn.q_proj`` ->
    ``self_attn.q_proj`` (the part after the last layer index)."""
    parts = name.split(".")
    digits = [i for i, p in enumerate(parts) if p.isdigit()]
    return ".".join(parts[digits[-1] + 1 :]) if digits else name


def _sizes(lora: dict[str, Any]) -> tuple[dict[str, int], dict[str, float]]:
    """Full module name -> rank and -> alpha of an exact-name LoRA config."""
    targets = lora["target_modules"]
    if not isinstance(targets, list):
        return {}, {}
    ranks = {t: int(lora["rank_pattern"].get(t, lora["r"])) for t in targets}
    alphas = {t: float(lora["alpha_pattern"].get(t, lora["lora_alpha"])) for t in targets}
    return ranks, alphas


def closest(lora: dict[str, Any], layers: list[str]) -> tuple[dict[str, Any], list[str]]:
    """LLaMA-Factory's LoRA keys for ``lora`` and the ``lost:`` lines.

    Args:
        lora: A LoRA config as JSON with exact module names in ``target_modules``.
        layers: Every full module name the base model has (to tell whether the trial adapts
            a module type in every layer).
    """
    from peft import LoraConfig

    lost: list[str] = []
    ranks, alphas = _sizes(lora)
    if ranks:
        suffixes = sorted({module_suffix(t) for t in ranks})
        top = max(ranks.values())
        alpha = Counter(alphas[t] for t in ranks if ranks[t] == top).most_common(1)[0][0]
        if len(set(ranks.values())) > 1:
            lost.append(
                f"per-module ranks ({min(ranks.values())}..{top} over {len(ranks)} modules): "
                f"lora_rank {top} on every module"
            )
        if len({alphas[t] / ranks[t] for t in ranks}) > 1:
            lost.append(f"per-module alpha/rank scaling: lora_alpha {alpha:g} on every module")
        covered = {n for n in layers if any(n == s or n.endswith("." + s) for s in suffixes)}
        extra = sorted(covered - set(ranks))
        if extra:
            lost.append(
                f"layer placement: {len(ranks)} modules adapted, lora_target adapts "
                f"{len(covered)} ({len(extra)} more, e.g. {extra[0]})"
            )
    else:  # target_modules is a regex or a preset name: LLaMA-Factory takes names only
        raise UnsupportedError(
            f"--format llamafactory cannot express target_modules {lora['target_modules']!r}; "
            "export it with --format peft or --format trl"
        )
    default = LoraConfig().to_dict()
    other = sorted(
        k
        for k, v in lora.items()
        if k not in _EXPRESSED | _IGNORED and default.get(k) != v and _differs(default.get(k), v)
    )
    if other:
        lost.append(f"LoRA fields with no LLaMA-Factory key: {', '.join(other)}")
    keys = {
        "finetuning_type": "lora",
        "lora_rank": top,
        "lora_alpha": alpha,
        "lora_dropout": lora["lora_dropout"],
        "lora_target": ",".join(suffixes),
        "use_dora": bool(lora.get("use_dora")),
        "use_rslora": bool(lora.get("use_rslora")),
    }
    return keys, lost


def _differs(default: Any, value: Any) -> bool:
    empty: tuple[Any, ...] = (None, {}, [], False)
    return not (default in empty and value in empty) and default != value


def render(
    recipe: dict[str, Any], base: dict[str, bytes], config: PeftConfig, layers: list[str]
) -> Rendered:
    """The shared files plus ``llamafactory.yaml`` (``lost:`` lines as its first comments).

    Raises:
        UnsupportedError: A method other than LoRA, or target modules given as a regex.
    """
    lora = lora_fields(config, "llamafactory")
    keys, lost = closest(lora, layers)
    if recipe["task"] != "causal_lm":
        lost.append(
            f"task {recipe['task']}: LLaMA-Factory trains causal LMs (task_type CAUSAL_LM); "
            "the classification head is not expressed"
        )
    t, quant = recipe["training"], recipe["training"]["quantization"]
    data: dict[str, Any] = {
        "model_name_or_path": recipe["model"]["base_model_name_or_path"],
        "stage": "sft",
        "do_train": True,
        **keys,
        "learning_rate": t["learning_rate"],
        "lr_scheduler_type": t["lr_scheduler"],
        "warmup_steps": t["warmup_steps"],
        "weight_decay": t["weight_decay"],
        "max_grad_norm": 0.0,
        "max_steps": t["max_steps"],
        "per_device_train_batch_size": t["batch_size"],
        "gradient_accumulation_steps": 1,
        "cutoff_len": t["seq_len"],
        "bf16": t["precision"] == "bf16",
        "fp16": t["precision"] == "fp16",
        "disable_gradient_checkpointing": not t["gradient_checkpointing"],
        "seed": t["seed"],
    }
    if quant:
        data["quantization_bit"] = 4 if quant == "nf4" else 8
    header = [
        f"LLaMA-Factory config of autopeft study {recipe['study']!r}, trial {recipe['trial']}.",
        "Add `dataset:` and `template:` (the study's data fields are in training.json).",
        "lost:" if lost else "lost: nothing",
        *(f"  - {item}" for item in lost),
    ]
    files = dict(base)
    files[CONFIG_NAME] = yaml_text(data, header)
    return Rendered(files, lost)


def parse_target(value: str) -> list[str]:
    """``lora_target`` as LLaMA-Factory splits it (commas, spaces stripped)."""
    return [part.strip() for part in value.split(",") if part.strip()]
