"""Structured candidates: uniform ranks, layer ranges and coarse moves, in the initial design
and the acquisition pool; always in-space, feasible and seeded."""

from __future__ import annotations

import numpy as np
import pytest

from autopeft.core.objectives import Objective
from autopeft.search.samplers import make_sampler
from autopeft.search.samplers.base import point_key
from autopeft.search.samplers.structured import StructuredDesign

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]
ON = {"structured": True}


def _ranks(bound, point) -> dict[tuple[int, str], int]:
    """Rank of every targeted cell."""
    targets = bound.target_modules(point)
    return {
        (layer, m): point[f"rank.{layer}.{m}"] for layer, m in bound.searched_cells if m in targets
    }


def _uniform_rank(bound, point) -> int | None:
    values = set(_ranks(bound, point).values())
    return values.pop() if len(values) == 1 else None


def _check(bound, points, canonical: bool = True) -> None:
    assert points
    for point in points:
        bound.check_point(point)
        assert bound.is_feasible(point)
        assert not canonical or bound.canonical(point) == point


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_initial_design_has_a_uniform_configuration_of_every_module_set(bound, seed) -> None:
    design = make_sampler("mobo", bound, OBJECTIVES, seed, ON).propose([], 10)
    _check(bound, design, canonical=False)  # Sobol points are not canonicalised
    uniform = {(p["target_modules"], _uniform_rank(bound, p)) for p in design}
    for preset in ("qv", "attn", "all_linear"):
        assert any(t == preset and r for t, r in uniform), (preset, uniform)
    # the other half is the Sobol design, point for point
    sobol = make_sampler("sobol", bound, OBJECTIVES, seed, {}).propose([], 10)
    assert design[0::2] == sobol[0::2]


def test_without_structured_the_initial_design_is_plain_sobol(bound) -> None:
    flat = make_sampler("mobo", bound, OBJECTIVES, 0, {}).propose([], 10)  # the default
    assert flat == make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 10)


def test_uniform_candidates_cover_every_module_set_and_rank_that_fits(bound) -> None:
    design = StructuredDesign(bound, seed=0)
    base = make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 1)[0]
    uniform = design.feasible(design.uniform(base))
    _check(bound, uniform)
    found = {(p["target_modules"], _uniform_rank(bound, p)) for p in uniform}
    # all_linear at rank 4 (165,888 parameters) is over the 150,000 budget: left out
    assert found == {("qv", 2), ("qv", 4), ("qv", 8), ("attn", 2), ("attn", 4), ("attn", 8)} | {
        ("all_linear", 2)
    }
    assert all(p["learning_rate"] == base["learning_rate"] for p in uniform)


def test_layer_ranges_are_contiguous_and_off_elsewhere(bound) -> None:
    design = StructuredDesign(bound, seed=0)
    base = make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 1)[0]
    ranges = design.feasible(design.layer_ranges(base))
    _check(bound, ranges)
    spans = set()
    for point in ranges:
        on = sorted({layer for (layer, _), r in _ranks(bound, point).items() if r})
        assert on == list(range(on[0], on[-1] + 1))  # contiguous
        assert len(on) < 6
        spans.add((on[0], on[-1]))
    assert (0, 2) in spans and (3, 5) in spans  # bottom and top halves
    assert any(lo > 0 and hi < 5 for lo, hi in spans)  # a middle range


def test_moves_scale_drop_add_switch_and_shift(bound) -> None:
    design = StructuredDesign(bound, seed=0)
    base = make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 1)[0]
    qv4 = next(
        p
        for p in design.feasible(design.uniform(base))
        if p["target_modules"] == "qv" and _uniform_rank(bound, p) == 4
    )
    qv4 = {**qv4, **{f"rank.{layer}.v": 0 for layer in (0, 1)}}  # layers 0-1: q only
    moves = design.moves(qv4)
    _check(bound, moves)
    ranks = [_ranks(bound, p) for p in moves]
    before = _ranks(bound, qv4)
    assert {c: r * 2 if r else 0 for c, r in before.items()} in ranks  # x2
    assert {c: r // 2 for c, r in before.items()} in ranks  # x1/2
    assert {c: 0 if c[1] == "v" else r for c, r in before.items()} in ranks  # drop v
    shifted = {(layer, m): before.get((layer - 1, m), 0) for layer, m in before}
    assert shifted in ranks  # every layer one up, layer 0 off
    # module set switched to attn: k and o join at the mode rank (4) on the same layers
    attn = [r for p, r in zip(moves, ranks, strict=True) if p["target_modules"] == "attn"]
    assert {(c, r) for c, r in attn[0].items() if c[1] in "ko"} == {
        ((layer, m), 4) for layer in range(6) for m in "ko"
    }
    assert point_key(qv4) not in {point_key(p) for p in moves}


def test_structured_candidates_respect_an_extra_feasibility_rule(bound) -> None:
    small = bound.constrained(lambda p: bound.count_params(p) <= 40_000, "under 40,000 params")
    design = StructuredDesign(small, seed=0)
    base = make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 1)[0]
    candidates = design.feasible(design.uniform(base) + design.layer_ranges(base))
    _check(small, candidates)
    assert all(bound.count_params(p) <= 40_000 for p in candidates)
    assert len(candidates) < len(StructuredDesign(bound, 0).feasible(design.layer_ranges(base)))
    design_points = make_sampler("mobo", small, OBJECTIVES, 0, ON).propose([], 10)
    assert all(bound.count_params(p) <= 40_000 for p in design_points)


def test_same_seed_same_structured_candidates_other_seed_other_ones(bound) -> None:
    def run(seed: int):
        design = StructuredDesign(bound, seed)
        bases = make_sampler("sobol", bound, OBJECTIVES, seed, {}).propose([], 6)
        rng = np.random.default_rng(seed)
        return design.initial(bases), design.pool(bases, bases[:2], rng)

    a, b, c = run(3), run(3), run(4)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_a_method_choice_space_gets_uniform_configurations_of_its_methods() -> None:
    from autopeft.testing.synthetic_classes import make_problem

    bound = make_problem("method_choice", 0).bound
    design = make_sampler("mobo", bound, OBJECTIVES, 0, ON).propose([], 10)
    for point in design:
        bound.check_point(point)
        assert bound.is_feasible(point)
    structured = StructuredDesign(bound, 0)
    assert {g.param for g in structured.groups} == {"lora.rank", "ia3.active"}
    uniform = structured.feasible(structured.uniform(design[0]))
    lora = [p for p in uniform if p["method"] == "lora"]
    assert lora and all(len({p[n] for n in structured.groups[0].names if p[n]}) == 1 for p in lora)
    assert any(p["method"] == "ia3" for p in uniform)
