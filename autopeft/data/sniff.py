"""Which task and columns a dataset file is for, guessed from its columns (``autopeft init``).

Causal-LM data is recognised by the formats of :mod:`autopeft.data.formats`; classification
data by a text column and a label column among common names (and a sentence pair among the
common pairs: ``premise``/``hypothesis``, ``sentence1``/``sentence2``, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autopeft.data.builtin import BUILTIN_COMPLETIONS, BUILTIN_DATASETS
from autopeft.data.formats import describe_formats, detect
from autopeft.data.records import file_records, resolve_source, saved_table
from autopeft.exceptions import DatasetError

__all__ = ["DataGuess", "sniff"]

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "question", "query", "tweet")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "sentiment", "coarse_label")
PAIRS = (
    ("premise", "hypothesis"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("text_a", "text_b"),
    ("question", "sentence"),
    ("text", "text_pair"),
)


@dataclass(frozen=True)
class DataGuess:
    """What ``init`` writes into a spec's ``dataset:`` block, and why."""

    task: str
    columns: dict[str, str] = field(default_factory=dict)
    description: str = ""


def columns_of(source: str, base_dir: Path | None = None) -> list[str]:
    """The column names of a data file (its first row's fields) or a save_to_disk directory."""
    path = resolve_source(source, base_dir, (*BUILTIN_DATASETS, *BUILTIN_COMPLETIONS))
    if path.is_dir():
        return list(saved_table(path).column_names)
    header: list[str] = []

    def keep(_: Path, names: object) -> None:
        header.extend(str(n) for n in names)  # type: ignore[attr-defined]

    first = next(iter(file_records(path, keep)), None)
    if header:
        return header
    if first is None:
        raise DatasetError(f"{path}: no rows; expected a dataset with at least one row")
    return [str(k) for k in first[1]]


def sniff(source: str, task: str | None = None, base_dir: Path | None = None) -> DataGuess:
    """The task (unless given) and the ``dataset:`` columns of ``source``.

    Raises:
        DatasetError: the columns fit no known format of the task (or of any task), listing
            the columns found and the formats known.
    """
    if source in BUILTIN_DATASETS or source in BUILTIN_COMPLETIONS:
        found = "seq_cls" if source in BUILTIN_DATASETS else "causal_lm"
        if task not in (None, found):
            raise DatasetError(f"built-in dataset {source!r} is for task {found!r}, not {task!r}")
        return DataGuess(found, {}, f"built-in dataset {source!r}")
    columns = columns_of(source, base_dir)
    if task in (None, "causal_lm"):
        fmt = detect(columns, "prompt", "completion", "messages")
        if fmt is not None:
            return DataGuess("causal_lm", {}, f"{fmt} rows")
    if task in (None, "seq_cls"):
        guess = _classification(columns)
        if guess is not None:
            return guess
    listed = ", ".join(columns) or "(none)"
    known = {
        "causal_lm": describe_formats("prompt", "completion", "messages"),
        "seq_cls": "classification (a text column such as "
        f"{', '.join(map(repr, TEXT_COLUMNS[:3]))}, or a pair such as 'premise'/'hypothesis', "
        f"and a label column such as {', '.join(map(repr, LABEL_COLUMNS[:3]))})",
    }
    formats = known[task] if task else f"{known['causal_lm']}; {known['seq_cls']}"
    raise DatasetError(
        f"dataset {source}: its columns ({listed}) match no known format; formats known: {formats}"
    )


def _classification(columns: list[str]) -> DataGuess | None:
    label = next((c for c in LABEL_COLUMNS if c in columns), None)
    if label is None:
        return None
    for first, second in PAIRS:
        if first in columns and second in columns:
            chosen = {"text_column": first, "text_pair_column": second, "label_column": label}
            return DataGuess("seq_cls", chosen, f"sentence pairs {first!r}/{second!r} -> {label!r}")
    text = next((c for c in TEXT_COLUMNS if c in columns), None)
    if text is None:
        return None
    return DataGuess(
        "seq_cls", {"text_column": text, "label_column": label}, f"texts {text!r} -> {label!r}"
    )
