"""Objective scaling and hypervolume, one rule for the sampler, ``show`` and the benchmarks.

The rule (AutoPEFT hard-coded one reference point for every task; we derive it per study):

* every objective, ``trainable_params`` included, is scaled to ``[0, 1]`` with **1 = best** by
  the range observed over a set of complete trials, widened by 10 % on each side (a range of
  one value ``v`` is widened by ``10 % * |v|``), and the reference point is the origin of that
  scale (the worst edge of every range), so the hypervolume of a study lies in ``[0, 1]``;
* the study's curve (``show``, the stored per-trial hypervolume, the progress line) frames by
  the first ``frame_trials`` (10) complete trials and clips values outside the frame (so the
  reference is fixed once those trials exist and the curve never moves backwards);
  ``mobo`` frames each proposal by all complete trials so far (and a GP checkpoint on the
  first ``c`` trials by those ``c``), and scores candidates' exact parameter counts on the
  same ``trainable_params`` scale, except that while the budget *binds* (some of 512 seeded
  random points of the space exceed it) that scale's worst edge is the budget, so sizes up to
  the budget keep their value to the acquisition (synthetic ``tight`` class, budget 0.15 of
  the largest count, 40 trials, 2 seeds: median HV 0.635 with the observed edge, 0.686 with
  the budget edge; the never-binding ``loose20x`` class is unchanged at 0.836).

What the rule does not depend on, by construction:

* **the budget** ``max_trainable_params`` beyond reach: it bounds which points are feasible,
  and is a scale edge only in ``mobo`` and only while it binds (above).
  Scaling by it (``1 - params / budget``, the rule before) made every point score ~1 on
  ``trainable_params`` under a loose budget, so the acquisition and the reported hypervolume
  stopped caring about size. Measured on the synthetic family (38 dimensions, largest
  reachable count 663,552; 40 ``mobo`` trials, 3 seeds, HV in one fixed frame): median HV
  0.821 with the budget at 663,552 and 0.732 at 10 M under that rule; 0.840 at both now
  (identical runs);
* **units and offsets**: ``(v - lo) / (hi - lo)`` is unchanged when an objective is multiplied
  by a positive constant or shifted (memory in MB or KB, a metric in % or a fraction); the
  ``mobo`` GP standardises its outcomes as well.

A non-linear monotone rescaling (log parameters, say) changes a hypervolume by definition:
the scale is linear in the reported units.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autopeft.core.objectives import Objective
from autopeft.core.states import has_result

if TYPE_CHECKING:
    import torch

MARGIN = 0.1
FRAME_TRIALS = 10


@dataclass(frozen=True)
class Frame:
    """Per-objective ``(low, high)`` and direction; :meth:`scale` maps to 1 = best."""

    bounds: dict[str, tuple[float, float]]
    directions: dict[str, str]

    @classmethod
    def from_observations(
        cls,
        objectives: Sequence[Objective],
        observations: Iterable[Any],
        budget: int | None = None,
    ) -> Frame:
        """Build the frame from objects with a ``values`` dict (observations or records).

        ``budget`` is accepted for existing callers and ignored: the rule (module docstring)
        scales nothing by the budget."""
        del budget
        rows = [o.values for o in observations]
        bounds = {}
        for obj in objectives:
            seen = [float(r[obj.name]) for r in rows if obj.name in r]
            lo, hi = (min(seen), max(seen)) if seen else (0.0, 1.0)
            pad = MARGIN * ((hi - lo) if hi > lo else abs(hi) or 1.0)
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


def study_frame(
    objectives: Sequence[Objective], complete: Sequence[Any], frame_trials: int = FRAME_TRIALS
) -> Frame:
    """The frame of a study's curve: its first ``frame_trials`` complete records (in order)."""
    return Frame.from_observations(objectives, complete[:frame_trials])


