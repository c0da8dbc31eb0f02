"""The GP surrogates of :class:`autopeft.search.samplers.mobo.MoboSampler`, built to be cheap
to fit.

Inputs are the rows of :class:`autopeft.search.samplers.encoding.DesignEncoder` (ladder indices,
unit floats, category indices). :class:`ModelInputs` maps them to what the kernel sees:

* ordered columns (rank ladders, int ranges, floats) scaled to ``[0, 1]``, so one ladder step is
  one distance unit per dimension and an ARD lengthscale learns how much each cell matters;
* each categorical column one-hot encoded (one feature per category). With ARD lengthscales
  this is a principled categorical kernel: two different categories are always at the same
  distance, there is no spurious order, and the lengthscales learn how much the choice matters;
* *extra columns* after the design's, each one more ordered feature read at 1 for rows that
  lack it (candidates, the baseline, pending points): in a multi-fidelity study the fidelity
  (a trial's training steps over the top rung's, in ``(0, 1]``), so the acquisition values every
  candidate at the top rung while the model learns from every rung; in a warm-started study
  the task (0 for the earlier studies' rows of the transfer prior, 1 for the study's own), so
  the ARD lengthscale of that feature learns how far the earlier studies' results carry over
  (:mod:`autopeft.search.samplers.transfer`).

Why not ``MixedSingleTaskGP`` (a Hamming kernel in a sum-and-product of two kernels)? Measured
on the 38-dimension synthetic family with 80 observations (1 thread, a busy 2-core machine): a
batched fit of both measured objectives took 18 s with it, 2.2 s from the priors with the
one-hot ARD kernel, and 0.1-0.2 s warm-started with 10-20 iterations; ``bench/optimizer.py``
gave the same median hypervolume after 40 trials (3 seeds: 0.795 vs 0.796). All measured
objectives share one batched multi-output GP (one L-BFGS run).

Warm starts without hidden state (:class:`WarmGP`): a fit on ``n`` observations starts from the
hyper-parameters of a *checkpoint*, a fit on the first ``c`` observations (``c`` the largest
power of two ``<= n``), and runs a few iterations; hyper-parameters move little as observations
are added. Checkpoints depend only on their data, so a sampler object built for a resumed study
fits exactly what the object that ran the study before fits (the sampler contract).

Shared rows (:class:`SharedRowsGP`): qLogNEHVI scores each candidate ``x`` jointly with the
baseline ``B``, so a pool of ``N`` candidates asks for ``N`` posteriors of ``[B; x]``, and
GPyTorch builds each one's kernel rows against the training data again (``N (b + 1)`` rows,
materialised with the training inputs per batch element). A batch whose rows repeat is instead
predicted once, jointly over its distinct rows (``b + N``), and each element's mean and
covariance are gathered from that joint posterior: a marginal of a joint Gaussian is the
Gaussian of its rows, so the result is the same up to rounding. On the 32-layer space at 300
observations this took the acquisition's share of a proposal from about 4 s to about 1 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.input import InputTransform

from autopeft.search.samplers.encoding import DesignEncoder

#: L-BFGS iterations of a fit from the priors or from the previous checkpoint.
COLD_MAXITER = 100
#: The smallest checkpoint: fits on fewer observations start from the priors (cheap there).
FIRST_CHECKPOINT = 16

#: Hyper-parameters of a fitted GP (covariance, likelihood and mean modules).
State = dict[str, torch.Tensor]
#: ``c`` -> ``(X, Y)`` of the first ``c`` observations.
Prefix = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


class ModelInputs(InputTransform, torch.nn.Module):
    """Encoded rows -> kernel features: ordered columns to ``[0, 1]``, categoricals one-hot."""

    upper: torch.Tensor  # a buffer: the ordered columns' upper bounds

    def __init__(self, encoder: DesignEncoder, extras: int = 0) -> None:
        super().__init__()
        self.d, self.extras = encoder.d, extras
        self.transform_on_train = True
        self.transform_on_eval = True
        self.transform_on_fantasize = True
        cat = sorted(encoder.categorical)
        ordered = [j for j in range(encoder.d) if j not in encoder.categorical]
        self.ordered = ordered
        self.cat = cat
        self.sizes = [len(encoder.categorical[j]) for j in cat]
        upper = encoder.bounds[1, ordered].clamp_min(1.0)
        self.register_buffer("upper", upper)

    @property
    def dim(self) -> int:
        """Number of kernel features."""
        return len(self.ordered) + sum(self.sizes) + self.extras

    def transform(self, X: torch.Tensor) -> torch.Tensor:
        parts = [X[..., self.ordered] / self.upper]
        for j, size in zip(self.cat, self.sizes, strict=True):
            index = X[..., j].round().clamp(0, size - 1).long()
            parts.append(torch.nn.functional.one_hot(index, size).to(X))
        for k in range(self.extras):  # the extra columns, or 1 for rows without them
            column = self.d + k
            parts.append(X[..., column : column + 1] if X.shape[-1] > column else top(X))
        return torch.cat(parts, dim=-1)

    def equals(self, other: Any) -> bool:
        return isinstance(other, ModelInputs) and (
            self.ordered,
            self.cat,
            self.sizes,
            self.extras,
        ) == (other.ordered, other.cat, other.sizes, other.extras)


def top(X: torch.Tensor) -> torch.Tensor:
    """A column of ones for the rows of ``X``: the top fidelity, the study's own task."""
    return torch.ones_like(X[..., :1])


