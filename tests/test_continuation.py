"""A promotion continues its source's training: the weights of one uninterrupted run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from autopeft.executors.worker import TrialWorker, WorkerSetup
from autopeft.run.prepare import prepare_study
from autopeft.search.samplers import make_sampler
from autopeft.spec import FidelitySpec
from autopeft.trial.continuation import Continuation, wsd_factor
from autopeft.trial.curve import stored_curve
from autopeft.trial.runner import TrialRequest


@pytest.fixture()
def worker(study_dir: Path) -> tuple[TrialWorker, TrialRequest]:
    p = prepare_study(study_dir / "study.yaml")
    setup = WorkerSetup(
        model=p.files.spec.model.path,
        base_dir=p.files.base_dir,
        splits=p.splits,
        fidelity=FidelitySpec(
            train_examples=64, max_steps=11, eval_examples=24, seq_len=16, batch_size=8
        ),
        seed=0,
        metric="accuracy",
        dataset=p.files.spec.dataset,
        device="cpu",
        threads=1,
    )
    point = make_sampler("random", p.bound, p.objectives, 3, {}).propose([], 1)[0]
    return TrialWorker(setup), TrialRequest(0, p.bound.compile(point), seed=7)


def _params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["params"]


def test_a_continued_trial_ends_with_the_weights_of_one_uninterrupted_run(worker, tmp_path) -> None:
    """5 steps, checkpoint, 6 more (crossing an epoch of the 64 examples: the shuffle goes on
    as it would) == 11 steps in one go, under the warmup-stable-decay schedule."""
    w, request = worker
    top = Continuation(top_steps=11, decay_from=5)
    whole = w.run(replace(request, steps=11, continuation=replace(top, save=str(tmp_path / "a"))))
    low = w.run(replace(request, steps=5, continuation=replace(top, save=str(tmp_path / "b"))))
    up = replace(top, resume=str(tmp_path / "b"), save=str(tmp_path / "c"))
    continued = w.run(replace(request, number=1, steps=11, continuation=up))
    assert whole.ok and low.ok and continued.ok, (whole.error, low.error, continued.error)
    assert continued.metrics["continued_from_step"] == 5 and "note" not in continued.metrics
    assert continued.metrics["steps"] == 11
    a, c = _params(tmp_path / "a"), _params(tmp_path / "c")
    assert a.keys() == c.keys() and a
    for name in a:
        torch.testing.assert_close(c[name], a[name], rtol=1e-5, atol=1e-6)
    assert continued.metrics["final_train_loss"] == pytest.approx(
        whole.metrics["final_train_loss"], rel=1e-5
    )
    assert continued.metrics["accuracy"] == whole.metrics["accuracy"]
    # the loss curve goes on from the source's steps: one line, that of the uninterrupted run
    low_curve, curve = stored_curve(low.metrics), stored_curve(continued.metrics)
    assert [s for s, _ in low_curve] == [1, 2, 3, 4, 5]
    assert [s for s, _ in curve] == list(range(1, 12))
    assert curve[:5] == low_curve
    whole_curve = stored_curve(whole.metrics)
    assert [s for s, _ in whole_curve] == [s for s, _ in curve]
    for (_, got), (_, want) in zip(curve, whole_curve, strict=True):
        assert got == pytest.approx(want, rel=1e-4)
    # the 5-step trial's weights differ (the test can fail): it trained less
    b = _params(tmp_path / "b")
    assert any(not torch.allclose(b[n], a[n]) for n in a)


def test_a_missing_checkpoint_trains_from_scratch_with_a_note(worker, tmp_path) -> None:
    w, request = worker
    cont = Continuation(top_steps=11, decay_from=5)
    whole = w.run(replace(request, steps=11, continuation=cont))
    gone = replace(cont, resume=str(tmp_path / "gone.pt"))
    again = w.run(replace(request, steps=11, continuation=gone))
    assert again.ok and "missing" in again.metrics["note"] and "gone.pt" in again.metrics["note"]
    assert "continued_from_step" not in again.metrics
    assert again.metrics["final_train_loss"] == whole.metrics["final_train_loss"]
    assert stored_curve(again.metrics) == stored_curve(whole.metrics)  # from step 1, no gap


def test_the_schedule_decays_only_above_the_second_highest_rung() -> None:
    factors = [wsd_factor(s, 2, 6, 10) for s in range(10)]
    assert factors[:2] == [1 / 3, 2 / 3]
    assert factors[2:6] == [1.0] * 4  # a rung ending at step 6 never decays
    assert factors[6:] == [1.0, 0.75, 0.5, 0.25]


def test_a_checkpoint_without_a_curve_continues_with_the_new_steps_only(worker, tmp_path) -> None:
    """A checkpoint written before curves were recorded: the continuation trains on and its
    curve holds the steps it trained (6 to 11), counted from the configuration's start."""
    w, request = worker
    top = Continuation(top_steps=11, decay_from=5)
    low = w.run(replace(request, steps=5, continuation=replace(top, save=str(tmp_path / "b"))))
    state = torch.load(tmp_path / "b", weights_only=False)
    del state["stream"]["loss_curve"]
    torch.save(state, tmp_path / "b")
    up = replace(top, resume=str(tmp_path / "b"))
    continued = w.run(replace(request, number=1, steps=11, continuation=up))
    assert low.ok and continued.ok and continued.metrics["continued_from_step"] == 5
    assert [s for s, _ in stored_curve(continued.metrics)] == list(range(6, 12))
