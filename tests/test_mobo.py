"""The BoTorch sampler on a small synthetic PEFT problem, with capped optimisation effort."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autopeft.core.hypervolume import Frame, hypervolume, hypervolume_curve
from autopeft.core.objectives import Objective
from autopeft.search.samplers import Observation, make_sampler
from autopeft.search.samplers.encoding import DesignEncoder

OBJECTIVES = [
    Objective("accuracy", "maximize"),
    Objective("trainable_params", "minimize"),
    Objective("peak_memory_mb", "minimize"),
]
CHEAP = {"n_initial": 4, "raw_samples": 32, "mc_samples": 8, "fit_maxiter": 20}


def _history(problem, points):
    out = []
    for p in points:
        v = problem.evaluate(p)
        out.append(Observation(p, "COMPLETE", v) if v else Observation(p, "FAIL", {}, True))
    return out


def _start(small_problem, seed: int = 0, n: int = 6):
    sampler = make_sampler("sobol", small_problem.bound, OBJECTIVES, seed, {})
    return _history(small_problem, sampler.propose([], n))


def test_encoder_round_trip_and_exact_vectorised_counts(small_problem) -> None:
    enc = DesignEncoder(small_problem.bound)
    points = make_sampler("random", small_problem.bound, OBJECTIVES, 0, {}).propose([], 20)
    for p in points:
        assert enc.decode(enc.encode([p])[0]) == small_problem.bound.canonical(p)
    count = small_problem.bound.method.params_tensor(small_problem.bound, enc)
    expected = torch.tensor([float(small_problem.bound.count_params(p)) for p in points]).double()
    assert torch.equal(count(enc.encode(points)), expected)


@pytest.mark.slow
def test_model_based_proposals_are_deterministic_feasible_and_new(small_problem) -> None:
    history = _start(small_problem)
    a = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 2)
    b = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 2)
    assert a == b  # a restored study (fresh sampler, same history) proposes the same points
    assert a[0] != a[1]  # a batch is distinct
    seen = [h.point for h in history]
    for p in a:
        assert small_problem.bound.is_feasible(p) and p not in seen
        assert small_problem.bound.count_params(p) <= small_problem.bound.space.max_trainable_params
    c = make_sampler("mobo", small_problem.bound, OBJECTIVES, 1, CHEAP).propose(history, 2)
    assert c != a


def test_pending_trials_are_not_proposed_again(small_problem) -> None:
    history = _start(small_problem)
    sampler = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP)
    first = sampler.propose(history, 1)[0]
    second = sampler.propose([*history, Observation(first, "RUNNING", {})], 1)[0]
    assert second != first


def test_a_proposal_never_compiles_botorchs_fused_kernel(small_problem, monkeypatch) -> None:
    # botorch JIT-compiles a C++ kernel on first use in each environment (~40 s, needs a compiler)
    import torch.utils.cpp_extension
    from botorch.acquisition.multi_objective import logei

    builds: list[str] = []
    monkeypatch.setattr(torch.utils.cpp_extension, "load", lambda **kw: builds.append(kw["name"]))
    monkeypatch.setattr(logei, "_load_attempted", False)  # as in a fresh process
    monkeypatch.setattr(logei, "_C", None)
    history = _start(small_problem)
    point = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 1)[0]
    assert small_problem.bound.is_feasible(point)
    assert builds == [] and logei._C is None


@pytest.mark.slow
def test_a_resumed_sampler_proposes_what_the_running_one_does(small_problem, monkeypatch) -> None:
    """Fits warm-start from checkpoint fits on power-of-two prefixes of the history, never from
    the sampler object's past: a fresh object (a resumed study) proposes the same at every step,
    across checkpoints (made small here so that the test stays fast), with a failure too."""
    monkeypatch.setattr("autopeft.search.samplers.surrogate.FIRST_CHECKPOINT", 4)
    history = _start(small_problem, n=7)
    failed = _start(small_problem, seed=1, n=1)[0].point
    history.append(Observation(failed, "FAIL", {}, infeasible=True))
    running = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP)
    complete = []
    for _ in range(3):  # 7, 8, 9 complete trials: checkpoint 4 reused, 8 made, then reused
        complete.append(sum(h.state == "COMPLETE" for h in history))
        point = running.propose(history, 1)[0]
        fresh = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP)
        assert fresh.propose(history, 1) == [point]
        # the very same surrogate, not merely the same pick
        ours = running.last_acquisition.model.state_dict()
        theirs = fresh.last_acquisition.model.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
        history += _history(small_problem, [point])
    assert complete == [7, 8, 9]
    assert len(running._gp._fits["objectives"]) == 3  # checkpoints 4 and 8, the last fit
    # asked again before anything new completes, it refits nothing and proposes the same

    def refit(*args: object) -> None:
        raise AssertionError("refitted the same data")

    monkeypatch.setattr(running._gp, "_fit", refit)
    assert running.propose(history[:-1], 1) == [point]


@pytest.mark.slow
def test_screened_scoring_keeps_proposals_feasible_distinct_and_seeded(small_problem) -> None:
    from autopeft.search.samplers.screen import screen_scores

    history = _start(small_problem)
    history.append(Observation(history[0].point, "FAIL", {}, infeasible=True))
    options = {**CHEAP, "score_top": 6}
    a = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, options).propose(history, 2)
    b = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, options).propose(history, 2)
    assert a == b and a[0] != a[1]
    for p in a:
        assert small_problem.bound.count_params(p) <= small_problem.bound.space.max_trainable_params
    # the screen prefers candidates whose optimistic objectives improve the front
    sampler = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, options)
    sampler.propose(history[:-1], 1)
    acqf = sampler.last_acquisition
    X = sampler.encoder.encode([h.point for h in history[:-1]])
    scores = screen_scores(acqf, X, None)
    assert scores.shape == (len(X),) and torch.isfinite(scores).all()
    assert (scores >= 0).all()


@pytest.mark.slow
def test_failures_change_later_proposals(small_problem) -> None:
    history = _start(small_problem)
    proposed = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP).propose(history, 1)[
        0
    ]
    # same history length (same seed); only whether the failure came from the config differs
    crashed = [*history, Observation(proposed, "FAIL", {}, infeasible=False)]
    infeasible = [*history, Observation(proposed, "FAIL", {}, infeasible=True)]
    a = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP).propose(crashed, 2)
    b = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP).propose(infeasible, 2)
    assert a != b


def test_initial_design_is_sobol_with_structured_points(small_problem) -> None:
    bound = small_problem.bound
    on = {**CHEAP, "structured": True}
    mobo = make_sampler("mobo", bound, OBJECTIVES, 0, on).propose([], 4)
    sobol = make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 4)
    assert mobo[0::2] == sobol[0::2]  # odd trials are structured (tests/test_structured.py)
    structured = make_sampler("sobol", bound, OBJECTIVES, 0, {"structured": 10}).propose([], 4)
    assert mobo == structured
    assert make_sampler("mobo", bound, OBJECTIVES, 0, CHEAP).propose([], 4) == sobol


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_initial": 1}, "n_initial must be >= 2"),
        ({"local_rounds": -1}, "local_rounds must be >= 0"),
        ({"jump": 1.5}, r"jump must be a probability, in \[0, 1\]"),
        ({"prior_start": 0}, "prior_start must be >= 1"),
    ],
)
def test_bad_option_is_a_user_error(small_problem, options: dict, message: str) -> None:
    from autopeft.exceptions import UserInputError

    with pytest.raises(UserInputError, match=rf"sampler 'mobo'.*{message}"):
        make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, options)


class R:
    def __init__(self, acc: float, params: float) -> None:
        self.state, self.values = "COMPLETE", {"accuracy": acc, "trainable_params": params}


def test_hypervolume_rule() -> None:
    objs = OBJECTIVES[:2]
    # trainable_params is framed by its observed range like the metric, never by the budget
    seen = [R(0.5, 50), R(0.9, 90)]
    frame = Frame.from_observations(objs, seen, budget=100)
    assert frame.bounds["trainable_params"] == pytest.approx((46.0, 94.0))
    assert frame == Frame.from_observations(objs, seen, budget=10**9)
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

    curve = hypervolume_curve(objs, [R(0.5, 50), R(0.4, 60), R(0.9, 90)], budget=100)
    assert len(curve) == 3 and curve[0] == curve[1] < curve[2]


def test_a_mobo_study_runs_end_to_end_from_the_cli(study_dir: Path) -> None:
    from typer.testing import CliRunner

    from autopeft.cli import app
    from autopeft.results.views import load_view

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


@pytest.mark.parametrize("outputs", [1, 2])
def test_shared_rows_posterior_equals_the_per_batch_one(outputs: int) -> None:
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    from autopeft.search.samplers.surrogate import SharedRowsGP

    torch.manual_seed(0)
    X = torch.rand(40, 6, dtype=torch.double)
    Y = torch.randn(40, outputs, dtype=torch.double)
    plain = SingleTaskGP(X, Y, outcome_transform=Standardize(outputs)).eval()
    shared = SharedRowsGP(X, Y, outcome_transform=Standardize(outputs))
    shared.load_state_dict(plain.state_dict())
    shared.eval()
    baseline = torch.rand(7, 6, dtype=torch.double)
    candidates = torch.rand(50, 1, 6, dtype=torch.double)
    batch = torch.cat([baseline.expand(50, 7, 6), candidates], dim=-2)  # as qNEHVI asks
    a, b = plain.posterior(batch), shared.posterior(batch)
    assert a.mean.shape == b.mean.shape == (50, 8, outputs)
    assert torch.allclose(a.mean, b.mean, atol=1e-12)
    cov_a, cov_b = a.distribution.covariance_matrix, b.distribution.covariance_matrix
    assert torch.allclose(cov_a, cov_b, atol=1e-12)
    distinct = torch.rand(5, 3, 6, dtype=torch.double)  # no repeated rows: the usual path
    assert torch.allclose(plain.posterior(distinct).mean, shared.posterior(distinct).mean)


@pytest.mark.slow
def test_acquisition_values_do_not_depend_on_the_shared_rows_shortcut(
    small_problem, monkeypatch
) -> None:
    from autopeft.search.samplers import surrogate

    history = _start(small_problem)
    sampler = make_sampler("mobo", small_problem.bound, OBJECTIVES, 0, CHEAP)
    sampler.propose(history, 1)
    acqf = sampler.last_acquisition
    pool = make_sampler("random", small_problem.bound, OBJECTIVES, 3, {}).propose([], 40)
    X = sampler.encoder.encode(pool).unsqueeze(-2)
    gathered, original = [], surrogate._gathered
    monkeypatch.setattr(surrogate, "_gathered", lambda *a: gathered.append(1) or original(*a))
    with torch.no_grad():
        fast = acqf(X)
        assert gathered  # the shortcut was taken
        monkeypatch.setattr(surrogate.SharedRowsGP, "SHARE", -1.0)  # never gather
        slow = acqf(X)
    assert len(gathered) == 1
    assert torch.allclose(fast, slow, atol=1e-9)


def test_shared_rows_posterior_of_a_candidate_equal_to_a_baseline_row() -> None:
    """A candidate that repeats a baseline row has a singular joint covariance: the gathered
    posterior must not factorise it (GPyTorch's own posterior does not either)."""
    from autopeft.search.samplers.surrogate import SharedRowsGP

    torch.manual_seed(0)
    X = torch.rand(20, 4, dtype=torch.double)
    model = SharedRowsGP(X, torch.randn(20, 2, dtype=torch.double)).eval()
    baseline = torch.rand(8, 4, dtype=torch.double)
    candidates = torch.cat([baseline, torch.rand(8, 4, dtype=torch.double)]).unsqueeze(-2)
    batch = torch.cat([baseline.expand(16, 8, 4), candidates], dim=-2)  # 8 repeat a baseline row
    posterior = model.posterior(batch)
    assert posterior.mean.shape == (16, 9, 2) and torch.isfinite(posterior.mean).all()


def test_mutations_move_to_neighbours_and_jump_across_the_domain(small_problem) -> None:
    """Without jumps every mutated ladder cell moves one step; with ``jump: 1`` cells land
    anywhere on their ladder (some more than one step away)."""
    import numpy as np

    from autopeft.space.encode import finite_values

    bound = small_problem.bound
    parent = bound.canonical(make_sampler("random", bound, OBJECTIVES, 0, {}).propose([], 1)[0])
    ladders = {
        d.name: finite_values(d.spec) for d in bound.dimensions if d.name.startswith("rank.")
    }
    ladders = {k: list(v) for k, v in ladders.items() if v is not None and len(v) > 2}
    assert ladders

    def steps(jump: float) -> set[int]:
        sampler = make_sampler("mobo", bound, OBJECTIVES, 0, {**CHEAP, "jump": jump})
        children = sampler._mutations([parent], np.random.default_rng(0), set(), 200)
        assert children and all(bound.is_feasible(c) for c in children)
        return {
            abs(v.index(c[k]) - v.index(parent[k]))
            for c in children
            for k, v in ladders.items()
            if k in c and c[k] in v and parent[k] in v
        }

    assert steps(0.0) <= {0, 1}
    assert max(steps(1.0)) >= 2


@pytest.mark.slow
def test_local_search_rounds_never_pick_a_worse_candidate(small_problem) -> None:
    """The same pool, searched by 3 rounds of local search instead of none: more candidates
    are scored, and the pick's acquisition value is at least the pool's best."""
    from autopeft.search.samplers.mobo import _acquisition

    history = _start(small_problem)
    scored: dict[int, int] = {}
    value: dict[int, float] = {}
    for rounds in (0, 3):
        sampler = make_sampler(
            "mobo", small_problem.bound, OBJECTIVES, 0, {**CHEAP, "local_rounds": rounds}
        )
        calls = []
        score = sampler._scores
        sampler._scores = lambda acqf, pool, top=None, score=score, calls=calls: (  # type: ignore[method-assign]
            calls.append(len(pool)) or score(acqf, pool, top)
        )
        (pick,) = sampler.propose(history, 1)
        scored[rounds] = sum(calls)
        value[rounds] = float(
            _acquisition(sampler.last_acquisition, sampler.encoder.encode([pick]))
        )
    assert scored[3] > scored[0]
    assert value[3] >= value[0]