class SharedRowsGP(SingleTaskGP):
    """A ``SingleTaskGP`` whose posterior of a batch with repeated rows is computed once over
    the distinct rows and gathered (see the module docstring); other inputs as usual."""

    #: A batch is gathered when its distinct rows are at most this share of its rows.
    SHARE = 0.5

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.training or len(args) != 1 or kwargs or self.train_inputs is None:
            return super().__call__(*args, **kwargs)
        X = args[0]
        model_dims = len(self.train_inputs[0].shape[:-2])
        extra = X.dim() - 2 - model_dims
        if extra < 1:
            return super().__call__(*args, **kwargs)
        inner = X.shape[extra:-2]  # the model batch dims of X: each 1 or the model's size
        first = X[(slice(None),) * extra + (0,) * model_dims]  # E x q x d
        if inner.numel() > 1 and not torch.equal(
            X, first.view(*first.shape[:-2], *([1] * model_dims), *first.shape[-2:]).expand_as(X)
        ):  # the outputs see different rows
            return super().__call__(*args, **kwargs)
        q, d = first.shape[-2:]
        rows, index = torch.unique(first.reshape(-1, d), dim=0, return_inverse=True)
        if len(rows) > self.SHARE * index.numel():
            return super().__call__(*args, **kwargs)
        joint = super().__call__(rows.expand(*inner, *rows.shape))
        return _gathered(joint, index.view(*first.shape[:-2], q), model_dims)


def _gathered(joint: Any, index: torch.Tensor, model_dims: int) -> Any:
    """The MVNs of ``joint``'s rows picked by ``index`` (``E x q``): batch ``E x model batch``."""
    from gpytorch.distributions import MultivariateNormal
    from linear_operator.operators import DenseLinearOperator

    mean = joint.mean  # model batch x r
    covar = joint.covariance_matrix  # model batch x r x r
    e = index.dim() - 1
    picked_mean = mean[..., index]  # model batch x E x q
    picked_covar = covar[..., index.unsqueeze(-1), index.unsqueeze(-2)]  # model batch x E x q x q
    # move the model batch dims behind the extra ones: E x model batch x ...
    order = [*range(model_dims, model_dims + e), *range(model_dims)]
    picked_mean = picked_mean.permute(*order, picked_mean.dim() - 1)
    picked_covar = picked_covar.permute(*order, picked_covar.dim() - 2, picked_covar.dim() - 1)
    # a linear operator, as GPyTorch's own posterior returns: a plain tensor would be checked
    # by a Cholesky here, which fails on the singular (yet valid) covariance of repeated rows
    covariance = DenseLinearOperator(picked_covar.contiguous())
    return MultivariateNormal(picked_mean.contiguous(), covariance)


