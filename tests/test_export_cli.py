"""``autopeft export --format``: every format from a stored study, and bad input (an unknown
format, a trial that did not complete, a method LLaMA-Factory cannot express) as one
``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from tests.conftest import assert_user_error, write_study, write_tiny_csv

pytestmark = pytest.mark.slow
runner = CliRunner()


def cli(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def ran(study_dir: Path) -> str:
    result = cli("run", study_dir / "study.yaml", "-q")
    assert result.exit_code == 0, result.output
    return f"sqlite:///{study_dir / 'studies.db'}"


def test_every_format_from_the_cli(
    ran: str, study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(study_dir)  # the spec's dataset path is relative to it
    common = ["tiny", "--storage", ran, "--pick", "knee"]
    trl = cli("export", *common, "--format", "trl", "--with-data", "--out", tmp_path / "trl")
    assert trl.exit_code == 0, trl.output
    names = sorted(str(p.relative_to(tmp_path / "trl")) for p in (tmp_path / "trl").rglob("*.*"))
    assert names == [
        "README.md", "adapter_config.json", "data/train.jsonl", "data/validation.jsonl",
        "sft_config.json", "train.py", "training.json",
    ]  # fmt: skip
    recipe = json.loads((tmp_path / "trl" / "training.json").read_text())
    assert recipe["data"]["labels"] == ["neg", "pos"] and recipe["model"]["num_labels"] == 2
    rows = (tmp_path / "trl" / "data" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 64 and set(json.loads(rows[0])) == {"text", "label"}  # train_examples

    lf = cli("export", *common, "--format", "llamafactory", "--out", tmp_path / "lf")
    assert lf.exit_code == 0, lf.output
    text = (tmp_path / "lf" / "llamafactory.yaml").read_text()
    printed = lf.output.split("lost (llamafactory cannot express):\n")[1].splitlines()
    assert printed and all(f"#   - {line.strip()[2:]}\n" in text for line in printed)
    assert yaml.safe_load(text)["finetuning_type"] == "lora"

    ax = cli("export", *common, "--format", "axolotl", "--out", tmp_path / "ax")
    assert ax.exit_code == 0 and (tmp_path / "ax" / "axolotl.yaml").is_file(), ax.output


def test_unknown_format_and_incomplete_trial_write_nothing(ran: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    unknown = cli(
        "export", "tiny", "--storage", ran, "--trial", "0", "--format", "keras", "-o", out
    )
    assert_user_error(unknown, "unknown export format 'keras'", "peft, trl, axolotl, llamafactory")
    assert not out.exists()
    with sqlite3.connect(ran.removeprefix("sqlite:///")) as con:
        con.execute("update trials set state = 'FAIL' where number = 0")
    failed = cli("export", "tiny", "--storage", ran, "--trial", "0", "-o", out)
    assert_user_error(failed, "trial 0 of study 'tiny' is FAIL, not COMPLETE")
    assert not out.exists()


def test_llamafactory_refuses_a_method_it_has_no_flag_for(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(
        "version: 1\nname: ia3\nmethod: ia3\nmax_trainable_params: 100000\n"
        "module_presets: {kvd: [k, v, down]}\nparameters:\n  target_modules: kvd\n"
        "  active: {type: int, choices: [0, 1], per: [layer, module]}\n"
    )
    write_study(tmp_path, model=str(tiny_bert_dir), n_trials=1)
    assert cli("run", tmp_path / "study.yaml", "-q").exit_code == 0
    url, out = f"sqlite:///{tmp_path / 'studies.db'}", tmp_path / "out"
    args = ("export", "tiny", "--storage", url, "--trial", "0", "-o", out)
    refused = cli(*args, "--format", "llamafactory")
    assert_user_error(refused, "--format llamafactory cannot express a IA3 adapter")
    assert not out.exists()
    fine = cli(*args, "--format", "trl")
    assert fine.exit_code == 0 and (out / "train.py").is_file(), fine.output
