"""Build the executor a study spec asks for (``executor.name``), importing only what it needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import StudySpecError

if TYPE_CHECKING:
    from autopeft.executors.base import Executor, StepListener
    from autopeft.executors.worker import WorkerSetup
    from autopeft.spec import ExecutorSpec


def override_executor(spec: ExecutorSpec, overrides: dict[str, Any]) -> ExecutorSpec:
    """``spec`` with command-line overrides (``None`` values ignored), validated again."""
    from pydantic import ValidationError

    from autopeft.spec import ExecutorSpec

    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return spec
    try:
        return ExecutorSpec.model_validate({**spec.model_dump(exclude_unset=True), **given})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "executor"
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        message = first["msg"].removeprefix("Value error, ")
        raise StudySpecError(
            f"executor{'.' + where if first['loc'] else ''}: {message} (with {flags})"
        ) from None


def make_executor(
    setup: WorkerSetup,
    spec: ExecutorSpec,
    on_step: StepListener | None,
    message: Callable[[str], None],
) -> Executor:
    """The in-process executor, or a pool of Ray workers, each loading ``setup``."""
    if spec.name == "ray":
        from autopeft.executors.ray_pool import RayExecutor
        from autopeft.executors.ray_session import RaySession

        where = spec.address or "a local Ray instance"
        message(f"starting {spec.workers} Ray worker(s) on {where} (each loads the model once)")
        session = RaySession(spec.address, spec.cpus_per_trial, spec.gpus_per_trial)
        return RayExecutor(setup, session, spec.workers, on_step=on_step, message=message)

    from autopeft.executors.inprocess import InProcessExecutor
    from autopeft.executors.worker import TrialWorker

    message(f"loading {setup.model} and tokenizing the data ...")
    worker = TrialWorker(setup)
    return InProcessExecutor(worker.context, spec.threads, on_step=on_step)
