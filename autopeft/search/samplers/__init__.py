"""Samplers by name, imported lazily so that only the chosen one's libraries load."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from autopeft.exceptions import UserInputError
from autopeft.search.samplers.base import Observation, Sampler

__all__ = ["SAMPLERS", "Observation", "Sampler", "make_sampler"]

# name -> "module:Class"
SAMPLERS: dict[str, str] = {
    "random": "autopeft.search.samplers.random:RandomSampler",
    "sobol": "autopeft.search.samplers.random:SobolSampler",
    "mobo": "autopeft.search.samplers.mobo:MoboSampler",
    "tpe": "autopeft.search.samplers.optuna_samplers:TpeSampler",
    "nsga2": "autopeft.search.samplers.optuna_samplers:Nsga2Sampler",
    "gp": "autopeft.search.samplers.optuna_samplers:GpSampler",
}


def make_sampler(
    name: str, bound: Any, objectives: Sequence[Any], seed: int, options: dict[str, Any]
) -> Sampler:
    """Build the sampler ``name``; an unknown name or option is a :class:`UserInputError`."""
    if name not in SAMPLERS:
        raise UserInputError(f"unknown sampler {name!r}; samplers: {', '.join(sorted(SAMPLERS))}")
    module, cls = SAMPLERS[name].split(":")
    sampler_cls = getattr(importlib.import_module(module), cls)
    try:
        return sampler_cls(bound, objectives, seed, **options)
    except TypeError as exc:
        raise UserInputError(f"sampler {name!r}: {exc}") from None
