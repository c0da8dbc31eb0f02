"""Tests of autopeft.data.completions: prompt/completion loading, built-ins and splits."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from autopeft.data import (
    BUILTIN_COMPLETIONS,
    BUILTIN_DATASETS,
    CompletionDataset,
    Splits,
    TextDataset,
    load_completions,
    load_dataset,
    split_dataset,
)
from autopeft.data import completions as completions_module
from autopeft.exceptions import DatasetError

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]
CHAT_PROMPT = (("system", "Be brief."), ("user", "2+2?"))


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _toy(n: int) -> CompletionDataset:
    return CompletionDataset(
        "toy",
        tuple(f"prompt {i}" for i in range(n)),
        tuple(f"answer {i}" for i in range(n)),
        tuple(f"toy.jsonl: line {i + 1}" for i in range(n)),
    )


# --- formats ---------------------------------------------------------------------------------


def test_csv_pairs(tmp_path: Path) -> None:
    rows = [["Say hi", "hi"], ["Count, to two", " 1 2"]]
    _write_csv(tmp_path / "data.csv", ["prompt", "completion"], rows)
    ds = load_completions("data.csv", base_dir=tmp_path)
    assert ds.name == "data"
    assert ds.prompts == ("Say hi", "Count, to two")
    assert ds.completions == ("hi", " 1 2")  # kept verbatim: leading spaces matter to an LM
    assert ds.origins == (
        f"{tmp_path / 'data.csv'}: row 1 (line 2)",
        f"{tmp_path / 'data.csv'}: row 2 (line 3)",
    )


def test_csv_messages_as_json_string(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "chat.csv", ["id", "messages"], [["a", json.dumps(CHAT)]])
    ds = load_completions(str(path))
    assert ds.prompts == (CHAT_PROMPT,)
    assert ds.completions == ("4",)


def test_jsonl_pairs_and_messages_mixed(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Say hi", "completion": "hi"},
        {"messages": CHAT},
        {"prompt": "p", "completion": "c", "messages": CHAT},  # the pair wins
        {"prompt": None, "completion": None, "messages": CHAT},  # null pair: the chat
    ]
    path = _write_jsonl(tmp_path / "mix.jsonl", rows)
    path.write_text(path.read_text() + "\n\n", encoding="utf-8")  # blank lines are skipped
    ds = load_completions(str(path))
    assert ds.prompts == ("Say hi", CHAT_PROMPT, "p", CHAT_PROMPT)
    assert ds.completions == ("hi", "4", "c", "4")
    assert ds.origins == tuple(f"{path}: line {n}" for n in (1, 2, 3, 4))


def test_json_list_with_custom_columns(tmp_path: Path) -> None:
    rows = [
        {"q": "Capital of France?", "a": "Paris"},
        {"chat": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]},
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    ds = load_completions(
        str(path), prompt_column="q", completion_column="a", messages_column="chat"
    )
    assert ds.prompts == ("Capital of France?", (("user", "Hi"),))
    assert ds.completions == ("Paris", "Hey")
    assert ds.origins == (f"{path}: row 1", f"{path}: row 2")


def test_message_extra_keys_are_ignored(tmp_path: Path) -> None:
    chat = [
        {"role": "user", "content": "Hi", "name": None},
        {"role": "assistant", "content": "Hey", "name": "bot"},
    ]
    ds = load_completions(str(_write_jsonl(tmp_path / "d.jsonl", [{"messages": chat}])))
    assert (ds.prompts, ds.completions) == (((("user", "Hi"),),), ("Hey",))


def test_save_to_disk_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    pairs = datasets.Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", "y"]})
    pairs.save_to_disk(str(tmp_path / "pairs"))
    ds = load_completions("pairs", base_dir=tmp_path)
    assert (ds.name, ds.prompts, ds.completions) == ("pairs", ("a", "b"), ("x", "y"))
    assert ds.origins == (f"{tmp_path / 'pairs'}: row 1", f"{tmp_path / 'pairs'}: row 2")
    chats = datasets.Dataset.from_dict({"messages": [CHAT]})
    other = datasets.Dataset.from_dict({"messages": [CHAT[1:]]})
    datasets.DatasetDict({"train": chats, "test": other}).save_to_disk(str(tmp_path / "dd"))
    loaded = load_completions(str(tmp_path / "dd"))
    assert (loaded.prompts, loaded.completions) == ((CHAT_PROMPT,), ("4",))
    with pytest.raises(
        DatasetError,
        match=r"pairs: no 'q', 'a' or 'messages' column; .*columns are: prompt, completion$",
    ):
        load_completions(str(tmp_path / "pairs"), prompt_column="q", completion_column="a")


class _FakeTable:
    """Stands in for a ``datasets.Dataset``: column names and whole-column reads."""

    def __init__(self, columns: dict[str, list[Any]]) -> None:
        self.columns = columns
        self.column_names = list(columns)

    def __getitem__(self, column: str) -> list[Any]:
        return self.columns[column]


def test_saved_rows_with_null_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrow tables give every row every column; a null pair falls back to the chat."""
    table = _FakeTable(
        {
            "prompt": ["p", None],
            "completion": ["c", None],
            "messages": [None, CHAT],
            "unused": [1, 2],
        }
    )
    monkeypatch.setattr(completions_module, "saved_table", lambda path: table)
    (tmp_path / "saved").mkdir()
    ds = load_completions(str(tmp_path / "saved"))
    assert ds.name == "saved"
    assert (ds.prompts, ds.completions) == (("p", CHAT_PROMPT), ("c", "4"))
    assert ds.origins[1] == f"{tmp_path / 'saved'}: row 2"
    monkeypatch.setattr(
        completions_module, "saved_table", lambda path: _FakeTable({"prompt": ["p"]})
    )
    with pytest.raises(DatasetError, match=r"saved: no 'completion' column;.*columns are: prompt"):
        load_completions(str(tmp_path / "saved"))


