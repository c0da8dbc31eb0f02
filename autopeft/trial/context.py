"""What a worker loads once and reuses across trials: model, tokenizer, tokenized data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autopeft.exceptions import UnsupportedError
from autopeft.trial.reuse import BaseKeeper

if TYPE_CHECKING:
    from torch import nn

    from autopeft.data import Splits
    from autopeft.spec import FidelitySpec


@dataclass
class TrialContext:
    """The base model (held by a :class:`BaseKeeper`: each trial attaches its adapter in place
    and the base is restored and checked after it), tokenized train/validation tensors and the
    device. ``Batch`` tensors are ``[examples, seq_len]``, padded to a fixed length so every step
    has the same shapes (and the same memory profile). ``memory_cap_bytes``: a trial whose
    measured peak passes it is stopped as infeasible (None: no cap)."""

    base: BaseKeeper
    train: dict[str, torch.Tensor]
    validation: dict[str, torch.Tensor]
    num_labels: int
    device: torch.device
    fidelity: FidelitySpec
    metric: str
    memory_cap_bytes: int | None = None

    @property
    def model(self) -> nn.Module:
        """The base model as it is between trials."""
        return self.base.model


def pick_device(choice: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError("executor.device is 'cuda' but torch sees no CUDA device")
    return torch.device(choice)


def load_model(
    path: Path, label_names: tuple[str, ...], seed: int, num_hidden_layers: int | None = None
) -> tuple[nn.Module, Any]:
    """Load a sequence classifier and its tokenizer from a local directory (never a hub).

    The classification head is initialised under ``seed`` so every trial starts from the same
    head; decoder models get a pad token.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # the head is new by design: no "newly initialized" report

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    extra: dict[str, Any] = {}
    if num_hidden_layers is not None:
        extra["num_hidden_layers"] = num_hidden_layers
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        local_files_only=True,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        **extra,
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    model.requires_grad_(False)
    return model, tokenizer


def tokenize(
    tokenizer: Any, texts: tuple[str, ...], labels: tuple[int, ...], seq_len: int
) -> dict[str, torch.Tensor]:
    """Fixed-length tensors: ``input_ids``/``attention_mask`` (and ``token_type_ids``) of
    shape ``[n, seq_len]`` plus ``labels`` of shape ``[n]``."""
    enc = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"
    )
    batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def build_context(
    model_path: Path,
    splits: Splits,
    fidelity: FidelitySpec,
    *,
    seed: int,
    metric: str,
    device: torch.device,
    num_hidden_layers: int | None = None,
    memory_cap_bytes: int | None = None,
) -> TrialContext:
    """Load everything a worker reuses. Train/validation are cut to the fidelity's sizes; the
    base model is placed on ``device`` once."""
    labels = splits.train.label_names

    def reload() -> nn.Module:
        return load_model(model_path, labels, seed, num_hidden_layers)[0].to(device)

    model, tokenizer = load_model(model_path, labels, seed, num_hidden_layers)
    train = splits.train.subset(range(min(fidelity.train_examples, len(splits.train))))
    val = splits.validation.subset(range(min(fidelity.eval_examples, len(splits.validation))))
    return TrialContext(
        base=BaseKeeper(model.to(device), reload),
        train=tokenize(tokenizer, train.texts, train.labels, fidelity.seq_len),
        validation=tokenize(tokenizer, val.texts, val.labels, fidelity.seq_len),
        num_labels=len(splits.train.label_names),
        device=device,
        fidelity=fidelity,
        metric=metric,
        memory_cap_bytes=memory_cap_bytes,
    )
