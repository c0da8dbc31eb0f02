"""``autopeft init``: a spec and a space sized to a model and a file it has never seen, that
``autopeft run`` runs with no edits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from tests.conftest import assert_user_error
from tests.test_formats import _jsonl, _rows

runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.slow
def test_init_then_run_completes_a_3_trial_study_with_no_edits(
    tiny_causal_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _jsonl(tmp_path / "support.jsonl", _rows("alpaca", 60))
    made = cli(
        "init", "--model", tiny_causal_dir, "--data", "support.jsonl", "--out", "study",
        "--trials", 3, "--max-steps", 4,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "alpaca rows (causal_lm)" in made.output and "1% of the model" in made.output
    spec = yaml.safe_load((tmp_path / "study" / "study.yaml").read_text())
    space = yaml.safe_load((tmp_path / "study" / "space.yaml").read_text())
    assert spec["task"] == "causal_lm" and spec["n_trials"] == 3
    assert spec["dataset"]["source"] == str(tmp_path / "support.jsonl")
    # the tiny Llama: 2 layers, every builtin preset present; budget 1 % of its parameters
    assert space["parameters"]["target_modules"]["choices"] == [
        "qv", "qkv", "attn", "mlp", "all_linear",
    ]  # fmt: skip
    assert space["max_trainable_params"] == 1_972_000 // 100
    ran = cli("run", tmp_path / "study" / "study.yaml", "-q")
    assert ran.exit_code == 0, ran.output
    from autopeft.results.views import load_view

    view = load_view(spec["name"], f"sqlite:///{tmp_path / 'autopeft.db'}")
    assert [r.state for r in view.records] == ["COMPLETE"] * 3


def test_init_sizes_a_classification_study_on_sentence_pairs(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = ["premise,hypothesis,label"] + [
        f"a {w} film {i},it is {'good' if i % 2 else 'bad'},{i % 2}"
        for i, w in enumerate(["fine", "dull"] * 20)
    ]
    (tmp_path / "nli.csv").write_text("\n".join(rows) + "\n")
    made = cli("init", "--model", tiny_bert_dir, "--data", "nli.csv", "--out", "o")
    assert made.exit_code == 0, made.output
    spec = yaml.safe_load((tmp_path / "o" / "study.yaml").read_text())
    assert spec["task"] == "seq_cls"
    assert spec["dataset"]["text_pair_column"] == "hypothesis"
    assert spec["fidelity"]["seq_len"] == 32
    again = cli("init", "--model", tiny_bert_dir, "--data", "nli.csv", "--out", "o")
    assert_user_error(again, "study.yaml exists already", "--force")


def test_init_on_data_of_no_known_format_writes_nothing(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "odd.jsonl").write_text(json.dumps({"question": "q", "reply": "r"}) + "\n")
    result = cli("init", "--model", tiny_bert_dir, "--data", "odd.jsonl", "--out", "o")
    assert_user_error(result, "columns (question, reply)", "alpaca", "sharegpt", "classification")
    assert not (tmp_path / "o").exists()
    wrong_task = cli("init", "--model", tiny_bert_dir, "--data", "odd.jsonl", "--task", "causal_lm")
    assert_user_error(wrong_task, "match no known format")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.jsonl"]