# --- errors ----------------------------------------------------------------------------------


def test_missing_completion_column_in_csv_names_file_and_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "data.csv", ["prompt", "answer"], [["p", "a"]])
    expected = (
        f"{path}: no 'completion' column; expected the columns of a known format: "
        "prompt_completion ('prompt' and 'completion'), messages (a chat 'messages' column), "
        "alpaca ('instruction', optional 'input', 'output'), sharegpt ('conversations' with "
        "from/value turns); columns are: prompt, answer"
    )
    with pytest.raises(DatasetError) as info:
        load_completions(str(path))
    assert str(info.value) == expected


def test_missing_completion_field_in_jsonl_names_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "data.jsonl", [{"messages": CHAT}, {"prompt": "p"}])
    with pytest.raises(
        DatasetError, match=r"data\.jsonl: line 2: no 'completion' column; .*columns are: prompt$"
    ):
        load_completions(str(path))


MESSAGE_ERRORS = [
    ({"prompt": "p", "completion": "  "}, r"column 'completion' is empty"),
    ({"prompt": "", "completion": "c"}, r"column 'prompt' is empty"),
    ({"prompt": "p", "completion": 3}, r"column 'completion' is 3 \(int\); expected a string"),
    ({"messages": {"role": "user"}}, r"column 'messages' is a dict .*expected a list of"),
    ({"messages": "not json"}, r"column 'messages': invalid JSON"),
    ({"messages": None}, r"column 'messages' is empty"),
    ({"messages": CHAT[2:]}, r"column 'messages' has 1 message\(s\); expected at least 2"),
    ({"messages": []}, r"column 'messages' has 0 message\(s\)"),
    (
        {"messages": [{"role": "bot", "content": "x"}, CHAT[2]]},
        r"column 'messages' message 1: role 'bot'; expected one of system, user, assistant",
    ),
    (
        {"messages": CHAT[:2]},
        r"column 'messages': the last message \(message 2\) has role 'user'; expected 'assistant'",
    ),
    (
        {"messages": [CHAT[1], {"role": "assistant", "content": " "}]},
        r"column 'messages': the last message \(message 2\) is empty; expected a non-empty "
        "assistant answer",
    ),
    (
        {"messages": [CHAT[1], "4"]},
        r"column 'messages' message 2 is a str \('4'\); expected an object",
    ),
    (
        {"messages": [{"role": "user", "content": 5}, CHAT[2]]},
        r"column 'messages' message 1: content 5 \(int\); expected a string",
    ),
]


@pytest.mark.parametrize(("row", "pattern"), MESSAGE_ERRORS)
def test_bad_row_in_jsonl_names_file_and_line(
    tmp_path: Path, row: dict[str, Any], pattern: str
) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"messages": CHAT}, row])
    with pytest.raises(DatasetError, match=rf"bad\.jsonl: line 2: {pattern}"):
        load_completions(str(path))


