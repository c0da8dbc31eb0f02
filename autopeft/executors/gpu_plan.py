"""How many GPUs each trial gets, decided once before the first trial.

Ray 2.60 leaves ``CUDA_VISIBLE_DEVICES`` untouched for an actor that reserves no GPU (ray#54868),
so a worker with ``num_gpus=0`` on a GPU machine would pick ``cuda:0`` without Ray scheduling it:
every such worker piles onto one GPU. The plan therefore either gives each worker a GPU share
that Ray schedules, or runs the worker on the CPU with its GPUs hidden; never the unscheduled
middle.

``gpus_per_trial: auto`` (the default) on the Ray executor, when the driver sees CUDA: one worker
per GPU, or ``k`` per GPU when ``k`` copies of the space's largest configuration (its predicted
peak memory) fit in 90 % of the smallest GPU's memory; ``workers`` is lowered to what fits. An
explicit ``gpus_per_trial`` is kept. ``gpus`` (``--gpus N`` on ``autopeft run``) caps the GPUs a
study uses (0: CPU only) and must not exceed what torch sees.

The one place that reads the machine's GPUs is :func:`cuda_view`; tests fake it there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autopeft.exceptions import UnsupportedError

if TYPE_CHECKING:
    from autopeft.spec import ExecutorSpec

#: Share of a GPU's memory that packed trials may fill (the rest: allocator slack, CUDA context).
USABLE = 0.9


@dataclass(frozen=True)
class CudaView:
    """The GPUs torch sees in this process: names and total memory in bytes, by index."""

    names: tuple[str, ...] = ()
    total_bytes: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return len(self.names)


def cuda_view() -> CudaView:
    """The GPUs torch sees here (none without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return CudaView()
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return CudaView(tuple(p.name for p in props), tuple(int(p.total_memory) for p in props))


@dataclass(frozen=True)
class GpuPlan:
    """What the executor does: ``gpus_per_trial`` for each Ray worker, ``workers`` to start,
    ``device`` for the workers (``cpu`` when they must not touch a GPU), the ``notes`` to print
    before the first trial and whether the workers' GPUs are hidden."""

    gpus_per_trial: float
    workers: int
    device: str
    notes: tuple[str, ...] = field(default=())
    hide_gpus: bool = False
    """Whether Ray workers get ``CUDA_VISIBLE_DEVICES=""``: they reserve no GPU where GPUs may
    exist (the driver sees some, or the workers are on a cluster)."""


def check_gpus(gpus: int | None, view: CudaView, local: bool = True) -> None:
    """``--gpus N`` asks for no more GPUs than torch sees (on a local run).

    Raises:
        UnsupportedError: ``gpus`` is more than ``view`` has.
    """
    if gpus is not None and local and gpus > view.count:
        raise UnsupportedError(
            f"--gpus {gpus}: torch sees {view.count} GPU(s) on this machine; use --gpus "
            f"{view.count} or fewer (0 runs the trials on the CPU)"
        )


def plan_gpus(spec: ExecutorSpec, view: CudaView, peak_bytes: float | None) -> GpuPlan:
    """The GPU plan of an executor spec on a driver that sees ``view``; ``peak_bytes`` is the
    predicted peak memory of the space's largest configuration (None: unknown)."""
    check_gpus(spec.gpus, view, spec.address is None)
    available = view.count if spec.gpus is None else min(view.count, spec.gpus)
    if spec.name == "inprocess":
        return _inprocess(spec, view, available)
    explicit = spec.gpus_per_trial != "auto" and spec.gpus is None
    if spec.device == "cpu" or available == 0 or (explicit and spec.gpus_per_trial == 0):
        notes: tuple[str, ...] = ()
        if view.count:
            why = (
                "executor.device is 'cpu'"
                if spec.device == "cpu"
                else "--gpus 0"
                if spec.gpus == 0
                else "executor.gpus_per_trial is 0"
            )
            notes = (
                f"note: the driver sees {view.count} GPU(s) but {why}: trials run on the CPU "
                "and the workers' GPUs are hidden from them",
            )
        hide = bool(view.count) or spec.address is not None
        return GpuPlan(0.0, spec.workers, "cpu", notes, hide)
    if explicit:
        share = float(spec.gpus_per_trial)
        return GpuPlan(share, spec.workers, spec.device, ())
    return _pack(spec, view, available, peak_bytes)


def _inprocess(spec: ExecutorSpec, view: CudaView, available: int) -> GpuPlan:
    if spec.device == "cpu" or (view.count and available == 0):
        notes: tuple[str, ...] = ()
        if view.count:
            why = "executor.device is 'cpu'" if spec.device == "cpu" else "--gpus 0"
            notes = (f"note: the driver sees {view.count} GPU(s) but {why}: trials run on the CPU",)
        return GpuPlan(0.0, 1, "cpu", notes)
    return GpuPlan(0.0, 1, spec.device, ())


def _pack(spec: ExecutorSpec, view: CudaView, gpus: int, peak_bytes: float | None) -> GpuPlan:
    """``gpus_per_trial: auto``: 1/k of a GPU when k of the largest configuration fit."""
    per_gpu = 1
    if peak_bytes and peak_bytes > 0:
        smallest = min(view.total_bytes[:gpus])
        per_gpu = max(1, math.floor(USABLE * smallest / peak_bytes))
    per_gpu = min(per_gpu, math.ceil(spec.workers / gpus))
    fit = gpus * per_gpu
    workers = min(spec.workers, fit)
    notes: list[str] = []
    if workers < spec.workers:
        notes.append(
            f"note: executor.workers lowered from {spec.workers} to {workers}: one trial per GPU "
            f"on {gpus} GPU(s)"
        )
    share = 1.0 if per_gpu == 1 else round(1.0 / per_gpu, 4)
    if per_gpu > 1:
        peak = (peak_bytes or 0) / 2**20
        notes.append(
            f"note: {per_gpu} trials share each GPU (gpus_per_trial {share:g}): the largest "
            f"configuration is predicted to peak at {peak:,.0f} MiB of "
            f"{min(view.total_bytes[:gpus]) / 2**20:,.0f} MiB"
        )
    return GpuPlan(share, workers, spec.device, tuple(notes))
