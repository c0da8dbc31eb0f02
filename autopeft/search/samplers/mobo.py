"""``mobo``: multi-objective Bayesian optimisation with BoTorch (qLogNEHVI).

Compared with the AutoPEFT reference (one SAAS GP per objective fitted by NUTS, qNEHVI):

* **Known objectives are not modelled.** ``trainable_params`` is exact before training: the
  acquisition's objective computes it from each candidate row (the method's vectorised
  count), so only measured objectives (accuracy, memory, ...) get a GP.
* **Mixed inputs.** Rank ladders are ordered discrete dimensions, categorical choices are
  one-hot features of an ARD kernel (:mod:`autopeft.search.samplers.surrogate` says why not
  ``MixedSingleTaskGP``), floats are unit-scaled; dimensions a point does not use are
  canonicalised. The acquisition is maximised by discrete search over a pool of seeded
  feasible draws, mutations of the current Pareto set and, with ``structured: true``,
  structured candidates (uniform ranks, layer ranges, rank patterns of the study's stored
  sensitivity / importance profiles, coarse moves of observed points:
  :mod:`autopeft.search.samplers.structured`), refined by a few rounds of local
  search around the best candidates, with moves to neighbouring values and jumps anywhere in
  a dimension's domain (BoTorch's ``optimize_acqf_mixed_alternating`` took 60-130 s per
  proposal over 38 discrete dimensions here).
* **Failures are data.** Trials that failed because of their configuration (out of memory,
  divergence) train a feasibility GP used as an acquisition constraint, so later proposals
  avoid them; over-budget candidates are never returned.
* **Batches with pending trials.** Running trials are ``X_pending`` (fantasised), and ``n``
  points are chosen jointly (sequential greedy), so parallel workers get distinct points.
* **Multi-fidelity.** In a study with rungs of training length, every rung's results train
  the GPs, with the fidelity as one more input (:mod:`autopeft.search.samplers.surrogate`); the
  acquisition reads candidates, the baseline and pending trials at the top fidelity. The
  driver leaves out the results of rungs measured to rank configurations unlike the top rung
  (:meth:`autopeft.run.mirror.TrialMirror.history`).
* **Transfer from earlier studies.** A warm-started study's GPs also learn from the earlier
  studies' trials, with the task as one more input (:mod:`autopeft.search.samplers.transfer`).
* **Cheap proposals.** All measured objectives share one batched GP; fits warm-start with a
  small iteration cap from a checkpoint fit on a prefix of the history (a function of the
  history, so a resumed study proposes what an uninterrupted one would: see
  :class:`autopeft.search.samplers.surrogate.WarmGP`); the baseline is pruned with
  few samples; the posterior over the baseline is cached (``cache_root``) and each pool batch's
  joint posteriors with the baseline are computed once over their distinct rows
  (:class:`autopeft.search.samplers.surrogate.SharedRowsGP`); torch runs single-threaded here
  (faster for these sizes).

Objectives are scaled to ``[0, 1]`` (1 = best) before modelling, each by its range over the
complete trials with a 10 % margin (``trainable_params`` too, so loosening the budget beyond
reach or changing an objective's units proposes the same points); the reference point is the
origin of that scale. One exception: while the budget binds (some seeded random points of the
space exceed it) the worst edge of ``trainable_params`` is the budget itself. The rule, and
why, is in :mod:`autopeft.core.hypervolume`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from botorch.acquisition.multi_objective.objective import MCMultiOutputObjective

from autopeft.core.hypervolume import Frame
from autopeft.core.objectives import Objective
from autopeft.core.pareto import pareto_indices
from autopeft.core.states import TrialState
from autopeft.search.samplers.base import Observation, Sampler, point_key
from autopeft.search.samplers.encoding import DesignEncoder
from autopeft.search.samplers.random import SobolSampler
from autopeft.search.samplers.screen import screen_scores
from autopeft.search.samplers.structured import StructuredDesign
from autopeft.search.samplers.surrogate import WarmGP
from autopeft.search.samplers.transfer import training_data, usable
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.encode import finite_values, from_unit, to_unit

KNOWN = "trainable_params"
#: Joint posterior samples used to drop observations that are never Pareto-optimal.
PRUNE_SAMPLES = 256
#: Random points drawn once per sampler to tell whether the budget binds (see ``_binding_budget``).
BUDGET_PROBES = 512
#: Random pool draws that each carry a few uniform / layer-range configurations.
STRUCTURED_BASES = 16
#: Observed points besides the Pareto set whose coarse moves join the pool.
STRUCTURED_PARENTS = 4


class MoboSampler(Sampler):
    """BoTorch qLogNEHVI sampler; the default for studies.

    Args:
        n_initial: Sobol points before the first model-based proposal (default 10).
        raw_samples: Random candidates scored to start the acquisition optimisation.
        num_restarts: Best-scored candidates whose neighbourhoods are searched before a pick.
        mc_samples: Quasi-MC samples of the acquisition function.
        score_top: If > 0, only the best ``score_top`` candidates by the cheap screen
            (:mod:`autopeft.search.samplers.screen`) are scored by qLogNEHVI (measured with 64, 16
            MC samples and 10 fit iterations: 1.7 s instead of 1.9 s at 100 observations, but
            median HV after 40 trials 0.759 vs 0.795 over 3 seeds); 0 (default) scores all.
        fit_maxiter: L-BFGS iterations of a GP fit warm-started from the checkpoint fit on
            the largest power-of-two prefix of the observations (fits on fewer than 16
            observations, and checkpoint fits, run up to 100).
        local_rounds: Rounds of local search after the pool is scored: each mutates the
            ``num_restarts`` best candidates so far, and the search stops early when a round
            finds nothing better.
        jump: Probability that a mutated dimension takes a uniformly drawn value of its whole
            domain instead of a neighbouring one (a rank cell can go from 0 to the top of its
            ladder in one move).
        structured: Structured configurations in the initial design and the candidate pool
            (:mod:`autopeft.search.samplers.structured`): every other point of the initial
            design is a uniform rank per module set, a contiguous layer range or (when the
            study has stored profiles of its model and data: :meth:`set_profiles`, called by
            the driver) a rank pattern that follows a profile, and the pool and the local
            search add such configurations and coarse moves of the observed points (ranks x2
            / x1/2, a module type dropped or added, layers shifted). Off by
            default: on the synthetic classes it cost hypervolume on 10 of 16 (paired medians
            over seeds 0-1, or seed 0; worst two_obj -0.055, ladder3 -0.040) and gained on
            deep32 (+0.177, one seed) and ladder8 (+0.029): ``bench/results/
            optimizer_structured.txt``, ``bench/optimizer.py --samplers mobo,mobo-structured``.
        prior_start: With a usable transfer prior (a warm-started study), model-based
            proposals start after this many complete trials of the study's own instead of
            ``n_initial`` (capped at ``n_initial``); it is also the length of the warm-start
            design (:func:`autopeft.search.warm_start.design_size`).
    """

    multi_fidelity = True

    def __init__(
        self,
        bound: BoundSpace,
        objectives: Sequence[Objective],
        seed: int,
        *,
        n_initial: int = 10,
        raw_samples: int = 256,
        num_restarts: int = 4,
        mc_samples: int = 8,
        fit_maxiter: int = 10,
        score_top: int = 0,
        local_rounds: int = 3,
        jump: float = 0.5,
        prior_start: int = 4,
        structured: bool = False,
    ) -> None:
        super().__init__(bound, objectives, seed)
        if n_initial < 2:
            raise TypeError("n_initial must be >= 2")
        self.n_initial = n_initial
        self.raw_samples, self.num_restarts = raw_samples, num_restarts
        self.mc_samples, self.fit_maxiter = mc_samples, fit_maxiter
        self.score_top = score_top
        if local_rounds < 0:
            raise TypeError("local_rounds must be >= 0")
        if not 0.0 <= jump <= 1.0:
            raise TypeError("jump must be a probability, in [0, 1]")
        if prior_start < 1:
            raise TypeError("prior_start must be >= 1")
        self.local_rounds, self.jump = local_rounds, jump
        self.prior_start = min(prior_start, n_initial)
        self._feasibility: int | None = None
        self._budget_probe: int | None = None
        self.last_acquisition: Any = None
        self.encoder = DesignEncoder(bound)
        self._initial = SobolSampler(
            bound, objectives, seed, structured=n_initial if structured else 0
        )
        self._structured = StructuredDesign(bound, seed) if structured else None
        self._gp = WarmGP(self.encoder, fit_maxiter)
        self._counts: dict[tuple[float, ...], int] = {}
        self._prior: list[list[Observation]] = []
        #: Complete trials before the first model-based proposal: ``n_initial``, or
        #: ``prior_start`` once :meth:`set_prior` gave usable rows (the earlier studies' trials
        #: already shape the surrogate, so it needs fewer of the study's own).
        self._start = n_initial

    def set_profiles(self, profiles: Mapping[str, Mapping[tuple[int, str], float]]) -> None:
        if self._structured is not None:
            self._structured = StructuredDesign(self.bound, self.seed, profiles)
            self._initial.set_profiles(profiles)

    def set_prior(self, groups: Sequence[Sequence[Observation]]) -> None:
        """A transfer prior on the surrogate (:mod:`autopeft.search.samplers.transfer`, which keeps
        the usable rows)."""
        self._prior = [list(g) for g in groups]
        measured = [o for o in self.objectives if o.name != KNOWN]
        if any(usable(group, measured) for group in self._prior):
            self._start = self.prior_start or self.n_initial
        else:
            self._start = self.n_initial

    def propose(self, history: Sequence[Observation], n: int) -> list[Point]:
        complete = [h for h in history if h.state == TrialState.COMPLETE and h.values]
        if len(complete) < self._start:
            return self._initial.propose(history, n)
        from botorch.exceptions.warnings import InputDataWarning
        from linear_operator.utils.warnings import NumericalWarning

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with warnings.catch_warnings():
                # benign: Cholesky jitter on near-duplicate points, constant outcomes in a
                # small history, and linear_operator's internal use of deprecated sparse APIs
                warnings.simplefilter("ignore", NumericalWarning)
                warnings.simplefilter("ignore", InputDataWarning)
                warnings.filterwarnings("ignore", category=UserWarning, module="linear_operator")
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
        from botorch.acquisition.multi_objective.utils import (
            prune_inferior_points_multi_objective,
        )
        from botorch.sampling.normal import SobolQMCNormalSampler

        _skip_kernel_compile()
        measured = [o for o in self.objectives if o.name != KNOWN]
        frame = Frame.from_observations(self.objectives, complete)
        data = training_data(self.encoder, self.objectives, measured, complete, self._prior)
        # one batched GP for every measured objective; a checkpoint on the first c rows scales
        # the study's outcomes among them by those rows' range (a function of them only)
        model = self._gp.fit("objectives", data.X, data.Y, data.prefix)
        baseline_X = data.baseline
        constraints = []
        self._feasibility = None
        if any(h.state == TrialState.FAIL and h.infeasible for h in history):
            from botorch.models import ModelListGP

            model = ModelListGP(model, self._feasibility_model(history))
            feasibility = len(measured)
            self._feasibility = feasibility
            constraints.append(lambda Z: Z[..., feasibility])  # <= 0 is feasible
        pending = [h.point for h in history if h.state == TrialState.RUNNING]
        objective = _Objectives(
            len(measured),
            self._params_scaled(frame) if len(measured) < len(self.objectives) else None,
        )
        # every objective is scaled to [0, 1] (1 = best) with the reference point at 0
        ref_point = torch.zeros(len(self.objectives), dtype=torch.double)
        with torch.random.fork_rng():  # pruning draws samples: keep it seeded
            torch.manual_seed(self._seed(history))
            baseline = prune_inferior_points_multi_objective(
                model,
                baseline_X,
                ref_point,
                objective,
                constraints or None,
                num_samples=PRUNE_SAMPLES,
            )
        acqf = qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=ref_point,
            X_baseline=baseline,
            sampler=SobolQMCNormalSampler(torch.Size([self.mc_samples]), seed=self._seed(history)),
            objective=objective,
            constraints=constraints or None,
            X_pending=self.encoder.encode(pending) if pending else None,
            prune_baseline=False,
            cache_root=True,
        )
        self.last_acquisition = acqf  # for inspection and tests
        return self._optimize(acqf, history, n)

    def _params_scaled(self, frame: Frame) -> Any:
        """``trainable_params`` is known exactly: computed from the rows, on ``frame``'s scale
        (the observed range with its margin, as for the measured objectives), its worst edge
        widened to the budget when the budget binds (:meth:`_binding_budget`)."""
        lo, hi = frame.bounds[KNOWN]
        budget = self._binding_budget()
        if budget is not None:
            hi = max(hi, float(budget))
        count = self.bound.method.params_tensor(self.bound, self.encoder) or self._count_rows

        def scaled_params(x: torch.Tensor) -> torch.Tensor:
            return 1.0 - (count(x).to(x.dtype) - lo) / (hi - lo)

        return scaled_params

    def _binding_budget(self) -> int | None:
        """The budget if it binds (some of :data:`BUDGET_PROBES` seeded random points of the
        space are over it), else ``None``.

        Under a binding budget every size up to the budget is of interest, so the reference
        point sits at the budget and candidates larger than anything observed so far can still
        add hypervolume; the observed range alone (the rule for a budget that does not bind)
        cost 0.05 HV on the synthetic ``tight`` class. The probe draws do not depend on the
        budget, so a budget loosened beyond every probe gives the same proposals."""
        if self._budget_probe is None:
            rng = np.random.default_rng([self.seed, 7919])
            dims = self.bound.dimensions
            largest = 0
            for _ in range(BUDGET_PROBES):
                point = {
                    d.name: from_unit(d.spec, float(u))
                    for d, u in zip(dims, rng.random(len(dims)), strict=True)
                }
                if self.bound.method.cell_sizes(self.bound, point):
                    largest = max(largest, self.bound.count_params(point))
            self._budget_probe = largest
        budget = self.bound.space.max_trainable_params
        return budget if self._budget_probe > budget else None

    def _count_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Exact counts of encoded rows, one decode per distinct row (memoised: the
        acquisition re-counts the baseline rows with every candidate batch)."""
        counts = []
        for row in x.reshape(-1, x.shape[-1]).tolist():
            key = tuple(row)
            if key not in self._counts:
                point = self.encoder.decode(torch.tensor(row, dtype=torch.double))
                self._counts[key] = self.bound.count_params(point)
            counts.append(self._counts[key])
        return torch.tensor(counts, dtype=torch.double).reshape(x.shape[:-1])

    def _feasibility_model(self, history: Sequence[Observation]) -> Any:
        """A GP of -1 (complete) / +1 (failed because of the configuration), rows in history
        order (so that its checkpoints, fits on prefixes, stay put as trials are added)."""
        rows = [
            h
            for h in history
            if (h.state == TrialState.COMPLETE and h.values)
            or (h.state == TrialState.FAIL and h.infeasible)
        ]
        X = self.encoder.encode([h.point for h in rows])
        y = [[1.0 if h.state == TrialState.FAIL else -1.0] for h in rows]
        return self._gp.fit("feasibility", X, torch.tensor(y, dtype=torch.double))

    # -- acquisition optimisation ---------------------------------------------------------
    def _optimize(self, acqf: Any, history: Sequence[Observation], n: int) -> list[Point]:
        """Score a pool of feasible candidates (seeded random draws plus mutations of the
        current Pareto set), refine around the best for up to ``local_rounds`` rounds, pick
        greedily; each pick becomes pending for the next, so a batch is jointly useful and has
        no duplicates."""
        rng = np.random.default_rng(self._seed(history))
        # points are compared canonically: two points that build the same adapter (they differ
        # only in dimensions the adapter does not use) are one point
        seen = {point_key(self.bound.canonical(h.point)) for h in history}
        elite = [h.point for h in _front(history, self.objectives)]
        pool = self._pool(elite, rng, seen, history)
        chosen: list[Point] = []
        for _ in range(n):
            if not pool:
                break
            scores = self._scores(acqf, pool)
            known = {point_key(p) for p in pool}
            for _ in range(self.local_rounds):
                best = float(scores.max())
                order = torch.argsort(scores, descending=True)[: self.num_restarts]
                top = [pool[int(i)] for i in order]
                moved = self._mutations(top, rng, seen, self.raw_samples // 2)
                if self._structured is not None:
                    moved += [
                        p
                        for parent in top
                        for p in self._structured.moves(parent)
                        if point_key(p) not in seen
                    ]
                local = [p for p in _unique(moved) if point_key(p) not in known]
                if not local:
                    break
                known.update(point_key(p) for p in local)
                local_scores = self._scores(acqf, local, self.score_top // 2)
                pool, scores = pool + local, torch.cat([scores, local_scores])
                if float(local_scores.max()) <= best:
                    break
            winner = pool[int(torch.argmax(scores))]
            chosen.append(winner)
            seen.add(point_key(winner))
            pool = [p for p in pool if point_key(p) not in seen]
            if len(chosen) == n:
                break
            pending = acqf.X_pending
            x = self.encoder.encode([winner])
            acqf.set_X_pending(x if pending is None else torch.cat([pending, x]))
        if len(chosen) < n:  # nothing feasible left to score: fill from the seeded design
            extra = [Observation(p, TrialState.RUNNING, {}) for p in chosen]
            chosen += self._initial.propose(list(history) + extra, n - len(chosen))
        return chosen

    def _pool(
        self,
        elite: list[Point],
        rng: np.random.Generator,
        seen: set[Any],
        history: Sequence[Observation],
    ) -> list[Point]:
        dims = self.bound.dimensions
        draws = []
        for _ in range(self.raw_samples * 4):
            point = {
                d.name: from_unit(d.spec, float(u))
                for d, u in zip(dims, rng.random(len(dims)), strict=True)
            }
            if self.bound.is_feasible(point):
                point = self.bound.canonical(point)
                if point_key(point) not in seen:
                    draws.append(point)
            if len(draws) >= self.raw_samples:
                break
        pool = draws + self._mutations(elite, rng, seen, self.raw_samples)
        if self._structured is not None:
            pool += [
                p
                for p in self._structured_pool(draws, elite, history, rng)
                if point_key(p) not in seen
            ]
        return _unique(pool)

    def _structured_pool(
        self,
        draws: list[Point],
        elite: list[Point],
        history: Sequence[Observation],
        rng: np.random.Generator,
    ) -> list[Point]:
        """Structured candidates: uniform and layer-range configurations on the first
        :data:`STRUCTURED_BASES` random draws (their learning rates etc.), and the coarse moves
        of the Pareto set and of :data:`STRUCTURED_PARENTS` other observed points."""
        assert self._structured is not None
        others = [
            h.point for h in history if h.state == TrialState.COMPLETE and h.point not in elite
        ]
        if others:
            picks = rng.choice(
                len(others), size=min(len(others), STRUCTURED_PARENTS), replace=False
            )
            others = [others[int(i)] for i in picks]
        return self._structured.pool(draws[:STRUCTURED_BASES], elite + others, rng)

    def _mutations(
        self, parents: list[Point], rng: np.random.Generator, seen: set[Any], count: int
    ) -> list[Point]:
        """Feasible copies of ``parents`` with 1-3 dimensions moved: to a neighbouring value,
        or with probability ``jump`` to a value drawn from the whole domain."""
        out: list[Point] = []
        if not parents:
            return out
        dims = self.bound.dimensions
        for _ in range(count * 3):
            child = dict(parents[int(rng.integers(len(parents)))])
            for j in rng.choice(len(dims), size=int(rng.integers(1, 4)), replace=False):
                spec = dims[j].spec
                if self.jump and rng.random() < self.jump:
                    child[dims[j].name] = from_unit(spec, float(rng.random()))
                else:
                    child[dims[j].name] = _neighbour(spec, child[dims[j].name], rng)
            if self.bound.is_feasible(child):
                child = self.bound.canonical(child)
                if point_key(child) not in seen:
                    out.append(child)
            if len(out) >= count:
                break
        return out

    def _scores(self, acqf: Any, pool: list[Point], top: int | None = None) -> torch.Tensor:
        """Acquisition value of the pool points (q = 1 each): the ``top`` (default
        ``score_top``) best by :func:`screen_scores` get qLogNEHVI, the others ``-inf``
        (``score_top: 0`` scores every point with qLogNEHVI)."""
        X = self.encoder.encode(pool)
        k = self.score_top if top is None else top
        if not k or len(pool) <= k:
            return _acquisition(acqf, X)
        keep = torch.argsort(screen_scores(acqf, X, self._feasibility), descending=True)[:k]
        scores = torch.full((len(pool),), -math.inf, dtype=torch.double)
        scores[keep] = _acquisition(acqf, X[keep]).to(scores)
        return scores

    def _seed(self, history: Sequence[Observation]) -> int:
        return int(np.random.default_rng([self.seed, len(history)]).integers(2**31))


def _skip_kernel_compile() -> None:
    """Keep botorch from JIT-compiling its fused qLogEHVI C++ kernel (botorch >= 0.17).

    botorch builds it with a C++ compiler and ninja on the first acquisition of every new
    environment (a new venv path means a rebuild): about 40 s on a 2-core machine, a warning
    where no compiler exists, and a ``-march=native`` binary in a shared home directory. The
    pure-PyTorch path it falls back to gives the same proposals at the same speed here
    (1.0-1.1 s vs 0.9-1.1 s per warm proposal at 100 observations, 32 layers), so it is
    marked as already tried; a kernel that is already loaded is kept.
    """
    from botorch.acquisition.multi_objective import logei

    if getattr(logei, "_C", None) is None and hasattr(logei, "_load_attempted"):
        logei._load_attempted = True


def _acquisition(acqf: Any, X: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    X = X.unsqueeze(1)
    with torch.no_grad():
        return torch.cat([acqf(X[i : i + chunk]) for i in range(0, len(X), chunk)])


def _unique(points: list[Point]) -> list[Point]:
    return list({point_key(p): p for p in points}.values())


def _front(history: Sequence[Observation], objectives: Sequence[Objective]) -> list[Observation]:
    """The Pareto set of complete observations; of a point observed at several fidelities
    (multi-fidelity), its highest one only."""
    done = [h for h in history if h.state == TrialState.COMPLETE and h.values]
    if any(h.fidelity < 1 for h in done):
        best: dict[Any, Observation] = {}
        for h in done:
            key = point_key(h.point)
            if key not in best or h.fidelity > best[key].fidelity:
                best[key] = h
        done = list(best.values())
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


class _Objectives(MCMultiOutputObjective):
    """Model samples -> objective samples: the measured outputs, then ``trainable_params``
    computed exactly from the candidates (known objectives are not modelled)."""

    def __init__(self, measured: int, params: Any) -> None:
        super().__init__()
        self.measured, self.params = measured, params

    def forward(self, samples: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        out = samples[..., : self.measured]
        if self.params is None:
            return out
        assert X is not None
        known = self.params(X).unsqueeze(-1).expand(*out.shape[:-1], 1)
        return torch.cat([out, known], dim=-1)
