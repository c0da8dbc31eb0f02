"""Peak memory predicted before a trial: the predictor, the driver's cap gate, the stored
prediction beside the measurement."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest

from autopeft.exceptions import SearchSpaceError, StudyError
from autopeft.executors.base import Executor
from autopeft.run.driver import MAX_SKIPS_IN_A_ROW, StudyRunner
from autopeft.run.prepare import prepare_study, register_study
from autopeft.run.progress import Reporter
from autopeft.search.samplers.random import RandomSampler
from autopeft.storage.store import Store
from autopeft.trial.memory_model import MIN_FIT_TRIALS, MemoryModel, MemoryStructure
from autopeft.trial.runner import TrialRequest, TrialResult
from tests.conftest import tiny_bert_layout

PLACEMENTS = [
    {0: {"q": 2}},
    {0: {"q": 4, "v": 4}, 1: {"q": 4}},
    {1: {"v": 1}},
    {0: {"up": 8}, 1: {"down": 2, "q": 2}},
    {1: {"q": 8, "k": 8, "v": 8}},
    {0: {"o": 1}},
]


def _structure() -> MemoryStructure:
    return MemoryStructure.build(tiny_bert_layout(), 4_000_000, batch_size=8, seq_len=16, heads=2)


def test_structural_terms_grow_with_what_they_model() -> None:
    s = _structure()
    state, adapted, depth = s.features(100, {1: {"q": 2}})
    assert state == 1600  # 100 params x (weight + grad + 2 Adam moments) x 4 bytes
    assert adapted == 4 * 8 * 16 * (32 + 2)  # input + rank-2 intermediate per token
    # adapting a lower layer keeps the frozen layers above it alive for backward
    assert s.features(100, {0: {"q": 2}})[2] == 2 * depth
    assert s.features(0, {}) == [0.0, 0.0, 0.0]
    assert s.structural(0, {}) == 4_000_000


def test_fit_recovers_a_linear_truth_and_keeps_the_prior_below_three_trials() -> None:
    s = _structure()
    model = MemoryModel(s)

    def truth(params: int, placement: dict) -> float:
        state, adapted, depth = s.features(params, placement)
        return 4_500_000 + 1.0 * state + 1.5 * adapted + 0.6 * depth

    obs = [(100 * (i + 1), p, truth(100 * (i + 1), p)) for i, p in enumerate(PLACEMENTS)]
    model.fit(obs[: MIN_FIT_TRIALS - 1])
    assert model.predict(300, PLACEMENTS[2]) == s.structural(300, PLACEMENTS[2])
    model.fit(obs)
    errors = [abs(model.predict(n, p) - y) / y for n, p, y in obs]
    assert max(errors) < 0.01


@pytest.mark.slow
def test_prediction_error_on_tiny_model_trials(study_dir: Path) -> None:
    """Real tiny-BERT trials: each trial is predicted from the trials before it."""
    from autopeft.run.driver import run_study

    outcome = run_study(study_dir / "study.yaml", trials=4)
    errors = []
    for r in outcome.records:
        assert r.state == "COMPLETE"
        predicted, measured = r.metrics["predicted_peak_memory_mb"], r.metrics["peak_memory_mb"]
        errors.append(abs(predicted - measured) / measured)
    assert float(np.median(errors)) < 0.05 and max(errors) < 0.10, errors
    from typer.testing import CliRunner

    from autopeft.cli import app

    url = f"sqlite:///{study_dir / 'studies.db'}"
    shown = CliRunner().invoke(app, ["show", "tiny", "--storage", url])
    assert shown.exit_code == 0 and "peak memory predicted vs measured" in shown.output


class RecordingExecutor(Executor):
    """Runs nothing; records every submitted request and answers with made-up measurements."""

    def __init__(self) -> None:
        self.submitted: list[TrialRequest] = []
        self._queue: deque[TrialRequest] = deque()

    def submit(self, request: TrialRequest) -> None:
        self.submitted.append(request)
        self._queue.append(request)

    def running(self) -> list[int]:
        return [r.number for r in self._queue]

    def poll(self, timeout: float | None = None) -> list[TrialResult]:
        out = []
        while self._queue:
            r = self._queue.popleft()
            params = r.compiled.trainable_params
            metrics = {"accuracy": 0.5, "trainable_params": params, "train_seconds": 0.1}
            metrics |= {"peak_memory_mb": 5.0, "peak_memory_bytes": 5 * 2**20}
            out.append(TrialResult(r.number, True, metrics))
        return out


def _capped_runner(study_dir: Path, executor: Executor) -> StudyRunner:
    spec = study_dir / "study.yaml"
    spec.write_text(
        spec.read_text().replace("{threads: 1, device: cpu}", "{threads: 1, memory_cap_mb: 10}")
    )
    prepared = prepare_study(spec)
    store = Store(prepared.url)
    register_study(store, prepared)
    return StudyRunner(prepared, store, Reporter(), executor)


def _over_1000_params(params: int, placement: object) -> float:
    return (20 if params > 1000 else 5) * 2**20  # over the 10 MiB cap above 1,000 params


@pytest.mark.slow
def test_the_sampler_proposes_only_candidates_predicted_under_the_cap(study_dir: Path) -> None:
    executor = RecordingExecutor()
    runner = _capped_runner(study_dir, executor)
    runner.memory.predict = _over_1000_params  # type: ignore[method-assign]
    outcome = runner.run(6)
    assert len(executor.submitted) == 6
    assert all(r.compiled.trainable_params <= 1000 for r in executor.submitted)
    assert not [r for r in outcome.records if r.metrics.get("skipped")]  # none proposed
    # the same sampler without the cap proposes larger configurations: the cap is what held it
    free = RandomSampler(runner.p.bound, runner.p.objectives, runner.p.files.spec.seed)
    assert any(runner.p.bound.count_params(p) > 1000 for p in free.propose([], 20))


@pytest.mark.slow
def test_a_candidate_predicted_over_the_cap_is_never_sent_to_a_worker(study_dir: Path) -> None:
    """A point that reaches the driver over the cap anyway (a warm-start point, a re-run after
    the memory model moved) is recorded as skipped, not launched."""
    executor = RecordingExecutor()
    runner = _capped_runner(study_dir, executor)
    runner.memory.predict = _over_1000_params  # type: ignore[method-assign]
    free = RandomSampler(runner.p.bound, runner.p.objectives, runner.p.files.spec.seed)
    large = [p for p in free.propose([], 40) if runner.p.bound.count_params(p) > 1000][:2]
    inner = runner.sampler.propose
    runner.sampler.propose = lambda history, n: (  # type: ignore[method-assign]
        [large[len(history)]] if len(history) < len(large) else inner(history, n)
    )
    outcome = runner.run(6)
    sent = {r.number for r in executor.submitted}
    assert all(r.compiled.trainable_params <= 1000 for r in executor.submitted)
    skipped = [r for r in outcome.records if r.metrics.get("skipped")]
    assert [r.params for r in skipped] == large
    for r in skipped:
        assert r.number not in sent and r.state == "FAIL" and r.infeasible
        assert r.metrics["predicted_peak_memory_mb"] == 20
        assert r.fail_reason.startswith("skipped: predicted peak memory 20.0 MiB > memory_cap_mb")
    ran = [r for r in outcome.records if r.state == "COMPLETE"]
    assert len(ran) == 6 and {r.number for r in ran} == sent  # skips do not use up the budget
    assert all(r.metrics["predicted_peak_memory_mb"] == 5 for r in ran)


@pytest.mark.slow
def test_a_space_entirely_over_the_cap_stops_with_a_clear_message(study_dir: Path) -> None:
    executor = RecordingExecutor()
    runner = _capped_runner(study_dir, executor)
    runner.memory.predict = lambda params, placement: 64 * 2**20  # type: ignore[method-assign]
    with pytest.raises(SearchSpaceError, match="under memory_cap_mb=10\\) is too tight"):
        runner.run(3)
    assert executor.submitted == []
    # proposals that reach the driver over the cap anyway: it gives up after a run of skips
    free = RandomSampler(runner.p.bound, runner.p.objectives, runner.p.files.spec.seed)
    runner.sampler.propose = free.propose  # type: ignore[method-assign]
    with pytest.raises(StudyError, match=f"{MAX_SKIPS_IN_A_ROW} proposals in a row were predicted"):
        runner.run(3)
    assert executor.submitted == []


def test_a_method_choice_space_honours_the_samplers_constraint() -> None:
    from autopeft.testing.synthetic_classes import make_problem

    bound = make_problem("method_choice", 0).bound
    point = RandomSampler(bound, [], 0).propose([], 1)[0]
    assert bound.is_feasible(point)
    assert bound.constrained(lambda p: True, "").is_feasible(point)
    assert not bound.constrained(lambda p: False, " (under a cap)").is_feasible(point)


def test_a_causal_lm_pays_for_its_logits_and_shared_inputs_count_once() -> None:
    import transformers

    from autopeft.trial.memory_model import HEAD_COPIES, head_copies

    causal = MemoryStructure.build(
        tiny_bert_layout(), 4_000_000, batch_size=8, seq_len=16, heads=0, vocab=100
    )
    assert causal.head_bytes == HEAD_COPIES * 8 * 16 * 100 * 4  # fp32 logits
    assert causal.structural(0, {}) == 4_000_000 + causal.head_bytes
    assert _structure().head_bytes == 0  # a classifier's head is tiny
    # q, k and v read one input: saved once, plus each adapter's rank-2 intermediate
    assert causal.features(0, {0: {"q": 2, "k": 2, "v": 2}})[1] == 4 * 8 * 16 * (32 + 6)
    assert causal.features(0, {0: {"q": 2, "o": 2}})[1] == 4 * 8 * 16 * (32 + 32 + 4)
    tiny = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    assert head_copies(transformers.LlamaConfig(**tiny)) == HEAD_COPIES
    gemma = transformers.Gemma2Config(**tiny, head_dim=8, final_logit_softcapping=30.0)
    assert head_copies(gemma) == HEAD_COPIES + 1  # the soft cap's tanh keeps its output