def test_empty_completion_in_csv_names_file_and_row(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "bad.csv", ["prompt", "completion"], [["p", "c"], ["q", ""]])
    with pytest.raises(
        DatasetError, match=r"bad\.csv: row 2 \(line 3\): column 'completion' is empty"
    ):
        load_completions(str(path))


@pytest.mark.parametrize(
    ("cell", "pattern"),
    [
        (json.dumps(CHAT[2:]), r"column 'messages' has 1 message\(s\)"),
        (
            json.dumps(CHAT[:2]),
            r"column 'messages': the last message \(message 2\) has role 'user'",
        ),
        ('{"role": "user"}', r"column 'messages' is a dict"),
        ("[{", r"column 'messages': invalid JSON"),
    ],
)
def test_bad_messages_in_csv_names_file_and_row(tmp_path: Path, cell: str, pattern: str) -> None:
    path = _write_csv(tmp_path / "bad.csv", ["messages"], [[json.dumps(CHAT)], [cell]])
    with pytest.raises(DatasetError, match=rf"bad\.csv: row 2 \(line 3\): {pattern}"):
        load_completions(str(path))


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [
        ("e.csv", "", r"e\.csv: file is empty"),
        ("h.csv", "prompt,completion\n", r"h\.csv: no rows; expected"),
        ("e.jsonl", "\n", r"e\.jsonl: no rows; expected"),
        ("e.json", "[]", r"e\.json: no rows; expected"),
        ("o.json", '{"prompt": "p"}', r"o\.json: top-level JSON value is dict"),
        ("d.txt", "p\n", r"d\.txt: unsupported file type '\.txt'"),
    ],
)
def test_empty_or_unsupported_file(tmp_path: Path, name: str, content: str, pattern: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=pattern):
        load_completions(str(tmp_path / name))


def test_same_column_twice_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected three different columns"):
        load_completions("x.jsonl", prompt_column="text", completion_column="text")


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.jsonl.*not found"):
        load_completions("nope.jsonl", base_dir=tmp_path)
    with pytest.raises(DatasetError, match=r"unknown dataset 'trec6-qa'.*are: trec6_qa$"):
        load_completions("trec6-qa", base_dir=tmp_path)


# --- built-ins -------------------------------------------------------------------------------


def test_trec6_qa_rows_and_answers() -> None:
    ds = load_completions("trec6_qa")
    assert set(BUILTIN_COMPLETIONS) == {"trec6_qa"} and BUILTIN_COMPLETIONS["trec6_qa"]
    assert len(ds) == 5382
    assert Counter(ds.completions) == {
        "entity": 1245,
        "human": 1215,
        "description": 1153,
        "number": 859,
        "location": 824,
        "abbreviation": 86,
    }
    questions = load_dataset("trec6")
    system = (
        "system",
        "Say what kind of answer the question asks for, in one word: abbreviation, "
        "description, entity, human, location or number.",
    )
    assert ds.prompts[0] == (system, ("user", questions.texts[0]))
    words = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity"}
    words |= {"HUM": "human", "LOC": "location", "NUM": "number"}
    assert ds.completions == tuple(words[questions.label_names[i]] for i in questions.labels)
    assert all(len(p) == 2 and p[0] == system and p[1][0] == "user" for p in ds.prompts)
    assert ds.origins[4] == "built-in dataset 'trec6_qa': row 5"
    assert load_completions("trec6_qa") is ds  # cached


def test_builtins_are_rejected_by_the_other_loader(tmp_path: Path) -> None:
    (tmp_path / "trec6_qa").mkdir()  # built-in names win over paths
    with pytest.raises(DatasetError, match=r"'trec6_qa' is a built-in completions.*load_compl"):
        load_dataset("trec6_qa", base_dir=tmp_path)
    with pytest.raises(DatasetError, match=r"'trec6' is a built-in text-classification.*load_data"):
        load_completions("trec6")
    assert "trec6_qa" not in BUILTIN_DATASETS


# --- CompletionDataset -----------------------------------------------------------------------


