"""``POST /api/studies``: stage, validate, register, start; nothing is left of a bad one."""

from __future__ import annotations

from fastapi import HTTPException

from autopeft.exceptions import UserInputError
from autopeft.service.state import ServiceState


def submit_study(
    service: ServiceState, spec: str, space: str, name: str | None, n_trials: int | None
) -> str:
    """Validate the study as ``autopeft validate`` does, create it in the database and start
    its driver; returns its name. :class:`UserInputError` (a 400) or a 409 leave no files and
    no study behind."""
    from autopeft.run.prepare import prepare_study, register_study

    launcher = service.launcher
    with service.submit_lock:
        name, path = launcher.stage(spec, space, name=name, n_trials=n_trials)
        try:
            with service.lock:
                exists = name in service.store.study_names()
            if exists or launcher.running(name):
                raise HTTPException(409, f"a study named {name!r} exists already; pick a new name")
            try:
                prepared = prepare_study(path, storage=launcher.storage, name=name)
            except (OSError, ValueError) as exc:  # a model or data file the loaders reject
                raise UserInputError(f"cannot prepare study {name!r}: {exc}") from None
            overrides = launcher.executor_overrides()
            if overrides:  # what the driver's --executor/--address will ask, checked now
                from autopeft.executors.factory import override_executor

                overrides["name"] = overrides.pop("executor")
                override_executor(prepared.files.spec.executor, overrides)
            with service.lock:
                register_study(service.store, prepared)
        except BaseException:
            launcher.discard(path)
            raise
        launcher.adopt(name, path)
        launcher.start(name)
    return name
