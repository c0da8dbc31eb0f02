"""The study spec (``studies/*.yaml``): what to search, on which model and data, how hard.

Relative paths inside a spec (search space, model directory, dataset file) resolve against the
spec file's own directory. See the README for every field and its default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from autopeft._yaml import StrictModel, issue_message, load_model
from autopeft.exceptions import StudySpecError
from autopeft.space.loader import load_space
from autopeft.space.schema import SearchSpace

Metric = Literal["accuracy", "macro_f1"]
MEASURES = ("trainable_params", "peak_memory_mb", "train_seconds")
DEFAULT_STORAGE = "sqlite:///autopeft.db"


class ModelSpec(StrictModel):
    """``path``: a built-in model name (``minilm-l6``) or a local HF model directory."""

    path: str
    num_hidden_layers: int | None = Field(default=None, ge=1)


class DatasetSpec(StrictModel):
    """``source``: a built-in dataset (``trec6``, ``rotten_tomatoes``), or a local CSV / JSONL /
    JSON file or ``datasets.save_to_disk`` directory with a text and a label column."""

    source: str
    text_column: str = "text"
    label_column: str = "label"


class SplitSpec(StrictModel):
    """Seeded stratified split. The test part is held out of the search entirely."""

    validation: float = Field(default=0.15, gt=0, le=0.5)
    test: float = Field(default=0.15, gt=0, le=0.5)
    seed: int = 0


class FidelitySpec(StrictModel):
    """How much training each trial gets."""

    train_examples: int = Field(default=1000, ge=1)
    max_steps: int = Field(default=100, ge=1)
    eval_examples: int = Field(default=500, ge=1)
    seq_len: int = Field(default=64, ge=4, le=8192)
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    memory_steps: int = Field(default=2, ge=1)


class ObjectiveSpec(StrictModel):
    """An objective: the task metric (maximised) or a measure (minimised)."""

    name: str
    direction: Literal["maximize", "minimize"] | None = None


class SamplerSpec(StrictModel):
    """Which sampler proposes configurations, and its options."""

    name: str = "mobo"
    options: dict[str, Any] = Field(default_factory=dict)


class ExecutorSpec(StrictModel):
    """Where trials run. ``threads``: torch intra-op threads for trials (default: torch's own
    choice, one per physical core). ``device``: ``auto`` uses CUDA when torch sees it."""

    name: Literal["inprocess"] = "inprocess"
    threads: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class StudySpec(StrictModel):
    """A whole study spec file."""

    version: Literal[1] = 1
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    model: ModelSpec
    dataset: DatasetSpec
    split: SplitSpec = SplitSpec()
    metric: Metric = "accuracy"
    objectives: tuple[ObjectiveSpec, ...] = ()
    search_space: str
    n_trials: int = Field(default=20, ge=1)
    fidelity: FidelitySpec = FidelitySpec()
    seed: int = 0
    storage: str | None = None
    sampler: SamplerSpec = SamplerSpec()
    executor: ExecutorSpec = ExecutorSpec()

    @field_validator("model", "dataset", "sampler", "executor", mode="before")
    @classmethod
    def _shorthand(cls, value: Any, info: Any) -> Any:
        key = {"model": "path", "dataset": "source"}.get(info.field_name, "name")
        return {key: value} if isinstance(value, str) else value

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("objectives")
    @classmethod
    def _check_objectives(cls, objectives: tuple[ObjectiveSpec, ...], info: Any) -> Any:
        metric = info.data.get("metric", "accuracy")
        names = [o.name for o in objectives]
        allowed = (metric, *MEASURES)
        for o in objectives:
            if o.name not in allowed:
                raise ValueError(f"unknown objective {o.name!r}; allowed: {', '.join(allowed)}")
            natural = "maximize" if o.name == metric else "minimize"
            if o.direction not in (None, natural):
                raise ValueError(f"objective {o.name!r} must {natural[:-1]}e, got {o.direction!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"objectives must be unique, got {names}")
        if names and metric not in names:
            raise ValueError(f"objectives must include the metric {metric!r}, got {names}")
        return objectives

    def objective_list(self) -> list[tuple[str, str]]:
        """(name, direction) pairs; default: metric, trainable_params, peak_memory_mb."""
        names = [o.name for o in self.objectives] or [
            self.metric,
            "trainable_params",
            "peak_memory_mb",
        ]
        return [(n, "maximize" if n == self.metric else "minimize") for n in names]

    def fingerprint(self) -> str:
        """Canonical JSON of everything that defines the search (not the budget or storage):
        resuming a study with a spec whose fingerprint differs is refused."""
        data = self.model_dump(exclude={"n_trials", "storage", "name", "description", "executor"})
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class StudyFiles:
    """A loaded study spec with its search space and where both came from."""

    spec: StudySpec
    path: Path
    space: SearchSpace
    space_path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_study(path: str | Path) -> StudyFiles:
    """Load a study spec and the search space it names; both fully validated.

    Raises:
        StudySpecError: the spec file is invalid (file, line, key, value, rule).
        SearchSpaceError: the search-space file is invalid.
    """
    path = Path(path)
    spec, node = load_model(path, StudySpec, StudySpecError)
    space_path = (path.parent / spec.search_space).resolve()
    if not space_path.is_file():
        message = f"search-space file not found at {space_path}"
        raise StudySpecError(
            issue_message(path, node, ("search_space",), message, spec.search_space)
        )
    space = load_space(space_path)
    return StudyFiles(spec, path.resolve(), space, space_path)
