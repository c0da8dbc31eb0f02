"""``fidelity.budget_steps`` (a study's budget in training steps) and ``rungs: auto``: the
counting and start rules, validation, real tiny studies held to the budget, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.core.states import TrialState
from autopeft.results.views import load_view
from autopeft.search.budget import (
    AUTO_MIN_PAIRS,
    StepBudget,
    entry_rung,
    owed_steps,
    scheduled_steps,
    unmeasured_rungs,
)
from autopeft.search.promotion import RungEntry
from autopeft.spec import FidelitySpec
from autopeft.storage.records import TrialRecord
from tests.conftest import SPACE, assert_user_error, write_study, write_tiny_csv

runner = CliRunner()
RUNGS = (12, 25, 50, 100)


# -- counting ------------------------------------------------------------------------------------
def test_a_promotion_costs_the_steps_between_rungs_with_continuation_all_without() -> None:
    assert scheduled_steps(RUNGS, 0) == 12
    assert scheduled_steps(RUNGS, 2) == 25  # 50 - 25: continues rung 1's checkpoint
    assert scheduled_steps(RUNGS, 2, continued=False) == 50
    assert scheduled_steps((100,), None) == 100  # single fidelity: max_steps
    # finished trials are charged what they report; running ones what they are scheduled
    done = TrialRecord(
        1, TrialState.PRUNED, rung=2, promoted_from=0, metrics={"steps": 50}
    )  # a promotion whose checkpoint was missing: trained all 50
    assert done.charged_steps(RUNGS) == 50
    cont = TrialRecord(
        2, TrialState.COMPLETE, rung=3, promoted_from=1,
        metrics={"steps": 100, "continued_from_step": 50},
    )  # fmt: skip
    assert cont.charged_steps(RUNGS) == 50
    assert TrialRecord(3, TrialState.RUNNING, rung=1, promoted_from=0).charged_steps(RUNGS) == 13
    assert TrialRecord(4, TrialState.RUNNING, rung=1).charged_steps(RUNGS) == 25  # auto entry
    # not charged: interrupted (the re-run is), skipped before launch, references
    assert TrialRecord(5, TrialState.FAIL, rung=0, interrupted=True).charged_steps(RUNGS) == 0
    skipped = TrialRecord(6, TrialState.FAIL, rung=0, metrics={"skipped": True})
    assert skipped.charged_steps(RUNGS) == 0
    ref = TrialRecord(7, TrialState.COMPLETE, reference="lora-r8-qv", metrics={"steps": 100})
    assert ref.charged_steps(RUNGS) == 0


def test_new_configurations_leave_room_for_the_promotions_owed() -> None:
    rules = StepBudget(1000, RUNGS, 3.0)
    # nine finished rung-0 trials, none promoted: 3 owed to rung 1, 1 to rung 2, 1/3 to rung 3
    nine = [RungEntry(i, 0, True, {"accuracy": 0.5}) for i in range(9)]
    owed = owed_steps(nine, RUNGS, 3.0)
    assert owed == pytest.approx(3 * 13 + 1 * 25 + 50 / 3)
    spent = 9 * 12
    # a tenth configuration raises the owed promotions too
    with_tenth = owed_steps([*nine, RungEntry(9, 0, False)], RUNGS, 3.0)
    assert rules.admits_new(1000 - 12 - with_tenth, nine)
    assert not rules.admits_new(1000 - 12 - with_tenth + 1, nine)
    assert rules.admits_new(spent, nine)
    # promoted trials are paid for: nothing owed at a rung that has had its share
    paid = [RungEntry(i, 0, True, {"accuracy": 0.5}, promoted=i < 3) for i in range(9)]
    paid += [RungEntry(9 + i, 1, True, {"accuracy": 0.5}) for i in range(3)]
    assert owed_steps(paid, RUNGS, 3.0) == pytest.approx(25 + 50 / 3)


def test_a_promotion_starts_only_if_the_steps_left_carry_it_to_the_top() -> None:
    rules = StepBudget(1000, RUNGS, 3.0)
    assert rules.admits_promotion(1000 - 88, 0)  # 13 to rung 1, then 25 + 50 to the top
    assert not rules.admits_promotion(1000 - 87, 0)
    assert rules.admits_promotion(1000 - 50, 2)  # the top rung's 50
    assert not rules.admits_promotion(1000 - 49, 2)
    assert StepBudget(None, RUNGS).admits_promotion(10**9, 0)  # no step budget: always


# -- rungs: auto ---------------------------------------------------------------------------------
def test_auto_rungs_are_a_geometric_ladder_below_max_steps() -> None:
    spec = FidelitySpec(rungs="auto", max_steps=100, reduction_factor=3)
    assert spec.rung_steps == (4, 11, 33, 100) and spec.auto_rungs
    assert FidelitySpec(rungs="auto", max_steps=8, reduction_factor=2).rung_steps == (1, 2, 4, 8)


def test_auto_drops_the_lowest_measured_distrusted_rungs_only() -> None:
    enough = AUTO_MIN_PAIRS
    # rung 0 measured and distrusted: new configurations start at rung 1
    assert entry_rung({0: enough, 1: enough, 2: enough}, frozenset({0}), 4) == 1
    # rungs 0 and 1 both: at rung 2; every rung below the top: at the top (plain search)
    assert entry_rung({0: enough, 1: enough}, frozenset({0, 1}), 4) == 2
    assert entry_rung({0: enough, 1: enough, 2: enough}, frozenset({0, 1, 2}), 4) == 3
    # a distrusted rung above a trusted one is not dropped (it just selects nothing)
    assert entry_rung({0: enough, 1: enough}, frozenset({1}), 4) == 0
    # too few pairs to judge: not dropped, and it selects nothing until it has them
    assert entry_rung({0: enough - 1}, frozenset({0}), 4) == 0
    assert unmeasured_rungs({0: enough - 1, 1: enough}, 4) == {0, 2}


def _chains(low: list[float], top: list[float]) -> list[TrialRecord]:
    out = []
    for i, (a, b) in enumerate(zip(low, top, strict=True)):
        out.append(TrialRecord(2 * i, TrialState.PRUNED, {"accuracy": a}, rung=0))
        out.append(
            TrialRecord(
                2 * i + 1, TrialState.COMPLETE, {"accuracy": b}, rung=1, promoted_from=2 * i
            )
        )
    return out


def test_the_driver_moves_auto_entry_above_a_rung_that_ranks_backwards() -> None:
    """On a constructed problem whose low rung ranks configurations backwards: before enough
    pairs the rung selects nothing (unmeasured); with them it is dropped and new
    configurations start at the top; one note line."""
    from types import SimpleNamespace

    from autopeft.run.driver import StudyRunner
    from autopeft.run.progress import Reporter

    class Notes(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

    n = AUTO_MIN_PAIRS
    low = [0.5 + 0.05 * i for i in range(n)]
    records = _chains(low[:2], low[::-1][:2])  # two pairs: not measured yet
    runner_ = object.__new__(StudyRunner)
    runner_.reporter = Notes()
    runner_.rungs = (4, 8)
    runner_.auto_rungs = True
    runner_._entry, runner_._pairs = 0, {}
    runner_._noted_distrust = frozenset()
    runner_.p = SimpleNamespace(files=SimpleNamespace(spec=SimpleNamespace(metric="accuracy")))
    runner_.mirror = SimpleNamespace(records=lambda: records)
    assert runner_._distrusted() == {0} and runner_._entry == 0  # unmeasured: no selection
    records = _chains(low, low[::-1])  # backwards over AUTO_MIN_PAIRS configurations
    assert runner_._distrusted() == {0} and runner_._entry == 1
    assert [line for line in runner_.reporter.lines if "rungs: auto" in line] == [
        "note: rungs: auto: new configurations now start at rung 1 (8 steps): the rungs "
        "below rank configurations unlike the top rung"
    ]
    records = _chains(low, low)  # a rung that agrees: selects, new configurations at rung 0
    runner_._entry = 0
    assert runner_._distrusted() == frozenset() and runner_._entry == 0


def test_auto_on_a_low_correlation_problem_ends_like_plain_search() -> None:
    """End to end on the constructed low-correlation problem of ``bench/fidelity_budget.py``
    (random sampler, simulated workers, the driver's rules): the low rungs are measured,
    dropped, and the budget is spent on top-rung trials, within 10 %."""
    from bench.fidelity_budget import rung_spearman, simulate_budget

    assert max(rung_spearman("lowcorr", [4, 11, 33, 100], n=80)) < 0.3
    result = simulate_budget("random+auto", "lowcorr", 0, 2000, [4, 11, 33, 100], 3.0, 4, {}, True)
    assert result["entry"] == 3  # every lower rung dropped: plain search from then on
    steps = result["curve"][-1][0]
    assert 2000 - 100 < steps <= 2000 * 1.1
    assert result["per_rung"][3] >= 2000 // 100 - 4  # nearly the whole budget at the top


def test_the_status_line_shows_spent_and_budget_steps() -> None:
    from autopeft.run.progress import StudyStatus

    status = StudyStatus.at(
        3, running=1, failed=0, target=None, elapsed=61.0, done_before=0, best={},
        hypervolume=None, steps=(1234, 4000),
    )  # fmt: skip
    assert status.line() == "3 done, 1 running, 0 failed, 1,234/4,000 steps | 1m01s"
    status = StudyStatus.at(
        3, running=0, failed=0, target=5, elapsed=60.0, done_before=0, best={}, hypervolume=None
    )
    assert status.line().startswith("3/5 done, 0 running, 0 failed | 1m00s, ~")


# -- spec validation -----------------------------------------------------------------------------
def _study(d: Path, model: Path, fidelity: str, n_trials: str = "") -> Path:
    write_tiny_csv(d / "data.csv")
    (d / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(d, model=str(model), n_trials=3)
    text = spec.read_text().replace("max_steps: 4,", fidelity)
    text = text.replace("n_trials: 3\n", n_trials)
    spec.write_text(text + "objectives: [accuracy, trainable_params]\n")
    return spec


@pytest.mark.parametrize(
    ("fidelity", "n_trials", "fragments"),
    [
        ("rungs: [2, 4, 8], budget_steps: 6,", "", ("budget_steps (6)", "top rung", "8")),
        ("max_steps: 4, budget_steps: 0,", "", ("fidelity.budget_steps", "greater than")),
        ("max_steps: 4,", "n_trials: null\n", ("n_trials", "fidelity.budget_steps")),
        ("rungs: auto, max_steps: 1,", "", ("rungs: auto", "max_steps")),
    ],
)
def test_bad_budgets_are_one_error_line(tmp_path, tiny_bert_dir, fidelity, n_trials, fragments):
    spec = _study(tmp_path, tiny_bert_dir, fidelity, n_trials)
    assert_user_error(runner.invoke(app, ["validate", str(spec)]), "study.yaml", *fragments)


# -- studies -------------------------------------------------------------------------------------
def test_a_single_fidelity_budget_stops_before_it_is_passed_and_resumes_from_stored_steps(
    tmp_path, tiny_bert_dir
) -> None:
    """max_steps 4 and budget_steps 14: three trials (12 steps; a fourth would make 16). A
    resumed run with a larger budget counts the 12 spent: 22 allows two more, not five."""
    spec = _study(tmp_path, tiny_bert_dir, "max_steps: 4, budget_steps: 14,")
    result = runner.invoke(app, ["run", str(spec), "-q"])
    assert result.exit_code == 0, result.output
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    view = load_view("tiny", url)
    assert view.finished() == 3 and view.steps_spent() == 12 and view.budget_steps() == 14
    shown = runner.invoke(app, ["show", "tiny", "--storage", url]).output
    assert "14 steps (12 spent)" in shown
    from autopeft.service.summary import study_state, summary

    state = study_state(view, driver_running=False, exit_code=None)
    assert state == "complete"  # 2 steps left: less than a trial
    assert summary(view, state)["steps_spent"] == 12
    again = runner.invoke(app, ["run", str(spec), "-q"])  # nothing left to spend
    assert again.exit_code == 0 and load_view("tiny", url).finished() == 3
    spec.write_text(spec.read_text().replace("budget_steps: 14", "budget_steps: 22"))
    assert runner.invoke(app, ["run", str(spec), "-q"]).exit_code == 0
    view = load_view("tiny", url)
    assert view.finished() == 5 and view.steps_spent() == 20


def test_n_trials_and_budget_steps_end_the_study_at_whichever_comes_first(
    tmp_path, tiny_bert_dir
) -> None:
    spec = _study(tmp_path, tiny_bert_dir, "max_steps: 4, budget_steps: 400,", "n_trials: 2\n")
    assert runner.invoke(app, ["run", str(spec), "-q"]).exit_code == 0
    view = load_view("tiny", f"sqlite:///{tmp_path / 'studies.db'}")
    assert view.finished() == 2 and view.steps_spent() == 8


def test_a_multi_fidelity_budget_is_respected_within_ten_percent(tmp_path, tiny_bert_dir):
    """Rungs 2/4/8 under 40 steps, no n_trials: new configurations and promotions stop so
    that the charged steps stay within the budget, and the top rung is reached."""
    spec = _study(
        tmp_path, tiny_bert_dir, "rungs: [2, 4, 8], reduction_factor: 2, budget_steps: 40,"
    )
    result = runner.invoke(app, ["run", str(spec), "-q"])
    assert result.exit_code == 0, result.output
    view = load_view("tiny", f"sqlite:///{tmp_path / 'studies.db'}")
    spent = view.steps_spent()
    assert spent <= 40 * 1.1 and spent == view.training_steps()
    assert spent > 40 - 8  # not stopped early: less than one top-rung trial's steps left
    assert any(r.rung == 2 and r.state == TrialState.COMPLETE for r in view.records)
    assert view.finished() >= 4  # more configurations than 40 / 8 full trials


@pytest.mark.slow
def test_a_killed_driver_resumes_with_the_steps_its_stored_trials_spent(
    tmp_path, tiny_bert_dir
) -> None:
    """SIGKILL while the second of two affordable trials trains (max_steps 30, budget 70):
    the resumed driver counts the finished trial's 30 steps, re-runs the interrupted one (which
    is not charged) and stops at 60 steps: two trials, not two more."""
    import os
    import subprocess
    import sys

    from tests.conftest import kill_driver_mid_trial

    spec = _study(tmp_path, tiny_bert_dir, "max_steps: 30, budget_steps: 70,")
    db = tmp_path / "studies.db"
    before, running = kill_driver_mid_trial(["run", str(spec), "-q"], db, timeout=240)
    assert len(before) == 1 and len(running) == 1
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "autopeft.cli", "run", str(spec), "-q"]
    subprocess.run(run, env=env, check=True, capture_output=True)
    view = load_view("tiny", f"sqlite:///{db}")
    interrupted = [r for r in view.records if r.interrupted]
    assert [r.number for r in interrupted] == [running[0].number]
    assert view.finished() == 2 and view.steps_spent() == 60
    assert sum(1 for r in view.records if r.state == TrialState.COMPLETE) == 2


# -- fixed rungs: calibration --------------------------------------------------------------------
def _fixed_runner(records: list[TrialRecord]):  # type: ignore[no-untyped-def]
    """A driver over ``records`` (fixed rungs 4, 8), recording its ``note:`` lines."""
    from types import SimpleNamespace

    from autopeft.run.driver import StudyRunner
    from autopeft.run.progress import Reporter

    class Notes(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

    runner_ = object.__new__(StudyRunner)
    runner_.reporter = Notes()
    runner_.rungs = (4, 8)
    runner_._noted_distrust = frozenset()
    fidelity = SimpleNamespace(reduction_factor=3.0, promotion="asha", promotion_order="crowding")
    spec = SimpleNamespace(metric="accuracy", fidelity=fidelity)
    runner_.p = SimpleNamespace(files=SimpleNamespace(spec=spec))
    runner_.mirror = SimpleNamespace(
        records=lambda: records,
        promotions=lambda *args: [],
        steps_spent=0,
        record=lambda n: next(r for r in records if r.number == n),
    )
    runner_.budget = StepBudget(None, (4, 8))
    runner_._new_allowed = lambda target: True
    return runner_


def test_the_first_configurations_go_to_the_top_rung_whatever_they_measure() -> None:
    """Calibration: the first AUTO_MIN_PAIRS searched configurations (references, skipped and
    interrupted trials left out, a re-run standing in) are promoted whatever their rank,
    highest rung first; charged like any promotion (the step budget can refuse them)."""
    from autopeft.search.budget import calibration

    k = AUTO_MIN_PAIRS
    records = [TrialRecord(i, TrialState.PRUNED, {"accuracy": 0.1 * i}, rung=0) for i in range(k)]
    records[2] = TrialRecord(2, TrialState.FAIL, rung=0, interrupted=True)
    records += [
        TrialRecord(k, TrialState.FAIL, rung=0, metrics={"skipped": True}),
        TrialRecord(k + 1, TrialState.COMPLETE, {"accuracy": 0.9}, reference="lora-r8-qv", rung=1),
        TrialRecord(k + 2, TrialState.PRUNED, {"accuracy": 0.05}, rung=0),  # in for trial 2
        TrialRecord(k + 3, TrialState.PRUNED, {"accuracy": 0.99}, rung=0),  # the k+1-th: not
        TrialRecord(k + 4, TrialState.PRUNED, {"accuracy": 0.5}, rung=1, promoted_from=0),
    ]
    state = calibration(records, 2)
    roots = {0, 1, 3, 4, 5, k + 2}
    assert state.roots == roots and not state.done
    assert set(state.pending) == roots - {0}  # trial 0 is promoted already (to trial k+4)
    assert k + 3 not in state.pending  # the best at rung 0, but not a calibration configuration
    runner_ = _fixed_runner(records)
    assert runner_._promotions(None) == list(state.pending)  # the ASHA rule chose none here
    runner_.budget = StepBudget(k * 8 + 4, (4, 8))  # room for one promotion (4 steps) more
    runner_.mirror.steps_spent = k * 8
    assert runner_._promotions(None) == list(state.pending)[:1]


def test_fixed_rungs_judged_on_calibration_skip_a_rung_that_ranks_backwards() -> None:
    """The constructed low-correlation case: the calibration configurations rank backwards at
    rung 0, the configurations the rung later selected agree (the biased sample that hid it
    before): the rung is distrusted, new configurations start above it, one note line."""
    k = AUTO_MIN_PAIRS
    low = [0.5 + 0.05 * i for i in range(k)]
    records = _chains(low[:-1], low[::-1][:-1])  # calibration not finished: nothing judged
    runner_ = _fixed_runner(records)
    assert runner_._distrusted() == frozenset() and runner_._entry == 0
    records[:] = _chains(low, low[::-1]) + _later_chains(100, [0.6, 0.7, 0.8, 0.9, 0.95])
    assert runner_._distrusted() == {0} and runner_._entry == 1
    assert runner_._distrusted() == {0}
    (line,) = runner_.reporter.lines
    assert line.startswith(f"note: calibration on {k} configurations trained to the top rung")
    assert "rung 0 (4 steps) Spearman -1.00 over 6" in line


def test_the_sampler_does_not_see_the_results_of_a_distrusted_rung() -> None:
    """Once calibration distrusts rung 0, the sampler's history leaves out the results
    measured there (they rank configurations unlike the top rung and would mislead the
    surrogate); failures and running trials there, and every top-rung result, stay."""
    from types import SimpleNamespace

    from autopeft.core.objectives import Objective
    from autopeft.run.mirror import TrialMirror

    k = AUTO_MIN_PAIRS
    low = [0.5 + 0.05 * i for i in range(k)]
    records = [
        *_chains(low, low[::-1]),
        TrialRecord(100, TrialState.FAIL, rung=0),
        TrialRecord(101, TrialState.RUNNING, rung=0),
    ]
    store = SimpleNamespace(records=lambda name: records, retry_queue=lambda name: [])
    objectives = [Objective("accuracy", "maximize")]
    mirror = TrialMirror(store, "s", objectives, 100, rungs=(4, 8))  # type: ignore[arg-type]
    everything = mirror.history()
    assert len(everything) == 2 * k + 2
    shown = mirror.history(True, frozenset({0}))
    assert [(h.state, h.fidelity) for h in shown] == [("COMPLETE", 1.0)] * k + [
        ("FAIL", 0.5),
        ("RUNNING", 0.5),
    ]
    assert mirror.history(False, frozenset({0})) == mirror.history(False)  # lowest rung only

    seen: list[frozenset[int]] = []
    for top, hidden in ((low[::-1], {0}), ([v + 0.2 for v in low], set())):
        runner_ = _fixed_runner(_chains(low, top))
        runner_.multi_fidelity = True
        runner_.mirror.history = lambda fidelity, hidden: seen.append(hidden) or []
        runner_.sampler = SimpleNamespace(multi_fidelity=True, propose=lambda h, n: [{}] * n)
        assert runner_._propose(1) == [{}]
        assert seen[-1] == hidden


def _later_chains(start: int, values: list[float]) -> list[TrialRecord]:
    """Configurations numbered from ``start`` that agree between the rungs."""
    out = []
    for i, v in enumerate(values):
        out.append(TrialRecord(start + 2 * i, TrialState.PRUNED, {"accuracy": v}, rung=0))
        out.append(
            TrialRecord(
                start + 2 * i + 1, TrialState.COMPLETE, {"accuracy": v}, rung=1,
                promoted_from=start + 2 * i,
            )
        )  # fmt: skip
    return out


def test_fixed_rungs_on_a_well_correlated_problem_keep_every_rung_silently() -> None:
    k = AUTO_MIN_PAIRS
    low = [0.5 + 0.05 * i for i in range(k)]
    runner_ = _fixed_runner(_chains(low, [v + 0.2 for v in low]))
    assert runner_._distrusted() == frozenset() and runner_._entry == 0
    assert runner_.reporter.lines == []


def test_a_resumed_fixed_rung_study_does_not_redo_calibration() -> None:
    """A killed driver's stored trials: a fresh driver finds the calibration done (no trial
    forced up again, the rung still skipped), or half done (exactly the calibration trials
    that finished unpromoted go up; an interrupted one's re-run takes its place)."""
    from autopeft.search.budget import calibration

    k = AUTO_MIN_PAIRS
    low = [0.5 + 0.05 * i for i in range(k)]
    done = _chains(low, low[::-1]) + [
        TrialRecord(100 + i, TrialState.PRUNED, {"accuracy": 0.6}, rung=1) for i in range(3)
    ]  # three configurations started at rung 1 after the rung-0 note
    fresh = _fixed_runner(done)
    assert fresh._distrusted() == {0} and fresh._entry == 1
    state = calibration(done, 2)
    assert state.done and state.pending == () and state.roots == {2 * i for i in range(k)}
    assert fresh._promotions(None) == []
    # killed mid-calibration: chain 0 complete, 2 and 4 finished at rung 0, 6 was running
    half = [
        *_chains(low[:1], low[:1]),
        TrialRecord(2, TrialState.PRUNED, {"accuracy": 0.4}, rung=0),
        TrialRecord(4, TrialState.PRUNED, {"accuracy": 0.3}, rung=0),
        TrialRecord(6, TrialState.FAIL, rung=0, interrupted=True),
        TrialRecord(7, TrialState.RUNNING, rung=0),  # the re-run of 6
    ]
    state = calibration(half, 2)
    assert state.roots == {0, 2, 4, 7} and state.pending == (2, 4) and not state.done
    assert _fixed_runner(half)._promotions(None) == [2, 4]


def test_fixed_rungs_on_the_low_correlation_problem_skip_to_the_top() -> None:
    """End to end on ``bench/fidelity_budget.py``'s constructed low-correlation problem (random
    sampler, simulated workers, the driver's rules): calibration distrusts every rung below the
    top and the budget is spent on top-rung trials."""
    from bench.fidelity_budget import simulate_budget

    result = simulate_budget("random+rungs", "lowcorr", 0, 2000, [12, 25, 50, 100], 3.0, 4, {})
    assert result["entry"] == 3
    assert all(pairs == AUTO_MIN_PAIRS for _, pairs in result["correlations"].values())
    steps = result["curve"][-1][0]
    assert 2000 - 100 < steps <= 2000
    assert result["per_rung"][3] >= 2000 // 100 - 6


def _replay(promotion: str, rungs: tuple[int, ...], factor: float, low: list[float]) -> list[int]:
    """The driver's promotion decisions replayed to the end over configurations that finished
    rung 0 measuring ``low`` (every one started, as when ``n_trials`` is reached; a promoted
    trial finishes at once measuring what its source did): how many trials ran at each rung."""
    from types import SimpleNamespace

    from autopeft.core.objectives import Objective
    from autopeft.search.promotion import promotions

    objectives = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]
    records = [
        TrialRecord(i, TrialState.PRUNED, {"accuracy": v, "trainable_params": 100.0}, rung=0)
        for i, v in enumerate(low)
    ]

    def rule(
        draining: bool, rf: float, cap: bool, distrusted: frozenset[int], order: str
    ) -> list[int]:
        promoted = {r.promoted_from for r in records}
        entries = [
            RungEntry(r.number, r.rung or 0, True, r.rung_values, r.number in promoted)
            for r in records
        ]
        return promotions(
            entries, objectives, len(rungs), rf, draining=draining, cap=cap,
            distrusted=distrusted, order=order,
        )  # fmt: skip

    runner_ = _fixed_runner(records)
    runner_.rungs = rungs
    runner_.p.files.spec.fidelity = SimpleNamespace(
        reduction_factor=factor, promotion=promotion, promotion_order="crowding"
    )
    runner_.mirror.promotions = rule
    runner_._new_allowed = lambda target: False
    while chosen := runner_._promotions(None):
        source = runner_.mirror.record(chosen[0])
        top = source.rung + 1 == len(rungs) - 1
        state = TrialState.COMPLETE if top else TrialState.PRUNED
        records.append(
            TrialRecord(
                len(records), state, dict(source.values), rung=source.rung + 1,
                promoted_from=source.number,
            )
        )  # fmt: skip
    return [sum(1 for r in records if r.rung == k) for k in range(len(rungs))]


