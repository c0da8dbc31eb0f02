"""A cheap screen in front of qLogNEHVI: which candidates are worth the Monte-Carlo acquisition.

Scoring a candidate with qLogNEHVI means a joint posterior with the baseline and a
hypervolume improvement under every MC sample's box decomposition. The screen scores the whole
pool at once with one posterior call: each candidate's *optimistic* objective vector (posterior
mean plus ``beta`` standard deviations on the modelled outputs; exact known objectives as
they are), its hypervolume improvement over the posterior-mean front of the baseline (one box
decomposition), times its probability of being feasible. Only the best ``k`` are then scored
by qLogNEHVI, which decides. Optimism keeps uncertain regions in the running, so the screen
does not turn the search greedy; ``bench/optimizer.py`` compares it with scoring every
candidate (``score_top: 0``).
"""

from __future__ import annotations

from typing import Any

import torch

BETA = 1.0


def screen_scores(acqf: Any, X: torch.Tensor, feasibility: int | None) -> torch.Tensor:
    """Optimistic hypervolume improvement of each row of ``X`` (``n x d``) under ``acqf``'s
    model and objective; ``feasibility``: the model output that is <= 0 when feasible."""
    from botorch.utils.multi_objective.box_decompositions.non_dominated import (
        FastNondominatedPartitioning,
    )
    from botorch.utils.multi_objective.pareto import is_non_dominated

    base = acqf.X_baseline
    X_all = torch.cat([base, X])
    with torch.no_grad():
        # marginals only (a batch of single points): no joint covariance is formed
        posterior = acqf.model.posterior(X_all.unsqueeze(-2))
        mean = posterior.mean.squeeze(-2)
        std = posterior.variance.squeeze(-2).clamp_min(0).sqrt()
        objective = acqf.objective
        front = objective(mean[: len(base)].unsqueeze(0), X=base)[0]
        hopeful = objective((mean + BETA * std)[len(base) :].unsqueeze(0), X=X)[0]
        ref = torch.zeros(front.shape[-1], dtype=front.dtype)
        front = front[is_non_dominated(front) & (front > ref).all(-1)]
        if len(front):
            lower, upper = FastNondominatedPartitioning(ref, Y=front).get_hypercell_bounds()
        else:  # nothing dominates the reference yet: the whole positive orthant is open
            lower, upper = ref.unsqueeze(0), torch.full_like(ref, float("inf")).unsqueeze(0)
        sides = (torch.minimum(hopeful.unsqueeze(1), upper) - lower).clamp_min(0)
        gain = sides.prod(-1).sum(-1)
        if feasibility is not None:
            z = -mean[len(base) :, feasibility] / std[len(base) :, feasibility].clamp_min(1e-9)
            gain = gain * torch.distributions.Normal(0.0, 1.0).cdf(z)
        # ties at zero gain: prefer the better optimistic objectives
        return gain + 1e-9 * hopeful.clamp(0, 1).sum(-1)
