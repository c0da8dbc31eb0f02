"""Loading labelled text-classification data: built-ins, CSV, JSON Lines, JSON, save_to_disk."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from autopeft.data.builtin import BUILTIN_COMPLETIONS, BUILTIN_DATASETS, read_builtin
from autopeft.data.hub import HubSource, hub_table
from autopeft.data.records import (
    Record,
    checked_positions,
    file_records,
    resolve_source,
    saved_table,
)
from autopeft.exceptions import DatasetError

__all__ = ["TextDataset", "load_dataset"]

_INT_LABEL = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class TextDataset:
    """An immutable labelled text-classification dataset.

    Attributes:
        name: A display name (the built-in name, or the file's stem).
        texts: The example texts.
        labels: One label id per text, an index into ``label_names``.
        label_names: The sorted unique label strings (integer labels sorted numerically).
        text_pairs: The second text of each example (sentence pairs: NLI, paraphrase), or
            empty when the examples are single texts.
    """

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    text_pairs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ("texts", "labels", "label_names", "text_pairs"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.text_pairs and len(self.text_pairs) != len(self.texts):
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.texts)} texts but {len(self.text_pairs)} "
                "second texts; expected one per text"
            )
        if len(self.texts) != len(self.labels):
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.texts)} texts but {len(self.labels)} labels; "
                "expected one label per text"
            )
        bad = next((x for x in self.labels if not 0 <= x < len(self.label_names)), None)
        if bad is not None:
            raise DatasetError(
                f"dataset {self.name!r}: label id {bad} out of range; "
                f"expected 0..{len(self.label_names) - 1}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int], name: str | None = None) -> TextDataset:
        """Returns the examples at ``indices`` (in that order), keeping ``label_names``.

        Args:
            indices: Positions into this dataset, each in ``0 .. len(self) - 1``.
            name: The subset's name; defaults to this dataset's name.

        Raises:
            DatasetError: If an index is out of range.
        """
        positions = checked_positions(self.name, indices, len(self))
        return TextDataset(
            name=self.name if name is None else name,
            texts=tuple(self.texts[i] for i in positions),
            labels=tuple(self.labels[i] for i in positions),
            label_names=self.label_names,
            text_pairs=tuple(self.text_pairs[i] for i in positions) if self.text_pairs else (),
        )

    def strata(self) -> tuple[int, ...]:
        """Returns the label ids, so that splits keep every class's share."""
        return self.labels


def load_dataset(
    source: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    base_dir: Path | None = None,
    text_pair_column: str | None = None,
    hub: HubSource | None = None,
) -> TextDataset:
    """Loads a labelled text dataset.

    Args:
        source: A key of ``BUILTIN_DATASETS`` (the column arguments are then ignored), or a
            path to a ``.csv`` file with a header row, a ``.jsonl`` file (one JSON object per
            line), a ``.json`` file (a list of objects), or a directory written by
            ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (its ``train``
            split, or else all splits concatenated). Built-in names win over paths.
        text_column: The column (field) holding the text.
        label_column: The column (field) holding the label, a string or an integer.
        text_pair_column: A second text column (the hypothesis of an NLI pair, the second
            sentence of a paraphrase pair), encoded with the first as one sequence pair.
        hub: Read this dataset through ``datasets.load_dataset`` instead of ``source``.
        base_dir: The directory that relative paths resolve against (default: the working
            directory).

    Returns:
        The dataset; labels are mapped to ids by sorted unique string value, integer labels
        sorted numerically. Built-ins are parsed once per process and cached.

    Raises:
        DatasetError: If the source is not found, is a completions built-in, has an
            unsupported format, lacks a column, has a row with an empty text or a missing
            label, or has fewer than two labels.
        UnsupportedError: If a save_to_disk directory is given and ``datasets`` is missing.
    """
    columns = _TextColumns(text_column, label_column, text_pair_column)
    if len(set(columns.names)) != len(columns.names):
        raise DatasetError(
            f"text column and label column are both {text_column!r}; expected two columns"
            if text_column == label_column
            else f"text_pair_column {text_pair_column!r} repeats another column; expected its "
            "own column"
        )
    if hub is not None:
        return _load_table(hub.name, hub.name, hub_table(hub, base_dir), columns)
    if source in BUILTIN_DATASETS:
        if text_pair_column is not None:
            raise DatasetError(
                f"built-in dataset {source!r} has single texts; text_pair_column applies to "
                "files and Hub datasets"
            )
        return _builtin_dataset(source)
    if source in BUILTIN_COMPLETIONS:
        raise DatasetError(
            f"{source!r} is a built-in completions dataset (prompts and answers for causal-LM "
            "fine-tuning), not labelled texts; load it with load_completions, or use a "
            f"built-in text-classification dataset: {', '.join(sorted(BUILTIN_DATASETS))}"
        )
    path = resolve_source(source, base_dir, BUILTIN_DATASETS)
    if path.is_dir():
        return _load_table(path.name, str(path), saved_table(path), columns)
    return _load_file(path, columns)


@cache
def _builtin_dataset(name: str) -> TextDataset:
    texts, labels = read_builtin(name)
    return _make_dataset(name, texts, labels, f"built-in dataset {name!r}")


def _require_columns(path: Path | str, columns: Sequence[str], required: Sequence[str]) -> None:
    for column in required:
        if column not in columns:
            raise DatasetError(
                f"{path}: column {column!r} not found; columns are: {', '.join(columns)}"
            )


@dataclass(frozen=True)
class _TextColumns:
    text: str
    label: str
    pair: str | None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.text, self.label) + ((self.pair,) if self.pair else ())