def test_calibration_does_not_promote_past_the_quota() -> None:
    """``promotion: quota`` is an explicit cap that calibration does not override: on the Ray
    test's schedule (6 configurations, rungs 3/6/12, factor 2) rung 1 gets floor(6 / 2) = 3
    trials and the top floor(3 / 2) = 1, as under the plain quota rule, where ``asha``
    calibrates (the first AUTO_MIN_PAIRS configurations to the top, whatever they rank)."""
    low = [0.9 - 0.05 * i for i in range(AUTO_MIN_PAIRS)]  # the later ones rank last
    assert _replay("quota", (3, 6, 12), 2.0, low) == [6, 3, 1]
    assert _replay("asha", (3, 6, 12), 2.0, low) == [6, 6, 6]
    # more configurations than the calibration: the quota still holds at every rung
    many = [0.3 + 0.01 * ((7 * i) % 20) for i in range(20)]
    assert _replay("quota", (4, 8, 16), 3.0, many) == [20, 6, 2]


def test_under_the_quota_fixed_rungs_are_judged_as_without_calibration() -> None:
    """No calibration under ``promotion: quota``: a rung is distrusted on every configuration
    that reached the top rung (the note names the rung, not a calibration), no rung is
    skipped, and nothing is forced up."""
    from types import SimpleNamespace

    k = AUTO_MIN_PAIRS
    low = [0.5 + 0.05 * i for i in range(k)]
    records = _chains(low, low[::-1])
    runner_ = _fixed_runner(records)
    runner_.p.files.spec.fidelity = SimpleNamespace(
        reduction_factor=3.0, promotion="quota", promotion_order="crowding"
    )
    assert not runner_._calibrates()
    assert runner_._distrusted() == {0} and runner_._entry == 0
    (line,) = runner_.reporter.lines
    assert line.startswith("note: rung 0 (4 steps) does not rank") and f"over {k}" in line
    half = [TrialRecord(i, TrialState.PRUNED, {"accuracy": 0.5}, rung=0) for i in range(k)]
    assert _fixed_runner(half)._promotions(None) == list(range(k))  # asha: calibration
    quota = _fixed_runner(half)
    quota.p.files.spec.fidelity = runner_.p.files.spec.fidelity
    assert quota._promotions(None) == []  # the stub rule chose none, and nothing is forced


