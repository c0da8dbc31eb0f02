"""``--format trl``: TRL's ``SFTConfig`` arguments and a runnable ``train.py``.

``sft_config.json`` holds ``trl.SFTConfig`` keyword arguments (every name is checked against
the installed TRL in the tests) that reproduce the trial's training: AdamW at the searched
learning rate, linear warmup and decay, its steps, batch size, sequence length, precision,
gradient checkpointing and seed, and no gradient clipping (autopeft's trials clip nothing).
``train.py`` (``examples/train_with_trl.py``) reads this directory and trains the exported
adapter with ``SFTTrainer`` (``transformers.Trainer`` for a classification study, which
``SFTTrainer`` does not train). TRL takes any peft config, so every method exports exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autopeft.results.formats.base import Rendered

SFT_FILE = "sft_config.json"
SCRIPT_FILE = "train.py"
SCRIPT_SOURCE = Path(__file__).with_name("train_with_trl.py")
"""The script written as ``train.py``; ``examples/train_with_trl.py`` links to it."""


def sft_config(recipe: dict[str, Any]) -> dict[str, Any]:
    """``trl.SFTConfig`` keyword arguments for the recipe's training (no ``output_dir``)."""
    t = recipe["training"]
    args: dict[str, Any] = {
        "learning_rate": t["learning_rate"],
        "lr_scheduler_type": t["lr_scheduler"],
        "warmup_steps": t["warmup_steps"],
        "weight_decay": t["weight_decay"],
        "optim": "adamw_torch",
        "max_grad_norm": 0.0,  # 0 turns clipping off in transformers' Trainer
        "max_steps": t["max_steps"],
        "per_device_train_batch_size": t["batch_size"],
        "per_device_eval_batch_size": t["batch_size"],
        "gradient_accumulation_steps": 1,
        "max_length": t["seq_len"],
        "bf16": t["precision"] == "bf16",
        "fp16": t["precision"] == "fp16",
        "gradient_checkpointing": t["gradient_checkpointing"],
        "seed": t["seed"],
        "data_seed": t["seed"],
        "packing": False,
        "completion_only_loss": True,  # autopeft's causal loss: completion tokens only
        "logging_steps": max(1, t["max_steps"] // 10),
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
    }
    return args


def render(recipe: dict[str, Any], base: dict[str, bytes]) -> Rendered:
    """The shared files plus ``sft_config.json`` and ``train.py``."""
    files = dict(base)
    files[SFT_FILE] = json.dumps(sft_config(recipe), indent=2).encode("utf-8")
    files[SCRIPT_FILE] = SCRIPT_SOURCE.read_bytes()
    return Rendered(files)
