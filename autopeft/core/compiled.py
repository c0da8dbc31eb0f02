"""A searched point compiled for one model: what the store keeps and a worker runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CompiledConfig:
    """A point compiled for one model: everything a worker needs to run the trial.

    Attributes:
        method: Registry name of the method (``lora``, ...).
        peft_config: JSON-able dict; ``autopeft.methods.config_from_json`` rebuilds the ``peft``
            config.
        placement: Layer -> {module type -> size} for the cells that get an adapter.
        module_sizes: Full module name -> size, the same cells as the model names them.
        trainable_params: Exact adapter parameters (classification head excluded).
        training: Per-trial training overrides (``learning_rate``).
    """

    method: str
    peft_config: dict[str, Any]
    placement: dict[int, dict[str, int]]
    module_sizes: dict[str, int]
    trainable_params: int
    training: dict[str, Any] = field(default_factory=dict)
