"""The BoTorch sampler on a small synthetic PEFT problem, with capped optimisation effort."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft.samplers import Observation, make_sampler
from autopeft.samplers.encoding import DesignEncoder
from autopeft.samplers.hypervolume import Frame, hypervolume, hypervolume_curve
from autopeft.samplers.synthetic import synthetic_problem
from autopeft.space.loader import load_space
from autopeft.storage.records import Objective

OBJECTIVES = [
    Objective("accuracy", "maximize"),
    Objective("trainable_params", "minimize"),
    Objective("peak_memory_mb", "minimize"),
]
CHEAP = {"n_initial": 4, "raw_samples": 32, "mc_samples": 8, "fit_maxiter": 20}


@pytest.fixture(scope="module")
def problem(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(
        "version: 1\nname: small\nmethod: lora\nmax_trainable_params: 12000\nparameters:\n"
        "  target_modules: {type: categorical, choices: [qv, attn]}\n"
        "  rank: {type: int, choices: [0, 2, 4, 8], per: [layer, module]}\n"
        "  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
    )
    return synthetic_problem(load_space(path), seed=0, layers=2)


def _history(problem, points):
    out = []
    for p in points:
        v = problem.evaluate(p)
        out.append(Observation(p, "COMPLETE", v) if v else Observation(p, "FAIL", {}, True))
    return out


def _start(problem, seed: int = 0, n: int = 6):
    sampler = make_sampler("sobol", problem.bound, OBJECTIVES, seed, {})
    return _history(problem, sampler.propose([], n))


def test_encoder_round_trip_and_exact_vectorised_counts(problem) -> None:
    enc = DesignEncoder(problem.bound)
    points = make_sampler("random", problem.bound, OBJECTIVES, 0, {}).propose([], 20)
    for p in points:
        assert enc.decode(enc.encode([p])[0]) == problem.bound.canonical(p)
    count = problem.bound.method.params_tensor(problem.bound, enc)
    expected = torch.tensor([float(problem.bound.count_params(p)) for p in points]).double()
    assert torch.equal(count(enc.encode(points)), expected)


def test_model_based_proposals_are_deterministic_feasible_and_new(problem) -> None:
    history = _start(problem)
    a = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 2)
    b = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 2)
    assert a == b  # a restored study (fresh sampler, same history) proposes the same points
    assert a[0] != a[1]  # a batch is distinct
    seen = [h.point for h in history]
    for p in a:
        assert problem.bound.is_feasible(p) and p not in seen
        assert problem.bound.count_params(p) <= problem.bound.space.max_trainable_params
    c = make_sampler("mobo", problem.bound, OBJECTIVES, 1, CHEAP).propose(history, 2)
    assert c != a


def test_pending_trials_are_not_proposed_again(problem) -> None:
    history = _start(problem)
    sampler = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP)
    first = sampler.propose(history, 1)[0]
    second = sampler.propose([*history, Observation(first, "RUNNING", {})], 1)[0]
    assert second != first


def test_failures_change_later_proposals(problem) -> None:
    history = _start(problem)
    proposed = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 1)[0]
    # same history length (same seed); only whether the failure came from the config differs
    crashed = [*history, Observation(proposed, "FAIL", {}, infeasible=False)]
    infeasible = [*history, Observation(proposed, "FAIL", {}, infeasible=True)]
    a = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP).propose(crashed, 2)
    b = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP).propose(infeasible, 2)
    assert a != b


def test_initial_design_is_sobol(problem) -> None:
    mobo = make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP).propose([], 3)
    sobol = make_sampler("sobol", problem.bound, OBJECTIVES, 0, {}).propose([], 3)
    assert mobo == sobol


def test_bad_option_is_a_user_error(problem) -> None:
    from autopeft.exceptions import UserInputError

    with pytest.raises(UserInputError, match=r"sampler 'mobo'.*n_initial must be >= 2"):
        make_sampler("mobo", problem.bound, OBJECTIVES, 0, {"n_initial": 1})


def test_hypervolume_rule() -> None:
    objs = OBJECTIVES[:2]
    frame = Frame.from_observations(objs, [], budget=100)
    assert frame.bounds["trainable_params"] == (0.0, 100.0)
    frame = Frame(
        {"accuracy": (0.0, 1.0), "trainable_params": (0.0, 100.0)},
        {"accuracy": "maximize", "trainable_params": "minimize"},
    )
    # one point (acc 0.5, 50 params) dominates a 0.5 x 0.5 box; a dominated one adds nothing
    assert hypervolume(frame, [{"accuracy": 0.5, "trainable_params": 50}]) == pytest.approx(0.25)
    assert hypervolume(
        frame,
        [{"accuracy": 0.5, "trainable_params": 50}, {"accuracy": 0.4, "trainable_params": 60}],
    ) == pytest.approx(0.25)
    assert hypervolume(
        frame,
        [{"accuracy": 0.5, "trainable_params": 50}, {"accuracy": 0.9, "trainable_params": 90}],
    ) == pytest.approx(0.29)

    class R:
        def __init__(self, acc: float, params: float) -> None:
            self.state, self.values = "COMPLETE", {"accuracy": acc, "trainable_params": params}

    curve = hypervolume_curve(objs, [R(0.5, 50), R(0.4, 60), R(0.9, 90)], budget=100)
    assert len(curve) == 3 and curve[0] == curve[1] < curve[2]


def test_a_mobo_study_runs_end_to_end_from_the_cli(study_dir: Path) -> None:
    from typer.testing import CliRunner

    from autopeft.cli import app
    from autopeft.results import load_view

    spec = study_dir / "study.yaml"
    spec.write_text(
        spec.read_text()
        .replace(
            "sampler: random",
            "sampler: {name: mobo, options: {n_initial: 2, raw_samples: 32, mc_samples: 8}}",
        )
        .replace("n_trials: 3", "n_trials: 4")
    )
    result = CliRunner().invoke(app, ["run", str(spec), "-q"])
    assert result.exit_code == 0, result.output
    view = load_view("tiny", f"sqlite:///{study_dir / 'studies.db'}")
    assert [r.state for r in view.records] == ["COMPLETE"] * 4
    assert len({str(sorted(r.params.items())) for r in view.records}) == 4
