"""A persistent trial worker: loads the base model and the tokenized data once, runs many trials.

:class:`TrialWorker` is a plain class; :class:`~autopeft.executors.ray_pool.RayExecutor` turns
it into a Ray actor (``ray.remote(TrialWorker)``) so it can be tested without Ray. It never
touches the database: it returns :class:`~autopeft.trial.runner.TrialResult` objects and the
driver records them.

The actor is *threaded* (``max_concurrency=2``): :meth:`TrialWorker.run` trains in one thread
while the driver polls :meth:`TrialWorker.progress` from another, which is what turns training
steps into the driver's heartbeats and progress bars.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopeft.data import Splits
    from autopeft.spec import DatasetSpec, EvaluationSpec, FidelitySpec
    from autopeft.trial.context import TrialContext
    from autopeft.trial.runner import TrialRequest, TrialResult


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build its :class:`TrialContext` (pickled to the worker).

    ``model`` is the spec's ``model.path`` (a built-in name, a directory or a Hub ID, with
    ``revision``) resolved on the worker, so a built-in model works on any node where autopeft
    is installed and a Hub ID through each node's own Hub cache; a directory must exist at the
    same path on every node (a ``.gguf`` file is converted once per node).
    ``splits`` travel with the setup.
    """

    model: str
    base_dir: Path
    splits: Splits[Any]
    fidelity: FidelitySpec
    seed: int
    metric: str
    dataset: DatasetSpec | None = None
    evaluation: EvaluationSpec | None = None
    task: str = "seq_cls"
    device: str = "auto"
    num_hidden_layers: int | None = None
    threads: int | None = None
    memory_cap_bytes: int | None = None
    precision: str = "fp32"
    quantization: str | None = None
    revision: str | None = None


def load_context(setup: WorkerSetup) -> TrialContext:
    """Resolve the model and build the :class:`TrialContext` of ``setup`` in this process."""
    from autopeft.models.resolve import resolve_model
    from autopeft.trial.context import build_context, pick_device

    return build_context(
        resolve_model(setup.model, setup.base_dir, setup.revision),
        setup.splits,
        setup.fidelity,
        task=setup.task,
        dataset=setup.dataset,
        evaluation=setup.evaluation,
        seed=setup.seed,
        metric=setup.metric,
        device=pick_device(setup.device),
        num_hidden_layers=setup.num_hidden_layers,
        memory_cap_bytes=setup.memory_cap_bytes,
        precision=setup.precision,
        quantization=setup.quantization,
        gradient_checkpointing=setup.fidelity.gradient_checkpointing,
    )


class TrialWorker:
    """Builds the context once, then runs trials on it one at a time.

    Args:
        setup: What to load; ``setup.threads`` pins torch's intra-op threads (do not run more
            threads than the CPUs reserved for the worker).
    """

    def __init__(self, setup: WorkerSetup) -> None:
        import torch

        self.threads = setup.threads
        self._pin_threads()
        t0 = time.perf_counter()
        self.context: TrialContext = load_context(setup)
        self.load_seconds = time.perf_counter() - t0
        self.trials = 0
        self._progress: tuple[int, int, int] | None = None
        self._torch = torch

    def _pin_threads(self) -> None:
        import torch

        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def info(self) -> dict[str, Any]:
        """Where this worker runs: host, pid, device, load time (also a readiness probe)."""
        gpu_ids: list[Any] = []
        try:
            import ray

            if ray.is_initialized():
                gpu_ids = list(ray.get_gpu_ids())
        except ImportError:  # pragma: no cover - ray is a dependency
            pass
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(self.context.device),
            "gpu_ids": gpu_ids,
            "threads": self._torch.get_num_threads(),
            "load_seconds": self.load_seconds,
        }

    def run(self, request: TrialRequest) -> TrialResult:
        """Run one trial; its ``metrics`` gain ``worker`` (host:pid) and ``worker_seconds``."""
        from autopeft.trial.runner import run_trial

        self._pin_threads()  # intra-op threads are per calling thread in OpenMP builds
        self._progress = (request.number, 0, request.total_steps(self.context.fidelity))
        t0 = time.perf_counter()

        def on_step(step: int, total: int) -> None:
            self._progress = (request.number, step, total)

        try:
            result = run_trial(self.context, request, on_step)
        finally:
            self._progress = None
        self.trials += 1
        metrics = {
            **result.metrics,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "worker_seconds": time.perf_counter() - t0,
            "worker_trial_index": self.trials,
        }
        return replace(result, metrics=metrics)

    def progress(self) -> tuple[int, int, int] | None:
        """(trial number, step, total steps) of the running trial; None when idle."""
        return self._progress