def test_the_noise_free_reading_leaves_the_runs_noise_stream_alone() -> None:
    """``bench/fidelity.py``'s noise-free values (the benchmark's second reading of a noisy
    class) are the problem's model without accuracy noise, and reading them does not change what
    the run measures next."""
    from autopeft.search.samplers import make_sampler
    from autopeft.testing.synthetic_classes import make_problem
    from bench.fidelity import FidelityProblem
    from bench.fidelity_budget import simulate_budget

    def model() -> FidelityProblem:
        return FidelityProblem(make_problem("noisy", 0))

    plain, read = model(), model()
    problem = plain.problem
    sampler = make_sampler("random", problem.bound, problem.objectives, 0, {})
    points = [dict(p) for p in sampler.propose([], 6)]
    measured = [plain.evaluate_at(p, 100, 100) for p in points]
    clean, remeasured = [], []
    for p in points:
        clean.append(read.noise_free(p))
        remeasured.append(read.evaluate_at(p, 100, 100))
    assert remeasured == measured  # the stream is where it was
    pairs = [(m, c) for m, c in zip(measured, clean, strict=True) if m and c]
    gaps = [m["accuracy"] - c["accuracy"] for m, c in pairs]
    assert gaps and all(abs(g) < 0.2 for g in gaps) and any(abs(g) > 1e-4 for g in gaps)
    assert all(m["trainable_params"] == c["trainable_params"] for m, c in pairs)
    result = simulate_budget("random+rungs", "noisy", 0, 1000, [25, 50, 100], 3.0, 2, {})
    assert 0.0 < result["hv_noise_free"] <= 1.0
