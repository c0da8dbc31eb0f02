"""The structured design's profile family: rank patterns that follow a study's stored
sensitivity / importance profiles, in the initial design and the pool; and the driver passing
the stored profiles to a structured sampler."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.core.objectives import Objective
from autopeft.search.samplers import make_sampler
from autopeft.search.samplers.base import point_key
from autopeft.search.samplers.profile_patterns import follow, sizes, snap
from autopeft.search.samplers.structured import StructuredDesign

OBJECTIVES = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]


def _skewed(bound) -> dict[tuple[int, str], float]:
    """Scores rising with depth; the two lowest layers almost nothing."""
    return {
        (layer, m): (0.001 if layer < 2 else float(layer)) * (2.0 if m == "q" else 1.0)
        for layer, m in bound.searched_cells
    }


def _base(bound) -> dict:
    return make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 1)[0]


def _targeted(bound, point) -> dict[tuple[int, str], int]:
    targets = bound.target_modules(point)
    return {
        (layer, m): point[f"rank.{layer}.{m}"] for layer, m in bound.searched_cells if m in targets
    }


def test_snap_and_sizes_follow_the_ladder() -> None:
    assert [snap(v, [0, 2, 4, 8]) for v in (0, 0.9, 1, 3, 6, 20)] == [0, 0, 2, 4, 8, 8]
    assert snap(0, [1, 2, 4]) == 1  # no "off" rung: the lowest
    assert [snap(v, [False, True]) for v in (0, 1)] == [False, True]
    assert sizes([0, 2, 4, 8]) == (0.25, 0.5)  # the uniform r=2 and r=4 sizes
    assert sizes([False, True]) == (0.25, 0.5, 0.75)


def test_follow_gives_the_top_cells_the_top_rungs_and_the_low_cells_off() -> None:
    scores = [0.5, 0.3, 0.15, 0.04, 0.01, None]
    values = follow(scores, [0, 2, 4, 8], 0.5)
    assert values is not None
    assert values[0] == 8 and values[-2:] == [0, 0]  # None (outside the module set): lowest
    ranked = values[:5]
    assert ranked == sorted(ranked, reverse=True)  # never more for a lower score
    assert follow([0.0, 0.0], [0, 2, 4], 0.5) is None  # nothing to follow
    assert follow([1.0, 2.0], [0.1, 0.2], 0.5) is None  # not an integer ladder


def test_profile_candidates_follow_the_profile_and_are_feasible(bound) -> None:
    scores = _skewed(bound)
    design = StructuredDesign(bound, seed=0, profiles={"sensitivity": scores})
    points = design.feasible(design.profiled(_base(bound)))
    assert len(points) >= 3
    for point in points:
        bound.check_point(point)
        assert bound.is_feasible(point)
        ranks = _targeted(bound, point)
        order = sorted(ranks, key=lambda c: scores[c], reverse=True)
        assert [ranks[c] for c in order] == sorted(ranks.values(), reverse=True)
        assert ranks[order[0]] == max(ranks.values()) > 0
        assert all(r == 0 for (layer, _), r in ranks.items() if layer < 2)  # near-zero: off
        assert len(set(ranks.values())) > 1  # not a uniform configuration
    assert {p["target_modules"] for p in points} >= {"qv", "attn"}


def test_without_profiles_the_family_is_empty_and_nothing_changes(bound) -> None:
    base = _base(bound)
    plain = StructuredDesign(bound, seed=0)
    assert plain.profiled(base) == []
    empty = StructuredDesign(bound, seed=0, profiles={"importance": {}})
    assert empty.profiled(base) == []
    bases = make_sampler("sobol", bound, OBJECTIVES, 3, {}).propose([], 5)
    assert plain.initial(bases) == empty.initial(bases)
    mobo = make_sampler("mobo", bound, OBJECTIVES, 0, {"structured": True})
    before = mobo.propose([], 10)
    mobo.set_profiles({})
    assert mobo.propose([], 10) == before


def test_the_initial_design_and_the_pool_include_profile_patterns(bound) -> None:
    profiles = {"sensitivity": _skewed(bound)}
    design = StructuredDesign(bound, seed=0, profiles=profiles)
    patterns = {
        point_key(_targeted(bound, p)) for p in design.feasible(design.profiled(_base(bound)))
    }
    mobo = make_sampler("mobo", bound, OBJECTIVES, 0, {"structured": True})
    mobo.set_profiles(profiles)
    initial = mobo.propose([], 10)
    assert sum(point_key(_targeted(bound, p)) in patterns for p in initial[1::2]) >= 1
    sobol = make_sampler("sobol", bound, OBJECTIVES, 0, {})
    assert initial[0::2] == sobol.propose([], 10)[0::2]  # the Sobol half is unchanged
    import numpy as np

    pool = design.pool(sobol.propose([], 16), [], np.random.default_rng(0))
    assert any(point_key(_targeted(bound, p)) in patterns for p in pool)


def test_profile_patterns_are_seeded(bound) -> None:
    profiles = {"sensitivity": _skewed(bound), "importance": _skewed(bound)}
    bases = make_sampler("sobol", bound, OBJECTIVES, 0, {}).propose([], 12)
    first = StructuredDesign(bound, 0, profiles).initial(bases)
    assert first == StructuredDesign(bound, 0, profiles).initial(bases)
    assert first != StructuredDesign(bound, 1, profiles).initial(bases)


PROFILED_SPACE = """\
version: 1
name: tiny_profiled
method: lora
max_trainable_params: 4000
parameters:
  target_modules: qv
  rank: {type: int, choices: [0, 1, 2, 4], per: [layer, module]}
  alpha_ratio: 2.0
  dropout: 0.0
  learning_rate: 5.0e-3
