"""The driver: create or resume a prepared study and run it — propose, compile, run, record —
until the budget. The driver is the only writer to the database.

Being the only writer, the driver keeps a :class:`~autopeft.run.mirror.TrialMirror` of the study's
records: loaded from the database when a run starts, then updated after each of its own writes,
so its cost per trial stays flat as a study grows (no re-reading every trial per poll).

"The only writer" is enforced: :func:`run_study` holds the study's lease
(:class:`~autopeft.storage.lease.StudyLease`) from before its first proposal until it stops, so
a second driver of a live study is refused with the holder's name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.objectives import Objective
from autopeft.exceptions import StorageError, StudyError
from autopeft.run.checkpoints import StudyCheckpoints, checkpoint_dir
from autopeft.run.mirror import TrialMirror
from autopeft.run.prepare import (
    PreparedStudy,
    check_gpus,
    prepare_study,
    register_study,
    worker_setup,
)
from autopeft.run.progress import Reporter
from autopeft.search.budget import (
    AUTO_MIN_PAIRS,
    StepBudget,
    calibration,
    entry_rung,
    unmeasured_rungs,
)
from autopeft.search.samplers import make_sampler
from autopeft.search.warm_start import with_warm_start
from autopeft.space.encode import distribution
from autopeft.storage.lease import StudyLease
from autopeft.storage.liveness import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS
from autopeft.storage.records import TrialRecord, placement_summary
from autopeft.storage.store import Store

if TYPE_CHECKING:
    from autopeft.allocation.profiles import Profile
    from autopeft.core.compiled import CompiledConfig
    from autopeft.executors.base import Executor
    from autopeft.search.references import Reference
    from autopeft.space.bound import Point
    from autopeft.spec import ExecutorSpec, StudySpec
    from autopeft.trial.memory_model import MemoryModel
    from autopeft.trial.runner import TrialRequest, TrialResult

#: Proposals in a row predicted over ``memory_cap_mb`` before the driver gives up.
MAX_SKIPS_IN_A_ROW = 25


@dataclass(frozen=True)
class StudyOutcome:
    """What :func:`run_study` leaves behind."""

    name: str
    url: str
    records: list[TrialRecord]
    objectives: list[Objective]


def run_study(
    path: str | Path,
    *,
    trials: int | None = None,
    storage: str | None = None,
    name: str | None = None,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    executor_options: dict[str, Any] | None = None,
    warm_start: Sequence[str] = (),
) -> StudyOutcome:
    """Create the study (or resume it) and run trials until it has ``trials`` finished ones,
    or its ``fidelity.budget_steps`` are spent (:mod:`autopeft.search.budget`).

    Args:
        path: The study spec file.
        trials: Total finished trials wanted (default: the spec's ``n_trials``; None there: the
            step budget alone ends the study).
        storage: Database URL (default: spec, ``$AUTOPEFT_STORAGE``, ``sqlite:///autopeft.db``).
        name: Study name (default: the spec's ``name``).
        reporter: Progress hooks (default: silent).
        executor: Where trials run (default: built from the spec's ``executor``).
        executor_options: Overrides of the spec's ``executor`` fields (``name``, ``workers``,
            ``address``, ...; None values ignored). They never change the study's fingerprint.
        warm_start: Studies to seed a new study from, added to the spec's ``warm_start``
            (ignored when the study exists: it keeps the design it was created with).
    """
    from autopeft.executors.factory import override_executor
    from autopeft.spec import load_study

    files = load_study(path)  # loaded and validated once, for the check and the preparation
    _refuse_if_running(files.spec, storage, name)
    prepared = prepare_study(files, storage=storage, name=name, warm_start=warm_start)
    note = reporter.message if reporter is not None else None
    executor_spec = override_executor(prepared.files.spec.executor, executor_options or {}, note)
    check_gpus(executor_spec)  # --gpus N beyond what torch sees: refused before anything is written
    store = Store(prepared.url)
    profiles = _allocation_profiles(prepared, store, reporter)
    new = prepared.name not in store.study_names()
    register_study(store, prepared)
    lease = StudyLease(
        store,
        prepared.name,
        stale_after=STALE_AFTER_SECONDS,
        heartbeat_every=HEARTBEAT_SECONDS,
        note=_note,
    )
    try:
        lease.acquire()
    except BaseException:
        if executor is not None:
            executor.close()
        raise
    with lease:  # acquired above; heartbeats from here on, released however the run ends
        if profiles:
            from autopeft.run.profiling import attach_to_study

            attach_to_study(store, prepared.name, profiles)
        followed = _design_profiles(prepared, store, new)
        store.set_driver_error(prepared.name, None)
        runner = StudyRunner(
            prepared, store, reporter or Reporter(), executor, executor_spec, followed
        )
        runner.lease = lease
        try:
            return runner.run(trials or prepared.files.spec.n_trials)
        except Exception as exc:  # not an interrupt: the study shows as failed, with this line
            store.set_driver_error(prepared.name, _first_line(exc))
            raise


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _refuse_if_running(spec: StudySpec, storage: str | None, name: str | None) -> None:
    """Refuse a study that another driver runs now, before the slow checks of
    :func:`prepare_study` (the lease taken later is what decides)."""
    from autopeft.storage.lease import refuse_if_running
    from autopeft.storage.urls import resolve_storage

    url = resolve_storage(storage, spec.storage)
    refuse_if_running(url, name or spec.name, STALE_AFTER_SECONDS)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _memory_model(p: PreparedStudy) -> MemoryModel:
    """The study's peak-memory predictor (see :mod:`autopeft.trial.memory_model`)."""
    from autopeft.trial.memory_model import study_memory_model

    spec = p.files.spec
    labels = getattr(p.splits.train, "label_names", None) if spec.task == "seq_cls" else None
    return study_memory_model(
        p.model_path,
        p.bound.layout,
        num_labels=len(labels) if labels is not None else None,
        batch_size=spec.fidelity.batch_size,
        seq_len=spec.fidelity.seq_len,
        precision=spec.model.precision,
        num_hidden_layers=spec.model.num_hidden_layers,
    )


def _allocation_profiles(p: PreparedStudy, store: Store, reporter: Reporter | None) -> dict:
    """Profiles an ``allocation:`` space needs: read from the store, or measured once."""
    if p.files.space.allocation is None:
        return {}
    from autopeft.run.profiling import ensure_profiles

    return ensure_profiles(p, store, reporter)


def _design_profiles(p: PreparedStudy, store: Store, new: bool) -> dict[str, Profile]:
    """Stored profiles for a structured sampler (``structured: true``) to follow."""
    if not p.files.spec.sampler.options.get("structured"):
        return {}
    from autopeft.run.profiling import design_profiles

    return design_profiles(p, store, new)


class StudyRunner:
    """The driver loop; the only writer to the database.

    It keeps ``executor.capacity`` trials running. Free slots are filled first with re-runs of
    interrupted trials (a stopped driver, a dead worker), then, in a multi-fidelity study, with
    promotions (:mod:`autopeft.search.promotion`), then with one batch of proposals from
    the sampler, which sees every RUNNING trial as pending. Results are recorded as they come
    back; running trials get a heartbeat every ``HEARTBEAT_SECONDS``. What the loop needs to
    know about the study it reads from :attr:`mirror`, loaded when :meth:`run` starts.

    A multi-fidelity study's budget counts configurations: it runs until ``target`` of them
    have finished the lowest rung and no trial is running or can be promoted. Each decision is
    a function of the stored trials, so a restarted driver resumes the promotions exactly: a
    promotion left running is re-run at its rung, none is started twice.

    With ``fidelity.budget_steps`` a trial starts only while the steps charged so far leave
    room for it (:class:`~autopeft.search.budget.StepBudget`); ``target`` None: the steps alone
    end the study. The spent steps are read from the stored trials, so a resumed study goes on
    from them.
    """

    auto_rungs = False  # rungs: auto (set from the spec)
    _entry = 0  # the rung new configurations start at (rungs: auto, calibration)

    def __init__(
        self,
        prepared: PreparedStudy,
        store: Store,
        reporter: Reporter,
        executor: Executor | None,
        executor_spec: ExecutorSpec | None = None,
        profiles: Mapping[str, Profile] | None = None,
    ) -> None:
        spec = prepared.files.spec
        self.p, self.store, self.reporter = prepared, store, reporter
        self._executor = executor
        self.executor_spec = executor_spec or spec.executor
        self.memory = _memory_model(prepared)
        bound, cap = prepared.bound, self.executor_spec.memory_cap_mb
        if cap is not None:  # samplers propose only points predicted under the cap
            bound = bound.constrained(
                lambda point: self._predict_point_mb(point) <= cap,
                f" (with peak memory predicted under memory_cap_mb={cap:g})",
            )
        sampler = make_sampler(
            spec.sampler.name, bound, prepared.objectives, spec.seed, spec.sampler.options
        )
        if profiles:  # the structured design's profile family (see _design_profiles)
            sampler.set_profiles({kind: p.scores for kind, p in profiles.items()})
            reporter.message(
                f"structured design: rank patterns of the stored {', '.join(profiles)} "
                "profile(s) of this model and data"
            )
        self.sampler = with_warm_start(sampler, store, prepared.name)
        self._beats: dict[int, float] = {}
        self._last_beat = time.monotonic()
        self._clock = (time.monotonic(), 0)  # (start, finished trials at start)
        self.distributions = {d.name: distribution(d.spec) for d in prepared.bound.dimensions}
        self.mirror: TrialMirror  # loaded by run()
        self.lease: StudyLease | None = None  # checked on every poll when set
        self._predicted: dict[int, float] = {}  # trial number -> predicted peak MiB
        self._skips = 0  # proposals in a row predicted over the memory cap
        self.rungs = spec.fidelity.rung_steps
        self.multi_fidelity = len(self.rungs) > 1
        self._noted_distrust: frozenset[int] = frozenset()
        fidelity = spec.fidelity
        self.budget = StepBudget(fidelity.budget_steps, self.rungs, fidelity.reduction_factor)
        self.auto_rungs = fidelity.auto_rungs
        self._entry = 0  # the rung new configurations start at (rungs: auto, calibration)
        self._pairs: dict[int, int] = {}  # rungs: auto: rung -> configurations measured
        self.checkpoints = StudyCheckpoints(checkpoint_dir(prepared.url, prepared.name), self.rungs)

    def run(self, target: int | None) -> StudyOutcome:
        name = self.p.name
        for number in self.store.recover_stale(name, STALE_AFTER_SECONDS):
            self.reporter.message(f"trial {number} was left running by a stopped driver: re-queued")
        budget = self.p.bound.space.max_trainable_params
        self.mirror = TrialMirror(self.store, name, self.p.objectives, budget, self.rungs)
        self._refit_memory()
        if not self._more_work([], target):  # nothing to run: start no workers
            self.checkpoints.clear()  # nothing can be promoted any more
            if self._executor is not None:
                self._executor.close()
            return StudyOutcome(name, self.p.url, self.store.records(name), self.p.objectives)
        executor = self._executor or self._default_executor()
        if executor.on_step is None:
            executor.on_step = self._on_step
        self._clock = (time.monotonic(), self._capped(self._finished(), target))
        self.reporter.study_started(name, self._clock[1], target)
        self._report_status(target, executor)
        try:
            while self._more_work(executor.running(), target):
                free = executor.capacity - len(executor.running())
                wanted = min(free, self._wanted(executor, target))
                # a stop asked through the database (lease.request_stop): start nothing new
                # (read afresh before any start), let the running trials finish, then return
                if self.lease is not None and self.lease.stop_requested(0.0 if wanted else 1.0):
                    if not executor.running():
                        self.reporter.message("stop requested: no trial running, stopping")
                        break
                    wanted = 0
                for request in self._start_batch(wanted, target):
                    executor.submit(request)
                for result in executor.poll(timeout=1.0):
                    self._record(result, target)
                    self._report_status(target, executor)
                self._beat_running(executor)
                if self.lease is not None:
                    self.lease.check()
        except StorageError:
            raise  # the database is gone: the next run re-queues the trials left RUNNING
        except BaseException:
            for number in executor.running():
                self.store.fail_trial(
                    name, number, "interrupted: the driver was stopped", interrupted=True
                )
            raise
        finally:
            executor.close()
        if self.multi_fidelity and not self._more_work([], target):
            self.checkpoints.clear()  # the study has ended: nothing can be promoted any more
        return StudyOutcome(name, self.p.url, self.store.records(name), self.p.objectives)

    def _default_executor(self) -> Executor:
        from autopeft.executors.factory import make_executor
        from autopeft.executors.gpu_plan import cuda_view, plan_gpus

        plan = plan_gpus(self.executor_spec, cuda_view(), self._largest_peak())
        for line in plan.notes:
            self.reporter.message(line)
        setup = worker_setup(self.p, self.executor_spec)
        return make_executor(setup, self.executor_spec, self._on_step, self.reporter.message, plan)

    def _largest_peak(self) -> float:
        """Predicted peak bytes of the space's largest configuration (GPU packing)."""
        from autopeft.trial.memory_model import largest_configuration

        params, placement = largest_configuration(self.p.bound)
        return self.memory.predict(params, placement)

    def _finished(self) -> int:
        return self.mirror.finished

    @staticmethod
    def _capped(done: int, target: int | None) -> int:
        return done if target is None else min(done, target)

    def _new_allowed(self, target: int | None) -> bool:
        """Whether another new configuration may start: under ``target`` configurations and
        within the step budget (room left for the promotions the rungs owe)."""
        if target is not None and self.mirror.configurations_started() >= target:
            return False
        entries = self.mirror.rung_entries() if self.multi_fidelity else []
        return self.budget.admits_new(self.mirror.steps_spent, entries, self._entry)

    def _more_work(self, running: list[int], target: int | None) -> bool:
        """Whether the study goes on: a new configuration may start (fewer than ``target``
        finished, steps left), a reference waits, or (multi-fidelity) a trial runs or can be
        promoted."""
        if self._pending_references():
            return True
        if self.multi_fidelity and self.mirror.retries_waiting:  # a re-run is never refused
            return True
        if self.multi_fidelity and (running or self._promotions(target)):
            return True
        if not self.multi_fidelity and target is not None and self._finished() >= target:
            return False
        return bool(running) or self._new_allowed(target)

    def _promotions(self, target: int | None) -> list[int]:
        """Trials to promote now, those the step budget cannot carry to the top left out."""
        draining = not self._new_allowed(target)
        fidelity = self.p.files.spec.fidelity
        cap = fidelity.promotion == "quota"
        distrusted = self._distrusted()
        chosen = self.mirror.promotions(
            draining, fidelity.reduction_factor, cap, distrusted, fidelity.promotion_order
        )
        if self._calibrates():  # calibration configurations go up whatever they rank
            pending = calibration(self.mirror.records(), len(self.rungs)).pending
            chosen = [*pending, *(n for n in chosen if n not in pending)]
        if self.budget.budget is None:
            return chosen
        out, spent = [], self.mirror.steps_spent
        for number in chosen:
            rung = self.mirror.record(number).rung or 0
            if self.budget.admits_promotion(spent, rung):
                out.append(number)
                spent += self.rungs[rung + 1] - self.rungs[rung]
        return out

    def _calibrates(self) -> bool:
        """Whether the rungs are judged on calibration configurations trained to the top rung
        whatever they rank (:func:`~autopeft.search.budget.calibration`): fixed rungs under
        ``promotion: asha``. Not under ``promotion: quota``, whose cap on each rung's promotions
        nothing overrides, nor under ``rungs: auto``, which measures its rungs itself."""
        return not self.auto_rungs and self.p.files.spec.fidelity.promotion != "quota"

    def _distrusted(self) -> frozenset[int]:
        """Rungs that rank configurations unlike the top rung (:mod:`autopeft.results.rungs`);
        one ``note:`` line each time that changes. Fixed rungs under ``promotion: asha``: judged
        on the calibration configurations (:meth:`_calibrated`); under ``quota``: on every
        configuration that reached the top rung. ``rungs: auto``: also the rungs not yet
        measured, and it moves the entry rung above the lowest measured, distrusted ones
        (:func:`~autopeft.search.budget.entry_rung`)."""
        from autopeft.results.rungs import distrusted_rungs, rung_correlations

        records = self.mirror.records()
        metric = self.p.files.spec.metric
        if self._calibrates():
            return self._calibrated(records, metric)
        distrusted = distrusted_rungs(records, metric, len(self.rungs))
        if self.auto_rungs:
            distrusted = self._auto_rungs(records, metric, distrusted)
        if distrusted != self._noted_distrust:
            for c in rung_correlations(records, metric, len(self.rungs)):
                if c.distrusted != (c.rung in self._noted_distrust):
                    steps = self.rungs[c.rung]
                    what = (
                        "does not rank configurations as the top rung does: every trial "
                        "there now moves up (no selection at that rung)"
                        if c.distrusted
                        else "ranks configurations as the top rung does again: selecting there"
                    )
                    self.reporter.message(
                        f"note: rung {c.rung} ({steps} steps) {what} (Spearman {c.rho:.2f} "
                        f"over {c.pairs} configurations)"
                    )
            self._noted_distrust = distrusted
        if self.auto_rungs:
            return distrusted | unmeasured_rungs(self._pairs, len(self.rungs))
        return distrusted

    def _calibrated(self, records: list[TrialRecord], metric: str) -> frozenset[int]:
        """Fixed rungs: the rungs distrusted on the calibration configurations
        (:func:`~autopeft.search.budget.calibration`), nothing before they are all measured;
        the lowest distrusted rungs are skipped by new configurations, one ``note:`` line each
        time that changes."""
        from autopeft.results.rungs import rung_correlations

        calib = calibration(records, len(self.rungs))
        if not calib.done:
            return frozenset()
        correlations = rung_correlations(records, metric, len(self.rungs), calib.roots)
        distrusted = frozenset(c.rung for c in correlations if c.distrusted)
        if distrusted == self._noted_distrust:
            return distrusted
        pairs = {c.rung: c.pairs for c in correlations}
        entry = entry_rung(pairs, distrusted, len(self.rungs), min_pairs=1)
        measured = "; ".join(
            f"rung {c.rung} ({self.rungs[c.rung]} steps) Spearman {c.rho:.2f} over {c.pairs}"
            for c in correlations
            if c.distrusted
        )
        if not distrusted:
            what = "every rung ranks configurations as the top rung does again: selecting there"
        elif entry == len(self.rungs) - 1:
            what = f"{measured} rank configurations unlike the top rung: new configurations now "
            what += "train at the top rung only"
        else:
            what = f"{measured} rank configurations unlike the top rung: new configurations now "
            what += f"start at rung {entry} ({self.rungs[entry]} steps)"
            if distrusted - set(range(entry)):
                what += "; no selection at the distrusted rungs above it"
        self.reporter.message(
            f"note: calibration on {len(calib.roots)} configurations trained to the top rung: "
            + what
        )
        self._entry, self._noted_distrust = entry, distrusted
        return distrusted

    def _auto_rungs(
        self, records: list[TrialRecord], metric: str, distrusted: frozenset[int]
    ) -> frozenset[int]:
        """``rungs: auto``: only measured rungs are distrusted; the entry rung moves above the
        lowest of them (one ``note:`` line when it does)."""
        from autopeft.results.rungs import rung_correlations

        self._pairs = {c.rung: c.pairs for c in rung_correlations(records, metric, len(self.rungs))}
        measured = frozenset(k for k in distrusted if self._pairs.get(k, 0) >= AUTO_MIN_PAIRS)
        entry = entry_rung(self._pairs, measured, len(self.rungs))
        if entry != self._entry:
            self.reporter.message(
                f"note: rungs: auto: new configurations now start at rung {entry} "
                f"({self.rungs[entry]} steps): the rungs below rank configurations unlike the "
                "top rung"
            )
            self._entry = entry
        return measured

    def _wanted(self, executor: Executor, target: int | None) -> int:
        if self.multi_fidelity or target is None:  # the budget decides trial by trial
            return executor.capacity
        searched = [n for n in executor.running() if self.mirror.record(n).reference is None]
        pending = len(self._pending_references())
        return pending + max(0, target - self._finished() - len(searched))

    def _pending_references(self) -> list[Reference]:
        """The spec's references not yet trained nor training (an interrupted one is again)."""
        taken = {r.reference for r in self.mirror.records() if r.reference and not r.interrupted}
        return [ref for ref in self.p.references if ref.name not in taken]

    def _start_reference(self, ref: Reference) -> TrialRequest:
        """Train a reference (:mod:`autopeft.search.references`): stored with its name, and
        with its point when the space can express it (the sampler then observes it); its
        interrupted earlier runs are marked re-run by this one."""
        from autopeft.trial.runner import TrialRequest

        point, distributions = ({}, {}) if ref.point is None else (ref.point, self.distributions)
        number = self.store.start_trial(
            self.p.name,
            point,
            distributions,
            ref.compiled,
            reference=ref.name,
            in_space=ref.point is not None,
        )
        self._predicted[number] = self._predict_mb(ref.compiled)
        self.mirror.refresh(number)
        for old in self.mirror.records():
            if old.reference == ref.name and old.interrupted and old.number != number:
                self.store.mark_retried(self.p.name, old.number, number)
                self.mirror.retried(old.number)
        budget = self.p.bound.space.max_trainable_params
        note = f", over the study's budget of {budget:,}" if ref.over_budget else ""
        summary = (
            f"reference {ref.name}: {ref.compiled.method} {ref.compiled.trainable_params:,} "
            f"params{note} " + placement_summary(ref.compiled.placement)
        )
        steps = self.rungs[-1] if self.multi_fidelity else None  # the top rung's training
        self.reporter.trial_started(number, summary, steps or self.p.files.spec.fidelity.max_steps)
        self._beats[number] = time.monotonic()
        return TrialRequest(number, ref.compiled, self.p.files.spec.seed, steps)

    def _start_batch(self, n: int, target: int | None = None) -> list[TrialRequest]:
        """Up to ``n`` new trials: pending re-runs first, then promotions (multi-fidelity),
        then one batch of proposals (in a multi-fidelity study, up to ``target``
        configurations)."""
        requests: list[TrialRequest] = []
        if n <= 0:  # no free slot: decide nothing (promotions are decided when one frees up)
            return requests
        for ref in self._pending_references()[:n]:  # references first
            requests.append(self._start_reference(ref))
        while len(requests) < n and (retry := self.mirror.next_retry()) is not None:
            requests.append(self._start(retry[1], retry_of=retry[0]))
        if self.multi_fidelity:
            for number in self._promotions(target)[: n - len(requests)]:
                requests.append(self._promote(number))
        while len(requests) < n and self._new_allowed(target):
            points = self._propose(n - len(requests))
            if not points:
                break
            for point in points:
                if not self._new_allowed(target):  # the steps ran out within the batch
                    break
                compiled = self.p.bound.compile(point, self.p.task_type)
                predicted = self._predict_mb(compiled)
                if self._over_cap(predicted):
                    self._skip(point, compiled, predicted)
                else:
                    self._skips = 0
                    rung = self._entry if self.multi_fidelity else None
                    requests.append(self._start(point, compiled=compiled, rung=rung))
        return requests

    def _predict_mb(self, compiled: CompiledConfig) -> float:
        return self.memory.predict(compiled.trainable_params, compiled.placement) / 2**20

    def _predict_point_mb(self, point: Point) -> float:
        """:meth:`_predict_mb` of a point without compiling it (a sampler asks this of every
        candidate): the placement is the method's cell sizes, which compilation reproduces."""
        bound = self.p.bound
        placement: dict[int, dict[str, int]] = {}
        for (layer, module), size in bound.method.cell_sizes(bound, point).items():
            if size:
                placement.setdefault(layer, {})[module] = size
        return self.memory.predict(bound.count_params(point), placement) / 2**20

    def _over_cap(self, predicted_mb: float) -> bool:
        cap = self.executor_spec.memory_cap_mb
        return cap is not None and predicted_mb > cap

    def _skip(self, point: Point, compiled: CompiledConfig, predicted_mb: float) -> None:
        """Record a proposal predicted over the memory cap as a failed, infeasible trial that
        never ran (the sampler learns it like an out-of-memory; the budget is not charged)."""
        cap = self.executor_spec.memory_cap_mb
        number = self.store.start_trial(
            self.p.name, point, self.distributions, compiled, **self._rung_fields(0, None)
        )
        reason = (
            f"skipped: predicted peak memory {predicted_mb:.1f} MiB > memory_cap_mb {cap:g}; "
            "not launched"
        )
        metrics = {"predicted_peak_memory_mb": predicted_mb, "skipped": True}
        self.store.fail_trial(self.p.name, number, reason, infeasible=True, metrics=metrics)
        self.mirror.refresh(number)
        self.reporter.message(f"trial {number} {reason}")
        self._skips += 1
        if self._skips >= MAX_SKIPS_IN_A_ROW:
            raise StudyError(
                f"{self._skips} proposals in a row were predicted over memory_cap_mb {cap:g} "
                f"(the last: {predicted_mb:.1f} MiB); raise executor.memory_cap_mb or shrink the "
                "search space"
            )

    def _refit_memory(self) -> None:
        done = [r for r in self.mirror.records() if r.state in ("COMPLETE", "PRUNED") and r.metrics]
        self.memory.fit(
            (int(r.metrics["trainable_params"]), r.placement, r.metrics["peak_memory_bytes"])
            for r in done
            if "peak_memory_bytes" in r.metrics and "trainable_params" in r.metrics
        )

    def _rung_fields(self, rung: int | None, promoted_from: int | None) -> dict[str, Any]:
        """What :meth:`Store.start_trial` stores of a trial's rung (nothing without rungs)."""
        if not self.multi_fidelity:
            return {}
        rung = rung or 0
        return {"rung": rung, "promoted_from": promoted_from, "steps": self.rungs[rung]}

    def _promote(self, number: int) -> TrialRequest:
        """Train trial ``number``'s configuration at the next rung, continuing from its
        checkpoint (:mod:`autopeft.run.checkpoints`)."""
        source = self.mirror.record(number)
        rung = (source.rung or 0) + 1
        return self._start(dict(source.params), rung=rung, promoted_from=number)

    def _start(
        self,
        point: Point,
        retry_of: int | None = None,
        compiled: CompiledConfig | None = None,
        rung: int | None = None,
        promoted_from: int | None = None,
    ) -> TrialRequest:
        from autopeft.trial.runner import TrialRequest

        if retry_of is not None:  # a re-run keeps the interrupted trial's rung and source
            interrupted = self.mirror.record(retry_of)
            rung, promoted_from = interrupted.rung, interrupted.promoted_from
        fields = self._rung_fields(rung, promoted_from)
        compiled = compiled or self.p.bound.compile(point, self.p.task_type)
        number = self.store.start_trial(self.p.name, point, self.distributions, compiled, **fields)
        self._predicted[number] = self._predict_mb(compiled)
        self.mirror.refresh(number)
        if retry_of is not None:
            self.store.mark_retried(self.p.name, retry_of, number)
            self.mirror.retried(retry_of)
        summary = f"{compiled.method} {compiled.trainable_params:,} params " + placement_summary(
            compiled.placement
        )
        if retry_of is not None:
            summary += f" (re-run of trial {retry_of})"
        steps = fields.get("steps")
        if steps is not None:
            source = f", promoted from trial {promoted_from}" if promoted_from is not None else ""
            summary = f"rung {fields['rung']} ({steps} steps{source}) {summary}"
        self.reporter.trial_started(number, summary, steps or self.p.files.spec.fidelity.max_steps)
        self._beats[number] = time.monotonic()
        continuation = None
        if steps is not None:
            continuation = self.checkpoints.continuation(number, fields["rung"], promoted_from)
        return TrialRequest(number, compiled, self.p.files.spec.seed, steps, continuation)

    def _propose(self, n: int) -> list[Point]:
        """``n`` new configurations from the sampler; in a multi-fidelity study it does not see
        the results at the rungs measured to rank configurations unlike the top rung."""
        hidden = self._measured_distrust() if self.multi_fidelity else frozenset()
        history = self.mirror.history(self.sampler.multi_fidelity, hidden)
        return self.sampler.propose(history, n)

    def _measured_distrust(self) -> frozenset[int]:
        """The rungs measured to rank configurations unlike the top rung (not those ``rungs:
        auto`` has not measured yet), as of the last :meth:`_distrusted`."""
        self._distrusted()
        return self._noted_distrust

    def _on_step(self, number: int, step: int, total: int) -> None:
        self.reporter.step(number, step, total)
        if time.monotonic() - self._beats.get(number, 0.0) > HEARTBEAT_SECONDS:
            self.store.heartbeat(self.p.name, number)
            self._beats[number] = time.monotonic()

    def _beat_running(self, executor: Executor) -> None:
        """Heartbeat every running trial, also those between training steps (or queued)."""
        if time.monotonic() - self._last_beat < HEARTBEAT_SECONDS:
            return
        for number in executor.running():
            self.store.heartbeat(self.p.name, number)
            self._beats[number] = time.monotonic()
        self._last_beat = time.monotonic()

    def _record(self, result: TrialResult, target: int | None) -> None:
        name = self.p.name
        self._beats.pop(result.number, None)
        predicted = self._predicted.pop(result.number, None)
        if predicted is not None:
            result = replace(
                result, metrics={**result.metrics, "predicted_peak_memory_mb": predicted}
            )
        if result.ok:
            values = [float(result.metrics[o.name]) for o in self.p.objectives]
            rung = self.mirror.record(result.number).rung
            partial = rung is not None and rung < len(self.rungs) - 1
            self.store.complete_trial(name, result.number, values, result.metrics, partial=partial)
            self.mirror.refresh(result.number)
            if not partial:
                self._store_hypervolume()
            self._refit_memory()
            m = result.metrics
            line = "" if rung is None else f"rung {rung} | "
            reference = self.mirror.record(result.number).reference
            line += "" if reference is None else f"reference {reference} | "
            line += (
                f"{self.p.files.spec.metric} {m[self.p.files.spec.metric]:.4f} | "
                f"{m['trainable_params']:,} params | {m['peak_memory_mb']:.1f} MiB "
                f"(predicted {m.get('predicted_peak_memory_mb', float('nan')):.1f}) | "
                f"{m['train_seconds']:.1f} s"
            )
        elif result.lost and self._may_retry(result.number):
            reason = f"interrupted: {result.error or 'its worker died'}"
            self.store.fail_trial(name, result.number, reason, interrupted=True)
            self.mirror.refresh(result.number)
            line = f"LOST ({result.error}); its point is re-queued"
        else:
            self.store.fail_trial(
                name,
                result.number,
                result.error or "unknown error",
                infeasible=result.infeasible,
                metrics=result.metrics,
            )
            self.mirror.refresh(result.number)
            kind = "infeasible" if result.infeasible else "lost" if result.lost else "error"
            line = f"FAILED ({kind}): {result.error}"
        self.reporter.trial_finished(result.number, line, self._capped(self._finished(), target))
        if result.metrics.get("note"):
            self.reporter.message(f"note: trial {result.number}: {result.metrics['note']}")
        record = self.mirror.record(result.number)
        if record.promoted_from is not None and not record.interrupted:
            self.checkpoints.release(record.promoted_from)  # its one promotion has finished

    def _store_hypervolume(self) -> None:
        updates = self.mirror.hypervolume_updates()
        self.store.set_hypervolumes(self.p.name, updates)
        self.mirror.set_hypervolumes(updates)

    def _may_retry(self, number: int) -> bool:
        """A trial lost with its worker is re-run until its chain has ``max_retries`` re-runs."""
        return self.store.retries_before(self.p.name, number) < self.executor_spec.max_retries

    def _report_status(self, target: int | None, executor: Executor) -> None:
        if not self.reporter.wants_status:
            return
        start, done_before = self._clock
        running, elapsed = len(executor.running()), time.monotonic() - start
        budget = self.budget.budget
        self.reporter.status(self.mirror.status(target, running, elapsed, done_before, budget))
