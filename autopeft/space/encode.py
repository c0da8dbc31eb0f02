"""Map parameter values to and from the unit interval, and to Optuna distributions.

Finite domains (``choices``, int ranges) use bin centres: value ``k`` of ``n`` encodes to
``(k + 0.5) / n`` and ``u`` decodes to ``floor(u * n)``, an exact inverse whose uniform draws
are uniform over the values. Floats map linearly (or in log space when ``log: true``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft.space.schema import ParamSpec, Scalar

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution


def to_unit(spec: ParamSpec, value: Any) -> float:
    """Encode a value of ``spec`` into [0, 1]."""
    finite = finite_values(spec)
    if finite is not None:
        index = finite.index(value) if value in finite else _nearest(finite, value)
        return (index + 0.5) / len(finite)
    lo, hi = _scaled(spec, spec.low), _scaled(spec, spec.high)
    return 0.5 if hi == lo else (_scaled(spec, value) - lo) / (hi - lo)


def from_unit(spec: ParamSpec, u: float) -> Scalar:
    """Decode ``u`` in [0, 1] into a value of ``spec`` (clamped into the domain)."""
    u = min(max(float(u), 0.0), 1.0)
    finite = finite_values(spec)
    if finite is not None:
        return finite[min(len(finite) - 1, math.floor(u * len(finite)))]
    lo, hi = _scaled(spec, spec.low), _scaled(spec, spec.high)
    x = lo + u * (hi - lo)
    value = min(max(math.exp(x) if spec.log else x, float(spec.low)), float(spec.high))  # type: ignore[arg-type]
    return round(value) if spec.type == "int" else value


def sample(spec: ParamSpec, rng: np.random.Generator) -> Scalar:
    """One uniform draw (log-uniform for ``log: true``)."""
    return from_unit(spec, float(rng.random()))


def distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution that stores values of ``spec``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if spec.choices is not None:
        return CategoricalDistribution(list(spec.choices))
    assert spec.low is not None and spec.high is not None
    if spec.type == "int":
        return IntDistribution(int(spec.low), int(spec.high), log=spec.log, step=spec.step or 1)
    return FloatDistribution(float(spec.low), float(spec.high), log=spec.log)


def finite_values(spec: ParamSpec) -> list[Scalar] | None:
    """The values of a finite domain (choices, or a linear int range) in order; None for
    floats and log-scaled int ranges, which are handled on the unit scale."""
    if spec.choices is not None:
        return list(spec.choices)
    if spec.type == "int" and not spec.log:
        values = spec.values()
        return list(values) if values is not None else None
    return None


def _nearest(values: list[Scalar], value: Any) -> int:
    if isinstance(value, int | float) and all(isinstance(v, int | float) for v in values):
        return int(np.argmin([abs(float(v) - float(value)) for v in values]))  # type: ignore[arg-type,unused-ignore]
    raise ValueError(f"{value!r} is not one of {values}")


def _scaled(spec: ParamSpec, value: Any) -> float:
    return math.log(float(value)) if spec.log else float(value)
