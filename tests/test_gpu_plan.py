"""GPU planning on a CPU machine, with the GPUs torch sees faked at the one boundary that reads
them (:func:`autopeft.executors.gpu_plan.cuda_view`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.exceptions import UnsupportedError
from autopeft.executors.gpu_plan import CudaView, plan_gpus
from autopeft.executors.ray_session import RaySession
from autopeft.spec import ExecutorSpec

GIB = 2**30
H100 = "NVIDIA H100 80GB HBM3"


def gpus(n: int, memory: int = 80 * GIB) -> CudaView:
    return CudaView((H100,) * n, (memory,) * n)


def ray(**kwargs: object) -> ExecutorSpec:
    return ExecutorSpec.model_validate({"name": "ray", **kwargs})


def test_auto_is_the_default_and_gives_one_worker_a_whole_gpu() -> None:
    spec = ray()
    assert spec.gpus_per_trial == "auto"
    plan = plan_gpus(spec, gpus(1), peak_bytes=50 * GIB)
    assert (plan.gpus_per_trial, plan.workers, plan.device, plan.notes) == (1.0, 1, "auto", ())


def test_auto_packs_workers_whose_largest_configuration_fits() -> None:
    # 0.9 x 80 GiB = 72 GiB holds two 30 GiB trials per GPU: 4 workers on 2 GPUs
    plan = plan_gpus(ray(workers=4), gpus(2), peak_bytes=30 * GIB)
    assert (plan.gpus_per_trial, plan.workers) == (0.5, 4)
    assert plan.notes == (
        "note: 2 trials share each GPU (gpus_per_trial 0.5): the largest configuration is "
        "predicted to peak at 30,720 MiB of 81,920 MiB",
    )
    # never more per GPU than the workers need
    assert plan_gpus(ray(workers=2), gpus(2), peak_bytes=1 * GIB).gpus_per_trial == 1.0


def test_auto_lowers_the_workers_to_what_fits() -> None:
    plan = plan_gpus(ray(workers=3), gpus(1), peak_bytes=50 * GIB)
    assert (plan.gpus_per_trial, plan.workers) == (1.0, 1)
    assert plan.notes == (
        "note: executor.workers lowered from 3 to 1: one trial per GPU on 1 GPU(s)",
    )


def test_no_gpu_means_cpu_workers_without_a_note() -> None:
    plan = plan_gpus(ray(workers=2), gpus(0), peak_bytes=None)
    assert (plan.gpus_per_trial, plan.workers, plan.hide_gpus, plan.notes) == (0.0, 2, False, ())
    # on a cluster the workers may have GPUs the driver cannot see: hidden all the same
    assert plan_gpus(ray(address="auto", gpus_per_trial=0), gpus(0), None).hide_gpus


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"gpus_per_trial": 0}, "executor.gpus_per_trial is 0"),
        ({"device": "cpu"}, "executor.device is 'cpu'"),
        ({"gpus": 0}, "--gpus 0"),
    ],
)
def test_cpu_trials_on_a_gpu_driver_hide_the_gpus_and_say_so(
    kwargs: dict[str, object], why: str
) -> None:
    plan = plan_gpus(ray(workers=2, **kwargs), gpus(2), peak_bytes=GIB)
    assert (plan.gpus_per_trial, plan.device, plan.hide_gpus) == (0.0, "cpu", True)
    assert plan.notes == (
        f"note: the driver sees 2 GPU(s) but {why}: trials run on the CPU and the workers' GPUs "
        "are hidden from them",
    )


def test_an_explicit_share_is_kept_and_gpus_caps_auto() -> None:
    assert plan_gpus(ray(workers=2, gpus_per_trial=0.25), gpus(1), GIB).gpus_per_trial == 0.25
    plan = plan_gpus(ray(workers=4, gpus=1), gpus(2), peak_bytes=50 * GIB)
    assert (plan.gpus_per_trial, plan.workers) == (1.0, 1)


def test_more_gpus_than_torch_sees_is_refused() -> None:
    with pytest.raises(UnsupportedError, match=r"--gpus 2: torch sees 1 GPU\(s\) on this machine"):
        plan_gpus(ray(gpus=2), gpus(1), peak_bytes=None)
    # on a cluster the workers' GPUs are not visible from the driver: not checked here
    assert plan_gpus(ray(gpus=2, address="auto"), gpus(1), None).gpus_per_trial == 1.0


def test_inprocess_on_cpu_with_a_gpu_visible_says_so() -> None:
    plan = plan_gpus(ExecutorSpec(device="cpu"), gpus(1), peak_bytes=None)
    assert plan.device == "cpu" and plan.notes == (
        "note: the driver sees 1 GPU(s) but executor.device is 'cpu': trials run on the CPU",
    )
    assert plan_gpus(ExecutorSpec(), gpus(1), None).notes == ()


def test_a_worker_without_a_gpu_share_cannot_see_the_gpus() -> None:
    session = RaySession(None, 1, 0.0)
    session.hide_gpus = True
    assert session.actor_options()["runtime_env"] == {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
    assert "runtime_env" not in RaySession(None, 1, 0.0).actor_options()  # no GPU anywhere
    assert "runtime_env" not in RaySession(None, 1, 0.5).actor_options()


def test_run_with_more_gpus_than_torch_sees_is_one_error_line(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopeft.cli import app

    monkeypatch.setattr("autopeft.executors.gpu_plan.cuda_view", lambda: gpus(1))
    result = CliRunner().invoke(app, ["run", str(study_dir / "study.yaml"), "--gpus", "2", "-q"])
    assert result.exit_code == 2
    assert result.output == (
        "error: --gpus 2: torch sees 1 GPU(s) on this machine; use --gpus 1 or fewer (0 runs "
        "the trials on the CPU)\n"
    )
    assert not (study_dir / "studies.db").exists()


@pytest.mark.slow
def test_trials_record_their_device_and_the_note_comes_first(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study whose driver sees a (fake) GPU but runs on the CPU (``device: cpu``) says so
    before its first trial; each trial stores ``cpu`` as its device, shown by ``show``."""
    from autopeft.cli import app
    from autopeft.run.driver import run_study
    from autopeft.run.progress import Reporter

    class Recorder(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

        def trial_started(self, *args: object, **kwargs: object) -> None:
            self.lines.append("trial started")

    monkeypatch.setattr("autopeft.executors.gpu_plan.cuda_view", lambda: gpus(1))
    reporter = Recorder()
    outcome = run_study(study_dir / "study.yaml", trials=1, reporter=reporter)
    assert reporter.lines[0] == (
        "note: the driver sees 1 GPU(s) but executor.device is 'cpu': trials run on the CPU"
    )
    assert [r.metrics["device"] for r in outcome.records] == ["cpu"]
    url = f"sqlite:///{study_dir / 'studies.db'}"
    shown = CliRunner().invoke(app, ["show", "tiny", "--storage", url])
    assert "devices: cpu (1)" in shown.output