def test_subset_keeps_origins_and_strata_are_zero() -> None:
    ds = _toy(4)
    part = ds.subset([3, 1], name="part")
    assert (part.name, part.prompts, part.completions, part.origins) == (
        "part",
        ("prompt 3", "prompt 1"),
        ("answer 3", "answer 1"),
        ("toy.jsonl: line 4", "toy.jsonl: line 2"),
    )
    assert ds.strata() == (0, 0, 0, 0)
    with pytest.raises(DatasetError, match=r"index 4 out of range; expected 0\.\.3"):
        ds.subset([4])


def test_constructor_checks_lengths_and_freezes_chats() -> None:
    with pytest.raises(DatasetError, match="2 prompts, 1 completions and 2 origins"):
        CompletionDataset("bad", ("a", "b"), ("x",), ("1", "2"))
    chat = [["user", "hi"]]
    ds = CompletionDataset("c", [chat], ["x"], ["o"])  # type: ignore[arg-type]
    assert ds.prompts == ((("user", "hi"),),)
    hash(ds)  # every field is a tuple: the dataset is hashable


# --- splits ----------------------------------------------------------------------------------


def test_split_is_complete_disjoint_and_sized() -> None:
    ds = _toy(101)
    splits = split_dataset(ds, validation=0.1, test=0.2, seed=3)
    assert isinstance(splits, Splits)
    parts = (splits.train, splits.validation, splits.test)
    assert [len(p) for p in parts] == [71, 10, 20]
    assert [p.name for p in parts] == ["toy/train", "toy/validation", "toy/test"]
    origins = [set(p.origins) for p in parts]
    assert set.union(*origins) == set(ds.origins)
    assert sum(len(o) for o in origins) == len(ds)
    for part in parts:  # every row keeps its own prompt, answer and origin together
        for prompt, answer, origin in zip(
            part.prompts, part.completions, part.origins, strict=True
        ):
            i = ds.origins.index(origin)
            assert (prompt, answer) == (ds.prompts[i], ds.completions[i])


def test_split_deterministic_and_seed_dependent() -> None:
    ds = _toy(50)
    first = split_dataset(ds, validation=0.2, test=0.2, seed=1)
    assert split_dataset(ds, validation=0.2, test=0.2, seed=1) == first
    other = split_dataset(ds, validation=0.2, test=0.2, seed=2)
    assert other.test.origins != first.test.origins


def test_split_pinned_output() -> None:
    """Guards cross-machine reproducibility of completion splits (PCG64 is portable)."""
    splits = split_dataset(_toy(10), validation=0.2, test=0.2, seed=0)
    parts = (splits.train, splits.validation, splits.test)
    ids = [tuple(int(c.split()[1]) for c in p.completions) for p in parts]
    assert ids == [(0, 9, 3, 1, 8, 5), (6, 4), (2, 7)]


def test_split_too_small() -> None:
    smallest = split_dataset(_toy(3), validation=0.1, test=0.1, seed=0)
    assert [len(p) for p in (smallest.train, smallest.validation, smallest.test)] == [1, 1, 1]
    pattern = r"2 examples leave the validation split empty; expected at least 3 examples"
    with pytest.raises(DatasetError, match=pattern):
        split_dataset(_toy(2), validation=0.2, test=0.2, seed=0)


def test_trec6_qa_split() -> None:
    splits = split_dataset(load_completions("trec6_qa"), validation=0.1, test=0.1, seed=0)
    assert [len(p) for p in (splits.train, splits.validation, splits.test)] == [4306, 538, 538]


# --- TextDataset is unchanged ----------------------------------------------------------------


def test_text_split_unchanged_and_stratified_by_labels() -> None:
    """Pinned from the split before split_dataset took CompletionDataset too."""
    ds = TextDataset("toy", tuple(f"t{i}" for i in range(12)), (0, 1, 2) * 4, ("a", "b", "c"))
    assert ds.strata() == ds.labels
    splits = split_dataset(ds, validation=0.25, test=0.25, seed=5)
    assert splits.train.texts == ("t6", "t0", "t4", "t8", "t2", "t1")
    assert splits.validation.texts == ("t11", "t7", "t9")
    assert splits.test.texts == ("t5", "t10", "t3")
    assert splits.train.label_names == ("a", "b", "c")
    with pytest.raises(DatasetError, match="expected at least one class with 3 or more"):
        split_dataset(ds.subset(range(6)), validation=0.2, test=0.2, seed=0)
