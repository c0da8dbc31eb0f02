"""The persistent base model: attach in place, restore, verify; and the CPU memory cap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft.executors.worker import TrialWorker, WorkerSetup
from autopeft.run.prepare import prepare_study
from autopeft.search.samplers import make_sampler
from autopeft.spec import FidelitySpec
from autopeft.trial.reuse import weights_checksum
from autopeft.trial.runner import TrialRequest, run_trial


@pytest.fixture()
def worker(study_dir: Path) -> tuple[TrialWorker, TrialRequest]:
    p = prepare_study(study_dir / "study.yaml")
    setup = WorkerSetup(
        model=p.files.spec.model.path,
        base_dir=p.files.base_dir,
        splits=p.splits,
        fidelity=FidelitySpec(
            train_examples=64, max_steps=3, eval_examples=24, seq_len=16, batch_size=8
        ),
        seed=0,
        metric="accuracy",
        device="cpu",
        threads=1,
    )
    point = make_sampler("random", p.bound, p.objectives, 0, {}).propose([], 1)[0]
    return TrialWorker(setup), TrialRequest(0, p.bound.compile(point), seed=0)


def test_trials_on_one_base_are_repeatable_and_leave_it_intact(worker) -> None:
    w, request = worker
    before = weights_checksum(w.context.model)
    first = w.run(request)
    second = w.run(request)
    assert first.ok and second.ok, (first.error, second.error)
    for key in ("accuracy", "final_train_loss", "peak_memory_bytes", "head_params"):
        assert first.metrics[key] == second.metrics[key], key  # the head was restored
    assert weights_checksum(w.context.model) == before
    assert w.context.base.intact() and w.context.base.reloads == 0
    assert not any(p.requires_grad for p in w.context.model.parameters())
    assert second.metrics["worker_trial_index"] == 2 and second.metrics["restore_seconds"] >= 0


def test_a_changed_base_is_detected_and_reloaded(worker) -> None:
    w, request = worker
    before = weights_checksum(w.context.model)
    with torch.no_grad():
        next(w.context.model.parameters())[0, 0] += 1.0  # corrupt one weight
    assert not w.context.base.intact()
    result = w.run(request)
    assert result.ok and result.metrics["base_reloads"] == 1
    assert weights_checksum(w.context.model) == before and w.context.base.intact()


def test_memory_cap_fails_the_trial_as_infeasible_and_restores_the_base(worker) -> None:
    w, request = worker
    before = weights_checksum(w.context.model)
    w.context.memory_cap_bytes = 2**20  # 1 MiB: the tiny model's weights alone are larger
    capped = run_trial(w.context, request)
    assert not capped.ok and capped.infeasible
    assert capped.error is not None and capped.error.startswith("memory cap exceeded")
    assert weights_checksum(w.context.model) == before and w.context.base.intact()
    w.context.memory_cap_bytes = None
    assert run_trial(w.context, request).ok  # the worker is still usable
