"""The study spec (``studies/*.yaml``): what to search, on which model and data, how hard.

Relative paths inside a spec (search space, model directory, dataset file) resolve against the
spec file's own directory. Every field and its default: docs/reference/spec.md, generated from
these models by `make docs`.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autopeft.core.validation import StrictModel, issue_message, load_model
from autopeft.exceptions import StudySpecError
from autopeft.methods.binding import load_space
from autopeft.space.schema import SearchSpace
from autopeft.tasks import TASK_METRICS, default_metric

TaskName = Literal["seq_cls", "causal_lm"]
MEASURES = ("trainable_params", "peak_memory_mb", "train_seconds")
# Fields added after studies were stored: left out of the fingerprint while at their default, so
# studies created before them still resume.
_LATER_FIELDS: dict[tuple[str, ...], Any] = {
    ("task",): "seq_cls",
    ("evaluation",): None,
    ("model", "precision"): "fp32",
    ("model", "quantization"): None,
    ("model", "revision"): None,
    ("fidelity", "gradient_checkpointing"): False,
    ("fidelity", "reduction_factor"): 3.0,
    ("fidelity", "promotion"): "asha",
    ("fidelity", "rungs"): None,
    ("dataset", "prompt_column"): "prompt",
    ("dataset", "completion_column"): "completion",
    ("dataset", "messages_column"): "messages",
    ("dataset", "chat_template"): False,
    ("dataset", "hub"): None,
    ("dataset", "config"): None,
    ("dataset", "split"): "train",
    ("dataset", "format"): "auto",
    ("dataset", "text_pair_column"): None,
    ("references",): (),
}


class ModelSpec(StrictModel):
    """``path``: a built-in model name (``minilm-l6``, ``smollm2-135m``), a local HF model
    directory, a ``.gguf`` file (converted once into a cached HF directory), or a Hugging Face
    Hub ID (``Qwen/Qwen2.5-0.5B-Instruct``, resolved through the Hub cache on the driver and on
    every worker; ``revision``: a branch, tag or commit of it).

    ``precision``: the base weights' dtype and the forward pass's autocast (adapters stay fp32);
    ``fp16`` needs CUDA. ``quantization``: QLoRA's ``nf4`` or ``int8`` base weights through
    bitsandbytes (CUDA only).
    """

    path: str
    """The base model: a built-in name (``minilm-l6``, ``smollm2-135m``), a local Hugging Face
    model directory, a ``.gguf`` file (converted once into a cached HF directory) or a Hub ID
    (``Qwen/Qwen2.5-0.5B-Instruct``)."""
    revision: str | None = Field(default=None, min_length=1)
    """A branch, tag or commit of a Hub model; unset: the default branch."""
    num_hidden_layers: int | None = Field(default=None, ge=1)
    """Keep only the first N transformer layers (a smaller, faster model for trials); unset: all
    layers."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """The base weights' dtype and the forward pass's autocast (adapters stay fp32); ``fp16`` needs
    CUDA."""
    quantization: Literal["nf4", "int8"] | None = None
    """QLoRA base weights through bitsandbytes: ``nf4`` (4-bit) or ``int8``; CUDA only. Unset: not
    quantized."""


class DatasetSpec(StrictModel):
    """``source``: a built-in dataset (``trec6``, ``rotten_tomatoes``; ``trec6_qa`` for
    ``causal_lm``), or a local CSV / JSONL / JSON / Parquet file or ``datasets.save_to_disk``
    directory. Or ``hub``: a dataset on the Hugging Face Hub (or a local dataset directory)
    read through ``datasets.load_dataset`` with ``config`` and ``split`` (default ``train``).

    ``seq_cls`` reads ``text_column`` and ``label_column``, and ``text_pair_column`` for
    sentence pairs (NLI, paraphrase). ``causal_lm`` reads rows in ``format`` (default
    ``auto``: recognised by their columns; see :mod:`autopeft.data.formats`):
    ``prompt_column``/``completion_column``, a chat ``messages_column`` whose last message is
    the assistant's answer, Alpaca (``instruction``, ``input``, ``output``) or ShareGPT
    (``conversations``). ``chat_template``: render plain prompts with the tokenizer's chat
    template too (chat rows always are, where the tokenizer has one).
    """

    source: str = ""
    """A built-in dataset (``trec6``, ``rotten_tomatoes``; ``trec6_qa`` for ``causal_lm``) or a
    local CSV / JSONL / JSON / Parquet file or ``datasets.save_to_disk`` directory. Give this or
    ``hub``."""
    hub: str | None = Field(default=None, min_length=1)
    """A dataset on the Hugging Face Hub (or a local dataset directory), read through
    ``datasets.load_dataset``. Give this or ``source``."""
    config: str | None = Field(default=None, min_length=1)
    """The configuration (subset) of a ``hub`` dataset."""
    split: str = Field(default="train", min_length=1)
    """The split of a ``hub`` dataset to read; autopeft splits it again by ``split:``
    of the spec."""
    format: Literal["auto", "prompt_completion", "messages", "alpaca", "sharegpt"] = "auto"
    """``causal_lm`` row format: ``auto`` recognises it from the columns; ``prompt_completion``,
    ``messages`` (chat; the last message is the answer), ``alpaca`` (``instruction``, ``input``,
    ``output``) or ``sharegpt`` (``conversations``)."""
    text_pair_column: str | None = Field(default=None, min_length=1)
    """``seq_cls``: the second text of sentence-pair tasks (NLI, paraphrase); unset: single
    texts."""
    text_column: str = "text"
    """``seq_cls``: the column holding the text."""
    label_column: str = "label"
    """``seq_cls``: the column holding the class label (strings or integers)."""
    prompt_column: str = "prompt"
    """``causal_lm``, prompt/completion rows: the prompt column."""
    completion_column: str = "completion"
    """``causal_lm``, prompt/completion rows: the completion (answer) column."""
    messages_column: str = "messages"
    """``causal_lm``, chat rows: the column holding the list of messages."""
    chat_template: bool = False
    """Render plain prompts with the tokenizer's chat template too (chat rows always are, where the
    tokenizer has one)."""

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if self.hub is not None and self.source:
            raise ValueError("give either source (a built-in or a file) or hub, not both")
        if self.hub is None and not self.source:
            raise ValueError("needs source (a built-in name or a file) or hub (a dataset name)")
        # a stored spec is re-validated with every field written out, so the default split is
        # no user's choice: only a config or another split is refused for a file
        if self.hub is None and (self.config is not None or self.split != "train"):
            raise ValueError("config and split apply to hub datasets only")
        return self

    @property
    def hub_source(self) -> Any:
        """The :class:`~autopeft.data.HubSource` of a ``hub`` dataset, else None."""
        if self.hub is None:
            return None
        from autopeft.data.hub import HubSource

        return HubSource(self.hub, self.config, self.split)


class SplitSpec(StrictModel):
    """Seeded stratified split. The test part is held out of the search entirely."""

    validation: float = Field(default=0.15, gt=0, le=0.5)
    """Fraction of the examples held out for validation (what the search optimizes)."""
    test: float = Field(default=0.15, gt=0, le=0.5)
    """Fraction held out as the test split, never seen by the search; used only by ``autopeft
    confirm``."""
    seed: int = 0
    """Seed of the stratified split."""


#: Rungs of ``fidelity.rungs: auto`` (fewer when ``max_steps`` is small).
AUTO_RUNGS = 4


class FidelitySpec(StrictModel):
    """How much training each trial gets.

    ``rungs`` makes the search multi-fidelity (:mod:`autopeft.search.promotion`): training
    steps per rung, increasing (``[12, 25, 50, 100]``), or a count of rungs spaced by
    ``reduction_factor`` below ``max_steps`` (``4`` with ``max_steps: 100`` and factor 3:
    ``[4, 11, 33, 100]``). Every configuration is trained at the lowest rung first; the best
    ``1 / reduction_factor`` of each rung train on to the next. The top rung is
    ``max_steps`` (set from the last rung when ``max_steps`` is not given). ``promotion``:
    ``asha`` promotes any trial in its rung's best fraction when a worker is free; ``quota``
    also caps each rung's promotions at that fraction of its trials (steps as the schedule
    promises, fewer top-rung trials). ``promotion_order``: how a rung ranks its trials
    (:mod:`autopeft.search.promotion`).
    """

    train_examples: int = Field(default=1000, ge=1)
    """Training examples each trial draws from the training split."""
    max_steps: int = Field(default=100, ge=1)
    """Optimizer steps per trial (the top rung of a multi-fidelity search)."""
    eval_examples: int = Field(default=500, ge=1)
    """Validation examples each trial is scored on."""
    seq_len: int = Field(default=64, ge=4, le=8192)
    """Maximum tokens per example (longer ones are truncated)."""
    batch_size: int = Field(default=16, ge=1)
    """Training batch size."""
    learning_rate: float = Field(default=1e-3, gt=0)
    """Learning rate, unless the search space sets or searches ``learning_rate``."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    """Fraction of the steps with a linear learning-rate warm-up."""
    memory_steps: int = Field(default=2, ge=1)
    """Training steps the peak-memory measurement covers."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, slower); a space may override it
    per trial with a ``gradient_checkpointing`` parameter."""
    reduction_factor: float = Field(default=3.0, gt=1, le=100)
    """Multi-fidelity: the best ``1 / reduction_factor`` of each rung is promoted; also spaces the
    rungs when ``rungs`` is a count."""
    promotion: Literal["asha", "quota"] = "asha"
    """Multi-fidelity promotion rule: ``asha`` promotes any trial in its rung's best fraction when
    a worker is free; ``quota`` also caps each rung's promotions at that fraction of its trials,
    and nothing overrides the cap: fixed rungs do not calibrate under it, and a rung that selects
    nothing (distrusted, or not yet measured under ``rungs: auto``) promotes up to its quota in
    trial order (:mod:`autopeft.search.budget`)."""
    budget_steps: int | None = Field(default=None, ge=1)
    """The study's budget in training steps (:mod:`autopeft.search.budget`); unset: no step
    budget (``n_trials`` alone ends the study). A trial is charged the steps it trains: a
    single-fidelity trial ``max_steps``; a new configuration starting at rung ``b`` the steps of
    rung ``b``; a promotion from rung ``a`` to ``b`` the steps between them (``b - a``) when it
    continues its source's checkpoint, all of ``b`` when it trains from scratch. Finished
    trials are charged what they report, running ones what they are scheduled; interrupted
    trials (their re-run is charged), trials skipped before launch and references are not. The
    driver starts a trial only while the charged steps plus its cost stay within the budget: a
    new configuration also leaves room for the promotions the rungs still owe, a promotion for
    its way to the top rung. With ``n_trials`` too, the study ends at whichever comes first. A
    resumed study counts the steps its stored trials were charged. At least the top rung
    (``max_steps``)."""
    promotion_order: Literal["crowding", "metric"] = "crowding"
    """The order a rung's trials are promoted in: ``crowding`` (the default) ranks by
    non-dominated sorting on every objective with a crowding-distance tie-break; ``metric`` ranks
    the cost objectives as they will be at the top rung and breaks ties by the metric (see
    :mod:`autopeft.search.promotion`)."""
    rungs: tuple[int, ...] | Literal["auto"] | None = None
    """Multi-fidelity: training steps per rung, increasing (``[12, 25, 50, 100]``), a count of
    rungs (2 to 10) spaced by ``reduction_factor`` below ``max_steps``, or ``auto``: up to
    :data:`AUTO_RUNGS` rungs spaced by ``reduction_factor`` below ``max_steps``, no selection at
    a rung until its rank correlation with the top rung is measured, and new configurations
    start above the lowest rungs once they are measured to rank configurations unlike the top
    rung (:func:`autopeft.search.budget.entry_rung`). Unset: one fidelity."""

    @field_validator("rungs", mode="before")
    @classmethod
    def _rung_count(cls, value: Any, info: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        if not 2 <= value <= 10:
            raise ValueError(f"a number of rungs must be 2 to 10, got {value}")
        top, factor = info.data.get("max_steps", 100), info.data.get("reduction_factor", 3.0)
        steps = [max(1, round(top / factor ** (value - 1 - k))) for k in range(value)]
        if len(set(steps)) < value:
            raise ValueError(
                f"{value} rungs spaced by reduction_factor {factor:g} below max_steps {top} "
                f"repeat a step count ({steps}); use fewer rungs or more max_steps"
            )
        return steps

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, value: tuple[int, ...] | str | None) -> tuple[int, ...] | str | None:
        if value is None or isinstance(value, str):
            return value
        if len(value) < 2:
            raise ValueError(f"rungs needs at least 2 step counts, got {list(value)}")
        if any(s < 1 for s in value) or any(a >= b for a, b in itertools.pairwise(value)):
            raise ValueError(
                f"rungs must be step counts >= 1 in increasing order, got {list(value)}"
            )
        return value

    @model_validator(mode="after")
    def _top_rung(self) -> FidelitySpec:
        if self.budget_steps is not None and self.budget_steps < self.rung_steps[-1]:
            raise ValueError(
                f"budget_steps ({self.budget_steps}) must be at least the top rung's training "
                f"(max_steps {self.rung_steps[-1]}): no configuration could be trained in full"
            )
        if self.rungs is None:
            return self
        if self.rungs == "auto":
            if len(self.rung_steps) < 2:
                raise ValueError(
                    f"rungs: auto with max_steps {self.max_steps} and reduction_factor "
                    f"{self.reduction_factor:g} gives one rung; raise max_steps"
                )
            return self
        if "max_steps" not in self.model_fields_set:
            object.__setattr__(self, "max_steps", self.rungs[-1])
        elif self.rungs[-1] != self.max_steps:
            raise ValueError(
                f"the last rung ({self.rungs[-1]} steps) must equal max_steps "
                f"({self.max_steps}): the top rung is the search's full training"
            )
        return self

    @property
    def rung_steps(self) -> tuple[int, ...]:
        """Training steps per rung; one rung (``max_steps``) when the search is not
        multi-fidelity; ``auto``: ``max_steps / reduction_factor ** k`` (rounded) for ``k``
        below :data:`AUTO_RUNGS`, repeats and steps below 1 left out."""
        if self.rungs == "auto":
            top, factor = self.max_steps, self.reduction_factor
            steps = {round(top / factor**k) for k in range(AUTO_RUNGS)}
            return tuple(sorted(s for s in steps if s >= 1))
        return self.rungs or (self.max_steps,)

    @property
    def auto_rungs(self) -> bool:
        """``rungs: auto``: the study drops rungs it measures as untrustworthy."""
        return self.rungs == "auto"


class EvaluationSpec(StrictModel):
    """How ``causal_lm`` trials are evaluated: ``exact_match`` greedily generates up to
    ``max_new_tokens`` tokens per validation prompt, ``batch_size`` prompts at a time, and
    compares after the normalisation of :mod:`autopeft.tasks.answers` (``answer_pattern``: a
    regex whose last match is the answer). ``generate``: compute ``exact_match`` even when it
    is not the metric (default: only then)."""

    max_new_tokens: int = Field(default=16, ge=1, le=4096)
    """Tokens generated greedily per validation prompt for ``exact_match``."""
    answer_pattern: str | None = Field(default=None, min_length=1)
    """A regular expression whose last match in the generated text is the answer; unset: the whole
    normalised text."""
    batch_size: int = Field(default=16, ge=1)
    """Prompts generated at a time."""
    generate: bool | None = None
    """Compute ``exact_match`` even when it is not the metric; unset: only when it is."""

    @field_validator("answer_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression ({exc})") from None
        return value


class ObjectiveSpec(StrictModel):
    """An objective: the task metric (maximised) or a measure (minimised)."""

    name: str
    """The task metric (e.g. ``accuracy``, ``exact_match``, ``eval_loss``) or a measure:
    ``trainable_params``, ``peak_memory_mb``, ``train_seconds``. A plain string is short for
    ``{name: ...}``."""
    direction: Literal["maximize", "minimize"] | None = None
    """``maximize`` or ``minimize``; it must match the objective's natural direction (the metric's,
    else ``minimize``). Unset: that direction."""


class SamplerSpec(StrictModel):
    """Which sampler proposes configurations, and its options."""

    name: str = "mobo"
    """The sampler: ``mobo`` (BoTorch, the default), ``random``, ``sobol``, or an Optuna sampler
    (``tpe``, ``nsga2``, ``gp``, ...). A plain string is short for ``{name: ...}``."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Sampler options passed to its constructor (e.g. ``n_initial`` for ``mobo``)."""


