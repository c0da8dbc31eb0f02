"""autopeft's own tables, beside Optuna's in the same database.

Optuna's RDB schema holds studies, trials, params and objective values (so ``optuna-dashboard``
opens our studies). These tables hold what Optuna does not model: the study spec and search
space as written, the model layout, compiled peft configs, full measurements, and trial
ownership/heartbeats for crash recovery. Bump :data:`SCHEMA_VERSION` with a migration in
``store._migrate`` whenever a table changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2  # 2: autopeft_trials.hypervolume


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
    #: The study's hypervolume once this (complete) trial was in (schema 2).
    hypervolume: Mapped[float | None] = mapped_column(Float, nullable=True)
