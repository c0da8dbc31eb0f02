"""Sequence classification (``task: seq_cls``): an encoder or decoder with a new linear head.

Data: labelled texts (:func:`autopeft.data.load_dataset`). Loss: cross-entropy of the head.
Metrics: ``accuracy`` and ``macro_f1`` on the validation part (both maximised). The head is
initialised under the study seed and trained with the adapter (peft's ``modules_to_save``); its
parameters are reported as ``head_params``, outside ``trainable_params``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from autopeft.tasks.base import (
    Autocast,
    DatasetLike,
    EvaluationLike,
    FidelityLike,
    LoadOptions,
    Task,
)
from autopeft.tasks.loading import finish, load_tokenizer, model_kwargs, quiet_transformers

if TYPE_CHECKING:
    from torch import nn

    from autopeft.data import TextDataset
    from autopeft.models.layout import ModelLayout


class SequenceClassification(Task):
    """``AutoModelForSequenceClassification`` on labelled texts."""

    name: ClassVar[str] = "seq_cls"
    peft_task_type: ClassVar[str] = "SEQ_CLS"

    def load_data(self, dataset: DatasetLike, base_dir: Path) -> TextDataset:
        from autopeft.data import load_dataset

        return load_dataset(
            dataset.source,
            text_column=dataset.text_column,
            label_column=dataset.label_column,
            base_dir=base_dir,
            text_pair_column=dataset.text_pair_column,
            hub=dataset.hub_source,
        )

    def layout(self, config: Any, data: TextDataset) -> ModelLayout:
        from autopeft.models.layout import layout_on_meta

        return layout_on_meta(config, len(data.label_names))

    def load_model(
        self, path: Path, data: TextDataset, options: LoadOptions
    ) -> tuple[nn.Module, Any]:
        """The classifier with a head initialised under ``options.seed``; decoders get a pad
        token."""
        from transformers import AutoModelForSequenceClassification

        quiet_transformers()  # the head is new by design: no "newly initialized" report
        tokenizer = load_tokenizer(path)
        names = data.label_names
        torch.manual_seed(options.seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            **model_kwargs(options),
        )
        model.config.pad_token_id = tokenizer.pad_token_id
        return finish(model, options), tokenizer

    def encode(
        self, tokenizer: Any, part: TextDataset, fidelity: FidelityLike, dataset: DatasetLike
    ) -> dict[str, torch.Tensor]:
        return tokenize(tokenizer, part.texts, part.labels, fidelity.seq_len, part.text_pairs)

    def encode_eval(
        self,
        tokenizer: Any,
        part: TextDataset,
        fidelity: FidelityLike,
        dataset: DatasetLike,
        evaluation: EvaluationLike,
        metric: str,
    ) -> dict[str, Any]:
        batch: dict[str, Any] = tokenize(
            tokenizer, part.texts, part.labels, fidelity.seq_len, part.text_pairs
        )
        batch["num_labels"] = len(part.label_names)
        return batch

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: dict[str, Any], device: torch.device, autocast: Autocast
    ) -> dict[str, float]:
        """Accuracy and macro-F1 of the argmax prediction."""
        model.eval()
        batch_size = 64
        tensors = {k: v for k, v in data.items() if k not in ("labels", "num_labels")}
        preds = []
        for start in range(0, data["labels"].shape[0], batch_size):
            batch = {k: v[start : start + batch_size].to(device) for k, v in tensors.items()}
            with autocast():
                preds.append(model(**batch).logits.argmax(-1).cpu())
        pred, gold = torch.cat(preds), data["labels"]
        return {
            "accuracy": float((pred == gold).float().mean()),
            "macro_f1": macro_f1(pred, gold, data["num_labels"]),
        }

    def majority_share(
        self, part: TextDataset, metric: str, evaluation: EvaluationLike
    ) -> float | None:
        """Accuracy of always predicting the most common label of ``part`` (None for macro-F1,
        whose floor depends on the label count)."""
        if metric != "accuracy" or not len(part):
            return None
        return max(Counter(part.labels).values()) / len(part)

    def describe(self, data: TextDataset) -> str:
        return f"{len(data)} examples, {len(data.label_names)} labels"


def tokenize(
    tokenizer: Any,
    texts: tuple[str, ...],
    labels: tuple[int, ...],
    seq_len: int,
    pairs: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Fixed-length tensors: ``input_ids``/``attention_mask`` (and ``token_type_ids``) of
    shape ``[n, seq_len]`` plus ``labels`` of shape ``[n]``. With ``pairs``, each text and its
    pair are one sequence pair (``[CLS] a [SEP] b [SEP]`` on BERT), the longer one truncated
    first."""
    enc = tokenizer(
        list(texts),
        list(pairs) if pairs else None,
        padding="max_length",
        truncation="longest_first" if pairs else True,
        max_length=seq_len,
        return_tensors="pt",
    )
    batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def macro_f1(pred: torch.Tensor, gold: torch.Tensor, k: int) -> float:
    """The unweighted mean F1 over the classes that occur in ``pred`` or ``gold``."""
    scores = []
    for c in range(k):
        tp = int(((pred == c) & (gold == c)).sum())
        fp, fn = int(((pred == c) & (gold != c)).sum()), int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0