class ExecutorSpec(StrictModel):
    """Where trials run (see the docs: How-to guides, Ray cluster).

    ``inprocess`` runs one trial at a time in the driver; ``ray`` runs ``workers`` concurrent
    trials on persistent Ray actors, each reserving ``cpus_per_trial`` CPUs and
    ``gpus_per_trial`` GPUs (a fraction packs several trials on one GPU; ``auto``, the default:
    one worker per GPU the driver sees, or several when the largest configuration's predicted
    peak memory fits, see :mod:`autopeft.executors.gpu_plan`). ``gpus``: at most this many GPUs
    (0: CPU only; ``--gpus`` on ``autopeft run``). ``address``: join an
    existing Ray cluster (``auto``, ``ray://host:port``, ``host:port``); unset starts a local
    instance with the study. ``max_retries``: re-runs of a trial whose worker died.
    ``memory_cap_mb``: a trial whose measured peak memory passes it fails as infeasible.
    ``threads``: torch intra-op threads per trial (default: ``cpus_per_trial`` on Ray, torch's
    own choice in process). ``device``: ``auto`` uses CUDA when the worker sees it.
    """

    name: Literal["inprocess", "ray"] = "inprocess"
    """``inprocess`` runs one trial at a time in the driver; ``ray`` runs ``workers`` concurrent
    trials on persistent Ray actors."""
    workers: int = Field(default=1, ge=1)
    """Concurrent trials (Ray only)."""
    cpus_per_trial: int = Field(default=1, ge=1)
    """CPUs each Ray trial reserves."""
    gpus_per_trial: float | Literal["auto"] = "auto"
    """GPUs each Ray trial reserves (``num_gpus``): a fraction <= 1 packs several trials on one
    GPU, or a whole number; ``auto``: one trial per GPU the driver sees, or several per GPU when
    the predicted peak memory of the space's largest configuration allows; none without CUDA."""
    gpus: int | None = Field(default=None, ge=0)
    """At most this many GPUs (0: trials on the CPU, the GPUs hidden from the workers); null:
    every GPU torch sees. ``autopeft run --gpus`` overrides it."""
    address: str | None = Field(default=None, min_length=1)
    """Join an existing Ray cluster (``auto``, ``ray://host:port``, ``host:port``); unset starts a
    local Ray instance with the study."""
    max_retries: int = Field(default=2, ge=0)
    """Re-runs of a trial whose worker died."""
    memory_cap_mb: float | None = Field(default=None, gt=0)
    """A trial whose measured peak memory passes this many MiB fails as infeasible; unset: no
    cap."""
    threads: int | None = Field(default=None, ge=1)
    """Torch intra-op threads per trial; unset: ``cpus_per_trial`` on Ray, torch's own choice in
    process."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` uses CUDA when the worker sees it; ``cpu`` or ``cuda`` force one."""

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_or_fraction(cls, value: float | str) -> float | str:
        if isinstance(value, str):
            return value
        if value < 0:
            raise ValueError(f"must be >= 0 or 'auto', got {value}")
        if value > 1 and value != int(value):
            raise ValueError(f"must be a fraction <= 1 or a whole number of GPUs, got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExecutorSpec:
        if self.name == "inprocess":
            ray_only = {"workers": self.workers != 1, "address": self.address is not None}
            ray_only["gpus_per_trial"] = self.gpus_per_trial not in (0, "auto")
            wrong = [k for k, bad in ray_only.items() if bad]
            if wrong:
                raise ValueError(
                    f"{wrong[0]} needs the ray executor (name: ray); the inprocess executor "
                    "runs one trial at a time on the driver's device"
                )
        if self.gpus_per_trial != "auto" and self.gpus_per_trial > 0 and self.device == "cpu":
            raise ValueError(
                f"gpus_per_trial={self.gpus_per_trial} but device is 'cpu'; use device "
                "'auto' or 'cuda', or gpus_per_trial: 0"
            )
        return self

    @property
    def trial_threads(self) -> int | None:
        """Torch threads per trial: ``threads``, else ``cpus_per_trial`` on Ray."""
        if self.threads is not None or self.name == "inprocess":
            return self.threads
        return self.cpus_per_trial


class StudySpec(StrictModel):
    """A whole study spec file."""

    version: Literal[1] = 1
    """The spec format version; only ``1`` exists."""
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """The study's name in the storage (letters, digits, ``_``, ``.``, ``-``); running a spec again
    resumes it."""
    description: str = ""
    """Free text shown by ``autopeft show``."""
    task: TaskName = "seq_cls"
    """``seq_cls`` (sequence classification) or ``causal_lm`` (supervised fine-tuning of a decoder
    LLM)."""
    model: ModelSpec
    """The base model; a plain string is short for ``{path: ...}``."""
    dataset: DatasetSpec
    """The data; a plain string is short for ``{source: ...}``."""
    split: SplitSpec = SplitSpec()
    """How the data is split into train, validation and test."""
    metric: str = Field(default="", validate_default=True)
    """The task metric optimized on validation: ``seq_cls`` ``accuracy`` (default) or ``macro_f1``;
    ``causal_lm`` ``eval_loss`` (default), ``perplexity`` or ``exact_match``."""
    objectives: tuple[ObjectiveSpec, ...] = ()
    """The objectives of the multi-objective search: names, or ``{name, direction}`` mappings; must
    include the metric. Empty: the metric, ``trainable_params`` and ``peak_memory_mb``."""
    search_space: str
    """Path of the search-space file, relative to this spec file."""
    n_trials: int | None = Field(default=20, ge=1)
    """Trials to run (a resumed study runs up to this many in all): new configurations in a
    multi-fidelity study. Default 20, or no limit when ``fidelity.budget_steps`` is set (the
    study then ends when the steps are spent); with both, at whichever comes first. ``null``
    needs ``fidelity.budget_steps``."""
    fidelity: FidelitySpec = FidelitySpec()
    """How much training each trial gets, and multi-fidelity rungs."""
    evaluation: EvaluationSpec | None = None
    """How ``causal_lm`` trials are evaluated (generation for ``exact_match``);
    ``causal_lm`` only."""
    seed: int = 0
    """Seed of the sampler and of training."""
    storage: str | None = None
    """SQLAlchemy URL of the study database; unset: ``$AUTOPEFT_STORAGE``, else
    ``sqlite:///autopeft.db``."""
    sampler: SamplerSpec = SamplerSpec()
    """Which sampler proposes configurations; a plain string is short for ``{name: ...}``."""
    executor: ExecutorSpec = ExecutorSpec()
    """Where trials run; a plain string is short for ``{name: ...}``."""
    warm_start: tuple[str, ...] = ()
    """Names of finished studies (same storage) whose results seed the first proposals; a string is
    one name."""
    references: tuple[str | dict[str, Any], ...] = ()
    """Configurations trained beside the search, at the same fidelity on the same splits, to
    compare the front with (:mod:`autopeft.search.references`): names from the built-in catalog
    (``lora-r8-qv``, ``lora-r16-all-linear``, ``rslora-r16-all-linear``, ``dora-r16-all-linear``,
    ``ia3``, ``prompt-tuning-20``, ``loha-r16``, ``vera-r256``), ``{name: CATALOG_NAME,
    learning_rate: LR}``, or your own ``{name, method, <parameters>}`` in the space's
    vocabulary. They run first and do not count against ``n_trials``."""

    @field_validator("model", "dataset", "sampler", "executor", mode="before")
    @classmethod
    def _shorthand(cls, value: Any, info: Any) -> Any:
        key = {"model": "path", "dataset": "source"}.get(info.field_name, "name")
        return {key: value} if isinstance(value, str) else value

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, metric: str, info: Any) -> str:
        task = info.data.get("task", "seq_cls")
        if not metric:
            return default_metric(task)
        allowed = TASK_METRICS[task]
        if metric not in allowed:
            raise ValueError(
                f"unknown metric {metric!r} for task {task!r}; allowed: {', '.join(allowed)}"
            )
        return metric

    @field_validator("warm_start", mode="before")
    @classmethod
    def _warm_start_shorthand(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("warm_start")
    @classmethod
    def _check_warm_start(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError(f"warm_start studies must be unique, got {list(names)}")
        return names

    @model_validator(mode="after")
    def _budget(self) -> StudySpec:
        if self.fidelity.budget_steps is not None and "n_trials" not in self.model_fields_set:
            object.__setattr__(self, "n_trials", None)  # the step budget alone ends the study
        if self.n_trials is None and self.fidelity.budget_steps is None:
            raise ValueError(
                "n_trials is null and fidelity.budget_steps is unset: set at least one, so "
                "the study has a budget"
            )
        return self

    @model_validator(mode="after")
    def _task_fields(self) -> StudySpec:
        if self.evaluation is not None and self.task != "causal_lm":
            raise ValueError("evaluation applies to task causal_lm only")
        return self

    @property
    def evaluation_or_default(self) -> EvaluationSpec:
        """The ``evaluation:`` block, or its defaults."""
        return self.evaluation or EvaluationSpec()

    @property
    def metric_direction(self) -> str:
        """``maximize`` or ``minimize``: the direction of the study's metric."""
        return TASK_METRICS[self.task][self.metric]

    @field_validator("objectives", mode="before")
    @classmethod
    def _objective_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("objectives")
    @classmethod
    def _check_objectives(cls, objectives: tuple[ObjectiveSpec, ...], info: Any) -> Any:
        task = info.data.get("task", "seq_cls")
        metric = info.data.get("metric") or default_metric(task)
        names = [o.name for o in objectives]
        allowed = (metric, *MEASURES)
        for o in objectives:
            if o.name not in allowed:
                raise ValueError(f"unknown objective {o.name!r}; allowed: {', '.join(allowed)}")
            natural = TASK_METRICS[task].get(o.name, "minimize")
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
        return [(n, self.metric_direction if n == self.metric else "minimize") for n in names]

    def fingerprint(self) -> str:
        """Canonical JSON of everything that defines the search (not the budget or storage):
        resuming a study with a spec whose fingerprint differs is refused. ``warm_start`` is
        left out: it only chooses the first proposals, which a study stores when it is created."""
        exclude = {"n_trials", "storage", "name", "description", "executor", "warm_start"}
        data = self.model_dump(exclude=exclude)
        data["fidelity"].pop("budget_steps", None)  # a budget, like n_trials
        for path, default in _LATER_FIELDS.items():
            *parents, key = path
            node = data
            for parent in parents:
                node = node[parent]
            if node.get(key, default) == default:
                node.pop(key, None)
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
