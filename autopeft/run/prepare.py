"""Prepare a study: validate everything before anything is written, and register it.

:func:`prepare_study` reads the spec and its search space, loads and splits the dataset,
resolves the model, binds the space to the model's layout and builds the sampler once, so bad
input never leaves a half-written study behind. :func:`register_study` then creates the study
in the store, or checks that a stored study of the same name was made from the same files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.objectives import Objective
from autopeft.exceptions import StorageError, StudyError, UnsupportedError
from autopeft.search.samplers import make_sampler
from autopeft.spec import StudyFiles, StudySpec, load_study
from autopeft.storage.urls import resolve_storage

if TYPE_CHECKING:
    from typing import Any

    from autopeft.data import Splits
    from autopeft.executors.worker import WorkerSetup
    from autopeft.search.references import Reference
    from autopeft.search.warm_start import WarmDesign
    from autopeft.space.bound import BoundSpace
    from autopeft.spec import ExecutorSpec
    from autopeft.storage.store import Store


@dataclass
class PreparedStudy:
    """A fully validated study, not yet written anywhere.

    Attributes:
        files: The spec and search space as loaded.
        name: The study name (``--name``, else the spec's).
        url: The database URL (see :func:`~autopeft.storage.urls.resolve_storage`).
        splits: The seeded train/validation/test split of the dataset.
        model_path: The local model directory.
        bound: The search space bound to the model's layout.
        objectives: The study's objectives, in Optuna's value order.
        warm: The warm-start design of a new study with ``warm_start`` sources (None for a
            cold start, and for a study that exists already: it keeps its stored design).
        references: The spec's ``references:``, compiled for the model.
        majority: The study's metric when always giving the most common answer of the
            validation rows the trials are scored on (None where the metric has no such floor).
    """

    files: StudyFiles
    name: str
    url: str
    splits: Splits[Any]
    model_path: Path
    bound: BoundSpace
    objectives: list[Objective]
    warm: WarmDesign | None = None
    references: list[Reference] = field(default_factory=list)
    majority: float | None = None

    @property
    def task_type(self) -> str:
        """The peft ``task_type`` of the study's configs (``SEQ_CLS``, ``CAUSAL_LM``)."""
        from autopeft.tasks import peft_task_type

        return peft_task_type(self.files.spec.task)

    def fingerprint(self) -> str:
        """What defines the search: resuming with a different fingerprint is refused."""
        return self.files.spec.fingerprint() + self.files.space.model_dump_json()


def prepare_study(
    path: str | Path | StudyFiles,
    *,
    storage: str | None = None,
    name: str | None = None,
    warm_start: Sequence[str] = (),
) -> PreparedStudy:
    """Load and cross-check a study spec against its data and model; writes nothing.

    ``path``: the spec file, or the spec and space already loaded by
    :func:`~autopeft.spec.load_study` (a run loads them once).
    ``warm_start`` adds source studies to the spec's ``warm_start``; with any, the warm-start
    design is chosen here from the database (see :mod:`autopeft.search.warm_start`)."""
    from transformers import AutoConfig

    from autopeft.data import split_dataset
    from autopeft.methods.binding import bind_space
    from autopeft.models.resolve import resolve_model
    from autopeft.tasks import get_task

    files = path if isinstance(path, StudyFiles) else load_study(path)
    if warm_start:
        sources = tuple(dict.fromkeys([*files.spec.warm_start, *warm_start]))
        files = replace(files, spec=files.spec.model_copy(update={"warm_start": sources}))
    spec = files.spec
    task = get_task(spec.task)
    check_devices(spec)
    data = task.load_data(spec.dataset, files.base_dir)
    splits = split_dataset(
        data, validation=spec.split.validation, test=spec.split.test, seed=spec.split.seed
    )
    model_path = resolve_model(spec.model.path, files.base_dir, spec.model.revision)
    extra = (
        {"num_hidden_layers": spec.model.num_hidden_layers} if spec.model.num_hidden_layers else {}
    )
    config = AutoConfig.from_pretrained(model_path, local_files_only=True, **extra)
    task.check(model_path, splits, spec.fidelity, spec.dataset)
    layout = task.layout(config, data)
    bound = bind_space(files.space, layout, files.space_path)
    objectives = [Objective(n, d) for n, d in spec.objective_list()]  # type: ignore[arg-type]
    sampler = make_sampler(spec.sampler.name, bound, objectives, spec.seed, spec.sampler.options)
    url, study = resolve_storage(storage, spec.storage), name or spec.name
    warm = None
    if spec.warm_start:
        from autopeft.search.warm_start import design_size, plan_warm_start

        warm = plan_warm_start(url, study, spec.warm_start, bound, design_size(sampler))
    references = _references(files, layout, bound)
    majority = _majority(task, splits, spec)
    return PreparedStudy(
        files, study, url, splits, model_path, bound, objectives, warm, references, majority
    )


def _majority(task: Any, splits: Splits[Any], spec: StudySpec) -> float | None:
    """The metric of always giving the most common answer on the trials' validation rows."""
    from autopeft.spec import EvaluationSpec

    rows = splits.validation.subset(range(min(spec.fidelity.eval_examples, len(splits.validation))))
    return task.majority_share(rows, spec.metric, spec.evaluation or EvaluationSpec())


def _references(files: StudyFiles, layout: Any, bound: BoundSpace) -> list[Reference]:
    """The spec's ``references:`` compiled for the model (:mod:`autopeft.search.references`)."""
    if not files.spec.references:
        return []
    from autopeft.search.references import resolve_references
    from autopeft.tasks import peft_task_type

    return resolve_references(
        files.spec.references,
        spec_path=files.path,
        layout=layout,
        study=bound,
        task_type=peft_task_type(files.spec.task),
        learning_rate=files.spec.fidelity.learning_rate,
    )


def check_devices(spec: StudySpec) -> None:
    """Refuse, before anything runs, a precision or quantization the trials' device lacks.

    On a local run the driver's device is the trials' device; when joining a cluster
    (``executor.address``) the workers' GPUs cannot be seen from here, so only the spec's own
    ``executor.device`` is checked.
    """
    import torch

    from autopeft.tasks.loading import check_quantization

    executor, model = spec.executor, spec.model
    cuda = executor.device != "cpu" and (executor.address is not None or torch.cuda.is_available())
    device = "cuda" if cuda else "cpu"
    if model.precision == "fp16" and device != "cuda":
        raise UnsupportedError(
            "model.precision 'fp16' needs a CUDA device (fp16 training with loss scaling), but "
            "trials would run on 'cpu'; use precision 'bf16' or 'fp32' on CPU"
        )
    check_quantization(model.quantization, device)
    check_gpus(executor)


def check_gpus(executor: ExecutorSpec) -> None:
    """``executor.gpus`` (``--gpus``) asks for no more GPUs than torch sees on a local run."""
    from autopeft.executors.gpu_plan import check_gpus as check
    from autopeft.executors.gpu_plan import cuda_view

    if executor.gpus is not None:
        check(executor.gpus, cuda_view(), executor.address is None)


def worker_setup(prepared: PreparedStudy, spec: ExecutorSpec) -> WorkerSetup:
    """What every worker of ``prepared`` loads, under the executor settings ``spec``."""
    study = prepared.files.spec
    return setup_for(
        study, spec, model=study.model.path, base_dir=prepared.files.base_dir,
        splits=prepared.splits, fidelity=study.fidelity,
    )  # fmt: skip


def setup_for(
    study: StudySpec,
    spec: ExecutorSpec,
    *,
    model: str,
    base_dir: Path,
    splits: Any,
    fidelity: Any,
) -> WorkerSetup:
    """A worker setup of ``study`` on ``splits`` at ``fidelity`` (the search's own, or
    ``autopeft confirm``'s: the test split evaluated, its own step count)."""
    from autopeft.executors.worker import WorkerSetup

    cap = None if spec.memory_cap_mb is None else int(spec.memory_cap_mb * 2**20)
    return WorkerSetup(
        model=model,
        base_dir=base_dir,
        splits=splits,
        fidelity=fidelity,
        seed=study.seed,
        metric=study.metric,
        dataset=study.dataset,
        evaluation=study.evaluation_or_default,
        task=study.task,
        device=spec.device,
        num_hidden_layers=study.model.num_hidden_layers,
        threads=spec.trial_threads,
        memory_cap_bytes=cap,
        precision=study.model.precision,
        quantization=study.model.quantization,
        revision=study.model.revision,
    )


def register_study(store: Store, p: PreparedStudy) -> None:
    """Create the study in ``store``, or check that the stored one has the same fingerprint.

    Raises:
        StorageError: the database refuses writes (a read-only SQLite file or directory).
        StudyError: the stored study was made from different files.
    """
    require_writable(store)
    fingerprint = p.fingerprint()
    if p.name in store.study_names():
        if store.study_row(p.name).fingerprint != fingerprint:
            raise StudyError(
                f"study {p.name!r} in {p.url!r} was created from a different spec or search space "
                "(model, data, space, fidelity, objectives or sampler differ); resume it with the "
                "same files, or start a new study with --name"
            )
        if p.majority is not None and store.majority_share(p.name) is None:
            store.set_majority_share(p.name, p.majority)  # a study stored before it was kept
        return
    store.create_study(
        p.name,
        p.objectives,
        {
            "spec_yaml": p.files.path.read_text(encoding="utf-8"),
            "space_yaml": p.files.space_path.read_text(encoding="utf-8"),
            "spec_json": p.files.spec.model_dump_json(),
            "fingerprint": fingerprint,
            "layout_json": json.dumps(p.bound.layout.to_dict()),
            "model_path": str(p.model_path),
            "objectives_json": json.dumps([o.__dict__ for o in p.objectives]),
        },
    )
    if p.majority is not None:
        store.set_majority_share(p.name, p.majority)
    if p.warm is not None:
        from autopeft.search.warm_start import store_design

        store_design(store, p.name, p.warm)


def require_writable(store: Store) -> None:
    """Refuse, before any trial runs, a database that takes no writes.

    A no-op write in a transaction of its own (retried like every store call while the
    database is locked or away): a read-only SQLite file (or a directory where SQLite cannot
    create its journal) fails here with one clear error, instead of at the first trial's
    write after the model has loaded.

    Raises:
        StorageError: naming the URL (without its password), and the file for SQLite.
    """
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from autopeft.storage.retry import call_with_retry

    def probe() -> None:
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE autopeft_schema SET version = version"))

    try:
        call_with_retry(probe, "check that the database takes writes", store.url)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        url = make_url(store.url)
        where = url.render_as_string(hide_password=True)
        if url.drivername.startswith("sqlite") and url.database:
            where = f"{where} (file {url.database})"
        raise StorageError(
            f"cannot write to storage {where}: {detail}; `run` needs a writable database "
            "(check the file's and its directory's permissions and free space)"
        ) from None
