"""Every benchmark problem class generates valid, seeded problems (bench/optimizer.py)."""

from __future__ import annotations

import pytest

from autopeft.methods.binding import load_space
from autopeft.search.samplers import make_sampler
from autopeft.testing.synthetic_classes import CLASSES, make_problem


@pytest.mark.parametrize("name", list(CLASSES))
def test_class_generates_valid_problems(name, tmp_path):
    cls = CLASSES[name]
    problem = make_problem(name, 0)
    path = tmp_path / "space.yaml"
    path.write_text(problem.space_yaml)
    assert load_space(path) == problem.bound.space  # a real, valid search-space file
    assert problem.bound.layout.num_layers == cls.layers
    assert problem.budget == round(cls.budget * problem.largest)
    ladder = [0] + [2**i for i in range(1, cls.rungs)]
    ranks = [d for d in problem.bound.dimensions if d.param.endswith("rank")]
    assert ranks and all(list(d.spec.values()) == ladder for d in ranks)
    assert len(problem.objectives) == cls.objectives
    points = make_sampler("random", problem.bound, problem.objectives, 0, {}).propose([], 20)
    values = [problem.evaluate(p) for p in points]
    for point, v in zip(points, values, strict=True):
        problem.bound.check_point(point)
        assert problem.bound.is_feasible(point)
        if v is not None:
            assert set(v) == {o.name for o in problem.objectives}
            assert 0 <= v["accuracy"] <= 1
    assert any(v is not None for v in values)
    again = make_problem(name, 0)
    assert again.space_yaml == problem.space_yaml
    assert [again.evaluate(p) for p in points] == values  # seeded -> identical
    assert make_problem(name, 1).lr_opt != problem.lr_opt


def test_unknown_class_lists_the_classes():
    with pytest.raises(KeyError, match="classes: base, tight"):
        make_problem("nope", 0)


def test_failure_regions_and_lr_optimum():
    for name, fails in (("failures", True), ("base", False)):
        problem = make_problem(name, 0)
        points = make_sampler("random", problem.bound, problem.objectives, 0, {}).propose([], 60)
        assert any(problem.evaluate(p) is None for p in points) == fails
    problem = make_problem("lr4dec", 0)
    spec = problem.bound.space.parameters["learning_rate"]
    assert spec.low <= problem.lr_opt["lora"] <= spec.high
    assert spec.high / spec.low == pytest.approx(1e4, rel=1e-3)


def test_synthetic_profile_follows_the_true_weights_without_touching_the_noise_stream():
    problem, twin = make_problem("sparse", 0), make_problem("sparse", 0)
    exact = problem.profile(noise=0.0)
    assert sum(exact.values()) == pytest.approx(1.0)
    weights = {c: problem._weight(*c) for c in exact}
    top = max(weights, key=weights.__getitem__)
    assert max(exact, key=exact.__getitem__) == top
    noisy = problem.profile(noise=0.5)
    assert noisy == problem.profile(noise=0.5) and noisy != exact  # seeded, noisy
    point = make_sampler("random", problem.bound, problem.objectives, 0, {}).propose([], 1)[0]
    assert problem.evaluate(point) == twin.evaluate(point)  # same accuracy noise draw
