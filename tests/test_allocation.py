"""Allocators (property-style over random profiles and budgets) and gradient profiles."""

from __future__ import annotations

import random

import pytest

from autopeft.allocation.allocators import RankLimits, allocate_ranks, allocation_params
from autopeft.exceptions import SearchSpaceError


def _problem(rng: random.Random) -> tuple[dict, dict, dict]:
    layers, modules = rng.randint(1, 6), rng.sample(["q", "k", "v", "o", "up", "down"], 3)
    cells = [(layer, m) for layer in range(layers) for m in modules]
    scores = {c: rng.choice([0.0, rng.random(), rng.random() ** 4 * 100]) for c in cells}
    widths = {c: rng.choice([64, 96, 768, 1920]) for c in cells}
    caps = {c: rng.choice([4, 32, 384]) for c in cells}
    return scores, widths, caps


@pytest.mark.parametrize("seed", range(200))
def test_never_over_budget_within_one_unit_and_clamped(seed: int) -> None:
    rng = random.Random(seed)
    scores, widths, caps = _problem(rng)
    unit = rng.choice([1, 2, 4])
    limits = RankLimits(
        min_rank=rng.choice([0, 0, unit]), max_rank=unit * rng.randint(1, 8), unit=unit
    )
    floor = sum(min(limits.min_rank, caps[c] // unit * unit) * widths[c] for c in scores)
    budget = rng.randint(floor, floor + 40 * sum(widths.values()))
    temperature = rng.choice([0.0, 0.5, 1.0, 3.0, 50.0])
    ranks = allocate_ranks(scores, widths, budget, temperature, limits, caps)
    used = allocation_params(ranks, widths)
    assert used <= budget
    high = {c: min(limits.max_rank, caps[c]) // unit * unit for c in scores}
    for c, r in ranks.items():
        assert r % unit == 0 and min(limits.min_rank, high[c]) <= r <= high[c]
    if any(ranks[c] < high[c] for c in ranks) and temperature == 0:
        # uniform targets: any cell below its ceiling could not take one more unit
        growable = [c for c in ranks if ranks[c] < high[c]]
        assert budget - used < unit * max(widths[c] for c in growable)
    if all(ranks[c] < high[c] for c in ranks):
        # nothing saturated: the whole budget is spent up to less than one rank unit
        assert budget - used < unit * max(widths.values())


@pytest.mark.parametrize("seed", range(50))
def test_temperature_zero_is_uniform(seed: int) -> None:
    rng = random.Random(seed)
    scores, widths, _ = _problem(rng)
    budget = rng.randint(1, 30) * sum(widths.values()) + rng.randint(0, 500)
    ranks = allocate_ranks(scores, widths, budget, 0.0, RankLimits(0, 64, 1))
    assert max(ranks.values()) - min(ranks.values()) <= 1
    exact = allocate_ranks(scores, widths, 3 * sum(widths.values()), 0.0, RankLimits(0, 64, 1))
    assert set(exact.values()) == {3}


def test_temperature_concentrates_on_high_scores() -> None:
    cells = [(0, "q"), (0, "v"), (1, "q"), (1, "v")]
    scores = dict(zip(cells, [0.1, 0.2, 0.3, 0.4], strict=True))
    widths = dict.fromkeys(cells, 100)
    mild = allocate_ranks(scores, widths, 1600, 1.0, RankLimits(0, 64, 1))
    sharp = allocate_ranks(scores, widths, 1600, 50.0, RankLimits(0, 64, 1))
    assert mild == {(0, "q"): 2, (0, "v"): 3, (1, "q"): 5, (1, "v"): 6}
    assert sharp == {(0, "q"): 0, (0, "v"): 0, (1, "q"): 0, (1, "v"): 16}
    capped = allocate_ranks(scores, widths, 1600, 50.0, RankLimits(0, 8, 1))
    assert capped[(1, "v")] == 8 and allocation_params(capped, widths) == 1600


def test_budget_below_min_rank_is_a_clear_error() -> None:
    cells = {(0, "q"): 1.0, (0, "v"): 1.0}
    with pytest.raises(SearchSpaceError, match="below the cost of min_rank=2"):
        allocate_ranks(cells, dict.fromkeys(cells, 100), 300, 1.0, RankLimits(2, 8, 2))


# -- gradient profiles on a tiny real model ---------------------------------------------------
def _tiny_context(tiny_bert_dir, tmp_path):
    from autopeft.data import load_dataset, split_dataset
    from autopeft.spec import FidelitySpec
    from autopeft.trial.context import build_context
    from tests.conftest import write_tiny_csv

    data = load_dataset(str(write_tiny_csv(tmp_path / "data.csv")))
    splits = split_dataset(data, validation=0.2, test=0.2, seed=0)
    fidelity = FidelitySpec(
        train_examples=64, max_steps=4, eval_examples=24, seq_len=16, batch_size=8
    )
    import torch

    return build_context(
        tiny_bert_dir, splits, fidelity, seed=0, metric="accuracy", device=torch.device("cpu")
    )


def test_gradient_profiles_cover_every_cell_and_leave_the_model_untouched(
    tiny_bert_dir, tmp_path
) -> None:
    import torch

    from autopeft.allocation.profiles import calibration_batches, gradient_profiles
    from autopeft.models.layout import ModelLayout

    ctx = _tiny_context(tiny_bert_dir, tmp_path)
    layout = ModelLayout.from_model(ctx.model)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    batches = calibration_batches(ctx.train, 3, 8, seed=0)
    assert [b["labels"].shape[0] for b in batches] == [8, 8, 8]
    profiles = gradient_profiles(ctx.model, layout, batches)
    again = gradient_profiles(ctx.model, layout, calibration_batches(ctx.train, 3, 8, seed=0))
    other = gradient_profiles(ctx.model, layout, calibration_batches(ctx.train, 3, 8, seed=1))
    cells = {(s.layer, s.module) for s in layout.sites}
    for kind in ("sensitivity", "importance"):
        p = profiles[kind]
        assert set(p.scores) == cells and set(p.layer_scores) == {0, 1}
        assert abs(sum(p.scores.values()) - 1) < 1e-9 and min(p.scores.values()) > 0
        assert abs(sum(p.layer_scores.values()) - 1) < 1e-9
        assert p.scores == again[kind].scores  # same seed, same batches, same scores
        assert p.scores != other[kind].scores
        assert type(p).from_json(p.to_json()) == p
    assert profiles["sensitivity"].scores != profiles["importance"].scores
    assert not any(p.requires_grad or p.grad is not None for p in ctx.model.parameters())
    after = ctx.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_uniform_remainder_is_spread_over_layers_not_the_first_ones() -> None:
    cells = [(layer, m) for layer in range(6) for m in ("q", "k", "v", "o")]
    widths = dict.fromkeys(cells, 100)
    ranks = allocate_ranks(dict.fromkeys(cells, 1.0), widths, 1200, 0.0, RankLimits(0, 8, 1))
    assert sum(ranks.values()) == 12
    per_layer = [sum(ranks[(layer, m)] for m in ("q", "k", "v", "o")) for layer in range(6)]
    assert max(per_layer) - min(per_layer) <= 1, per_layer
