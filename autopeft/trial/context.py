"""What a worker loads once and reuses across trials: model, tokenizer, encoded data."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autopeft.exceptions import UnsupportedError
from autopeft.tasks import get_task
from autopeft.tasks.base import LoadOptions
from autopeft.tasks.loading import torch_dtype
from autopeft.trial.reuse import BaseKeeper

if TYPE_CHECKING:
    from torch import nn

    from autopeft.data import Splits
    from autopeft.spec import FidelitySpec
    from autopeft.tasks.base import DatasetLike, EvaluationLike, Task


@dataclass
class TrialContext:
    """The base model (held by a :class:`BaseKeeper`: each trial attaches its adapter in place
    and the base is restored and checked after it), the task, its encoded train/validation data
    and the device. ``train`` tensors are ``[examples, seq_len]``, padded to a fixed length so
    every step has the same shapes (and the same memory profile); ``validation`` is whatever the
    task's ``evaluate`` takes. ``memory_cap_bytes``: a trial whose measured peak passes it is
    stopped as infeasible (None: no cap). ``precision``: the autocast of forward passes."""

    base: BaseKeeper
    task: Task
    train: dict[str, torch.Tensor]
    validation: Any
    device: torch.device
    fidelity: FidelitySpec
    metric: str
    memory_cap_bytes: int | None = None
    precision: str = "fp32"
    gradient_checkpointing: bool = False

    @property
    def model(self) -> nn.Module:
        """The base model as it is between trials."""
        return self.base.model

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.train["input_ids"].shape[0])

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context of ``precision`` (a no-op for fp32)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch_dtype(self.precision))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The task's metrics of ``model`` on the validation data."""
        return self.task.evaluate(model, self.validation, self.device, self.autocast)


def pick_device(choice: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("executor.device is 'cuda' but torch sees no CUDA device")
    return torch.device(choice)


def build_context(
    model_path: Path,
    splits: Splits[Any],
    fidelity: FidelitySpec,
    *,
    task: str = "seq_cls",
    dataset: DatasetLike | None = None,
    evaluation: EvaluationLike | None = None,
    seed: int,
    metric: str,
    device: torch.device,
    num_hidden_layers: int | None = None,
    memory_cap_bytes: int | None = None,
    precision: str = "fp32",
    quantization: str | None = None,
    gradient_checkpointing: bool = False,
) -> TrialContext:
    """Load everything a worker reuses. Train/validation are cut to the fidelity's sizes; the
    base model is placed on ``device`` once. ``dataset`` and ``evaluation`` (the spec's blocks)
    default to the spec's defaults."""
    from autopeft.spec import DatasetSpec, EvaluationSpec

    dataset = dataset or DatasetSpec.model_construct()  # defaults only: the data come in `splits`
    evaluation = evaluation or EvaluationSpec()
    family = get_task(task)
    options = LoadOptions(seed, device, num_hidden_layers, precision, quantization)

    def reload() -> nn.Module:
        return family.load_model(model_path, splits.train, options)[0]

    model, tokenizer = family.load_model(model_path, splits.train, options)
    train = splits.train.subset(range(min(fidelity.train_examples, len(splits.train))))
    val = splits.validation.subset(range(min(fidelity.eval_examples, len(splits.validation))))
    return TrialContext(
        base=BaseKeeper(model, reload),
        task=family,
        train=family.encode(tokenizer, train, fidelity, dataset),
        validation=family.encode_eval(tokenizer, val, fidelity, dataset, evaluation, metric),
        device=device,
        fidelity=fidelity,
        metric=metric,
        memory_cap_bytes=memory_cap_bytes,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
    )
