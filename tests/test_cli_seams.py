"""CLI seams (issue 24): validate tells a spec from a space by its keys, read commands follow a
spec's `storage`, bad option values are one error line, JSON from `studies`/`show`,
`--version`, and distinct names for the two `--data-dir` options."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import autopeft
from autopeft.cli import app
from autopeft.run.validate import file_kind
from autopeft.storage.urls import study_location
from tests.conftest import SPACE, assert_user_error, write_study, write_tiny_csv

runner = CliRunner()


def cli(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A study directory whose spec names its own database; study 'tiny' has run 3 trials."""
    directory = tmp_path_factory.mktemp("seams")
    write_tiny_csv(directory / "data.csv")
    (directory / "space.yaml").write_text(SPACE.format(budget=4000))
    write_study(directory, model=str(tiny_bert_dir))
    result = cli("run", directory / "study.yaml", "-q")
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no database, and no $AUTOPEFT_STORAGE."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AUTOPEFT_STORAGE", raising=False)
    return tmp_path


# -- 1. validate: spec or space by the keys of each schema ----------------------------------------
def test_validate_tells_spec_from_space_by_their_keys(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: x\nmodel: m\n")  # no `search_space` yet: still a spec, by `model`
    assert file_kind(spec) == "spec"
    space = tmp_path / "p.yaml"
    space.write_text("name: x\nparameters: {}\n")
    assert file_kind(space) == "space"
    # a spec without the key the old rule looked at is checked as a spec, not as a space
    assert_user_error(cli("validate", spec), "s.yaml", "dataset: Field required")


def test_validate_refuses_a_file_of_both_kinds_or_neither(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("name: x\nmodel: m\nparameters: {}\n")
    assert_user_error(
        cli("validate", both),
        "both.yaml",
        "keys of both",
        "found: model, name, parameters",
        "a study spec needs dataset, model, name, search_space",
        "a search space needs max_trainable_params, name, parameters",
        "--kind spec|space",
    )
    neither = tmp_path / "neither.yaml"
    neither.write_text("version: 1\nname: x\n")
    assert_user_error(cli("validate", neither), "none of the keys of either", "found: name")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    assert_user_error(cli("validate", listed), "expected a mapping", "got list")
    # --kind settles it: the file is then checked as that kind, naming the stray key
    assert_user_error(
        cli("validate", both, "--kind", "space"), "unknown key 'model'", "allowed keys"
    )


# -- 2. read commands read the storage a spec names ------------------------------------------------
def test_read_commands_given_a_spec_read_its_storage(ran: Path, elsewhere: Path) -> None:
    spec = ran / "study.yaml"
    assert study_location(str(spec)) == ("tiny", f"sqlite:///{ran / 'studies.db'}", spec)
    assert study_location("tiny", "sqlite:///x.db") == ("tiny", "sqlite:///x.db", None)

    shown = cli("show", spec)
    assert shown.exit_code == 0 and "tiny" in shown.stdout and "complete 3" in shown.stdout
    listing = cli("studies", spec)
    assert listing.exit_code == 0 and "tiny" in listing.stdout
    front = cli("front", spec, "-f", "json")
    assert front.exit_code == 0 and json.loads(front.stdout)
    out = elsewhere / "adapter"
    exported = cli("export", spec, "--pick", "knee", "--out", out)
    assert exported.exit_code == 0, exported.output
    assert (out / "adapter_config.json").is_file()
    assert not (elsewhere / "autopeft.db").exists()
    # --storage still wins over the spec's storage
    other = f"sqlite:///{elsewhere / 'other.db'}"
    assert_user_error(cli("show", spec, "--storage", other), "no database file", "other.db")
    assert_user_error(cli("show", elsewhere / "missing.yaml"), "missing.yaml")
    assert_user_error(cli("studies", "tiny"), "tiny: no such study spec file")


@pytest.mark.slow
def test_confirm_given_a_spec_reads_its_storage_and_data(ran: Path, elsewhere: Path) -> None:
    """The spec's directory is where its relative dataset path resolves: no --spec-dir needed."""
    result = cli("confirm", ran / "study.yaml", "--trial", "0", "--seeds", "1", "--steps", "1")
    assert result.exit_code == 0, result.output
    assert "trial 0:" in result.stdout and "confirmed 1 trial(s)" in result.stdout
    shown = json.loads(cli("show", ran / "study.yaml", "--format", "json").stdout)
    confirmed = shown["confirmed"]
    assert confirmed["trials"] == 1 and confirmed["objective"] == "accuracy"
    assert confirmed["best"]["trial"] == 0 and confirmed["best"]["seeds"] == 1
    assert set(confirmed["best"]["mean"]) == {"accuracy", "trainable_params", "peak_memory_mb"}


# -- 3. a bad option value is one error line ------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("run", "x.yaml", "--trials", "0"), ("--trials", "greater than or equal to 1", "'0'")),
        (("run", "x.yaml", "--trials", "many"), ("--trials", "valid integer", "'many'")),
        (("run", "x.yaml", "--workers", "0"), ("--workers", "'0'")),
        (("run", "x.yaml", "--executor", "slurm"), ("--executor", "'slurm'", "'inprocess'")),
        (
            ("export", "x", "--out", "o", "--pick", "best"),
            ("--pick", "'best'", "'knee'", "'max-accuracy'"),
        ),
        (("front", "x", "--format", "xml"), ("--format", "'xml'", "'json'")),
        (("confirm", "x", "--seeds", "many"), ("--seeds", "'many'", "valid integer")),
        (("serve", "--port", "70000"), ("--port", "less than or equal to 65535", "'70000'")),
        (("token", "create", "--scope", "admin"), ("--scope", "'admin'", "'read'")),
        (
            (
                "token",
                "create",
            ),
            ("Missing option '--scope'", "read, write"),
        ),
        (("validate", "x.yaml", "--kind", "study"), ("--kind", "'study'", "'spec'")),
        (("studies", "--format", "csv"), ("--format", "'csv'")),
        (("run", "x.yaml", "--bogus"), ("No such option: --bogus",)),
        (("frnt", "x"), ("No such command 'frnt'",)),
        (("show",), ("Missing argument",)),
    ],
)
def test_a_bad_option_value_is_one_error_line(args: tuple[str, ...], fragments: tuple) -> None:
    result = cli(*args)
    assert_user_error(result, *fragments)
    assert "Usage:" not in result.output and "╭" not in result.output


