"""Baseline samplers: seeded, deterministic, always feasible."""

from __future__ import annotations

import dataclasses

import pytest

from autopeft.core.objectives import Objective
from autopeft.exceptions import SearchSpaceError, UserInputError
from autopeft.methods.binding import bind_space
from autopeft.search.samplers import Observation, make_sampler

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]


@pytest.mark.parametrize("name", ["random", "sobol"])
def test_proposals_are_feasible_and_within_budget(bound, name: str) -> None:
    sampler = make_sampler(name, bound, OBJECTIVES, seed=0, options={})
    points = sampler.propose([], 40)
    assert len(points) == 40
    for point in points:
        bound.check_point(point)
        assert 0 < bound.count_params(point) <= bound.space.max_trainable_params
    # a real spread of sizes, not one configuration repeated
    assert len({bound.count_params(p) for p in points}) > 20


@pytest.mark.parametrize("name", ["random", "sobol"])
def test_same_seed_same_points_other_seed_other_points(bound, name: str) -> None:
    a = make_sampler(name, bound, OBJECTIVES, seed=3, options={}).propose([], 5)
    b = make_sampler(name, bound, OBJECTIVES, seed=3, options={}).propose([], 5)
    c = make_sampler(name, bound, OBJECTIVES, seed=4, options={}).propose([], 5)
    assert a == b and a != c


def test_proposal_depends_on_trial_index_so_resume_continues_the_sequence(bound) -> None:
    sampler = make_sampler("sobol", bound, OBJECTIVES, seed=0, options={})
    all_at_once = sampler.propose([], 4)
    history = [Observation(p, "COMPLETE", {"accuracy": 0.5}) for p in all_at_once[:2]]
    assert sampler.propose(history, 2) == all_at_once[2:]


def test_unknown_sampler_and_option(bound) -> None:
    with pytest.raises(
        UserInputError,
        match=r"unknown sampler 'nope'; samplers: gp, mobo, nsga2, random, sobol, tpe",
    ):
        make_sampler("nope", bound, OBJECTIVES, 0, {})
    with pytest.raises(UserInputError, match=r"sampler 'random': unknown options \['depth'\]"):
        make_sampler("random", bound, OBJECTIVES, 0, {"depth": 3})


def test_a_budget_no_draw_can_meet_is_reported(bound, monkeypatch) -> None:
    monkeypatch.setattr("autopeft.search.samplers.random.MAX_ATTEMPTS", 3)
    tight = bound.space.model_copy(update={"max_trainable_params": 768 * 2})
    tight_bound = bind_space(tight, bound.layout)
    with pytest.raises(SearchSpaceError, match="no feasible point in 3 random draws"):
        make_sampler("random", tight_bound, OBJECTIVES, 0, {}).propose([], 1)


def _run(problem, name: str, seed: int, trials: int) -> list[dict]:
    problem = dataclasses.replace(problem)  # a fresh noise stream: same values on every run
    objectives = [*OBJECTIVES, Objective("peak_memory_mb", "minimize")]
    sampler = make_sampler(name, problem.bound, objectives, seed, {})
    history: list[Observation] = []
    for _ in range(trials):
        point = sampler.propose(history, 1)[0]
        values = problem.evaluate(point)
        history.append(
            Observation(point, "COMPLETE", values)
            if values
            else Observation(point, "FAIL", {}, True)
        )
    return [h.point for h in history]


@pytest.mark.parametrize("name", ["tpe", "nsga2", pytest.param("gp", marks=pytest.mark.slow)])
def test_optuna_baselines_are_feasible_and_seeded(small_problem, name: str) -> None:
    trials = 12  # past the 10 startup trials of tpe and gp: model-based proposals included
    a = _run(small_problem, name, 0, trials)
    assert a == _run(small_problem, name, 0, trials)
    assert a != _run(small_problem, name, 1, trials)
    for point in a:
        assert small_problem.bound.is_feasible(point)


def test_optuna_baseline_rejects_unknown_options(bound) -> None:
    with pytest.raises(UserInputError, match=r"sampler 'tpe'.*bogus"):
        make_sampler("tpe", bound, OBJECTIVES, 0, {"bogus": 1})


def test_nsga2_breeds_from_the_replayed_history(small_problem, monkeypatch) -> None:
    """NSGA-II keeps its generations in trial attributes, which the history does not hold: the
    rebuilt Optuna study derives them, so NSGA-II breeds from its parents, not at random."""
    import optuna

    parents: list[tuple[int, int]] = []
    original = optuna.samplers.NSGAIISampler.get_parent_population

    def spy(self, study, generation):
        out = original(self, study, generation)
        parents.append((generation, len(out)))
        return out

    monkeypatch.setattr(optuna.samplers.NSGAIISampler, "get_parent_population", spy)
    objectives = [*OBJECTIVES, Objective("peak_memory_mb", "minimize")]
    points = make_sampler("random", small_problem.bound, objectives, 0, {}).propose([], 13)
    history = [Observation(p, "COMPLETE", small_problem.evaluate(p) or {}) for p in points]
    history = [h if h.values else Observation(h.point, "FAIL", {}, True) for h in history]
    complete = sum(h.state == "COMPLETE" for h in history)
    sampler = make_sampler("nsga2", small_problem.bound, objectives, 0, {"population_size": 4})
    sampler.propose(history, 2)
    assert (complete // 4, 4) in parents
