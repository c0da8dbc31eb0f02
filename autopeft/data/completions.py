"""Loading causal-LM fine-tuning data: prompts (plain text or chat turns) and completions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from autopeft.data.builtin import (
    BUILTIN_COMPLETIONS,
    BUILTIN_DATASETS,
    read_builtin_completions,
)
from autopeft.data.formats import (
    ALPACA,
    FORMAT_NAMES,
    SHAREGPT,
    alpaca_messages,
    describe_formats,
    detect,
    required,
    sharegpt_messages,
)
from autopeft.data.hub import HubSource, hub_table
from autopeft.data.records import (
    Record,
    checked_positions,
    file_records,
    parse_json,
    resolve_source,
    saved_table,
)
from autopeft.exceptions import DatasetError

__all__ = ["CompletionDataset", "Message", "Prompt", "load_completions"]

Message = tuple[str, str]
"""One chat turn: ``(role, content)``, the role one of ``system``, ``user``, ``assistant``."""

Prompt = str | tuple[Message, ...]
"""What the model sees before its answer: plain text, or the chat turns before the answer."""

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class CompletionDataset:
    """An immutable dataset of prompts and the completions a causal LM should learn.

    Attributes:
        name: A display name (the built-in name, or the file's stem).
        prompts: One prompt per example: a plain text, or a tuple of ``(role, content)``
            chat turns (those before the answer).
        completions: One non-empty answer text per example, in the same order.
        origins: Where each example came from (``"data.jsonl: line 4"``), for located
            errors downstream.
    """

    name: str
    prompts: tuple[Prompt, ...]
    completions: tuple[str, ...]
    origins: tuple[str, ...]

    def __post_init__(self) -> None:
        prompts = tuple(
            p if isinstance(p, str) else tuple((role, content) for role, content in p)
            for p in self.prompts
        )
        object.__setattr__(self, "prompts", prompts)
        for field in ("completions", "origins"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        counts = (len(self.prompts), len(self.completions), len(self.origins))
        if len(set(counts)) != 1:
            raise DatasetError(
                f"dataset {self.name!r}: {counts[0]} prompts, {counts[1]} completions and "
                f"{counts[2]} origins; expected one completion and one origin per prompt"
            )

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, indices: Sequence[int], name: str | None = None) -> CompletionDataset:
        """Returns the examples at ``indices`` (in that order), with their origins.

        Args:
            indices: Positions into this dataset, each in ``0 .. len(self) - 1``.
            name: The subset's name; defaults to this dataset's name.

        Raises:
            DatasetError: If an index is out of range.
        """
        positions = checked_positions(self.name, indices, len(self))
        return CompletionDataset(
            name=self.name if name is None else name,
            prompts=tuple(self.prompts[i] for i in positions),
            completions=tuple(self.completions[i] for i in positions),
            origins=tuple(self.origins[i] for i in positions),
        )

    def strata(self) -> tuple[int, ...]:
        """Returns all zeros: completions are split at random, without strata."""
        return (0,) * len(self)


@dataclass(frozen=True)
class _Columns:
    prompt: str
    completion: str
    messages: str
    format: str = "auto"

    def expected(self) -> str:
        known = describe_formats(self.prompt, self.completion, self.messages)
        return f"expected the columns of a known format: {known}"

    def detect(self, columns: Sequence[str] | Mapping[str, Any]) -> str | None:
        return detect(columns, self.prompt, self.completion, self.messages)

    def check(self, where: object, columns: Sequence[str]) -> None:
        """Raises unless ``columns`` hold the columns of the format (any known one for auto)."""
        if self.format == "auto":
            if self.detect(columns) is None:
                raise self.missing(where, columns)
            return
        needed = required(self.format, self.prompt, self.completion, self.messages)
        absent = [c for c in needed if c not in columns]
        if absent:
            listed = ", ".join(str(c) for c in columns) or "(none)"
            raise DatasetError(
                f"{where}: no {absent[0]!r} column, which format {self.format!r} needs; "
                f"columns are: {listed}"
            )

    def as_format(self, fmt: str) -> _Columns:
        return _Columns(self.prompt, self.completion, self.messages, fmt)

    @property
    def wanted(self) -> tuple[str, ...]:
        """Every column some format reads."""
        return (self.prompt, self.completion, self.messages, *ALPACA, SHAREGPT)

    def missing(self, where: object, columns: Sequence[str]) -> DatasetError:
        """The error for ``columns`` that hold neither the pair nor the messages."""
        absent = [c for c in (self.prompt, self.completion) if c not in columns]
        what = (
            f"no {absent[0]!r} column"
            if len(absent) == 1
            else f"no {self.prompt!r}, {self.completion!r} or {self.messages!r} column"
        )
        listed = ", ".join(str(c) for c in columns) or "(none)"
        return DatasetError(f"{where}: {what}; {self.expected()}; columns are: {listed}")


def load_completions(
    source: str,
    *,
    prompt_column: str = "prompt",
    completion_column: str = "completion",
    messages_column: str = "messages",
    base_dir: Path | None = None,
    format: str = "auto",
    hub: HubSource | None = None,
) -> CompletionDataset:
    """Loads prompt/completion data for causal-LM fine-tuning.

    Each row is either a prompt/completion pair (two non-empty strings), used when both
    columns are present (and not null) in the row, or else a chat: ``messages_column``
    holds a list of ``{"role": ..., "content": ...}`` objects (in a CSV file, or anywhere,
    that list may be a JSON string), roles among ``system``, ``user`` and ``assistant``;
    its last message is the non-empty ``assistant`` answer (the completion) and the one or
    more messages before it are the prompt, kept as ``(role, content)`` turns. A file may
    mix both kinds of rows.

    Args:
        source: A key of ``BUILTIN_COMPLETIONS`` (the column arguments are then ignored), or
            a path to a ``.csv`` file with a header row, a ``.jsonl`` file (one JSON object
            per line), a ``.json`` file (a list of objects), or a directory written by
            ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (its ``train``
            split, or else all splits concatenated). Built-in names win over paths.
        prompt_column: The column (field) holding a plain-text prompt.
        completion_column: The column (field) holding its completion.
        messages_column: The column (field) holding a chat's messages.
        format: ``auto`` (each row in the first format whose columns it has) or one of the
            formats of :mod:`autopeft.data.formats` (``prompt_completion``, ``messages``,
            ``alpaca``, ``sharegpt``).
        hub: Read this dataset through ``datasets.load_dataset`` instead of ``source``.
        base_dir: The directory that relative paths resolve against (default: the working
            directory).

    Returns:
        The dataset, rows in source order, each with its origin (file and row). Built-ins
        are rendered once per process and cached.

    Raises:
        DatasetError: If the source is not found, is a text-classification built-in, has
            an unsupported format or no rows, lacks the columns, or has a row with an empty
            prompt or completion or malformed messages; the message names the file and row.
        UnsupportedError: If a save_to_disk directory is given and ``datasets`` is missing.
    """
    if format not in FORMAT_NAMES:
        raise DatasetError(f"dataset format {format!r} is unknown; expected one of {FORMAT_NAMES}")
    columns = _Columns(prompt_column, completion_column, messages_column, format)
    if hub is not None:
        table = hub_table(hub, base_dir)
        return _from_records(hub.name, _table_records(hub.name, table, columns), columns, hub.name)
    if source in BUILTIN_COMPLETIONS:
        return _builtin_completions(source)
    if source in BUILTIN_DATASETS:
        raise DatasetError(
            f"{source!r} is a built-in text-classification dataset, not prompt/completion "
            f"data; load it with load_dataset, or use a built-in completions dataset: "
            f"{', '.join(sorted(BUILTIN_COMPLETIONS))}"
        )
    if len({prompt_column, completion_column, messages_column}) != 3:
        raise DatasetError(
            f"prompt, completion and messages columns are {prompt_column!r}, "
            f"{completion_column!r} and {messages_column!r}; expected three different columns"
        )
    path = resolve_source(source, base_dir, BUILTIN_COMPLETIONS)
    if path.is_dir():
        return _from_records(path.name, _saved_records(path, columns), columns, str(path))
    return _from_records(path.stem, file_records(path, columns.check), columns, str(path))


def _saved_records(path: Path, columns: _Columns) -> Iterator[Record]:
    """Returns a save_to_disk table's rows, with only the pair and messages columns."""
    return _table_records(str(path), saved_table(path), columns)


def _table_records(where: str, table: Any, columns: _Columns) -> Iterator[Record]:
    """Returns a ``datasets`` table's rows, with only the columns some format reads."""
    columns.check(where, table.column_names)
    present = [c for c in dict.fromkeys(columns.wanted) if c in table.column_names]
    rows = zip(*(table[c] for c in present), strict=True)
    for number, row in enumerate(rows, start=1):
        yield f"{where}: row {number}", dict(zip(present, row, strict=True))


@cache
def _builtin_completions(name: str) -> CompletionDataset:
    prompts, completions = read_builtin_completions(name)
    origins = tuple(f"built-in dataset {name!r}: row {n}" for n in range(1, len(prompts) + 1))
    return CompletionDataset(name, prompts, completions, origins)


def _from_records(
    name: str, records: Iterable[Record], columns: _Columns, origin: str
) -> CompletionDataset:
    prompts: list[Prompt] = []
    completions: list[str] = []
    origins: list[str] = []
    for where, record in records:
        prompt, completion = _example(record, columns, where)
        prompts.append(prompt)
        completions.append(completion)
        origins.append(where)
    if not prompts:
        raise DatasetError(f"{origin}: no rows; expected prompt/completion pairs or chat messages")
    return CompletionDataset(name, tuple(prompts), tuple(completions), tuple(origins))


def _example(record: Mapping[str, Any], columns: _Columns, where: str) -> tuple[Prompt, str]:
    """Returns one row's (prompt, completion) in the spec's format, or with ``auto`` from its
    pair if present, else its messages, else its Alpaca or ShareGPT columns."""
    fmt = columns.format
    if fmt == "auto":
        native = columns.prompt in record and columns.completion in record
        if not native and columns.messages not in record:
            fmt = columns.detect(record) or "auto"
    if fmt == "prompt_completion":
        columns.check(where, list(record))
        return (
            _text(record[columns.prompt], columns.prompt, where),
            _text(record[columns.completion], columns.completion, where),
        )
    if fmt == "messages":
        columns.check(where, list(record))
        return _chat(record[columns.messages], columns.messages, where)
    if fmt == "alpaca":
        columns.as_format(fmt).check(where, list(record))
        return _chat(alpaca_messages(record, where), "output", where)
    if fmt == "sharegpt":
        columns.as_format(fmt).check(where, list(record))
        value = record[SHAREGPT]
        if isinstance(value, str) and value.strip():
            value = parse_json(value, f"{where}: column {SHAREGPT!r}")
        return _chat(sharegpt_messages(value, where), SHAREGPT, where)
    has_pair = columns.prompt in record and columns.completion in record
    filled_pair = has_pair and all(
        record[c] is not None for c in (columns.prompt, columns.completion)
    )
    has_messages = record.get(columns.messages) is not None
    if filled_pair or (has_pair and not has_messages):
        return (
            _text(record[columns.prompt], columns.prompt, where),
            _text(record[columns.completion], columns.completion, where),
        )
    if columns.messages in record:
        return _chat(record[columns.messages], columns.messages, where)
    raise columns.missing(where, list(record))


def _text(value: Any, column: str, where: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: column {column!r} is empty; expected a non-empty text")
    if not isinstance(value, str):
        raise DatasetError(
            f"{where}: column {column!r} is {value!r} ({type(value).__name__}); expected a string"
        )
    return value


def _chat(value: Any, column: str, where: str) -> tuple[tuple[Message, ...], str]:
    """Parses a messages value into (the turns before the answer, the assistant answer)."""
    expected = (
        'expected a list of {"role": ..., "content": ...} objects ending with the '
        "assistant's answer"
    )
    if isinstance(value, str) and value.strip():
        value = parse_json(value, f"{where}: column {column!r}")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: column {column!r} is empty; {expected}")
    if not isinstance(value, list):
        raise DatasetError(
            f"{where}: column {column!r} is a {type(value).__name__} ({_short(value)}); {expected}"
        )
    if len(value) < 2:
        raise DatasetError(
            f"{where}: column {column!r} has {len(value)} message(s); expected at least 2: "
            "one or more prompt messages, then the assistant's answer"
        )
    turns = [_message(item, column, n, where) for n, item in enumerate(value, start=1)]
    role, answer = turns[-1]
    if role != "assistant":
        raise DatasetError(
            f"{where}: column {column!r}: the last message (message {len(turns)}) has role "
            f"{role!r}; expected 'assistant' (the answer to learn)"
        )
    if not answer.strip():
        raise DatasetError(
            f"{where}: column {column!r}: the last message (message {len(turns)}) is empty; "
            "expected a non-empty assistant answer"
        )
    return tuple(turns[:-1]), answer


def _message(item: Any, column: str, number: int, where: str) -> Message:
    at = f"{where}: column {column!r} message {number}"
    if not isinstance(item, Mapping):
        raise DatasetError(
            f"{at} is a {type(item).__name__} ({_short(item)}); "
            'expected an object {"role": ..., "content": ...}'
        )
    role = item.get("role")
    if role not in ROLES:
        raise DatasetError(f"{at}: role {role!r}; expected one of {', '.join(ROLES)}")
    content = item.get("content")
    if not isinstance(content, str):
        raise DatasetError(
            f"{at}: content {_short(content)} ({type(content).__name__}); expected a string"
        )
    return role, content


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