class WarmGP:
    """Fits batched multi-output GPs, warm-started from checkpoint fits of the same data's
    prefixes, so that every fit is a function of its data alone.

    Checkpoint ``c`` (a power of two from :data:`FIRST_CHECKPOINT`) is a fit on the first ``c``
    observations, up to :data:`COLD_MAXITER` iterations from checkpoint ``c / 2`` (the first
    from the priors). A fit on ``n`` observations runs ``maxiter`` iterations from the largest
    checkpoint ``<= n`` (from the priors, up to :data:`COLD_MAXITER`, below the first). Fits are
    memoised by a digest of their data and of the chain below them (a proposal made before any
    new trial completes refits nothing). A fresh object thus refits the checkpoints once (a cold
    fit on 16 observations and ``log2(n / 16)`` warm ones), then fits exactly what an object
    that saw every earlier proposal fits.

    Args:
        encoder: The design encoder (defines the input columns).
        maxiter: L-BFGS iterations of a fit warm-started from a checkpoint.
    """

    def __init__(self, encoder: DesignEncoder, maxiter: int) -> None:
        self.encoder = encoder
        self.maxiter = maxiter
        self._fits: dict[str, dict[bytes, State]] = {}  # key -> digest -> the last call's fits

    def fit(self, key: str, X: torch.Tensor, Y: torch.Tensor, prefix: Prefix | None = None) -> Any:
        """A fitted GP of ``Y`` (``n x m``) on ``X`` (``n x d``), in eval mode.

        Args:
            key: Which model (each has its own checkpoints).
            X: ``n x d`` encoded rows, or ``n x (d + k)``: ``k`` extra columns (fidelity,
                task) last.
            Y: ``n x m`` outcomes.
            prefix: ``c`` -> the ``(X, Y)`` that checkpoint ``c`` fits; it must not depend on
                observations after the ``c``-th (default: the first ``c`` rows of ``X, Y``;
                pass one where ``Y`` is scaled by statistics of all ``n`` rows).
        """
        prefix = prefix or (lambda c: (X[:c], Y[:c]))
        memo = self._fits.get(key, {})
        used: dict[bytes, State] = {}  # the fits of this call, kept for the next one
        digest = hashlib.sha256(key.encode())
        state = None
        c = FIRST_CHECKPOINT
        while c <= len(X):
            state = self._fitted(memo, used, digest, *prefix(c), state, COLD_MAXITER)
            c *= 2
        maxiter = self.maxiter if state is not None else COLD_MAXITER
        state = self._fitted(memo, used, digest, X, Y, state, maxiter)
        self._fits[key] = used
        model = self._build(X, Y)
        model.load_state_dict(state, strict=False)
        return model.eval()

    def _fitted(
        self,
        memo: dict[bytes, State],
        used: dict[bytes, State],
        digest: Any,
        X: torch.Tensor,
        Y: torch.Tensor,
        warm: State | None,
        maxiter: int,
    ) -> State:
        """The hyper-parameters of a fit of ``(X, Y)`` from ``warm``, memoised by ``digest``
        updated with ``(X, Y)`` (it covers the fits before this one, hence ``warm``)."""
        for t in (X, Y):
            digest.update(repr(tuple(t.shape)).encode())
            digest.update(t.detach().double().contiguous().numpy().tobytes())
        name = digest.digest()
        if name not in memo:
            memo[name] = self._fit(X, Y, warm, maxiter)
        used[name] = memo[name]
        return memo[name]

    def _build(self, X: torch.Tensor, Y: torch.Tensor) -> Any:
        from botorch.models.transforms.outcome import Standardize

        return SharedRowsGP(
            X,
            Y,
            input_transform=ModelInputs(self.encoder, X.shape[-1] - self.encoder.d),
            outcome_transform=Standardize(Y.shape[-1]),
        )

    def _fit(self, X: torch.Tensor, Y: torch.Tensor, warm: State | None, maxiter: int) -> State:
        """The hyper-parameters of a GP fitted from ``warm`` (or the priors)."""
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = self._build(X, Y)
        if warm is not None:
            model.load_state_dict(warm, strict=False)
        # a fit that stops abnormally is retried from hyper-parameters sampled from the priors:
        # draw them from a fixed seed, so the fit stays a function of its data
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            try:
                fit_gpytorch_mll(
                    ExactMarginalLogLikelihood(model.likelihood, model),
                    optimizer_kwargs={"options": {"maxiter": maxiter}},
                )
            except Exception:  # a failed (warm) fit starts again from the priors
                model = self._build(X, Y)
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return {
            k: v.detach().clone()
            for k, v in model.state_dict().items()
            if k.startswith(("covar_module", "likelihood", "mean_module"))
        }
