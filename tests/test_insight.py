"""What a study learned: health checks, placement maps, importance and the HTML report."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.results.health import check_study, spearman
from autopeft.results.importance import group_of
from autopeft.results.placement_map import front_usage, trial_grid
from autopeft.results.views import StudyView
from autopeft.storage.confirmations import Confirmation
from autopeft.storage.records import TrialRecord
from tests.conftest import write_study

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]
runner = CliRunner()


def record(n: int, acc: float, size: int, **kw: Any) -> TrialRecord:
    kw.setdefault("state", TrialState.COMPLETE)
    kw.setdefault("method", "lora")
    return TrialRecord(n, values={"accuracy": acc, "trainable_params": size}, **kw)


def view(records: list[TrialRecord], spec: dict | None = None, budget: int = 100_000) -> StudyView:
    return StudyView("s", "sqlite://", spec or {}, "model", budget, OBJECTIVES, records)


def healthy() -> list[TrialRecord]:
    """A clean study: a staircase front well inside the budget, distinct accuracies."""
    return [
        record(
            i, 0.5 + 0.08 * i, 1000 * (i + 1), params={"rank.0.q": [2, 4, 8, 2, 4, 8][i], "lr": i}
        )
        for i in range(6)
    ]


BOUNDS = {"rank.0.q": (0, 2, 4, 8, 16)}


def test_a_healthy_study_has_no_finding() -> None:
    assert check_study(view(healthy()), bounds=BOUNDS) == []


def test_edge_fires_when_most_of_the_front_uses_the_largest_rank() -> None:
    records = [
        record(i, 0.5 + 0.08 * i, 1000 * (i + 1), params={"rank.0.q": 16 if i > 1 else 2})
        for i in range(6)
    ]
    (finding,) = check_study(view(records), bounds=BOUNDS)
    assert finding.check == "edge" and "'rank.0.q'" in finding.message
    assert "4 of 6 front members at 16" in finding.evidence and "above 16" in finding.action


def test_edge_ignores_on_off_switches() -> None:
    """IA3's per-cell ``active`` flags: most of the front "on" is no edge of the space (the LLM
    demo's front had 2 of 3 members with ia3.active.10 = 1)."""
    records = [
        record(i, 0.5 + 0.08 * i, 1000 * (i + 1), params={"ia3.active.10": 1, "lr": i})
        for i in range(6)
    ]
    assert check_study(view(records), bounds={"ia3.active.10": (0, 1)}) == []
    assert check_study(view(records), bounds={"ia3.active.10": (False, True)}) == []


def test_edge_fires_when_the_best_trial_uses_the_whole_budget() -> None:
    (finding,) = check_study(view(healthy(), budget=6100), bounds=BOUNDS)
    assert finding.check == "edge" and "6,000 of 6,100" in finding.evidence


def test_noise_fires_when_confirmed_seed_noise_exceeds_the_front_gaps() -> None:
    noisy = {
        i: Confirmation(i, 10, 3, {"accuracy": 0.7}, {"accuracy": 0.2}, [{"values": {}}] * 3)
        for i in range(6)
    }
    (finding,) = check_study(view(healthy()), confirmations=noisy, bounds=BOUNDS)
    assert finding.check == "noise" and "seed std 0.2000 (confirm)" in finding.evidence
    quiet = {i: Confirmation(i, 10, 3, {}, {"accuracy": 0.01}, [{"values": {}}] * 3) for i in noisy}
    assert check_study(view(healthy()), confirmations=quiet, bounds=BOUNDS) == []


def test_method_share_fires_when_one_method_takes_the_model_based_proposals() -> None:
    records = [
        record(i, 0.5 + 0.01 * i, 1000 + i, method="ia3" if i < 3 else "lora") for i in range(4)
    ]
    records += [record(i, 0.6 + 0.01 * i, 1000 + i) for i in range(4, 14)]
    spec = {"sampler": {"name": "mobo", "options": {"n_initial": 4}}}
    found = [f for f in check_study(view(records, spec)) if f.check == "method_share"]
    assert found and "'lora' took most" in found[0].message and "'ia3'" in found[0].message
    assert "10 of 10 proposals after the first 4 trials" in found[0].evidence


def test_fidelity_fires_when_low_rungs_rank_configurations_against_the_top_rung() -> None:
    low = [record(i, 0.1 * i, 100 * (i + 1), rung=0, state=TrialState.PRUNED) for i in range(5)]
    top = [record(10 + i, 0.9 - 0.1 * i, 100 * (i + 1), rung=1, promoted_from=i) for i in range(5)]
    spec = {"fidelity": {"rungs": [5, 20]}}
    found = [f for f in check_study(view(low + top, spec)) if f.check == "fidelity"]
    assert found and "Spearman -1.00" in found[0].evidence
    agree = [
        record(10 + i, 0.5 + 0.1 * i, 100 * (i + 1), rung=1, promoted_from=i) for i in range(5)
    ]
    assert not [f for f in check_study(view(low + agree, spec)) if f.check == "fidelity"]