def _load_file(path: Path, columns: _TextColumns) -> TextDataset:
    def check(file: Path, header: Sequence[str]) -> None:
        _require_columns(file, header, columns.names)

    records = file_records(path, check)
    return _from_records(path.stem, records, columns, str(path))


def _load_table(name: str, where: str, table: Any, columns: _TextColumns) -> TextDataset:
    """A ``datasets`` table (saved to disk or loaded from the Hub) as a dataset."""
    _require_columns(where, table.column_names, columns.names)
    data = {c: list(table[c]) for c in columns.names}
    data[columns.label] = _saved_labels(table, columns.label)
    records = (
        (f"{where}: row {number}", dict(zip(columns.names, row, strict=True)))
        for number, row in enumerate(zip(*data.values(), strict=True), start=1)
    )
    return _from_records(name, records, columns, where)


def _saved_labels(table: Any, label_column: str) -> list[Any]:
    """Returns the label column, with ``ClassLabel`` ids replaced by their names."""
    import datasets

    values = list(table[label_column])
    feature = table.features[label_column]
    if not isinstance(feature, datasets.ClassLabel):
        return values
    return [None if value is None or value < 0 else feature.int2str(value) for value in values]


def _from_records(
    name: str, records: Iterable[Record], columns: _TextColumns, origin: str
) -> TextDataset:
    texts: list[str] = []
    pairs: list[str] = []
    labels: list[str] = []
    for where, record in records:
        texts.append(_text_of(record, columns.text, where))
        if columns.pair is not None:
            pairs.append(_text_of(record, columns.pair, where))
        labels.append(_label_of(record, columns.label, where))
    return _make_dataset(name, texts, labels, origin, pairs)


def _field(record: Mapping[str, Any], column: str, where: str) -> Any:
    if column not in record:
        fields = ", ".join(str(key) for key in record)
        raise DatasetError(f"{where}: field {column!r} not found; fields are: {fields}")
    return record[column]


def _text_of(record: Mapping[str, Any], column: str, where: str) -> str:
    value = _field(record, column, where)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: column {column!r} is empty; expected a non-empty text")
    if not isinstance(value, str):
        raise DatasetError(
            f"{where}: column {column!r} is {value!r} ({type(value).__name__}); expected a string"
        )
    return value


def _label_of(record: Mapping[str, Any], column: str, where: str) -> str:
    value = _field(record, column, where)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(
            f"{where}: column {column!r} is missing; expected a label (a string or an integer)"
        )
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise DatasetError(
        f"{where}: column {column!r} is {value!r} ({type(value).__name__}); "
        "expected a label (a string or an integer)"
    )


def _sorted_label_names(names: Iterable[str]) -> tuple[str, ...]:
    unique = set(names)
    if all(_INT_LABEL.fullmatch(name) for name in unique):
        # Decimal, not int: exact for integers of any length (int() refuses over 4300 digits)
        return tuple(sorted(unique, key=lambda name: (Decimal(name), name)))
    return tuple(sorted(unique))


def _make_dataset(
    name: str,
    texts: Sequence[str],
    labels: Sequence[str],
    origin: str,
    pairs: Sequence[str] = (),
) -> TextDataset:
    if not texts:
        raise DatasetError(f"{origin}: no examples; expected labelled texts")
    label_names = _sorted_label_names(labels)
    if len(label_names) < 2:
        raise DatasetError(
            f"{origin}: only one label ({label_names[0]!r}); expected at least 2 distinct labels"
        )
    ids = {label: index for index, label in enumerate(label_names)}
    return TextDataset(
        name=name,
        texts=tuple(texts),
        labels=tuple(ids[label] for label in labels),
        label_names=label_names,
        text_pairs=tuple(pairs),
    )
