"""A large stored study made without training, for load checks of the service and its tests.

:func:`seed_study` prepares a real spec (by default ``studies/demo.yaml``: MiniLM-L6 on TREC-6,
layer-wise LoRA ranks, three objectives) exactly as ``autopeft run`` does, registers it, and
writes ``n_trials`` finished trials into the same tables the driver writes: each point is a
seeded random draw of the bound space, compiled by the real compiler; its values come from the
synthetic objective of :mod:`autopeft.testing.synthetic` (a diverged configuration fails, as a
trial whose loss went to NaN would); its measurements carry the keys a real trial stores. A few
trials are left *interrupted* (their driver died) and re-run by a later trial, as a resumed
driver does. Hypervolumes are stored as the driver stores them.

Trials are written in batches (one Optuna trial per call of its own storage API, our rows in
one transaction per batch), so 5,000 trials take seconds, not the minutes that one
:meth:`~autopeft.storage.store.Store.start_trial` plus
:meth:`~autopeft.storage.store.Store.complete_trial` per trial would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from autopeft.core.states import TrialState, has_result
from autopeft.storage.liveness import OWNER
from autopeft.storage.store import Store
from autopeft.storage.tables import TrialRow

DEMO_SPEC = Path(__file__).resolve().parents[2] / "studies" / "demo.yaml"
"""The spec seeded by default (the repository's demo study)."""

INTERRUPTED_EVERY = 500
"""One trial in this many is left interrupted and re-run by the next one."""

FAIL_SHARE = 0.02
"""At most this share of the trials fail (diverged); more diverged draws are drawn again."""


@dataclass(frozen=True)
class SeededStudy:
    """What :func:`seed_study` wrote.

    Attributes:
        name: The study name.
        url: The database URL.
        trials: Trials written (every state).
        complete: COMPLETE trials.
        failed: FAIL trials that count (diverged configurations).
        interrupted: FAIL trials left by a "dead driver" and re-run by a later trial.
        seconds: Wall time of the whole seeding, spec preparation included.
    """

    name: str
    url: str
    trials: int
    complete: int
    failed: int
    interrupted: int
    seconds: float


def seed_study(
    url: str,
    n_trials: int = 5000,
    *,
    name: str = "load",
    spec: str | Path = DEMO_SPEC,
    seed: int = 0,
    batch: int = 500,
) -> SeededStudy:
    """Write a finished study of ``n_trials`` trials named ``name`` into the database ``url``.

    Args:
        url: A database URL (a fresh one: the study must not exist yet).
        n_trials: Trials to write; the stored spec's ``n_trials`` is set to the trials that
            count for the budget, so the service sees the study complete.
        name: The study name.
        spec: The study spec to prepare (its model and dataset must be available locally).
        seed: Seeds the points, the synthetic objective's noise and which trials fail.
        batch: Trials per transaction of our rows.
    """
    from autopeft.run.prepare import prepare_study, register_study
    from autopeft.search.samplers.random import RandomSampler
    from autopeft.testing.synthetic import SyntheticPeft

    start = time.perf_counter()
    prepared = prepare_study(spec, storage=url, name=name)
    counted = n_trials - n_trials // INTERRUPTED_EVERY
    spec_counted = prepared.files.spec.model_copy(update={"n_trials": counted})
    prepared = replace(prepared, files=replace(prepared.files, spec=spec_counted))
    store = Store(url)
    register_study(store, prepared)
    sampler = RandomSampler(prepared.bound, prepared.objectives, seed)
    problem = SyntheticPeft(prepared.bound, seed)
    distributions = _distributions(prepared.bound)
    tally = {"COMPLETE": 0, "FAIL": 0, "INTERRUPTED": 0}
    trials: list[_Seed] = []
    rerun: dict[str, Any] | None = None
    draws = 0
    for index in range(n_trials):
        point = rerun or sampler.draw(index)  # an interrupted trial's point is re-run next
        interrupted = index % INTERRUPTED_EVERY == INTERRUPTED_EVERY - 1
        values = None if interrupted else problem.evaluate(point)
        while values is None and not interrupted and tally["FAIL"] >= FAIL_SHARE * (index + 1):
            draws += 1  # a diverged draw over the failure share: draw again, as a sampler
            point = sampler.draw(n_trials + draws)  # that learned the region would
            values = problem.evaluate(point)
        compiled = prepared.bound.compile(point, prepared.task_type)
        trials.append(_Seed(point, compiled, values, interrupted))
        rerun = point if interrupted else None
        tally["INTERRUPTED" if interrupted else "COMPLETE" if values else "FAIL"] += 1
    _hypervolumes(trials, prepared.objectives)
    for first in range(0, n_trials, batch):
        _write(store, name, prepared.objectives, distributions, trials[first : first + batch])
    return SeededStudy(
        name,
        url,
        n_trials,
        tally["COMPLETE"],
        tally["FAIL"],
        tally["INTERRUPTED"],
        time.perf_counter() - start,
    )


@dataclass
class _Seed:
    """One trial to write."""

    point: dict[str, Any]
    compiled: Any
    values: dict[str, float] | None
    interrupted: bool
    hypervolume: float | None = None

    @property
    def state(self) -> TrialState:
        return TrialState.COMPLETE if self.values else TrialState.FAIL


def _hypervolumes(trials: list[_Seed], objectives: list[Any]) -> None:
    """The hypervolume after each complete trial, as the driver stores it (the same curve)."""
    from autopeft.core.hypervolume import hypervolume_curve

    complete = [t for t in trials if has_result(t)]
    for trial, value in zip(complete, hypervolume_curve(objectives, complete), strict=True):
        trial.hypervolume = value


def _distributions(bound: Any) -> dict[str, Any]:
    from autopeft.space.encode import distribution

    return {d.name: distribution(d.spec) for d in bound.dimensions}


def _write(
    store: Store,
    name: str,
    objectives: list[Any],
    distributions: dict[str, Any],
    trials: list[_Seed],
) -> None:
    """One batch in one transaction: Optuna's rows (trial, params, values, user attributes, as
    :meth:`Store.start_trial` and :meth:`Store.complete_trial` leave them, inserted many at a
    time into Optuna's own table models), then ours."""
    import optuna
    from optuna.storages._rdb import models
    from sqlalchemy import func, insert, select

    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    dist_json = {k: optuna.distributions.distribution_to_json(d) for k, d in distributions.items()}
    now = datetime.now()
    with store.session() as s:
        study_id = store.optuna.get_study_id_from_name(name)
        trial_table = models.TrialModel.__table__
        first = s.scalar(select(func.count()).where(trial_table.c.study_id == study_id)) or 0
        s.execute(
            insert(trial_table),
            [
                {
                    "number": first + i,
                    "study_id": study_id,
                    "state": (complete if t.values else fail).name,
                    "datetime_start": now,
                    "datetime_complete": now,
                }
                for i, t in enumerate(trials)
            ],
        )
        found = s.execute(
            select(trial_table.c.number, trial_table.c.trial_id).where(
                trial_table.c.study_id == study_id, trial_table.c.number >= first
            )
        )
        ids: dict[int, int] = dict(found.tuples().all())
        params: list[dict[str, Any]] = []
        values_rows: list[dict[str, Any]] = []
        attrs_rows: list[dict[str, Any]] = []
        ours: list[dict[str, Any]] = []
        for i, t in enumerate(trials):
            point, compiled, values, interrupted = t.point, t.compiled, t.values, t.interrupted
            number = first + i
            trial_id = ids[number]
            params += [
                {
                    "trial_id": trial_id,
                    "param_name": key,
                    "param_value": distributions[key].to_internal_repr(value),
                    "distribution_json": dist_json[key],
                }
                for key, value in point.items()
            ]
            if values is not None:
                for index, objective in enumerate(objectives):
                    value, kind = models.TrialValueModel.value_to_stored_repr(
                        values[objective.name]
                    )
                    values_rows.append(
                        {
                            "trial_id": trial_id,
                            "objective": index,
                            "value": value,
                            "value_type": kind.name,
                        }
                    )
            metrics, reason, attrs = _outcome(compiled, values, interrupted)
            attrs_rows += [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in attrs.items()
            ]
            ours.append(
                {
                    "study_name": name,
                    "number": number,
                    "trial_id": trial_id,
                    "point_json": json.dumps(point),
                    "compiled_json": json.dumps(compiled.__dict__),
                    "metrics_json": json.dumps(metrics),
                    "fail_reason": reason,
                    "infeasible": False,
                    "interrupted": interrupted,
                    "retried_by": number + 1 if interrupted else None,
                    "hypervolume": t.hypervolume,
                    "owner": OWNER,
                    "heartbeat_at": time.time(),
                }
            )
        s.execute(insert(models.TrialParamModel), params)
        s.execute(insert(models.TrialValueModel), values_rows)
        s.execute(insert(models.TrialUserAttributeModel), attrs_rows)
        s.execute(insert(TrialRow), ours)


def _outcome(
    compiled: Any, values: dict[str, float] | None, interrupted: bool
) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """A trial's measurements, failure reason and Optuna user attributes."""
    attrs: dict[str, Any] = {
        "method": compiled.method,
        "trainable_params": compiled.trainable_params,
    }
    if not values:
        reason = (
            "interrupted: its driver seed-load:0 stopped"
            if interrupted
            else "diverged: the training loss is nan"
        )
        return {}, reason, {**attrs, "fail_reason": reason}
    metrics = _metrics(compiled, values)
    for key in ("peak_memory_mb", "accuracy", "head_params", "train_seconds"):
        attrs[key] = metrics[key]
    return metrics, None, attrs


def _metrics(compiled: Any, values: dict[str, float]) -> dict[str, Any]:
    """The measurements a real trial stores (:mod:`autopeft.trial.runner`), with made-up but
    plausible times."""
    params = int(values["trainable_params"])
    return {
        **values,
        "trainable_params": params,
        "head_params": 2310,
        "peak_memory_bytes": int(values["peak_memory_mb"] * 2**20),
        "memory_method": "tracked",
        "final_train_loss": round(2.0 - 1.5 * values["accuracy"], 4),
        "steps": 50,
        "learning_rate": compiled.training.get("learning_rate", 1e-3),
        "precision": "fp32",
        "device": "cpu",
        "gradient_checkpointing": False,
        "setup_seconds": 0.4,
        "train_seconds": 20.0 + params / 10_000,
        "eval_seconds": 1.1,
    }
