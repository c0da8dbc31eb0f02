"""The study's own examples, as files a training job elsewhere reads: ``data/train.jsonl`` and
``data/validation.jsonl`` (``autopeft export --with-data``).

The rows are exactly those the trials trained and were validated on: the seeded split of the
study's dataset, cut to the fidelity's ``train_examples`` and ``eval_examples``. Columns keep
the spec's names; a classification label is written as its name (``training.json`` lists the
names in label-id order), a chat prompt as ``[{"role", "content"}, ...]`` turns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopeft.results.views import StudyView

TRAIN_FILE = "data/train.jsonl"
VALIDATION_FILE = "data/validation.jsonl"


def study_rows(view: StudyView, base_dir: Path | None = None) -> tuple[dict[str, bytes], list[str]]:
    """(file name -> JSONL bytes, the label names in id order; empty for causal LM studies).

    Args:
        view: The stored study.
        base_dir: Where a relative dataset path in the spec resolves (default: the cwd).

    Raises:
        DatasetError: The dataset cannot be read here.
    """
    from autopeft.data import split_dataset
    from autopeft.spec import DatasetSpec
    from autopeft.tasks import get_task

    spec = view.spec
    fields = dict(spec["dataset"])
    if fields.get("hub") is None:  # a stored spec writes every default; `split` is Hub-only
        fields.pop("split", None)
        fields.pop("config", None)
    dataset = DatasetSpec(**{k: v for k, v in fields.items() if k in DatasetSpec.model_fields})
    task = get_task(spec.get("task", "seq_cls"))
    data = task.load_data(dataset, base_dir or Path.cwd())
    split = spec.get("split", {})
    splits = split_dataset(
        data,
        validation=split.get("validation", 0.15),
        test=split.get("test", 0.15),
        seed=split.get("seed", 0),
    )
    fid = spec.get("fidelity", {})
    parts = {
        TRAIN_FILE: splits.train.subset(range(min(fid["train_examples"], len(splits.train)))),
        VALIDATION_FILE: splits.validation.subset(
            range(min(fid["eval_examples"], len(splits.validation)))
        ),
    }
    labels = list(getattr(data, "label_names", ()))
    files = {name: _jsonl(_rows(part, dataset)) for name, part in parts.items()}
    return files, labels


def _rows(part: Any, dataset: Any) -> list[dict[str, Any]]:
    if hasattr(part, "label_names"):
        return [
            {dataset.text_column: text, dataset.label_column: part.label_names[label]}
            for text, label in zip(part.texts, part.labels, strict=True)
        ]
    return [
        {
            dataset.prompt_column: prompt
            if isinstance(prompt, str)
            else [{"role": role, "content": content} for role, content in prompt],
            dataset.completion_column: completion,
        }
        for prompt, completion in zip(part.prompts, part.completions, strict=True)
    ]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
