"""The CLI, in-process through typer's CliRunner: the happy path and every kind of bad input."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.results.views import load_view
from tests.conftest import assert_user_error

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def ran(study_dir: Path) -> Path:
    """A study directory whose study 'tiny' has run 3 trials."""
    result = cli("run", study_dir / "study.yaml", "-q")
    assert result.exit_code == 0, result.output
    return study_dir


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


def test_help_lists_every_command() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("validate", "run", "studies", "show", "front", "export"):
        assert command in result.output


def test_validate_study_and_space(study_dir: Path) -> None:
    ok = cli("validate", study_dir / "study.yaml")
    assert (
        ok.exit_code == 0
        and "ok: study 'tiny'" in ok.output
        and "bert model with 2 layers" in ok.output
    )
    ok = cli("validate", study_dir / "space.yaml")
    assert ok.exit_code == 0 and "ok: search space 'tiny_lora'" in ok.output


def test_run_show_front_export_and_reload_with_plain_peft(ran: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{ran / 'studies.db'}"
    listing = cli("studies", "--storage", url)
    assert listing.exit_code == 0 and "tiny" in listing.output and "complete 3" in listing.output
    shown = cli("show", "tiny", "--storage", url)
    assert (
        shown.exit_code == 0
        and "trials: complete 3" in shown.output
        and "Pareto front" in shown.output
    )

    front_json = cli("front", "tiny", "--storage", url, "--format", "json")
    rows = json.loads(front_json.stdout)
    assert rows and {"trial", "accuracy", "trainable_params", "peak_memory_mb", "placement"} <= set(
        rows[0]
    )
    front_csv = cli("front", "tiny", "--storage", url, "--format", "csv")
    assert front_csv.stdout.splitlines()[0].startswith("trial,reference,over_budget,accuracy")
    plot = tmp_path / "front.png"
    table = cli("front", "tiny", "--storage", url, "--plot", plot)
    assert table.exit_code == 0 and "Pareto front of tiny" in table.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "front_history.png").read_bytes()[:4] == b"\x89PNG"

    out = tmp_path / "export"
    exported = cli("export", "tiny", "--storage", url, "--pick", "knee", "--out", out)
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "training.json",
    ]
    number = int(exported.output.split("exported trial ")[1].split()[0])
    record = next(r for r in load_view("tiny", url).records if r.number == number)

    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = PeftConfig.from_pretrained(str(out))
    base = AutoModelForSequenceClassification.from_pretrained(config.base_model_name_or_path)
    model = get_peft_model(base, config)
    ranks = {
        n.removeprefix("base_model.model."): m.lora_A["default"].weight.shape[0]
        for n, m in model.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    }
    assert ranks == record.module_sizes and ranks

    by_number = cli("export", "tiny", "--storage", url, "--trial", "0", "--out", tmp_path / "t0")
    assert by_number.exit_code == 0 and "exported trial 0" in by_number.output


def test_python_api_returns_the_peft_config(ran: Path) -> None:
    import autopeft

    url = f"sqlite:///{ran / 'studies.db'}"
    config = autopeft.load_peft_config(url, "tiny", pick="min-params")
    view = load_view("tiny", url)
    smallest = min(view.front(), key=lambda r: r.values["trainable_params"])
    expected = smallest.module_sizes
    assert sorted(config.target_modules) == sorted(expected)
    assert {n: config.rank_pattern.get(n, config.r) for n in expected} == expected


def test_bad_study_files_exit_2_and_leave_the_store_untouched(ran: Path) -> None:
    db = ran / "studies.db"
    before = _dump(db)
    spec = ran / "study.yaml"
    good = spec.read_text()

    spec.write_text("name: [unclosed\n")
    assert_user_error(cli("run", spec), "study.yaml", "malformed YAML")

    space = ran / "space.yaml"
    space_text = space.read_text()
    spec.write_text(good)
    space.write_text(space_text.replace("method: lora", "method: nope"))
    assert_user_error(cli("run", spec), "space.yaml:3", "unknown method 'nope'", "lora")

    space.write_text(space_text.replace("choices: [0, 1, 2, 4]", "low: -1, high: 4"))
    assert_user_error(cli("run", spec), "space.yaml", "parameters.rank", ">= 0", "-1")

    space.write_text(space_text)
    (ran / "bad.csv").write_text("sentence,label\nhello,a\nbye,b\n")
    spec.write_text(good.replace("source: data.csv", "source: bad.csv"))
    assert_user_error(cli("run", spec), "column 'text' not found", "sentence")

    spec.write_text(good.replace("max_steps: 4", "max_steps: 0"))
    assert_user_error(cli("run", spec), "study.yaml:", "fidelity.max_steps", "(got 0)")

    spec.write_text(good)
    assert _dump(db) == before


def test_unknown_study_and_bad_storage_urls(ran: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{ran / 'studies.db'}"
    assert_user_error(cli("show", "nope", "--storage", url), "no study named 'nope'", "tiny")
    assert_user_error(cli("front", "nope", "--storage", url), "no study named 'nope'")
    assert_user_error(
        cli("studies", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"), "no database file"
    )
    spec = ran / "study.yaml"
    assert_user_error(
        cli("run", spec, "--storage", "sqlite:////no/such/dir/x.db"),
        "cannot open storage",
        "does not exist",
    )
    assert_user_error(cli("run", spec, "--storage", "nosuchdb://host/db"), "cannot open storage")
    assert not Path("/no/such/dir").exists()


def test_export_needs_exactly_one_selector(ran: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{ran / 'studies.db'}"
    taken = tmp_path / "taken"
    (taken / "adapter_config.json").mkdir(parents=True)  # regression: was a traceback
    assert_user_error(
        cli("export", "tiny", "--storage", url, "--out", taken, "--trial", "0"),
        "cannot write",
        "it is a directory",
    )
    regular = tmp_path / "a-file"
    regular.write_text("x")
    assert_user_error(
        cli("front", "tiny", "--storage", url, "--plot", regular / "f.png"),
        "exists and is not a directory",
    )
    assert_user_error(cli("export", "tiny", "--storage", url, "--out", tmp_path), "exactly one")
    assert_user_error(
        cli(
            "export", "tiny", "--storage", url, "--out", tmp_path, "--trial", "0", "--pick", "knee"
        ),
        "exactly one",
    )
    assert_user_error(
        cli("export", "tiny", "--storage", url, "--out", tmp_path, "--trial", "99"), "no trial 99"
    )


def test_tables_written_to_a_pipe_are_not_wrapped_at_80_columns(monkeypatch):
    from autopeft.cli.common import PIPE_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert make_console().width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100  # the user's width wins
