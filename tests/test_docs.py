"""The docs generated from the code: no undocumented field, committed schemas up to date, shipped
YAML files valid against them, and every command the docs show exists with the flags shown."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.spec.schema import KINDS, json_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_LINE = {"spec": "studies", "space": "search_spaces"}


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "tools" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_field_command_route_and_benchmark_is_documented() -> None:
    files, gaps = _gen_docs().generate()
    assert list(gaps) == []
    spec_page = files[ROOT / "docs" / "reference" / "spec.md"]
    assert "`budget_log`" in files[ROOT / "docs" / "reference" / "space.md"]
    assert "`gradient_checkpointing`" in spec_page and "`direction`" in spec_page
    assert "## `autopeft schema`" in files[ROOT / "docs" / "reference" / "cli.md"]
    assert "`use_dora`" in files[ROOT / "docs" / "reference" / "methods.md"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_spec_and_space_field_has_a_description(kind: str) -> None:
    gen = _gen_docs()
    gaps = gen.Gaps()
    page = gen.model_page("t", "", json_schema(kind), gaps)
    assert list(gaps) == []
    assert "`budget_log`" in page if kind == "space" else "`gradient_checkpointing`" in page


def test_a_field_without_a_description_is_a_gap() -> None:
    from autopeft.core.validation import StrictModel

    class Documented(StrictModel):
        ok: int = 0
        """Has one."""
        bare: int = 0

    gen = _gen_docs()
    gaps = gen.Gaps()
    gen.model_page("t", "", Documented.model_json_schema(), gaps)
    assert gaps == ["Documented.bare has no description (add a docstring under the field)"]


@pytest.mark.parametrize("kind", KINDS)
def test_committed_schema_is_up_to_date(kind: str) -> None:
    committed = json.loads((ROOT / "docs" / "schema" / f"{kind}.json").read_text())
    assert committed == json_schema(kind), "stale: run `make docs` (python tools/gen_docs.py)"


@pytest.mark.parametrize("kind", KINDS)
def test_every_shipped_file_names_and_satisfies_its_schema(kind: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema(kind))
    files = sorted((ROOT / SCHEMA_LINE[kind]).glob("*.yaml"))
    assert files
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema=../docs/schema/{kind}.json", path
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path


def test_the_schema_rejects_what_validate_rejects() -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema("spec"))
    good = {"name": "x", "model": "minilm-l6", "dataset": "trec6", "search_space": "s.yaml"}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "n_trails": 3})  # a typo: unknown key
    assert not validator.is_valid({**good, "fidelity": {"max_steps": 0}})


def test_schema_command_prints_the_json_schema() -> None:
    result = CliRunner().invoke(app, ["schema", "space"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["title"] == "SearchSpace"
    bad = CliRunner().invoke(app, ["schema", "nope"])
    assert bad.exit_code == 2


def _doc_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) of every `autopeft ...` line in a code block of the docs and the README."""
    pages = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    found = []
    for page in dict.fromkeys(pages):
        lang = None  # the language of the fenced block we are in, or None outside one
        for line in page.read_text().splitlines():
            fence = re.match(r"\s*```(\w*)", line)
            if fence:
                lang = None if lang is not None else fence.group(1)
                continue
            line = line.split(" #")[0].strip().removeprefix("$ ")
            shell = lang in ("bash", "sh", "console", "") and line.startswith("autopeft ")
            if shell and "..." not in line and "|" not in line:
                found.append((page.name, shlex.split(line)[1:]))
    return found


def test_every_command_in_the_docs_exists_with_its_flags() -> None:
    import typer.main

    root = typer.main.get_command(app)
    commands = _doc_commands()
    assert len(commands) > 10
    for page, argv in commands:
        command, args = root, list(argv)
        while hasattr(command, "commands") and args and args[0] in command.commands:
            command = command.commands[args.pop(0)]
        assert not hasattr(command, "commands"), f"{page}: unknown command in {argv}"
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        known |= {o for p in root.params for o in p.opts} | {"--help"}
        for arg in args:
            flag = arg.split("=")[0]
            if flag.startswith("-") and flag not in ("-",):
                assert flag in known, f"{page}: {' '.join(argv)}: {flag} is not an option"


def _tutorial(name: str, substitutions: dict[str, str]) -> list[list[str]]:
    commands = [argv for page, argv in _doc_commands() if page == name]
    text = json.dumps(commands)
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return json.loads(text)


@pytest.mark.slow
def test_first_study_and_export_tutorials_run(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftConfig

    from tests.conftest import write_tiny_csv

    monkeypatch.chdir(tmp_path)
    write_tiny_csv(tmp_path / "reviews.csv")
    small = {'"minilm-l6"': json.dumps(str(tiny_bert_dir)), '"12"': '"2"', '"100"': '"2"'}
    steps = _tutorial("first-study.md", small) + _tutorial("export-to-trl.md", small)
    assert [argv[0] for argv in steps][:3] == ["init", "validate", "run"]
    for argv in steps:
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, f"autopeft {' '.join(argv)}:\n{result.output}"
    assert PeftConfig.from_pretrained(str(tmp_path / "adapter")).peft_type.value == "LORA"


@pytest.mark.slow
def test_own_model_tutorial_runs(
    tmp_path: Path, tiny_causal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_formats import _jsonl, _rows

    monkeypatch.chdir(tmp_path)
    _jsonl(tmp_path / "support.jsonl", _rows("alpaca", 40))
    hub_id = json.dumps("Qwen/Qwen2.5-0.5B-Instruct")
    steps = _tutorial("own-model-gpu.md", {hub_id: json.dumps(str(tiny_causal_dir))})
    assert [argv[0] for argv in steps] == ["init", "run"]
    steps[0] += ["--trials", "2", "--max-steps", "2"]  # reduced size: 2 trials of 2 steps
    for argv in steps:
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, f"autopeft {' '.join(argv)}:\n{result.output}"
    assert (tmp_path / "autopeft.db").is_file()
