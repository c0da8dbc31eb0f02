"""Read studies back: list them, summarise one, its Pareto front, the trial to export."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import yaml

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.exceptions import StudyError, UserInputError
from autopeft.storage.records import TrialRecord
from autopeft.storage.store import Store
from autopeft.storage.urls import resolve_storage


@dataclass(frozen=True)
class StudyView:
    """A stored study: its spec, objectives and trials, why its last driver failed
    (``driver_error``; None when it did not), and the metric of always giving the most common
    validation answer (``majority``; None where unknown)."""

    name: str
    url: str
    spec: dict[str, Any]
    model_path: str
    budget: int
    objectives: list[Objective]
    records: list[TrialRecord]
    driver_error: str | None = None
    fingerprint: str = ""
    hidden_size: int = 0
    sites: tuple[str, ...] = ()
    majority: float | None = None

    def counts(self) -> dict[str, int]:
        """Trials by state; interrupted trials (re-run later) are counted apart."""
        counter = Counter(
            "INTERRUPTED" if r.interrupted else "SKIPPED" if r.metrics.get("skipped") else r.state
            for r in self.records
        )
        return dict(sorted(counter.items()))

    def devices(self) -> dict[str, int]:
        """Complete trials per device they ran on (``cuda:0 NVIDIA H100 80GB``, ``cpu``)."""
        counter = Counter(
            str(r.metrics["device"]) for r in self.complete() if "device" in r.metrics
        )
        return dict(sorted(counter.items()))

    def memory_errors(self) -> list[float]:
        """``(predicted - measured) / measured`` peak memory of the complete trials that stored
        a prediction (see :mod:`autopeft.trial.memory_model`), by trial number."""
        return [
            (r.metrics["predicted_peak_memory_mb"] - r.metrics["peak_memory_mb"])
            / r.metrics["peak_memory_mb"]
            for r in self.complete()
            if "predicted_peak_memory_mb" in r.metrics and r.metrics.get("peak_memory_mb")
        ]

    def finished(self) -> int:
        """Finished trials as the budget counts them (what the driver runs until it has
        ``n_trials`` of): interrupted trials, those skipped before launch and a multi-fidelity
        study's promotions are left out."""
        return self._finished

    @cached_property
    def _finished(self) -> int:  # once per view: the service's status reads it per request
        return sum(1 for r in self.records if r.counts_for_budget)

    def rung_steps(self) -> list[int]:
        """Training steps per rung of a multi-fidelity study; empty otherwise."""
        rungs = self.spec.get("fidelity", {}).get("rungs")
        if rungs == "auto":
            from autopeft.spec import FidelitySpec

            return list(FidelitySpec.model_validate(self.spec["fidelity"]).rung_steps)
        return list(rungs or [])

    def budget_steps(self) -> int | None:
        """The study's ``fidelity.budget_steps`` (None: no step budget)."""
        value = self.spec.get("fidelity", {}).get("budget_steps")
        return None if value is None else int(value)

    def steps_spent(self) -> int:
        """Training steps charged against ``budget_steps`` (:mod:`autopeft.search.budget`)."""
        return self._steps_spent

    @cached_property
    def _steps_spent(self) -> int:
        rungs = self.rung_steps() or [int(self.spec.get("fidelity", {}).get("max_steps", 100))]
        return sum(r.charged_steps(rungs) for r in self.records)

    def rung_counts(self) -> list[int]:
        """Trials finished at each rung (interrupted and skipped ones left out)."""
        counts = [0] * len(self.rung_steps())
        for r in self.records:
            ran = not r.interrupted and not r.metrics.get("skipped")
            if r.rung is not None and r.rung < len(counts) and ran and r.state.is_finished():
                counts[r.rung] += 1
        return counts

    def training_steps(self) -> int:
        """Training steps spent by every finished trial (what a multi-fidelity search saves)."""
        return sum(
            int(r.metrics.get("steps", 0)) - int(r.metrics.get("continued_from_step", 0))
            for r in self.records
            if r.state.is_finished()
        )  # a promotion that continued its source trained only the steps above it

    def complete(self) -> list[TrialRecord]:
        return list(self._complete)

    @cached_property
    def _complete(self) -> tuple[TrialRecord, ...]:
        return tuple(r for r in self.records if r.state == TrialState.COMPLETE)

    def searched(self) -> list[TrialRecord]:
        """Every trial but the references: what the search proposed."""
        return [r for r in self.records if r.reference is None]

    def references(self) -> list[TrialRecord]:
        """The complete trials of the spec's ``references:``, by trial number."""
        return [r for r in self.complete() if r.reference is not None and r.values]

    def over_budget(self, record: TrialRecord) -> bool:
        """Whether a trial has more trainable parameters than the space's budget."""
        return int(record.metrics.get("trainable_params", 0)) > self.budget

    def hypervolume(self) -> list[float]:
        """Hypervolume after each complete searched trial (rule: :mod:`autopeft.core.
        hypervolume`), as the driver stored it; computed here only for trials stored without
        one. References are not in it."""
        searched = self.searched()
        stored = [r.hypervolume for r in searched if r.state == TrialState.COMPLETE and r.values]
        if all(v is not None for v in stored):
            return [float(v) for v in stored if v is not None]
        from autopeft.core.hypervolume import hypervolume_curve

        return hypervolume_curve(self.objectives, searched, self.budget)

    def best_values(self) -> dict[str, float]:
        """The best value of each objective over the complete searched trials (empty when
        none); references are compared with them, not counted in them."""
        done = [r for r in self.complete() if r.reference is None]
        if not done:
            return {}
        return {
            o.name: o.best(r.values[o.name] for r in done if o.name in r.values)
            for o in self.objectives
        }

    def front(self) -> list[TrialRecord]:
        """Non-dominated complete searched trials, best first by the first objective
        (references are shown beside it, never in it: see :meth:`references`)."""
        return list(self._front)

    @cached_property
    def _front(self) -> tuple[TrialRecord, ...]:
        # computed once per view: a server keeps views (results.view_cache) and reads the
        # front on every status, front and trials request
        from autopeft.results import pareto_front

        return tuple(pareto_front(self.searched(), self.objectives))


