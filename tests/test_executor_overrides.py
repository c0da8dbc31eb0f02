"""Command-line executor overrides compose with the spec's ``executor`` block (issue 15, item 5).

``--executor inprocess`` on a spec written for Ray drops the Ray-only fields with a one-line
note; only a Ray-only flag given with the in-process executor is an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.exceptions import StudySpecError
from autopeft.executors.factory import override_executor
from autopeft.spec import ExecutorSpec
from tests.conftest import assert_user_error

RAY_BLOCK = "{name: ray, workers: 2, cpus_per_trial: 1, gpus_per_trial: 0.5, address: auto}"


def _ray_spec() -> ExecutorSpec:
    return ExecutorSpec(name="ray", workers=2, cpus_per_trial=1, gpus_per_trial=0.5, address="auto")


def test_inprocess_override_drops_the_ray_only_fields_with_one_note() -> None:
    notes: list[str] = []
    spec = override_executor(_ray_spec(), {"name": "inprocess"}, notes.append)
    assert spec.name == "inprocess" and spec.workers == 1 and spec.address is None
    assert spec.gpus_per_trial == "auto" and spec.cpus_per_trial == 1
    assert len(notes) == 1 and "\n" not in notes[0]
    for field in ("workers=2", "cpus_per_trial=1", "gpus_per_trial=0.5", "address=auto"):
        assert field in notes[0]


def test_inprocess_override_keeps_the_fields_both_executors_read() -> None:
    ray = ExecutorSpec(name="ray", workers=2, max_retries=5, threads=3, device="cpu")
    spec = override_executor(ray, {"name": "inprocess", "workers": None})
    assert (spec.max_retries, spec.threads, spec.device) == (5, 3, "cpu")


@pytest.mark.parametrize(
    ("base", "overrides", "flag"),
    [
        (_ray_spec(), {"name": "inprocess", "workers": 3}, "--workers 3"),
        (ExecutorSpec(), {"workers": 2}, "--workers 2"),
        (_ray_spec(), {"name": "inprocess", "address": "auto"}, "--address auto"),
    ],
)
def test_a_ray_only_flag_without_ray_names_the_flag_to_drop(
    base: ExecutorSpec, overrides: dict, flag: str
) -> None:
    with pytest.raises(StudySpecError) as info:
        override_executor(base, overrides)
    message = str(info.value)
    assert flag in message and "--executor ray" in message and "\n" not in message


def test_workers_1_and_ray_flags_with_ray_are_fine() -> None:
    assert override_executor(_ray_spec(), {"name": "inprocess", "workers": 1}).workers == 1
    spec = override_executor(ExecutorSpec(), {"name": "ray", "workers": 4, "address": "auto"})
    assert (spec.name, spec.workers, spec.address) == ("ray", 4, "auto")
    assert override_executor(_ray_spec(), {"workers": 4}).workers == 4


def _ray_study(study_dir: Path) -> Path:
    spec = study_dir / "study.yaml"
    spec.write_text(spec.read_text().replace("{threads: 1, device: cpu}", RAY_BLOCK))
    return spec


def test_cli_workers_flag_without_ray_is_one_error_line(study_dir: Path) -> None:
    spec = _ray_study(study_dir)
    args = ["run", str(spec), "--executor", "inprocess", "--workers", "2"]
    result = CliRunner().invoke(app, args)
    assert_user_error(result, "--workers 2", "--executor ray")
    assert not (study_dir / "studies.db").exists()


@pytest.mark.slow
def test_cli_runs_a_ray_spec_in_process(study_dir: Path) -> None:
    spec = _ray_study(study_dir)
    result = CliRunner().invoke(app, ["run", str(spec), "--executor", "inprocess", "--trials", "1"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if "Ray-only" in line]
    assert len(notes) == 1 and "workers=2" in notes[0], result.output
    assert "Ray worker" not in result.output