# -- 4. JSON from `studies` and `show` ------------------------------------------------------------
def test_studies_and_show_print_json(ran: Path) -> None:
    url = f"sqlite:///{ran / 'studies.db'}"
    listing = cli("studies", "--storage", url, "--format", "json")
    assert listing.exit_code == 0, listing.output
    (study,) = json.loads(listing.stdout)
    assert study["name"] == "tiny" and study["target"] == 3 and study["finished"] == 3
    assert study["counts"]["complete"] == 3 and study["counts"]["fail"] == 0
    assert [o["name"] for o in study["objectives"]] == [
        "accuracy",
        "trainable_params",
        "peak_memory_mb",
    ]
    assert set(study["best"]) == {"accuracy", "trainable_params", "peak_memory_mb"}
    assert study["metric"] == "accuracy" and study["sampler"] == "random"
    assert study["search_space"] == "space.yaml" and study["dataset"] == "data.csv"
    assert 1 <= study["front_size"] <= 3 and 0.0 <= study["hypervolume"] <= 1.0

    shown = cli("show", "tiny", "--storage", url, "-f", "json")
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert {k: detail[k] for k in study} == study  # every `studies` key, the same values
    assert detail["url"] == url and detail["warm_start"] == [] and detail["fidelity"] is None
    assert len(detail["front"]) == study["front_size"]
    assert set(detail["front"]) <= {0, 1, 2}
    assert detail["failures"] == [] and detail["skipped"] == 0
    assert detail["training_seconds"] > 0
    memory = detail["memory"]
    assert memory is None or memory["trials"] <= 3


# -- 5. --version ---------------------------------------------------------------------------------
def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"autopeft {autopeft.__version__}\n"
    assert autopeft.__version__ == importlib.metadata.version("autopeft")


# -- 6. --spec-dir (confirm) and --service-dir (serve) --------------------------------------------
def test_confirm_and_serve_name_their_directories_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirm_help = cli("confirm", "--help").stdout
    serve_help = cli("serve", "--help").stdout
    assert "--spec-dir" in confirm_help and "--data-dir" not in confirm_help
    assert "--service-dir" in serve_help and "--data-dir" not in serve_help

    import uvicorn

    import autopeft.service

    seen: list[Path] = []
    monkeypatch.setattr(
        autopeft.service, "create_app", lambda url, **kw: seen.append(kw["data_dir"])
    )
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: None)
    url = f"sqlite:///{tmp_path / 'svc.db'}"
    assert cli("serve", "--storage", url, "--service-dir", tmp_path / "a").exit_code == 0
    old = cli("serve", "--storage", url, "--data-dir", tmp_path / "b")
    assert old.exit_code == 0 and not old.stderr  # the old spelling still works, quietly
    assert seen == [tmp_path / "a", tmp_path / "b"]
