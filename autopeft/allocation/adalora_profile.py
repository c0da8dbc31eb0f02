"""The ``adalora`` profile: the ranks AdaLoRA learns in one trial, as per-cell scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autopeft.allocation.profiles import Profile, normalise

if TYPE_CHECKING:
    from autopeft.space.view import SpaceView
    from autopeft.trial.context import TrialContext

INIT_R = 8
TARGET_R = 4


def adalora_profile(ctx: TrialContext, bound: SpaceView, seed: int) -> Profile:
    """Train AdaLoRA (``init_r`` 8 pruned to an average of 4) on every linear cell for the
    study's fidelity and score each cell by the rank it kept (``extra["ranks"]``)."""
    import time

    from autopeft.methods.binding import bind_space
    from autopeft.models.layout import ModelLayout
    from autopeft.space.schema import SearchSpace
    from autopeft.trial.runner import TrialRequest, run_trial

    t0 = time.perf_counter()
    layout: ModelLayout = bound.layout
    init_r = min(INIT_R, *(min(s.in_features, s.out_features) for s in layout.sites))
    space = SearchSpace(
        name="adalora_profile",
        method="adalora",
        max_trainable_params=10**12,
        parameters={
            "init_r": init_r,
            "target_r": max(1, min(TARGET_R, init_r // 2)),
            "target_modules": "all_linear",
        },
    )
    compiled = bind_space(space, layout).compile({})
    result = run_trial(ctx, TrialRequest(0, compiled, seed))
    learned = result.metrics.get("learned_peft_config") if result.ok else None
    if not learned:
        raise RuntimeError(f"the AdaLoRA profile run learned no ranks: {result.error}")
    pattern = learned.get("rank_pattern") or {}
    kept = {n: int(pattern.get(n, learned["r"])) for n in learned["target_modules"]}
    ranks = {(s.layer, s.module): kept.get(s.name, 0) for s in layout.sites}
    layers: dict[int, float] = {}
    for (layer, _), r in ranks.items():
        layers[layer] = layers.get(layer, 0.0) + r
    extra = {"ranks": {f"{c[0]}.{c[1]}": r for c, r in ranks.items()}, "init_r": init_r}
    scores = normalise({c: float(r) for c, r in ranks.items()})
    return Profile("adalora", scores, normalise(layers), time.perf_counter() - t0, extra)
