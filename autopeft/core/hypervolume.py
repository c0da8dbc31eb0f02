"""Objective scaling and hypervolume, one rule for the sampler, ``show`` and the benchmarks.

The rule (AutoPEFT hard-coded one reference point for every task; we derive it per study):

* every objective is scaled to ``[0, 1]`` with **1 = best**, and the reference point is the
  origin, so the hypervolume of a study lies in ``[0, 1]``;
* ``trainable_params`` is scaled by the hard budget: ``1 - params / max_trainable_params``;
* every other objective (the metric, peak memory, time) is scaled by the range observed over
  the study's first ``frame_trials`` (10) complete trials, widened by 10 % on each side; values
  outside it are clipped for the hypervolume (so the reference, the worst edge, is fixed once
  those trials exist and the curve never moves backwards).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState

MARGIN = 0.1
FRAME_TRIALS = 10


@dataclass(frozen=True)
class Frame:
    """Per-objective ``(low, high)`` and direction; :meth:`scale` maps to 1 = best."""

    bounds: dict[str, tuple[float, float]]
    directions: dict[str, str]

    @classmethod
    def from_observations(
        cls, objectives: Sequence[Objective], observations: Iterable[Any], budget: int
    ) -> Frame:
        """Build the frame from objects with a ``values`` dict (observations or records)."""
        rows = [o.values for o in observations]
        bounds = {}
        for obj in objectives:
            if obj.name == "trainable_params":
                bounds[obj.name] = (0.0, float(budget))
                continue
            seen = [float(r[obj.name]) for r in rows if obj.name in r]
            lo, hi = (min(seen), max(seen)) if seen else (0.0, 1.0)
            pad = MARGIN * (hi - lo) if hi > lo else max(abs(hi), 1.0) * MARGIN
            bounds[obj.name] = (lo - pad, hi + pad)
        return cls(bounds, {o.name: o.direction for o in objectives})

    def scale(self, name: str, value: float) -> float:
        """``value`` on the ``[0, 1]``, 1 = best scale (not clipped)."""
        lo, hi = self.bounds[name]
        s = (float(value) - lo) / (hi - lo)
        return s if self.directions[name] == "maximize" else 1.0 - s

    def scaled(self, values: dict[str, float]) -> list[float]:
        """All objectives of one trial, scaled and clipped into ``[0, 1]``."""
        return [min(1.0, max(0.0, self.scale(n, values[n]))) for n in self.directions]


def hypervolume(frame: Frame, values: Sequence[dict[str, float]]) -> float:
    """Dominated hypervolume of ``values`` in the frame's unit box (reference = origin)."""
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import (
        DominatedPartitioning,
    )

    if not values:
        return 0.0
    Y = torch.tensor([frame.scaled(v) for v in values], dtype=torch.double)
    ref = torch.zeros(Y.shape[-1], dtype=torch.double)
    return float(DominatedPartitioning(ref_point=ref, Y=Y).compute_hypervolume())


def hypervolume_curve(
    objectives: Sequence[Objective],
    records: Sequence[Any],
    budget: int,
    frame_trials: int = FRAME_TRIALS,
) -> list[float]:
    """Hypervolume after each complete record (in order), framed by the first
    ``frame_trials`` complete records."""
    complete = [
        r
        for r in records
        if getattr(r, "state", TrialState.COMPLETE) == TrialState.COMPLETE and r.values
    ]
    if not complete:
        return []
    frame = Frame.from_observations(objectives, complete[:frame_trials], budget)
    return [hypervolume(frame, [r.values for r in complete[: i + 1]]) for i in range(len(complete))]


def hypervolume_updates(
    objectives: Sequence[Objective], records: Sequence[Any], budget: int
) -> dict[int, float]:
    """Trial number -> hypervolume for the complete records whose stored ``hypervolume``
    differs from :func:`hypervolume_curve` (the newest one, and while the frame is still being
    set by the first :data:`FRAME_TRIALS`, the earlier ones too)."""
    complete = [r for r in records if r.state == TrialState.COMPLETE and r.values]
    curve = hypervolume_curve(objectives, complete, budget)
    return {
        r.number: hv
        for r, hv in zip(complete, curve, strict=True)
        if r.hypervolume is None or abs(r.hypervolume - hv) > 1e-12
    }
