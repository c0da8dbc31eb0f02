"""The ``adalora`` profile: the ranks AdaLoRA learns in one trial, as per-cell scores.

This module builds the trial (:func:`adalora_probe`) and turns what it learned into a profile
(:func:`profile_from_learned`); running the trial is the caller's (``autopeft.run.profiling``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopeft.allocation.profiles import Profile, normalise
from autopeft.methods.binding import bind_space
from autopeft.space.schema import SearchSpace

if TYPE_CHECKING:
    from autopeft.core.compiled import CompiledConfig
    from autopeft.models.layout import ModelLayout

INIT_R = 8
TARGET_R = 4


def adalora_probe(layout: ModelLayout, task_type: str = "SEQ_CLS") -> tuple[CompiledConfig, int]:
    """The AdaLoRA trial that measures the profile: ``init_r`` 8 pruned to an average of 4 on
    every linear cell (capped by the narrowest leaf), for peft's ``task_type``. Returns
    (compiled config, ``init_r``)."""
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
    return bind_space(space, layout).compile({}, task_type), init_r


def profile_from_learned(
    learned: dict[str, Any], layout: ModelLayout, init_r: int, seconds: float
) -> Profile:
    """Score each cell by the rank AdaLoRA kept there (``extra["ranks"]``), from the learned
    plain-LoRA config of the probe trial."""
    pattern = learned.get("rank_pattern") or {}
    kept = {n: int(pattern.get(n, learned["r"])) for n in learned["target_modules"]}
    ranks = {(s.layer, s.module): kept.get(s.name, 0) for s in layout.sites}
    layers: dict[int, float] = {}
    for (layer, _), r in ranks.items():
        layers[layer] = layers.get(layer, 0.0) + r
    extra = {"ranks": {f"{c[0]}.{c[1]}": r for c, r in ranks.items()}, "init_r": init_r}
    scores = normalise({c: float(r) for c, r in ranks.items()})
    return Profile("adalora", scores, normalise(layers), seconds, extra)
