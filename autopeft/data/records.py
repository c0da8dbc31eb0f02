"""Reading dataset rows from files and save_to_disk directories (shared by the loaders).

Internal to :mod:`autopeft.data`: the loaders turn these located rows into datasets. Every
row is a :data:`Record`, so a loader's errors can name the file and row they come from.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from autopeft.exceptions import DatasetError, UnsupportedError

__all__ = [
    "FORMATS",
    "ColumnCheck",
    "Record",
    "file_records",
    "parse_json",
    "resolve_source",
    "saved_table",
]

Record = tuple[str, Mapping[str, Any]]
"""One input row: where it is (``"data.csv: row 3 (line 4)"``) and its fields."""

ColumnCheck = Callable[[Path, Sequence[str]], None]
"""Validates a file's column names (a CSV header) up front; raises ``DatasetError``."""

FORMATS = ".csv, .jsonl, .json, .parquet or a directory written by datasets' save_to_disk"


def checked_positions(name: str, indices: Sequence[int], size: int) -> list[int]:
    """``indices`` as ints, each checked to lie in ``0 .. size - 1`` (for ``subset``).

    Raises:
        DatasetError: If an index is out of range, naming the dataset.
    """
    positions = [int(i) for i in indices]
    bad = next((i for i in positions if not 0 <= i < size), None)
    if bad is not None:
        raise DatasetError(f"dataset {name!r}: index {bad} out of range; expected 0..{size - 1}")
    return positions


def resolve_source(source: str, base_dir: Path | None, builtins: Collection[str]) -> Path:
    """Returns the existing file or directory that ``source`` names.

    Args:
        source: A path, relative to ``base_dir`` (default: the working directory).
        base_dir: The directory that relative paths resolve against.
        builtins: The built-in names the caller accepts, listed when ``source`` looks like a
            mistyped built-in name rather than a path.

    Raises:
        DatasetError: If ``source`` is empty or names nothing that exists.
    """
    if not source.strip():
        raise DatasetError(f"dataset source is empty; expected a built-in name or {FORMATS}")
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if path.exists():
        return path
    if path.suffix or len(Path(source).parts) > 1:
        resolved = path.absolute()
        where = "" if str(resolved) == source else f" (resolved to {resolved})"
        raise DatasetError(f"dataset file {source}{where} not found")
    known = ", ".join(sorted(builtins))
    raise DatasetError(
        f"unknown dataset {source!r}: not a built-in name and no file {path}; "
        f"built-in datasets are: {known}"
    )


def file_records(path: Path, check_columns: ColumnCheck) -> Iterator[Record]:
    """Returns the rows of a ``.csv``, ``.jsonl`` or ``.json`` file, read lazily.

    Args:
        path: The file; its suffix picks the format.
        check_columns: Called with a CSV file's header before its first row (JSON rows are
            objects, checked one by one by the caller).

    Raises:
        DatasetError: Now if the suffix is unsupported; while iterating if the file cannot be
            read, is not UTF-8, is malformed, or a JSON row is not an object.
    """
    readers: dict[str, Callable[[Path, ColumnCheck], Iterator[Record]]] = {
        ".csv": _csv_records,
        ".jsonl": _jsonl_records,
        ".json": _json_records,
        ".parquet": _parquet_records,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(f"{path}: unsupported file type {path.suffix!r}; expected {FORMATS}")
    return _located_errors(path, reader(path, check_columns))


def _located_errors(path: Path, records: Iterator[Record]) -> Iterator[Record]:
    """Re-raises reading errors as ``DatasetError`` naming ``path``."""
    try:
        yield from records
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise DatasetError(f"{path}: malformed CSV ({err}); expected a CSV file") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err.strerror or err})") from err


def _csv_records(path: Path, check_columns: ColumnCheck) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        if not header:
            raise DatasetError(f"{path}: file is empty; expected a header row naming the columns")
        check_columns(path, header)
        for number, row in enumerate(reader, start=1):
            yield f"{path}: row {number} (line {reader.line_num})", row


def _jsonl_records(path: Path, check_columns: ColumnCheck) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            yield where, _as_object(parse_json(line, where), where)


def _json_records(path: Path, check_columns: ColumnCheck) -> Iterator[Record]:
    items = parse_json(path.read_text(encoding="utf-8-sig"), str(path))
    if not isinstance(items, list):
        raise DatasetError(
            f"{path}: top-level JSON value is {type(items).__name__}; expected a list of objects"
            " (use .jsonl for one object per line)"
        )
    for number, item in enumerate(items, start=1):
        where = f"{path}: row {number}"
        yield where, _as_object(item, where)


def _parquet_records(path: Path, check_columns: ColumnCheck) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise UnsupportedError(
            f"{path}: reading Parquet needs the 'pyarrow' package; run: pip install pyarrow"
        ) from err
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises ArrowInvalid (a ValueError) and OSError subclasses
        raise DatasetError(f"{path}: not a readable Parquet file ({err})") from None
    check_columns(path, table.column_names)
    for number, row in enumerate(table.to_pylist(), start=1):
        yield f"{path}: row {number}", row


def parse_json(text: str, where: str) -> Any:
    """Parses JSON ``text``; a syntax error, too deep a nesting or an integer too long for
    Python becomes a ``DatasetError`` naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{where}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from err
    except RecursionError:
        raise DatasetError(f"{where}: invalid JSON (nested too deeply)") from None
    except ValueError as err:  # an integer of more than 4300 digits
        reason = str(err).split(";")[0]
        raise DatasetError(f"{where}: invalid JSON ({reason})") from None


def _as_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: a JSON {type(value).__name__}; expected a JSON object")
    return value


def saved_table(path: Path) -> Any:
    """Returns the ``datasets.Dataset`` saved at ``path`` (a DatasetDict's train or all splits).

    Raises:
        DatasetError: If ``path`` is not a save_to_disk directory or cannot be loaded.
        UnsupportedError: If ``datasets`` is not installed.
    """
    markers = ("dataset_dict.json", "state.json")
    if not any((path / marker).is_file() for marker in markers):
        raise DatasetError(
            f"{path}: a directory without dataset_dict.json or state.json; expected {FORMATS}"
        )
    try:
        import datasets
    except ImportError as err:
        raise UnsupportedError(
            f"{path}: reading a save_to_disk directory needs the 'datasets' package; "
            "run: pip install 'autopeft[datasets]'"
        ) from err
    try:
        loaded = datasets.load_from_disk(str(path))
        if not isinstance(loaded, datasets.DatasetDict):
            return loaded
        if "train" in loaded:
            return loaded["train"]
        if not loaded:
            raise DatasetError(f"{path}: a DatasetDict with no splits; expected at least one")
        return datasets.concatenate_datasets(list(loaded.values()))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot load the saved dataset ({err})") from err
