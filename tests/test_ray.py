"""The Ray executor on a local Ray instance with tiny models: parallel trials, faults, resume."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from autopeft.exceptions import StudySpecError
from autopeft.executors.inprocess import InProcessExecutor
from autopeft.run.driver import run_study
from autopeft.run.prepare import prepare_study
from autopeft.run.progress import Reporter
from autopeft.trial.runner import TrialResult
from tests.conftest import SPACE, kill_driver_mid_trial, write_study, write_tiny_csv

RAY_EXECUTOR = "executor: {name: ray, workers: 2, cpus_per_trial: 1, device: cpu}"


@pytest.fixture(scope="module")
def ray_address() -> str:
    """One local Ray instance for the module (starting one costs seconds)."""
    import ray

    from autopeft.executors.ray_session import start_local

    start_local(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _ray_study(
    d: Path, model: Path, n_trials: int, steps: int = 4, extra: str = "", workers: int = 2
) -> Path:
    write_tiny_csv(d / "data.csv")
    (d / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(d, model=str(model), n_trials=n_trials)
    text = spec.read_text().replace("executor: {threads: 1, device: cpu}", RAY_EXECUTOR)
    text = text.replace("max_steps: 4", f"max_steps: {steps}")
    text = text.replace("workers: 2", f"workers: {workers}")
    if extra:
        text = text.replace("device: cpu}", f"device: cpu, {extra}}}")
    spec.write_text(text)
    return spec


class _KillWorker(Reporter):
    """SIGKILLs the Ray worker running trial ``number`` at its first reported step."""

    def __init__(self, number: int) -> None:
        self.number, self.executor, self.killed = number, None, None

    def step(self, number: int, step: int, total: int) -> None:
        if number == self.number and self.killed is None and 0 < step < total:
            self.killed = self.executor.worker_pid(number)
            os.kill(self.killed, signal.SIGKILL)


@pytest.mark.ray
@pytest.mark.slow
def test_two_workers_land_every_trial_once_and_survive_a_killed_worker(
    ray_address, tmp_path, tiny_bert_dir
) -> None:
    """4 trials on 2 workers; the worker running trial 1 is SIGKILLed mid-training: the trial
    is recorded as lost, a fresh worker replaces it, the point is re-run, the study completes."""
    from autopeft.executors.factory import make_executor
    from autopeft.run.prepare import worker_setup

    spec = _ray_study(tmp_path, tiny_bert_dir, n_trials=4, steps=400)
    p = prepare_study(spec)
    reporter = _KillWorker(1)
    executor_spec = p.files.spec.executor
    setup = worker_setup(p, executor_spec)
    reporter.executor = make_executor(setup, executor_spec, None, reporter.message)
    done = run_study(spec, reporter=reporter, executor=reporter.executor)
    assert reporter.killed is not None, "trial 1 never reported a step"
    assert [r.number for r in done.records] == list(range(5))  # each trial stored once
    lost = done.records[1]
    assert lost.state == "FAIL" and lost.interrupted and "worker died" in lost.fail_reason
    complete = [r for r in done.records if r.state == "COMPLETE"]
    assert len(complete) == 4
    rerun = [r for r in complete if r.params == lost.params]
    assert len(rerun) == 1 and rerun[0].number > lost.number
    killed = f"{os.uname().nodename}:{reporter.killed}"
    workers = {r.metrics["worker"] for r in complete}
    # trial 1 ran beside another trial on the second slot, and nothing completed on the
    # killed worker; whether the replacement worker lands a trial before the surviving one
    # takes the rest depends on how fast it starts, so the test does not ask for it
    assert workers and killed not in workers
    assert all(r.metrics["base_reloads"] == 0 for r in complete)
    assert all(r.metrics["scheduling_seconds"] >= 0 for r in complete)
    again = run_study(spec)  # resuming a finished study runs nothing (and starts no workers)
    assert [(r.number, r.values) for r in again.records] == [
        (r.number, r.values) for r in done.records
    ]


@pytest.mark.ray
@pytest.mark.slow
def test_a_multi_fidelity_study_on_two_ray_workers(ray_address, tmp_path, tiny_bert_dir) -> None:
    """Promotions run on Ray workers beside new configurations; every rung's rule holds, and
    the quota rule caps each rung at its fraction."""
    from tests.test_fidelity import assert_successive_halving

    spec = _ray_study(tmp_path, tiny_bert_dir, n_trials=6)
    rungs = "rungs: [3, 6, 12], reduction_factor: 2, promotion: quota,"
    text = spec.read_text().replace("max_steps: 4,", rungs)
    spec.write_text(text + "objectives: [accuracy, trainable_params]\n")
    done = run_study(spec)
    assert_successive_halving(done.records, 6, [3, 6, 12])
    ran = [r for r in done.records if not r.interrupted and r.state != "RUNNING"]
    per_rung = [sum(1 for r in ran if r.rung == k) for k in range(3)]
    assert per_rung[0] == 6 and per_rung[1] == 3  # the quota: floor(6 / 2), never more
    assert per_rung[2] == 1  # floor(3 / 2)
    workers = {r.metrics["worker"] for r in done.records if r.rung and r.state != "FAIL"}
    assert workers and all(":" in w for w in workers)  # promotions ran on Ray workers
    assert len({r.metrics["worker"] for r in done.records if "worker" in r.metrics}) == 2
    # loss curves come back through Ray, and a promotion continues its source's curve
    from autopeft.trial.curve import stored_curve

    top = [r for r in ran if r.rung == 2 and r.state == "COMPLETE"]
    assert top and all([s for s, _ in stored_curve(r.metrics)] == list(range(1, 13)) for r in top)


@pytest.mark.ray
@pytest.mark.slow
def test_confirm_runs_its_seeds_on_ray_workers(ray_address, tmp_path, tiny_bert_dir) -> None:
    from autopeft.run.confirm import confirm_study
    from autopeft.storage.confirmations import latest
    from autopeft.storage.store import Store

    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(SPACE.format(budget=4000))
    run_study(write_study(tmp_path, model=str(tiny_bert_dir), n_trials=3))  # in process
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    outcome = confirm_study(
        "tiny",
        url,
        top=2,
        seeds=2,
        base_dir=tmp_path,
        executor_options={"name": "ray", "workers": 2, "address": ray_address},
    )
    assert len(outcome.confirmed) == 2
    rows = latest(Store(url, create=False), "tiny")
    runs = [run for c in rows.values() for run in c.runs]
    assert len(runs) == 4 and all("values" in run for run in runs)
    assert len({run["worker"] for run in runs}) == 2  # both Ray workers ran seeds


class _AlwaysLost(InProcessExecutor):
    """Reports the first two results as lost with their worker (as a dead Ray actor would)."""

    lost = 0

    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        out = []
        for r in super().poll(timeout):
            if _AlwaysLost.lost < 2:
                _AlwaysLost.lost += 1
                r = TrialResult(r.number, False, error="worker died: SIGKILL", lost=True)
            out.append(r)
        return out


def test_lost_trials_are_retried_up_to_max_retries(study_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr("autopeft.executors.inprocess.InProcessExecutor", _AlwaysLost)
    monkeypatch.setattr(_AlwaysLost, "lost", 0)
    spec = study_dir / "study.yaml"
    spec.write_text(spec.read_text().replace("threads: 1,", "threads: 1, max_retries: 1,"))
    done = run_study(spec, trials=2)
    states = [(r.state, r.interrupted) for r in done.records]
    assert states == [("FAIL", True), ("FAIL", False), ("COMPLETE", False)]
    assert done.records[1].params == done.records[0].params  # the one retry, then given up
    assert "worker died" in done.records[1].fail_reason


@pytest.mark.ray
@pytest.mark.slow
def test_killed_driver_resumes_with_no_loss_and_no_duplicates(
    ray_address, tmp_path, tiny_bert_dir
) -> None:
    spec = _ray_study(tmp_path, tiny_bert_dir, n_trials=3, steps=300, workers=1)
    db = tmp_path / "studies.db"
    args = ["run", str(spec), "-q", "--address", ray_address]
    before, running = kill_driver_mid_trial(args, db, timeout=150)
    done = run_study(spec)
    complete = [r for r in done.records if r.state == "COMPLETE"]
    assert len(complete) == 3
    assert all(done.records[n].values == v for n, v in before.items())
    assert len({r.number for r in done.records}) == len(done.records)
    for r in running:
        assert done.records[r.number].interrupted
        assert any(c.params == r.params for c in complete)  # its point was re-run


@pytest.mark.ray
@pytest.mark.slow
def test_memory_cap_marks_trials_infeasible_and_workers_survive(
    ray_address, tmp_path, tiny_bert_dir, monkeypatch
) -> None:
    from autopeft.trial.memory_model import MemoryModel

    # predicted under the cap, so they launch (the driver skips what it predicts over it)
    monkeypatch.setattr(MemoryModel, "predict", lambda self, params, placement: 0.0)
    spec = _ray_study(tmp_path, tiny_bert_dir, n_trials=2, extra="memory_cap_mb: 1", workers=1)
    done = run_study(spec)
    assert [(r.state, r.infeasible) for r in done.records] == [("FAIL", True)] * 2
    assert all(r.fail_reason.startswith("memory cap exceeded") for r in done.records)
    assert max(r.metrics["worker_trial_index"] for r in done.records) == 2  # the worker went on


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ("{workers: 2}", "workers needs the ray executor"),
        ("{name: ray, gpus_per_trial: 0.5, device: cpu}", "gpus_per_trial=0.5 but device"),
        ("{name: ray, gpus_per_trial: 1.5}", "fraction <= 1 or a whole number"),
        ("{name: ray, workers: 0}", "greater than or equal to 1"),
    ],
)
def test_bad_executor_blocks_are_rejected(study_dir: Path, executor: str, message: str) -> None:
    spec = study_dir / "study.yaml"
    spec.write_text(spec.read_text().replace("{threads: 1, device: cpu}", executor))
    with pytest.raises(StudySpecError, match=message):
        prepare_study(spec)


def test_cli_overrides_are_validated(study_dir: Path) -> None:
    from typer.testing import CliRunner

    from autopeft.cli import app

    out = CliRunner().invoke(app, ["run", str(study_dir / "study.yaml"), "--workers", "2"])
    assert out.exit_code == 2
    assert "error: executor: --workers 2 needs the ray executor" in out.output
    assert "add --executor ray" in out.output
