"""``mobo`` and the study hypervolume do not depend on the budget number or objective units.

The rule is in :mod:`autopeft.core.hypervolume`: every objective is scaled by its observed
range, so loosening ``max_trainable_params`` beyond what any point can reach, or reporting a
measured objective in other units, leaves the scaled outcomes, and hence the proposals, as
they were (exactly here: the constants are powers of two or the scaled values agree to
rounding, and the GP fits the same data).
"""

from __future__ import annotations

import pytest

from autopeft.core.hypervolume import Frame, hypervolume_curve
from autopeft.core.objectives import Objective
from autopeft.search.samplers import Observation, make_sampler
from autopeft.testing.synthetic import synthetic_problem

OBJECTIVES = [
    Objective("accuracy", "maximize"),
    Objective("trainable_params", "minimize"),
    Objective("peak_memory_mb", "minimize"),
]
CHEAP = {"n_initial": 4, "raw_samples": 32, "mc_samples": 8, "fit_maxiter": 20}


def _with_budget(problem, budget: int):
    space = problem.bound.space.model_copy(update={"max_trainable_params": budget})
    return synthetic_problem(space, seed=0, layers=2)


def _reachable(problem) -> int:
    """The largest count of the small space: rank 8 everywhere on all attention modules."""
    point = {
        d.name: 8 if d.name.startswith("rank") else "attn" if d.name == "target_modules" else 3e-3
        for d in problem.bound.dimensions
    }
    return problem.bound.count_params(point)


@pytest.fixture(scope="module")
def problems(small_problem):
    """The small problem with its budget at the largest reachable count, and ten times it."""
    reach = _reachable(small_problem)
    return _with_budget(small_problem, reach), _with_budget(small_problem, 10 * reach)


def _history(problem, n: int = 8) -> list[Observation]:
    out = []
    for p in make_sampler("sobol", problem.bound, OBJECTIVES, 0, {}).propose([], n):
        v = problem.evaluate(p)
        out.append(Observation(p, "COMPLETE", v) if v else Observation(p, "FAIL", {}, True))
    return out


def _in_units(history: list[Observation], unit: float) -> list[Observation]:
    """The same history with peak memory multiplied by ``unit`` (MB -> KB: 1024)."""
    return [
        Observation(
            h.point, h.state, {**h.values, "peak_memory_mb": h.values["peak_memory_mb"] * unit}
        )
        if h.values
        else h
        for h in history
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_budget_beyond_reach_does_not_change_proposals(problems, seed: int) -> None:
    tight, loose = problems
    history = _history(tight)
    a = make_sampler("mobo", tight.bound, OBJECTIVES, seed, CHEAP).propose(history, 2)
    b = make_sampler("mobo", loose.bound, OBJECTIVES, seed, CHEAP).propose(history, 2)
    assert a == b


@pytest.mark.parametrize("unit", [1024.0, 1000.0, 1 / 1024])
def test_memory_units_do_not_change_proposals(problems, unit: float) -> None:
    tight, _ = problems
    history = _history(tight)
    a = make_sampler("mobo", tight.bound, OBJECTIVES, 0, CHEAP).propose(history, 2)
    b = make_sampler("mobo", tight.bound, OBJECTIVES, 0, CHEAP).propose(_in_units(history, unit), 2)
    assert a == b


def test_the_study_hypervolume_ignores_the_budget_and_units(problems) -> None:
    tight, _ = problems
    reach = tight.bound.space.max_trainable_params
    records = [h for h in _history(tight, n=12) if h.state == "COMPLETE"]
    curve = hypervolume_curve(OBJECTIVES, records, reach)
    assert curve == hypervolume_curve(OBJECTIVES, records, 10 * reach)
    kb = _in_units(records, 1024.0)
    assert hypervolume_curve(OBJECTIVES, kb, reach) == pytest.approx(curve, abs=1e-12)


def test_a_one_value_range_is_widened_in_its_own_units() -> None:
    """Constant memory observed so far: a later value scales the same in MB and in GB."""
    objs = [Objective("peak_memory_mb", "minimize")]

    class R:
        def __init__(self, v: float) -> None:
            self.values = {"peak_memory_mb": v}

    mb = Frame.from_observations(objs, [R(512.0), R(512.0)])
    gb = Frame.from_observations(objs, [R(0.5), R(0.5)])
    assert mb.scale("peak_memory_mb", 540.0) == pytest.approx(
        gb.scale("peak_memory_mb", 540 / 1024)
    )


def test_a_binding_budget_moves_the_size_reference_to_the_budget(problems) -> None:
    """Under a budget that some points exceed, sizes up to the budget keep hypervolume value
    (the reference sits at the budget); a budget no point reaches leaves the observed range."""
    at_reach, loose = problems
    binding = _with_budget(at_reach, at_reach.bound.space.max_trainable_params // 4)
    history = [h for h in _history(binding) if h.values]
    frame = Frame.from_observations(OBJECTIVES, history)
    observed_hi = frame.bounds["trainable_params"][1]
    budget = binding.bound.space.max_trainable_params
    assert observed_hi < budget  # the design stayed below the budget: the edge must move
    sampler = make_sampler("mobo", binding.bound, OBJECTIVES, 0, CHEAP)
    assert sampler._binding_budget() == budget
    scaled = sampler._params_scaled(frame)
    x = sampler.encoder.encode([h.point for h in history])
    counts = [binding.bound.count_params(h.point) for h in history]
    # a linear scale whose zero (the reference) is the budget, not the observed maximum
    lo = frame.bounds["trainable_params"][0]
    expected = [1 - (c - lo) / (budget - lo) for c in counts]
    assert scaled(x).tolist() == pytest.approx(expected)
    for problem in (at_reach, loose):
        assert make_sampler("mobo", problem.bound, OBJECTIVES, 0, CHEAP)._binding_budget() is None