"""


@pytest.mark.slow
def test_the_driver_passes_the_stored_profiles_to_a_structured_sampler(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    from autopeft.allocation.profiles import Profile
    from autopeft.run.driver import run_study
    from autopeft.run.prepare import prepare_study
    from autopeft.run.profiling import profile_key
    from autopeft.run.progress import Reporter
    from autopeft.storage.profiles import save_profile, study_profiles
    from autopeft.storage.store import Store
    from tests.conftest import write_study, write_tiny_csv

    class Notes(Reporter):
        def __init__(self) -> None:
            self.lines: list[str] = []

        def message(self, text: str) -> None:
            self.lines.append(text)

    write_tiny_csv(tmp_path / "data.csv")
    (tmp_path / "space.yaml").write_text(PROFILED_SPACE)
    spec = write_study(tmp_path, model=str(tiny_bert_dir), n_trials=4)
    structured = "sampler: {name: sobol, options: {structured: 4}}"
    spec.write_text(spec.read_text().replace("sampler: random", structured))
    prepared = prepare_study(spec)
    store = Store(prepared.url)
    # q of layer 0 and v of layer 1 matter: no uniform or layer-range configuration does that
    scores = {(0, "q"): 0.45, (1, "v"): 0.45, (0, "v"): 0.05, (1, "q"): 0.05}
    save_profile(store, profile_key(prepared), Profile("sensitivity", scores, {0: 0.5}, 0.1))

    notes = Notes()
    outcome = run_study(spec, reporter=notes)
    assert any("stored sensitivity profile" in line for line in notes.lines), notes.lines
    assert set(study_profiles(store, "tiny")) == {"sensitivity"}  # kept for a resumed run
    points = {r.number: r.params for r in outcome.records}
    # trial 1: the uniform family's stream; trial 3: the profile family's
    follows = points[3]
    assert follows["rank.0.q"] > 0 and follows["rank.1.v"] > 0
    assert follows["rank.0.v"] == 0 and follows["rank.1.q"] == 0
    assert points[1]["rank.0.q"] == points[1]["rank.1.v"] == points[1]["rank.0.v"]
