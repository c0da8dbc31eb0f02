"""Build the executor a study spec asks for (``executor.name``), importing only what it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import StudySpecError

if TYPE_CHECKING:
    from autopeft.executors.base import Executor, StepListener
    from autopeft.executors.gpu_plan import GpuPlan
    from autopeft.executors.worker import WorkerSetup
    from autopeft.spec import ExecutorSpec


RAY_ONLY = ("workers", "cpus_per_trial", "gpus_per_trial", "address")
# ``gpus`` is not Ray-only: on the in-process executor ``--gpus 0`` runs the trial on the CPU.
"""The ``executor`` fields that only the Ray executor reads."""


def override_executor(
    spec: ExecutorSpec,
    overrides: dict[str, Any],
    note: Callable[[str], None] | None = None,
) -> ExecutorSpec:
    """``spec`` with command-line overrides (``None`` values ignored), validated again.

    ``--executor inprocess`` on a spec written for Ray drops the spec's Ray-only fields
    (:data:`RAY_ONLY`) and says which in one ``note``; a Ray-only flag given with it (or on an
    in-process spec) is an error naming the flag to drop.

    Raises:
        StudySpecError: the overrides do not make a valid ``executor`` block.
    """
    from pydantic import ValidationError

    from autopeft.spec import ExecutorSpec

    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return spec
    base = spec.model_dump(exclude_unset=True)
    if given.get("name", base.get("name", "inprocess")) == "inprocess":
        _reject_ray_flags(given)
        dropped = {k: base.pop(k) for k in RAY_ONLY if k in base}
        if dropped and note is not None and spec.name == "ray":
            fields = ", ".join(f"{k}={v}" for k, v in dropped.items())
            note(f"note: the inprocess executor ignores the spec's Ray-only executor {fields}")
    try:
        return ExecutorSpec.model_validate({**base, **given})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "executor"
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        message = first["msg"].removeprefix("Value error, ")
        raise StudySpecError(
            f"executor{'.' + where if first['loc'] else ''}: {message} (with {flags})"
        ) from None


def _reject_ray_flags(given: dict[str, Any]) -> None:
    """A Ray-only flag (``--workers N`` above 1, ``--address``) with the inprocess executor."""
    flags = {
        "workers": given.get("workers", 1) != 1,
        "address": given.get("address") is not None,
    }
    for key, bad in flags.items():
        if bad:
            flag = f"--{key} {given[key]}"
            raise StudySpecError(
                f"executor: {flag} needs the ray executor; the inprocess executor runs one "
                f"trial at a time in the driver: drop --{key}, or add --executor ray"
            )


def make_executor(
    setup: WorkerSetup,
    spec: ExecutorSpec,
    on_step: StepListener | None,
    message: Callable[[str], None],
    plan: GpuPlan | None = None,
) -> Executor:
    """The in-process executor, or a pool of Ray workers, each loading ``setup``, under the
    GPU ``plan`` (default: the spec's numbers, no GPU where ``auto``)."""
    if plan is not None and plan.device == "cpu":
        setup = replace(setup, device="cpu")
    if spec.name == "ray":
        from autopeft.executors.ray_pool import RayExecutor
        from autopeft.executors.ray_session import RaySession

        workers = plan.workers if plan is not None else spec.workers
        share = plan.gpus_per_trial if plan is not None else _numeric(spec.gpus_per_trial)
        where = spec.address or "a local Ray instance"
        message(f"starting {workers} Ray worker(s) on {where} (each loads the model once)")
        session = RaySession(spec.address, spec.cpus_per_trial, share)
        session.hide_gpus = plan is not None and plan.hide_gpus
        return RayExecutor(setup, session, workers, on_step=on_step, message=message)

    from autopeft.executors.inprocess import InProcessExecutor
    from autopeft.executors.worker import TrialWorker

    message(f"loading {setup.model} and tokenizing the data ...")
    worker = TrialWorker(setup)
    return InProcessExecutor(worker.context, spec.threads, on_step=on_step)


def _numeric(share: float | str) -> float:
    return 0.0 if share == "auto" else float(share)
