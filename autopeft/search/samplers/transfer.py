"""What ``mobo``'s surrogate is fitted on: the study's complete trials and, in a warm-started
study, a transfer prior from the earlier studies it names.

Rows are encoded design points (:class:`autopeft.search.samplers.encoding.DesignEncoder`)
followed by the extra columns :class:`autopeft.search.samplers.surrogate.ModelInputs` reads at 1
for rows without them:

* **fidelity** (multi-fidelity studies): a trial's training steps over the top rung's;
* **task** (a study with a transfer prior): 0 for the earlier studies' rows, 1 for its own.

Transfer prior. A warm-started study's sampler gets the earlier studies' complete trials,
mapped onto the new space by dimension name (:func:`autopeft.search.warm_start.map_point`).
They go in front of the study's own rows with task 0. Each earlier study's outcomes are scaled
by *its own* observed range (the rule of :mod:`autopeft.core.hypervolume`), so "the best accuracy
that study saw" is near 1 whatever the task's accuracy level. The GP then shares one kernel
across both tasks, with the task as an ARD feature: while the study has few trials of its own,
the earlier results shape the posterior; as its own trials arrive, the task lengthscale
decides how much the earlier ones still count. An earlier study that lacks one of the
objectives the study models is left out (every row needs every modelled outcome).

The acquisition (baseline, pending points, candidates) reads the study's own task, and the
rows are in a fixed order (prior first, then the history's), so the GP's checkpoint fits on
prefixes stay functions of their data (:class:`autopeft.search.samplers.surrogate.WarmGP`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from autopeft.core.hypervolume import Frame
from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.search.samplers.base import Observation
from autopeft.search.samplers.encoding import DesignEncoder
from autopeft.search.samplers.surrogate import top


@dataclass(frozen=True)
class TrainingData:
    """The surrogate's training rows.

    Attributes:
        X: ``n x (d + extras)`` rows: the prior's first, then the study's complete trials.
        Y: ``n x m`` measured outcomes on the ``[0, 1]`` (1 = best) scale.
        baseline: The study's own distinct design rows (``X_baseline`` of the acquisition).
        prior_rows: How many leading rows are the transfer prior's.
        prefix_scaled: ``k`` -> the study's first ``k`` outcomes scaled by their own range.
    """

    X: torch.Tensor
    Y: torch.Tensor
    baseline: torch.Tensor
    prior_rows: int
    objectives: tuple[Objective, ...]
    measured: tuple[Objective, ...]
    complete: tuple[Observation, ...]

    def prefix(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(X, Y)`` of the first ``c`` rows, the study's outcomes among them scaled by the
        range of those rows only (a checkpoint must not depend on later trials)."""
        k = c - self.prior_rows
        if k <= 0:
            return self.X[:c], self.Y[:c]
        own = scaled(self.objectives, self.measured, self.complete[:k])
        return self.X[:c], torch.cat([self.Y[: self.prior_rows], own])


def training_data(
    encoder: DesignEncoder,
    objectives: Sequence[Objective],
    measured: Sequence[Objective],
    complete: Sequence[Observation],
    prior: Sequence[Sequence[Observation]] = (),
) -> TrainingData:
    """The rows of ``complete`` (the study's complete trials) after the usable ``prior``
    groups' (see the module docstring)."""
    design = encoder.encode([h.point for h in complete])
    multi_fidelity = any(h.fidelity < 1 for h in complete)
    baseline = torch.unique(design, dim=0) if multi_fidelity else design
    own = [design]
    if multi_fidelity:
        own.append(torch.tensor([[h.fidelity] for h in complete], dtype=torch.double))
    X = torch.cat(own, dim=-1)
    Y = scaled(objectives, measured, complete)
    groups = [g for g in (usable(group, measured) for group in prior) if g]
    if not groups:
        return TrainingData(X, Y, baseline, 0, tuple(objectives), tuple(measured), tuple(complete))
    prior_X = torch.cat([encoder.encode([h.point for h in g]) for g in groups])
    if multi_fidelity:  # the earlier studies' complete trials ran at their top rung
        prior_X = torch.cat([prior_X, top(prior_X)], dim=-1)
    prior_Y = torch.cat([scaled(objectives, measured, g) for g in groups])
    earlier, own_task = 1 - top(prior_X), top(X)  # task 0 for the prior's rows, 1 for the study's
    X = torch.cat([torch.cat([prior_X, earlier], -1), torch.cat([X, own_task], -1)])
    return TrainingData(
        X,
        torch.cat([prior_Y, Y]),
        baseline,
        len(prior_X),
        tuple(objectives),
        tuple(measured),
        tuple(complete),
    )


def usable(group: Sequence[Observation], measured: Sequence[Objective]) -> list[Observation]:
    """The complete observations of ``group`` with a finite value of every modelled objective."""
    return [
        h
        for h in group
        if h.state == TrialState.COMPLETE
        and all(o.name in h.values and math.isfinite(float(h.values[o.name])) for o in measured)
    ]


def scaled(
    objectives: Sequence[Objective],
    measured: Sequence[Objective],
    observations: Sequence[Observation],
) -> torch.Tensor:
    """``len(observations) x len(measured)`` outcomes on the ``[0, 1]`` (1 = best) scale of
    the observations' own frame (:meth:`autopeft.core.hypervolume.Frame.from_observations`)."""
    frame = Frame.from_observations(objectives, observations)
    rows = [[frame.scale(o.name, h.values[o.name]) for o in measured] for h in observations]
    return torch.tensor(rows, dtype=torch.double).reshape(len(observations), len(measured))