def test_failures_fires_on_many_failed_or_skipped_trials() -> None:
    failed = [
        TrialRecord(10 + i, TrialState.FAIL, fail_reason="OutOfMemoryError: CUDA") for i in range(3)
    ]
    (finding,) = check_study(view(healthy() + failed), bounds=BOUNDS)
    assert finding.check == "failures" and "3 failed, 0 skipped of 9" in finding.evidence
    assert "OutOfMemoryError" in finding.evidence


def test_saturated_fires_on_ties_and_on_the_majority_answer() -> None:
    tied = [record(i, 0.9167 if i < 4 else 0.5, 1000 * (i + 1)) for i in range(6)]
    (finding,) = check_study(view(tied), bounds=BOUNDS)
    assert finding.check == "saturated" and "4 of 6 complete trials at exactly 0.9167" in (
        finding.evidence
    )
    (finding,) = check_study(view(healthy()), bounds=BOUNDS, majority=0.95)
    assert finding.check == "saturated" and "majority-answer share 0.9500" in finding.evidence


def test_the_majority_answer_share_is_measured_from_the_data() -> None:
    from autopeft.data import CompletionDataset, TextDataset
    from autopeft.spec import EvaluationSpec
    from autopeft.tasks import get_task

    labels = (0, 1, 1, 2, 1)
    texts = TextDataset("t", tuple("abcde"), labels, ("x", "y", "z"))
    seq_cls, causal = get_task("seq_cls"), get_task("causal_lm")
    assert seq_cls.majority_share(texts, "accuracy", EvaluationSpec()) == 0.6
    assert seq_cls.majority_share(texts, "f1", EvaluationSpec()) is None  # no such floor
    answers = ("Yes.", " yes", "No", "the answer is yes", "no")
    data = CompletionDataset("c", ("q",) * 5, answers, ("row",) * 5)
    # normalised as exact_match compares: "yes", "yes", "no", "the answer is yes", "no"
    assert causal.majority_share(data, "exact_match", EvaluationSpec()) == 0.4
    pattern = EvaluationSpec(answer_pattern="yes|no")  # the last match is the answer
    assert causal.majority_share(data, "exact_match", pattern) == 0.6
    assert causal.majority_share(data, "eval_loss", EvaluationSpec()) is None


def test_a_prepared_study_stores_its_majority_share_and_health_reads_it(study_dir: Path) -> None:
    from collections import Counter

    from autopeft.results.views import load_view
    from autopeft.run.prepare import prepare_study, register_study
    from autopeft.storage.store import Store

    p = prepare_study(study_dir / "study.yaml")
    rows = p.splits.validation.labels[: p.files.spec.fidelity.eval_examples]
    share = max(Counter(rows).values()) / len(rows)
    assert p.majority == share
    register_study(Store(p.url), p)
    stored = load_view("tiny", p.url)
    assert stored.majority == share
    at_floor = [record(i, share - 0.01 * i, 1000 * (i + 1)) for i in range(6)]
    (finding,) = check_study(replace(stored, records=at_floor), bounds=BOUNDS)
    assert finding.check == "saturated" and f"majority-answer share {share:.4f}" in (
        finding.evidence
    )


def test_memory_fires_when_predictions_are_far_off() -> None:
    metrics = {"predicted_peak_memory_mb": 100.0, "peak_memory_mb": 160.0}
    records = [replace(r, metrics=dict(metrics)) for r in healthy()]
    (finding,) = check_study(view(records), bounds=BOUNDS)
    assert finding.check == "memory" and "under-predicted" in finding.message
    assert "median |error| 38%" in finding.evidence


def test_spearman() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_placement_grids_of_a_trial_and_a_front() -> None:
    a = record(0, 0.8, 10, placement={0: {"q": 4, "v": 8}, 1: {"v": 2}})
    b = record(1, 0.7, 5, placement={1: {"q": 2, "v": 6}})
    grid = trial_grid(a)
    assert grid.layers == (0, 1) and grid.modules == ("q", "v")
    assert trial_grid(record(2, 0.1, 1, placement={0: {"down": 2, "v": 1, "q": 4}})).modules == (
        "q",
        "v",
        "down",
    )  # block order, whatever order the trial stored
    assert grid.cells == ((4.0, 8.0), (0.0, 2.0)) and grid.by_layer() == {0: 12.0, 1: 2.0}
    share, mean = front_usage([a, b])
    assert share.cells == ((50.0, 50.0), (50.0, 100.0))
    assert mean.cells == ((4.0, 8.0), (2.0, 4.0))
    assert mean.by_module() == {"q": 6.0, "v": 12.0}