def hypervolume_curve(
    objectives: Sequence[Objective],
    records: Sequence[Any],
    budget: int | None = None,
    frame_trials: int = FRAME_TRIALS,
) -> list[float]:
    """Hypervolume after each complete record (in order), framed by the first
    ``frame_trials`` complete records (``budget``: ignored, see the module docstring).

    Computed as a fold over the front (:func:`fold`), which equals :func:`hypervolume` of
    each prefix bit for bit."""
    del budget
    complete = [r for r in records if has_result(r)]
    if not complete:
        return []
    curve = HypervolumeCurve(study_frame(objectives, complete, frame_trials))
    for i, r in enumerate(complete):
        curve.add(i, r.values)
    return list(curve.updates(lambda _: None, None).values())


def hypervolume_updates(
    objectives: Sequence[Objective], records: Sequence[Any], budget: int | None = None
) -> dict[int, float]:
    """Trial number -> hypervolume for the complete records whose stored ``hypervolume``
    differs from :func:`hypervolume_curve` (the newest one, and while the frame is still being
    set by the first :data:`FRAME_TRIALS`, the earlier ones too)."""
    complete = [r for r in records if has_result(r)]
    curve = hypervolume_curve(objectives, complete, budget)
    return {
        r.number: hv
        for r, hv in zip(complete, curve, strict=True)
        if r.hypervolume is None or abs(r.hypervolume - hv) > 1e-12
    }


class HypervolumeCurve:
    """The hypervolume curve of complete trials (by number) in one fixed frame, kept as a fold:
    the front (non-dominated scaled points) after the settled trials is remembered, so a new
    trial costs a front update, plus one hypervolume when the front changes.

    A front holds the points, in trial order, that botorch's ``is_non_dominated`` keeps of all
    points so far (the first of equal points), so the hypervolume of a front equals
    :func:`hypervolume` of all those points, bit for bit.
    """

    def __init__(self, frame: Frame) -> None:
        import torch

        self.frame = frame
        self.numbers: list[int] = []
        self.points: list[torch.Tensor] = []
        self.first_new = 0  # points from here on have no hypervolume computed yet
        empty = torch.empty((0, len(frame.directions)), dtype=torch.double)
        self.base: tuple[int, torch.Tensor, float] = (0, empty, 0.0)  # front after points[:i]

    def add(self, number: int, values: dict[str, float]) -> None:
        """Trial ``number`` completed with ``values`` (in any order of numbers)."""
        import torch

        i = bisect.bisect(self.numbers, number)
        self.numbers.insert(i, number)
        self.points.insert(i, torch.tensor(self.frame.scaled(values), dtype=torch.double))
        self.first_new = min(self.first_new, i)
        if i < self.base[0]:  # a trial below the settled ones: fold again from the start
            self.base = (0, self.base[1][:0], 0.0)

    def updates(
        self, stored: Callable[[int], float | None], settled: int | None
    ) -> dict[int, float]:
        """Number -> hypervolume for the trials whose ``stored`` value differs from the curve;
        the front is remembered up to the trials numbered below ``settled`` (all if None)."""
        keep = len(self.numbers) if settled is None else bisect.bisect_left(self.numbers, settled)
        start, front, hv = self.base
        out = {}
        for i in range(start, len(self.numbers)):
            if i == keep:
                self.base = (i, front, hv)
            front, hv = fold(front, hv, self.points[i])
            if i >= self.first_new:
                old = stored(self.numbers[i])
                if old is None or abs(old - hv) > 1e-12:
                    out[self.numbers[i]] = hv
        if keep == len(self.numbers):
            self.base = (keep, front, hv)
        self.first_new = len(self.numbers)
        return out


def fold(front: torch.Tensor, hv: float, point: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The front (``k x m`` scaled points) and its hypervolume once ``point`` (``m``) is in."""
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import (
        DominatedPartitioning,
    )
    from botorch.utils.multi_objective.pareto import is_non_dominated

    candidates = torch.cat([front, point[None]])
    kept = is_non_dominated(candidates)
    if not kept[-1]:  # dominated by (or equal to) a point of the front: nothing changes
        return front, hv
    front = candidates[kept]
    ref = torch.zeros(front.shape[-1], dtype=torch.double)
    return front, float(DominatedPartitioning(ref_point=ref, Y=front).compute_hypervolume())
