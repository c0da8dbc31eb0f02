"""``mobo``: multi-objective Bayesian optimisation with BoTorch (qLogNEHVI).

Compared with the AutoPEFT reference (one SAAS GP per objective fitted by NUTS, qNEHVI):

* **Known objectives are not modelled.** ``trainable_params`` is exact before training, so the
  acquisition sees it through a deterministic model (:meth:`BoundSpace.count_params`); only
  measured objectives (accuracy, memory, ...) get a GP.
* **Mixed inputs.** Rank ladders are ordered discrete dimensions, categorical choices use a
  categorical kernel (``MixedSingleTaskGP``); the acquisition is optimised by alternating
  discrete local search and continuous L-BFGS (``optimize_acqf_mixed_alternating``).
* **Failures are data.** Trials that failed because of their configuration (out of memory,
  divergence) train a feasibility GP used as an acquisition constraint, so later proposals
  avoid them; over-budget candidates are never returned.
* **Batches with pending trials.** Running trials are ``X_pending`` (fantasised), and ``n``
  points are chosen jointly (sequential greedy), so parallel workers get distinct points.
* **Cheap fits.** GP hyper-parameters warm-start from the previous fit of this sampler, with
  capped L-BFGS iterations; torch runs single-threaded here (faster for these sizes).

Objectives are scaled to ``[0, 1]`` (1 = best) before modelling: the metric by its observed
range, ``trainable_params`` by the budget, other measures by their observed range, with a 10 %
margin; the reference point is the origin of that scale (see :mod:`autopeft.samplers.hypervolume`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from autopeft.samplers.base import Observation, Sampler, point_key
from autopeft.samplers.encoding import DesignEncoder
from autopeft.samplers.hypervolume import Frame
from autopeft.samplers.random import SobolSampler
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import finite_values, from_unit, to_unit
from autopeft.storage.records import Objective

KNOWN = "trainable_params"


class MoboSampler(Sampler):
    """BoTorch qLogNEHVI sampler; the default for studies.

    Args:
        n_initial: Sobol points before the first model-based proposal (default 10).
        raw_samples: Random candidates scored to start the acquisition optimisation.
        num_restarts: Local searches started from the best raw candidates.
        mc_samples: Quasi-MC samples of the acquisition function.
        fit_maxiter: L-BFGS iterations per GP fit (warm-started after the first).
    """

    def __init__(
        self,
        bound: BoundSpace,
        objectives: Sequence[Objective],
        seed: int,
        *,
        n_initial: int = 10,
        raw_samples: int = 256,
        num_restarts: int = 4,
        mc_samples: int = 32,
        fit_maxiter: int = 75,
    ) -> None:
        super().__init__(bound, objectives, seed)
        if n_initial < 2:
            raise TypeError("n_initial must be >= 2")
        self.n_initial = n_initial
        self.raw_samples, self.num_restarts = raw_samples, num_restarts
        self.mc_samples, self.fit_maxiter = mc_samples, fit_maxiter
        self.encoder = DesignEncoder(bound)
        self._initial = SobolSampler(bound, objectives, seed)
        self._warm: dict[str, dict[str, torch.Tensor]] = {}

    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        complete = [h for h in history if h.state == "COMPLETE" and h.values]
        if len(complete) < self.n_initial:
            return self._initial.propose(history, n)
        from linear_operator.utils.warnings import NumericalWarning

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with warnings.catch_warnings():  # Cholesky jitter on near-duplicate points: benign
                warnings.simplefilter("ignore", NumericalWarning)
                return self._propose(history, complete, n)
        finally:
            torch.set_num_threads(threads)

    # -- model ------------------------------------------------------------------------------
    def _propose(
        self, history: Sequence[Observation], complete: list[Observation], n: int
    ) -> list[Point]:
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.models.model import ModelList
        from botorch.sampling.get_sampler import get_sampler

        frame = Frame.from_observations(
            self.objectives, complete, self.bound.space.max_trainable_params
        )
        X = self.encoder.encode([h.point for h in complete])
        models = [self._objective_model(o, X, frame, complete) for o in self.objectives]
        constraints = []
        failed = [h for h in history if h.state == "FAIL" and h.infeasible]
        if failed:
            models.append(self._feasibility_model(X, failed))
            constraints.append(lambda Z: Z[..., -1])  # <= 0 is feasible
        pending = [h.point for h in history if h.state == "RUNNING"]
        model = ModelList(*models)
        # a ModelList posterior needs one QMC sampler per member (ListSampler)
        sampler = get_sampler(
            model.posterior(X[:1]), torch.Size([self.mc_samples]), seed=self._seed(history)
        )
        acqf = qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=torch.zeros(len(self.objectives), dtype=torch.double),
            X_baseline=X,
            sampler=sampler,
            objective=_first_outputs(len(self.objectives)) if constraints else None,
            constraints=constraints or None,
            X_pending=self.encoder.encode(pending) if pending else None,
            prune_baseline=True,
            cache_root=False,
        )
        return self._optimize(acqf, history, n)

    def _objective_model(
        self, objective: Objective, X: torch.Tensor, frame: Frame, complete: list[Observation]
    ) -> Any:
        from botorch.models.deterministic import GenericDeterministicModel

        if objective.name == KNOWN:
            budget = float(self.bound.space.max_trainable_params)
            count = self.bound.method.params_tensor(self.bound, self.encoder) or self._count_rows

            def scaled_params(x: torch.Tensor) -> torch.Tensor:
                return (1.0 - count(x).to(x.dtype) / budget).unsqueeze(-1)

            return GenericDeterministicModel(scaled_params, num_outputs=1)
        y = [frame.scale(objective.name, h.values[objective.name]) for h in complete]
        return self._fit_gp(objective.name, X, torch.tensor(y, dtype=torch.double).unsqueeze(-1))

    def _count_rows(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        counts = [self.bound.count_params(self.encoder.decode(r)) for r in rows]
        return torch.tensor(counts, dtype=torch.double).reshape(x.shape[:-1])

    def _feasibility_model(self, X_ok: torch.Tensor, failed: list[Observation]) -> Any:
        X_fail = self.encoder.encode([h.point for h in failed])
        X = torch.cat([X_ok, X_fail])
        y = torch.cat([-torch.ones(len(X_ok)), torch.ones(len(X_fail))]).double().unsqueeze(-1)
        return self._fit_gp("__feasibility__", X, y)

    def _fit_gp(self, key: str, X: torch.Tensor, y: torch.Tensor) -> Any:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import MixedSingleTaskGP, SingleTaskGP
        from botorch.models.transforms.input import Normalize
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        cat = sorted(self.encoder.categorical)
        ordered = [j for j in range(self.encoder.d) if j not in self.encoder.categorical]

        def build() -> Any:
            transform = Normalize(self.encoder.d, bounds=self.encoder.bounds, indices=ordered)
            if cat:
                return MixedSingleTaskGP(
                    X, y, cat_dims=cat, input_transform=transform, outcome_transform=Standardize(1)
                )
            return SingleTaskGP(X, y, input_transform=transform, outcome_transform=Standardize(1))

        model = build()
        warm = self._warm.get(key)
        if warm is not None:
            model.load_state_dict(warm, strict=False)
        try:
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(model.likelihood, model),
                optimizer_kwargs={"options": {"maxiter": self.fit_maxiter}},
            )
        except Exception:  # a failed (warm) fit starts again from the priors
            model = build()
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        self._warm[key] = {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if k.startswith(("covar_module", "likelihood", "mean_module"))
        }
        return model.eval()

    # -- acquisition optimisation ---------------------------------------------------------
    def _optimize(self, acqf: Any, history: Sequence[Observation], n: int) -> list[Point]:
        """Score a pool of feasible candidates (seeded random draws plus mutations of the
        current Pareto set), refine around the best, pick greedily; each pick becomes pending
        for the next, so a batch is jointly useful and has no duplicates."""
        rng = np.random.default_rng(self._seed(history))
        seen = {point_key(h.point) for h in history}
        elite = [h.point for h in _front(history, self.objectives)]
        pool = self._pool(elite, rng, seen)
        chosen: list[Point] = []
        for _ in range(n):
            if not pool:
                break
            scores = self._scores(acqf, pool)
            top = [pool[int(i)] for i in torch.argsort(scores, descending=True)[:4]]
            known = {point_key(p) for p in pool}
            local = [
                p
                for p in _unique(self._mutations(top, rng, seen, self.raw_samples // 2))
                if point_key(p) not in known
            ]
            if local:
                pool, scores = pool + local, torch.cat([scores, self._scores(acqf, local)])
            winner = pool[int(torch.argmax(scores))]
            chosen.append(winner)
            seen.add(point_key(winner))
            pool = [p for p in pool if point_key(p) not in seen]
            pending = acqf.X_pending
            x = self.encoder.encode([winner])
            acqf.set_X_pending(x if pending is None else torch.cat([pending, x]))
        if len(chosen) < n:  # nothing feasible left to score: fill from the seeded design
            extra = [Observation(p, "RUNNING", {}) for p in chosen]
            chosen += self._initial.propose(list(history) + extra, n - len(chosen))
        return chosen

    def _pool(self, elite: list[Point], rng: np.random.Generator, seen: set[Any]) -> list[Point]:
        dims = self.bound.dimensions
        draws = []
        for _ in range(self.raw_samples * 4):
            point = {
                d.name: from_unit(d.spec, float(u))
                for d, u in zip(dims, rng.random(len(dims)), strict=True)
            }
            if self.bound.is_feasible(point) and point_key(point) not in seen:
                draws.append(point)
            if len(draws) >= self.raw_samples:
                break
        return _unique(draws + self._mutations(elite, rng, seen, self.raw_samples))

    def _mutations(
        self, parents: list[Point], rng: np.random.Generator, seen: set[Any], count: int
    ) -> list[Point]:
        """Feasible copies of ``parents`` with 1-3 dimensions moved to a neighbouring value."""
        out: list[Point] = []
        if not parents:
            return out
        dims = self.bound.dimensions
        for _ in range(count * 3):
            child = dict(parents[int(rng.integers(len(parents)))])
            for j in rng.choice(len(dims), size=int(rng.integers(1, 4)), replace=False):
                child[dims[j].name] = _neighbour(dims[j].spec, child[dims[j].name], rng)
            if self.bound.is_feasible(child) and point_key(child) not in seen:
                out.append(child)
            if len(out) >= count:
                break
        return out

    def _scores(self, acqf: Any, pool: list[Point], chunk: int = 256) -> torch.Tensor:
        """Acquisition value of every pool point (q = 1 each)."""
        X = self.encoder.encode(pool).unsqueeze(1)
        with torch.no_grad():
            return torch.cat([acqf(X[i : i + chunk]) for i in range(0, len(X), chunk)])

    def _seed(self, history: Sequence[Observation]) -> int:
        return int(np.random.default_rng([self.seed, len(history)]).integers(2**31))


def _unique(points: list[Point]) -> list[Point]:
    return list({point_key(p): p for p in points}.values())


def _front(history: Sequence[Observation], objectives: Sequence[Objective]) -> list[Observation]:
    from autopeft.report.pareto import pareto_indices

    done = [h for h in history if h.state == "COMPLETE" and h.values]
    rows = [[h.values[o.name] for o in objectives] for h in done]
    return (
        [done[i] for i in pareto_indices(rows, [o.direction for o in objectives])] if rows else []
    )


def _neighbour(spec: Any, value: Any, rng: np.random.Generator) -> Any:
    """An adjacent value: the next or previous one of a finite domain, a nearby float."""
    values = finite_values(spec)
    if values is not None:
        if spec.type == "categorical":
            return values[int(rng.integers(len(values)))]
        i = values.index(value) if value in values else 0
        return values[int(np.clip(i + rng.choice([-1, 1]), 0, len(values) - 1))]
    u = to_unit(spec, value) + rng.normal(0, 0.1)
    return from_unit(spec, float(np.clip(u, 0, 1)))


def _first_outputs(m: int) -> Any:
    from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective

    return IdentityMCMultiOutputObjective(outcomes=list(range(m)))