def test_importance_groups_read_layers_and_modules() -> None:
    assert group_of("rank.3.q") == {"parameter": "rank", "layer": "layer 3", "module": "module q"}
    assert group_of("dropout.2") == {"parameter": "dropout", "layer": "layer 2"}
    assert group_of("learning_rate") == {"parameter": "learning_rate"}


@pytest.mark.slow
def test_report_html_is_self_contained_with_every_section(
    study_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    write_study(study_dir, model=str(tiny_bert_dir), n_trials=6)
    ran = runner.invoke(app, ["run", str(study_dir / "study.yaml"), "-q"])
    assert ran.exit_code == 0, ran.output
    url = f"sqlite:///{study_dir / 'studies.db'}"
    out, png = tmp_path / "report.html", tmp_path / "maps.png"
    made = runner.invoke(
        app, ["report", "tiny", "--storage", url, "--out", str(out), "--png", str(png)]
    )
    assert made.exit_code == 0, made.output
    page = out.read_text()
    for section in (
        "Health checks",
        "Pareto front",
        "Where the capacity went",
        "What moved the objectives",
        "Exported config of trial",
        "Learning curves of the front",
    ):
        assert section in page
    assert "Optuna fANOVA on the stored trials" in page  # importance ran, labelled
    assert not re.search(r"(src|href)=['\"]https?:", page)  # nothing fetched from a network
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 4 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert '"peft_type": "LORA"' in page
    assert png.read_bytes()[:4] == b"\x89PNG"
    shown = runner.invoke(app, ["show", "tiny", "--storage", url])
    assert shown.exit_code == 0, shown.output


def test_report_of_a_study_without_complete_trials_is_one_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "nope", "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2 and result.output.startswith("error:")


@pytest.mark.slow
def test_a_driver_that_fails_records_its_error_and_the_study_shows_failed(
    study_dir: Path,
) -> None:
    from autopeft.executors.base import Executor
    from autopeft.results.views import load_view
    from autopeft.run.driver import run_study
    from autopeft.service.summary import study_state

    class Broken(Executor):
        """An executor whose submit fails as a lost cluster would (a unit-test stand-in)."""

        def submit(self, request: Any) -> None:
            raise RuntimeError("the cluster went away\nsecond line")

        def poll(self, timeout: float | None = None) -> list:
            return []

        def running(self) -> list[int]:
            return []

    with pytest.raises(RuntimeError, match="the cluster went away"):
        run_study(study_dir / "study.yaml", executor=Broken())
    url = f"sqlite:///{study_dir / 'studies.db'}"
    failed = load_view("tiny", url)
    assert failed.driver_error == "RuntimeError: the cluster went away"
    assert study_state(failed, driver_running=False, exit_code=None) == "failed"
    run_study(study_dir / "study.yaml")  # a driver that starts clears it
    again = load_view("tiny", url)
    assert again.driver_error is None
    assert study_state(again, driver_running=False, exit_code=None) == "complete"


def test_references_are_not_proposals_for_the_method_share() -> None:
    """A reference of another method (IA3 beside a LoRA-only search) is a comparison point,
    not a method the search barely tried."""
    refs = [record(i, 0.3, 13_824, method="ia3", reference=f"ref{i}") for i in range(2)]
    searched = [record(i, 0.6 + 0.01 * i, 1000 + i) for i in range(2, 16)]
    spec = {"sampler": {"name": "mobo", "options": {"n_initial": 4}}}
    assert not [f for f in check_study(view(refs + searched, spec)) if f.check == "method_share"]


def test_importance_of_a_large_study_is_estimated_on_a_labelled_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over MAX_TRIALS complete trials, fANOVA runs on a seeded sample of that many (it took
    minutes on 5,000 trials) and says so; the same sample (and estimate) on every call."""
    from autopeft.results import importance
    from autopeft.results.views import load_view
    from autopeft.testing.load_study import seed_study

    seeded = seed_study(f"sqlite:///{tmp_path / 'big.db'}", 40, name="big")
    view = load_view(seeded.name, seeded.url)
    monkeypatch.setattr(importance, "MAX_TRIALS", 12)
    first = importance.importances(view)
    assert [i.trials for i in first] == [12] * len(view.objectives)
    assert all(f"a random 12 of {len(view.complete())} complete" in i.method for i in first)
    assert importance.importances(view) == first
    assert first[0].dims and abs(sum(first[0].dims.values()) - 1) < 1e-6
    monkeypatch.setattr(importance, "MAX_TRIALS", 500)  # above the 40 trials: all of them
    whole = importance.importances(view)
    assert whole[0].trials == len(view.complete()) and whole[0].method == importance.METHOD
