"""The task contract: what a trial needs to know about the task it trains a model for.

A :class:`Task` turns a study's dataset into an in-memory dataset, builds the model's layout and
the model itself, encodes data into fixed-shape tensors (every training step has the same
shapes, so the same memory profile) and evaluates a model into its metrics. The trial loop
(:mod:`autopeft.trial.runner`) is task-neutral: a training batch is a dict of tensors with a
``labels`` entry and ``model(**batch).loss`` is the loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from autopeft.data import Splits
    from autopeft.models.layout import ModelLayout

Autocast = Callable[[], AbstractContextManager[Any]]
"""Makes the autocast context of the study's precision (a fresh one per ``with``)."""


class DatasetLike(Protocol):
    """The ``dataset:`` block of a study spec (see :class:`autopeft.spec.DatasetSpec`)."""

    source: str
    text_column: str
    label_column: str
    prompt_column: str
    completion_column: str
    messages_column: str
    chat_template: bool
    text_pair_column: str | None

    @property
    def format(self) -> str: ...

    @property
    def hub_source(self) -> Any: ...


class FidelityLike(Protocol):
    """The sizes of a trial (see :class:`autopeft.spec.FidelitySpec`)."""

    train_examples: int
    eval_examples: int
    seq_len: int
    batch_size: int


class EvaluationLike(Protocol):
    """How generated answers are scored (see :class:`autopeft.spec.EvaluationSpec`)."""

    max_new_tokens: int
    answer_pattern: str | None
    batch_size: int
    generate: bool | None


@dataclass(frozen=True)
class LoadOptions:
    """How a worker loads the base model.

    Attributes:
        seed: Seeds anything initialised at load time (a classification head).
        device: Where the model lives.
        num_hidden_layers: Keep only the first layers (small demos and tests).
        precision: ``fp32``, ``bf16`` or ``fp16``: the base weights' dtype and the autocast of
            the forward pass; adapter weights stay fp32.
        quantization: ``nf4`` or ``int8`` (bitsandbytes, CUDA only), or None.
    """

    seed: int
    device: torch.device
    num_hidden_layers: int | None = None
    precision: str = "fp32"
    quantization: str | None = None


class Task(ABC):
    """A task family; see the module docstring."""

    name: ClassVar[str]
    #: The ``task_type`` of peft configs built for this task.
    peft_task_type: ClassVar[str]

    @abstractmethod
    def load_data(self, dataset: DatasetLike, base_dir: Path) -> Any:
        """The whole dataset of a spec's ``dataset:`` block, validated (DatasetError)."""

    @abstractmethod
    def layout(self, config: Any, data: Any) -> ModelLayout:
        """The layout of the model this task builds from ``config`` (on the meta device)."""

    @abstractmethod
    def load_model(self, path: Path, data: Any, options: LoadOptions) -> tuple[nn.Module, Any]:
        """The frozen base model on ``options.device`` and its tokenizer, from a local directory."""

    def check(  # noqa: B027 - optional hook
        self,
        path: Path,
        splits: Splits[Any],
        fidelity: FidelityLike,
        dataset: DatasetLike,
    ) -> None:
        """Checks that need the tokenizer (rows that cannot fit ``seq_len``); default: none."""

    @abstractmethod
    def encode(
        self, tokenizer: Any, part: Any, fidelity: FidelityLike, dataset: DatasetLike
    ) -> dict[str, torch.Tensor]:
        """Training tensors ``[examples, seq_len]`` including ``labels``."""

    @abstractmethod
    def encode_eval(
        self,
        tokenizer: Any,
        part: Any,
        fidelity: FidelityLike,
        dataset: DatasetLike,
        evaluation: EvaluationLike,
        metric: str,
    ) -> Any:
        """What :meth:`evaluate` needs for the validation part (``metric``: the study's)."""

    @abstractmethod
    def evaluate(
        self, model: nn.Module, data: Any, device: torch.device, autocast: Autocast
    ) -> dict[str, float]:
        """Every metric of the task that ``data`` allows (the study's metric among them)."""

    def majority_share(self, part: Any, metric: str, evaluation: EvaluationLike) -> float | None:
        """The ``metric`` a model reaches on ``part`` by always giving the most common answer.

        The floor a trained configuration must clear to have learnt anything beyond the answer
        distribution (the ``saturated`` health check, :mod:`autopeft.results.health`). None when
        the metric has no such floor (losses) or the task does not define one."""
        return None

    def describe(self, data: Any) -> str:
        """A short description of a loaded dataset, for ``autopeft validate``."""
        return f"{len(data)} examples"
