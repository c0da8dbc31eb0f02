"""Confirmations in the database: a trial's configuration re-trained with several seeds and
scored on the held-out test split (``autopeft confirm``).

A confirmation is keyed by (study, trial, training steps, number of seeds); confirming the same
trial again with the same steps and seeds replaces the row. Readers use the newest
confirmation of each trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autopeft.core.compiled import CompiledConfig
from autopeft.exceptions import StudyError
from autopeft.storage.store import Store
from autopeft.storage.tables import ConfirmationRow, TrialRow

__all__ = ["Confirmation", "compiled_config", "confirmations", "latest", "save_confirmation"]


@dataclass(frozen=True)
class Confirmation:
    """One confirmed trial.

    Attributes:
        trial: The trial number in the study.
        steps: Training steps of every seed's run.
        seeds: How many seeds were run.
        mean: Objective name -> mean over the seeds that finished.
        std: Objective name -> sample standard deviation (0 for a single run).
        runs: One dict per seed: ``{"seed", "values"}`` or ``{"seed", "error"}``.
        split: The split scored (``test``).
        created_at: When it was stored.
    """

    trial: int
    steps: int
    seeds: int
    mean: dict[str, float]
    std: dict[str, float]
    runs: list[dict[str, Any]] = field(default_factory=list)
    split: str = "test"
    created_at: datetime | None = None

    @property
    def finished(self) -> int:
        """Seeds whose run finished (the mean and std are over these)."""
        return sum(1 for r in self.runs if "values" in r)


def save_confirmation(store: Store, study: str, c: Confirmation) -> None:
    """Store ``c`` (replacing a confirmation with the same trial, steps and seeds)."""
    with store.session() as s:
        old = s.get(ConfirmationRow, (study, c.trial, c.steps, c.seeds))
        if old is not None:
            s.delete(old)
            s.flush()
        s.add(
            ConfirmationRow(
                study_name=study,
                number=c.trial,
                steps=c.steps,
                seeds=c.seeds,
                split=c.split,
                mean_json=json.dumps(c.mean),
                std_json=json.dumps(c.std),
                runs_json=json.dumps(c.runs),
                created_at=datetime.now(UTC),
            )
        )


def confirmations(store: Store, study: str) -> list[Confirmation]:
    """Every confirmation of ``study``, oldest first."""
    with store.session() as s:
        rows = s.query(ConfirmationRow).filter_by(study_name=study)
        found = [
            Confirmation(
                trial=r.number,
                steps=r.steps,
                seeds=r.seeds,
                mean=json.loads(r.mean_json),
                std=json.loads(r.std_json),
                runs=json.loads(r.runs_json),
                split=r.split,
                created_at=r.created_at,
            )
            for r in rows
        ]
    return sorted(found, key=lambda c: (c.created_at or datetime.min, c.trial))


def latest(store: Store, study: str) -> dict[int, Confirmation]:
    """The newest confirmation of each confirmed trial, by trial number."""
    return {c.trial: c for c in confirmations(store, study)}


def compiled_config(store: Store, study: str, number: int) -> CompiledConfig:
    """The compiled config trial ``number`` ran (training overrides included)."""
    with store.session() as s:
        row = s.get(TrialRow, (study, number))
        data = json.loads(row.compiled_json) if row is not None else {}
    if not data.get("peft_config"):
        raise StudyError(f"trial {number} of study {study!r} has no compiled config")
    data["placement"] = {int(k): v for k, v in data.get("placement", {}).items()}
    fields = CompiledConfig.__dataclass_fields__  # a reference's row also names it
    return CompiledConfig(**{k: v for k, v in data.items() if k in fields})