def open_store(storage: str | None) -> Store:
    """Open an existing database for reading (a missing SQLite file is an error)."""
    return Store(resolve_storage(storage), create=False)


def list_studies(storage: str | None = None) -> list[StudyView]:
    """Every autopeft study in the database."""
    store = open_store(storage)
    return [view_of(store, name) for name in store.study_names()]


def load_view(name: str, storage: str | None = None) -> StudyView:
    """One study; :class:`StudyError` (listing the known names) if it does not exist."""
    return view_of(open_store(storage), name)


def view_of(store: Store, name: str) -> StudyView:
    """Study ``name`` read from an open ``store`` (a server keeps one store open)."""
    row = store.study_row(name)
    budget = int(yaml.safe_load(row.space_yaml)["max_trainable_params"])
    layout = json.loads(row.layout_json or "{}")
    return StudyView(
        name,
        store.url,
        json.loads(row.spec_json),
        row.model_path,
        budget,
        store.objectives(name),
        store.records(name),
        store.driver_error(name),
        fingerprint=row.fingerprint,
        hidden_size=int(layout.get("hidden_size", 0)),
        sites=tuple(str(site["name"]) for site in layout.get("sites", ())),
        majority=store.majority_share(name),
    )


def choose_trial(
    view: StudyView, *, trial: int | None = None, pick: str | None = None
) -> TrialRecord:
    """The complete trial numbered ``trial``, or the one ``pick`` selects from the front."""
    from autopeft.results import pick_trial

    if (trial is None) == (pick is None):
        raise UserInputError(
            "give exactly one of --trial N or --pick (max-accuracy|min-params|knee)"
        )
    if pick is not None:
        return pick_trial(view.records, view.objectives, pick)
    for record in view.records:
        if record.number == trial:
            if record.state != TrialState.COMPLETE:
                raise StudyError(
                    f"trial {trial} of study {view.name!r} is {record.state}, not COMPLETE"
                )
            return record
    numbers = [r.number for r in view.complete()]
    raise StudyError(f"study {view.name!r} has no trial {trial}; complete trials: {numbers}")
