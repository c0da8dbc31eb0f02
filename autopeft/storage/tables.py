"""autopeft's own tables, beside Optuna's in the same database.

Optuna's RDB schema holds studies, trials, params and objective values (so ``optuna-dashboard``
opens our studies). These tables hold what Optuna does not model: the study spec and search
space as written, the model layout, compiled peft configs, full measurements, and trial
ownership/heartbeats for crash recovery, and the lease that lets one driver at a time run a
study. Bump :data:`SCHEMA_VERSION` with a migration in
``store._migrate`` whenever a table changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# 2: autopeft_profiles, autopeft_study_profiles (allocation profiles)
# 3: autopeft_trials.hypervolume
# 4: autopeft_leases (one driver per study)
# 5: autopeft_tokens (API tokens of `autopeft serve`)
# 6: autopeft_confirmations (`autopeft confirm`)
# 7: autopeft_leases.stop_requested_at (a stop asked of the driver through the database)
# 8: autopeft_trials.rung, autopeft_trials.promoted_from (multi-fidelity studies)
# 9: indexes covering the change marker's queries (:mod:`autopeft.storage.marker`)
SCHEMA_VERSION = 9


class Base(DeclarativeBase):
    pass


class SchemaRow(Base):
    __tablename__ = "autopeft_schema"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class StudyRow(Base):
    """One autopeft study; ``name`` equals the Optuna study name."""

    __tablename__ = "autopeft_studies"

    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    space_yaml: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(Text)
    layout_json: Mapped[str] = mapped_column(Text)
    model_path: Mapped[str] = mapped_column(Text)
    objectives_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class TrialRow(Base):
    """One trial's compiled config and measurements; keyed like Optuna's trial."""

    __tablename__ = "autopeft_trials"

    study_name: Mapped[str] = mapped_column(String(512), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(Integer, index=True)
    point_json: Mapped[str] = mapped_column(Text)
    compiled_json: Mapped[str] = mapped_column(Text)
    metrics_json: Mapped[str] = mapped_column(Text, default="{}")
    fail_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    infeasible: Mapped[bool] = mapped_column(Boolean, default=False)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    retried_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str] = mapped_column(String(256), default="")
    heartbeat_at: Mapped[float] = mapped_column(Float, default=0.0)
    #: The study's hypervolume once this (complete) trial was in (schema 3).
    hypervolume: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The rung (0 = lowest) of a multi-fidelity study's trial; None otherwise (schema 8).
    rung: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The trial at the rung below whose configuration this one trains further (schema 8).
    promoted_from: Mapped[int | None] = mapped_column(Integer, nullable=True)

    __table_args__ = (
        # the change marker's aggregate reads only this index, not the wide rows (schema 9)
        Index(
            "ix_autopeft_trials_marker",
            "study_name",
            "trial_id",
            "hypervolume",
            "retried_by",
            "interrupted",
        ),
    )


class ProfileRow(Base):
    """A measured allocation profile, shared by every study with the same key."""

    __tablename__ = "autopeft_profiles"
    __table_args__ = (
        UniqueConstraint(
            "kind", "model", "dataset", "split", "n_batches", "seed", "batch_size", "seq_len"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(1024))
    dataset: Mapped[str] = mapped_column(String(1024))
    split: Mapped[str] = mapped_column(String(512))
    n_batches: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    seq_len: Mapped[int] = mapped_column(Integer)
    profile_json: Mapped[str] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class StudyProfileRow(Base):
    """Which profiles a study allocates with."""

    __tablename__ = "autopeft_study_profiles"

    study_name: Mapped[str] = mapped_column(String(512), primary_key=True)
    profile_id: Mapped[int] = mapped_column(Integer, primary_key=True)


class LeaseRow(Base):
    """The driver that runs a study now (schema 4): at most one row per study.

    ``token`` identifies one acquisition (two drivers in one process share an ``owner``);
    times are Unix seconds from the drivers' clocks, like :attr:`TrialRow.heartbeat_at`.
    """

    __tablename__ = "autopeft_leases"

    study_name: Mapped[str] = mapped_column(String(512), primary_key=True)
    owner: Mapped[str] = mapped_column(String(256))
    token: Mapped[str] = mapped_column(String(64))
    acquired_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    #: When someone asked the holder to stop (schema 7); the driver polls it between trials,
    #: and a new acquisition clears it.
    stop_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TokenRow(Base):
    """An API token of ``autopeft serve``: only its sha256 is stored (schema 5)."""

    __tablename__ = "autopeft_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class ConfirmationRow(Base):
    """A trial's configuration re-trained with several seeds and scored on the test split
    (``autopeft confirm``, schema 6); one row per (trial, steps, number of seeds)."""

    __tablename__ = "autopeft_confirmations"

    study_name: Mapped[str] = mapped_column(String(512), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    steps: Mapped[int] = mapped_column(Integer, primary_key=True)
    seeds: Mapped[int] = mapped_column(Integer, primary_key=True)
    split: Mapped[str] = mapped_column(String(64), default="test")
    #: objective name -> mean / standard deviation over the seeds that finished
    mean_json: Mapped[str] = mapped_column(Text)
    std_json: Mapped[str] = mapped_column(Text)
    #: one entry per seed: {"seed", "values"} or {"seed", "error"}
    runs_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
