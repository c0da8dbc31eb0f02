"""Confirm a study's chosen trials: re-train each configuration with several seeds and score it
on the held-out **test** split, which the search never sees.

The runs go through the study's executor (in-process or Ray workers) and the same trial runner
as the search; only the context differs: its evaluation data is the test split (all of it),
and ``steps`` may replace the study's training length. Seed ``k`` (0-based) of a confirmation
trains with ``spec.seed + k``, so seed 0 repeats the search's own run order and adapter init.
Mean and sample standard deviation per objective are stored in ``autopeft_confirmations``.
A trial already confirmed with the same steps and seeds is not run again.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import StudyError, UserInputError
from autopeft.results.views import StudyView, load_view, open_store
from autopeft.storage.confirmations import Confirmation, compiled_config, latest, save_confirmation

if TYPE_CHECKING:
    from autopeft.executors.base import Executor
    from autopeft.executors.worker import WorkerSetup
    from autopeft.spec import ExecutorSpec, StudySpec
    from autopeft.storage.records import TrialRecord
    from autopeft.storage.store import Store

__all__ = ["ConfirmOutcome", "confirm_study", "select_trials"]


@dataclass(frozen=True)
class ConfirmOutcome:
    """What :func:`confirm_study` did: new confirmations and the ones already stored."""

    name: str
    confirmed: list[Confirmation]
    reused: list[Confirmation]


def select_trials(
    view: StudyView, *, front: bool = False, top: int | None = None, trials: Sequence[int] = ()
) -> list[TrialRecord]:
    """The complete trials to confirm: the Pareto front and the study's references (the
    default), the ``top`` K by the primary objective, or the listed trial numbers. Exactly one
    choice may be given."""
    from autopeft.results import primary_objective

    given = [
        name
        for name, on in (("--front", front), ("--top", top is not None), ("--trial", bool(trials)))
        if on
    ]
    if len(given) > 1:
        raise UserInputError(
            f"give one of --front, --top K or --trial N, but got {' and '.join(given)}"
        )
    done = view.complete()
    if not done:
        raise StudyError(f"study {view.name!r} has no complete trials to confirm")
    if top is not None:
        if top < 1:
            raise UserInputError(f"--top must be at least 1, but got {top}")
        o = primary_objective(view.objectives)
        sign = -1.0 if o.direction == "maximize" else 1.0
        return sorted(done, key=lambda r: (sign * r.values[o.name], r.number))[:top]
    if trials:
        by_number = {r.number: r for r in done}
        unknown = [n for n in trials if n not in by_number]
        if unknown:
            raise StudyError(
                f"study {view.name!r} has no complete trial {unknown[0]}; complete trials: "
                f"{sorted(by_number)}"
            )
        return [by_number[n] for n in dict.fromkeys(trials)]
    return view.front() + view.references()  # with the references: the comparison to make


def confirm_study(
    name: str,
    storage: str | None = None,
    *,
    front: bool = False,
    top: int | None = None,
    trials: Sequence[int] = (),
    seeds: int = 3,
    steps: int | None = None,
    base_dir: str | Path | None = None,
    executor: Executor | None = None,
    executor_options: dict[str, Any] | None = None,
    message: Callable[[str], None] = lambda _: None,
) -> ConfirmOutcome:
    """Re-train the chosen trials of study ``name`` with ``seeds`` seeds; score on test.

    Args:
        name: The study.
        storage: Database URL (None: ``$AUTOPEFT_STORAGE`` or ``sqlite:///autopeft.db``).
        front, top, trials: Which trials (see :func:`select_trials`).
        seeds: Runs per trial (at least 1).
        steps: Training steps per run (default: the study's ``fidelity.max_steps``).
        base_dir: Where the spec's relative dataset path resolves (default: the current
            directory); the model is the directory the study stored.
        executor: Where runs go (default: built from the study's ``executor`` block).
        executor_options: Overrides of that block (``name``, ``workers``, ``address``).
        message: Progress lines.
    """
    from autopeft.executors.factory import make_executor, override_executor

    if seeds < 1:
        raise UserInputError(f"--seeds must be at least 1, but got {seeds}")
    if steps is not None and steps < 1:
        raise UserInputError(f"--steps must be at least 1, but got {steps}")
    view = load_view(name, storage)
    store = open_store(storage)
    chosen = select_trials(view, front=front, top=top, trials=trials)
    spec = _spec(view)
    steps = steps or spec.fidelity.max_steps
    stored = latest(store, name)
    reused = [
        stored[r.number]
        for r in chosen
        if r.number in stored and (stored[r.number].steps, stored[r.number].seeds) == (steps, seeds)
    ]
    todo = [r for r in chosen if r.number not in {c.trial for c in reused}]
    if not todo:
        return ConfirmOutcome(name, [], reused)
    ex_spec = override_executor(spec.executor, executor_options or {})
    if executor is None:
        setup = _setup(view, spec, ex_spec, steps, Path(base_dir) if base_dir else Path.cwd())
        executor = make_executor(setup, ex_spec, None, message)
    try:
        done = _run(store, view, spec, todo, seeds, steps, executor, message)
    finally:
        executor.close()
    return ConfirmOutcome(name, done, reused)


def _spec(view: StudyView) -> StudySpec:
    from autopeft.spec import StudySpec

    return StudySpec.model_validate(view.spec)


def _setup(
    view: StudyView, spec: StudySpec, ex: ExecutorSpec, steps: int, base_dir: Path
) -> WorkerSetup:
    """The worker setup of the study with the test split as the evaluation data."""
    from autopeft.data import Splits, split_dataset
    from autopeft.tasks import get_task

    data = get_task(spec.task).load_data(spec.dataset, base_dir)
    split = spec.split
    parts = split_dataset(data, validation=split.validation, test=split.test, seed=split.seed)
    fidelity = spec.fidelity.model_copy(
        update={"max_steps": steps, "eval_examples": len(parts.test)}
    )
    from autopeft.models.hub import hub_id_of
    from autopeft.run.prepare import setup_for

    # a Hub model is resolved again by ID on each worker (its own cache), not by our cache path
    model = spec.model.path if hub_id_of(view.model_path) else view.model_path
    return setup_for(
        spec, ex, model=model, base_dir=base_dir,
        splits=Splits(train=parts.train, validation=parts.test, test=parts.test),
        fidelity=fidelity,
    )  # fmt: skip


def _run(
    store: Store,
    view: StudyView,
    spec: StudySpec,
    todo: list[TrialRecord],
    seeds: int,
    steps: int,
    executor: Executor,
    message: Callable[[str], None],
) -> list[Confirmation]:
    """Run every (trial, seed) job on ``executor``; store each trial once its seeds are in."""
    from autopeft.trial.runner import TrialRequest

    jobs = [(r.number, k) for r in todo for k in range(seeds)]
    pending = list(enumerate(jobs))
    runs: dict[int, list[dict[str, Any]]] = {r.number: [] for r in todo}
    configs = {r.number: compiled_config(store, view.name, r.number) for r in todo}
    schedule = None  # a multi-fidelity study trained its top rung under warmup-stable-decay
    rungs = spec.fidelity.rung_steps
    if len(rungs) > 1 and steps == rungs[-1]:
        from autopeft.trial.continuation import Continuation

        schedule = Continuation(top_steps=rungs[-1], decay_from=rungs[-2])
    out: list[Confirmation] = []
    while pending or executor.running():
        while pending and len(executor.running()) < executor.capacity:
            job, (number, k) = pending.pop(0)
            executor.submit(TrialRequest(job, configs[number], spec.seed + k, None, schedule))
        for result in executor.poll(timeout=1.0):
            number, k = jobs[result.number]
            run: dict[str, Any] = {"seed": spec.seed + k}
            if result.ok:
                run["values"] = {o.name: float(result.metrics[o.name]) for o in view.objectives}
            else:
                run["error"] = result.error or "unknown error"
            if "worker" in result.metrics:  # host:pid of the worker that ran it
                run["worker"] = result.metrics["worker"]
            runs[number].append(run)
            message(f"trial {number} seed {spec.seed + k}: {run.get('values', run.get('error'))}")
            if len(runs[number]) == seeds:
                out.append(_store(store, view, number, steps, seeds, runs[number]))
    return out


def _store(
    store: Store, view: StudyView, number: int, steps: int, seeds: int, runs: list[dict[str, Any]]
) -> Confirmation:
    runs = sorted(runs, key=lambda r: r["seed"])
    ok = [r["values"] for r in runs if "values" in r]
    mean = {o.name: statistics.fmean(v[o.name] for v in ok) for o in view.objectives} if ok else {}
    std = (
        {
            o.name: statistics.stdev(v[o.name] for v in ok) if len(ok) > 1 else 0.0
            for o in view.objectives
        }
        if ok
        else {}
    )
    confirmation = Confirmation(number, steps, seeds, mean, std, runs)
    save_confirmation(store, view.name, confirmation)
    return confirmation
