"""Data in the formats it ships in: Alpaca, ShareGPT, OpenAI messages, sentence pairs, Parquet,
and datasets read through ``datasets`` (``dataset: {hub: …}``), all offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.data import HubSource, load_completions, load_dataset
from autopeft.exceptions import DatasetError
from autopeft.run.driver import run_study
from autopeft.tasks.causal_lm import CausalLanguageModeling, plain_chat, render_prompts
from tests.conftest import SPACE, assert_user_error, write_study, write_tiny_csv
from tests.test_causal_lm import ANSWERS, causal_study

WORDS = list(ANSWERS)


def _rows(kind: str, n: int = 60) -> list[dict]:
    rows = []
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        question, answer = f"is {word} movie {i % 9} positive ?", ANSWERS[word]
        if kind == "alpaca":
            rows.append({"instruction": "Answer yes or no.", "input": question, "output": answer})
        elif kind == "sharegpt":
            turns = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            rows.append({"conversations": turns})
        else:
            msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            rows.append({"messages": msgs})
    return rows


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_alpaca_rows_become_one_user_turn_and_the_answer(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Add.", "input": "2+2", "output": "4"},
            {"instruction": "Say hi.", "input": "", "output": "hi"},
        ],
    )
    ds = load_completions(str(path))
    assert ds.prompts == ((("user", "Add.\n\n2+2"),), (("user", "Say hi."),))
    assert ds.completions == ("4", "hi")
    assert load_completions(str(path), format="alpaca").prompts == ds.prompts


def test_sharegpt_turns_map_to_roles(tmp_path: Path) -> None:
    turns = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "2+2?"},
        {"from": "gpt", "value": "4"},
        {"from": "human", "value": "and 3+3?"},
        {"from": "gpt", "value": "6"},
    ]
    ds = load_completions(str(_jsonl(tmp_path / "s.jsonl", [{"conversations": turns}])))
    prompt = (("system", "Be brief."), ("user", "2+2?"), ("assistant", "4"), ("user", "and 3+3?"))
    assert (ds.prompts, ds.completions) == ((prompt,), ("6",))
    bad = [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]
    with pytest.raises(DatasetError, match=r"line 1: column 'conversations' turn 1: 'from'"):
        load_completions(str(_jsonl(tmp_path / "b.jsonl", [{"conversations": bad}])))


def test_an_explicit_format_reads_only_its_columns(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "m.jsonl", _rows("messages", 2))
    with pytest.raises(DatasetError, match="no 'conversations' column, which format 'sharegpt'"):
        load_completions(str(path), format="sharegpt")
    assert len(load_completions(str(path), format="messages")) == 2


def test_parquet_and_csv_alpaca_files(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows("alpaca", 4)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    from_parquet = load_completions(str(tmp_path / "a.parquet"))
    assert from_parquet.completions == tuple(r["output"] for r in rows)
    csv = tmp_path / "a.csv"
    csv.write_text("instruction,input,output\n" + "".join(f"Q,{i},A{i}\n" for i in range(3)))
    assert load_completions(str(csv)).completions == ("A0", "A1", "A2")


def test_chat_rows_without_a_chat_template_are_rendered_as_plain_turns(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    from autopeft.tasks.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_causal_dir)
    ds = load_completions(str(_jsonl(tmp_path / "a.jsonl", _rows("alpaca", 1))))
    templated = render_prompts(tokenizer, ds, chat=False)
    assert tokenizer.decode(templated[0]).startswith("user :")  # tiny template
    tokenizer.chat_template = None
    plain = render_prompts(tokenizer, ds, chat=False)
    expected = plain_chat(ds.prompts[0])  # type: ignore[arg-type]
    assert plain[0] == tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert expected.endswith("### Assistant:\n")


@pytest.mark.slow
def test_hub_datasets_load_through_datasets_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets
    import huggingface_hub.constants

    # both libraries read HF_HUB_OFFLINE once, at import (earlier tests imported them)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "my-sft-data"
    repo.mkdir()
    _jsonl(repo / "train.jsonl", _rows("sharegpt", 6))
    _jsonl(repo / "test.jsonl", _rows("sharegpt", 2))
    ds = load_completions("", hub=HubSource("my-sft-data", split="test"), base_dir=tmp_path)
    assert len(ds) == 2 and ds.completions == ("yes", "yes")
    saved = datasets.DatasetDict({"validation": datasets.Dataset.from_list(_rows("alpaca", 3))})
    saved.save_to_disk(str(tmp_path / "saved"))
    assert (
        len(load_completions("", hub=HubSource(str(tmp_path / "saved"), split="validation"))) == 3
    )
    with pytest.raises(DatasetError, match="has no split 'train'"):
        load_completions("", hub=HubSource(str(tmp_path / "saved")))
    with pytest.raises(DatasetError, match=r"dataset 'nobody/absent-dataset', split 'train'"):
        load_completions("", hub=HubSource("nobody/absent-dataset"))


def test_sentence_pairs_are_encoded_as_one_pair(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from autopeft.tasks.loading import load_tokenizer
    from autopeft.tasks.seq_cls import tokenize

    path = tmp_path / "nli.csv"
    path.write_text("premise,hypothesis,label\na cat sleeps,an animal rests,yes\nit rains,sun,no\n")
    ds = load_dataset(str(path), text_column="premise", text_pair_column="hypothesis")
    assert ds.text_pairs == ("an animal rests", "sun") and ds.label_names == ("no", "yes")
    assert ds.subset([1]).text_pairs == ("sun",)
    batch = tokenize(load_tokenizer(tiny_bert_dir), ds.texts, ds.labels, 16, ds.text_pairs)
    assert int(batch["token_type_ids"][0].max()) == 1  # the second segment is there
    with pytest.raises(DatasetError, match="column 'hypo' not found"):
        load_dataset(str(path), text_column="premise", text_pair_column="hypo")


def test_unknown_formats_are_one_error_listing_columns_and_formats(
    tiny_causal_dir: Path, tmp_path: Path
) -> None:
    spec = causal_study(tmp_path, tiny_causal_dir)
    _jsonl(tmp_path / "data.jsonl", [{"question": "q", "reply": "r"}])
    result = CliRunner().invoke(app, ["run", str(spec), "-q"])
    assert_user_error(
        result, "columns are: question, reply", "alpaca ('instruction'", "sharegpt", "messages"
    )
    assert not (tmp_path / "studies.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["alpaca", "sharegpt"])
def test_a_causal_lm_study_runs_on_the_file_as_shipped(
    kind: str, tiny_causal_dir: Path, tmp_path: Path
) -> None:
    spec = causal_study(tmp_path, tiny_causal_dir, n_trials=2, metric="eval_loss")
    _jsonl(tmp_path / "data.jsonl", _rows(kind))
    spec.write_text(spec.read_text().replace("seq_len: 24", "seq_len: 40"))
    data = CausalLanguageModeling().load_data(
        type("D", (), {"source": "data.jsonl", "prompt_column": "prompt",
                       "completion_column": "completion", "messages_column": "messages",
                       "format": "auto", "hub_source": None})(), tmp_path,
    )  # fmt: skip
    assert all(isinstance(p, tuple) for p in data.prompts)  # chat turns, templated
    outcome = run_study(spec)
    assert [r.state for r in outcome.records] == ["COMPLETE"] * 2
    assert all(r.metrics["eval_loss"] > 0 for r in outcome.records)


@pytest.mark.slow
def test_a_classification_study_runs_on_sentence_pairs_from_a_dataset_directory(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    write_tiny_csv(tmp_path / "single.csv")
    lines = (tmp_path / "single.csv").read_text().splitlines()[1:]
    rows = ["first,second,label"]
    for line in lines:
        text, label = line.rsplit(",", 1)
        rows.append(f"the review,{text},{label}")
    (tmp_path / "pairs").mkdir()  # a dataset directory, read through `datasets`
    (tmp_path / "pairs" / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(tmp_path, model=str(tiny_bert_dir), n_trials=2)
    spec.write_text(
        spec.read_text().replace(
            "dataset: {source: data.csv}",
            "dataset: {hub: pairs, split: train, text_column: first, text_pair_column: second}",
        )
    )
    outcome = run_study(spec)
    assert [r.state for r in outcome.records] == ["COMPLETE"] * 2
    assert all(0.0 <= r.values["accuracy"] <= 1.0 for r in outcome.records)


@pytest.mark.parametrize(
    "dataset, message",
    [
        ("{source: data.csv, hub: org/data}", "either source"),
        ("{source: data.csv, split: test}", "config and split apply to hub datasets only"),
        ("{text_column: t}", "needs source"),
        ("{source: data.csv, format: yaml}", "dataset.format"),
    ],
)
def test_bad_dataset_blocks_are_refused(dataset: str, message: str, tmp_path: Path) -> None:
    from autopeft.exceptions import StudySpecError
    from autopeft.spec import load_study

    (tmp_path / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(tmp_path, model="minilm-l6")
    spec.write_text(spec.read_text().replace("{source: data.csv}", dataset))
    with pytest.raises(StudySpecError, match=message):
        load_study(spec)
