"""Objectives: what a study measures and which direction is better."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Direction = Literal["maximize", "minimize"]
DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize")

PARAMS_OBJECTIVE = "trainable_params"


class Pick(StrEnum):
    """The rules that choose one trial from a front (``export --pick``, the API's ``?pick=``;
    :func:`autopeft.results.pick_trial` applies them)."""

    max_accuracy = "max-accuracy"
    min_params = "min-params"
    knee = "knee"


"""The objective counted exactly from the configuration (an integer), not measured."""


@dataclass(frozen=True)
class Objective:
    """One objective of a study: a measured name and the direction that is better."""

    name: str
    direction: Direction

    def best(self, values: Iterable[float]) -> float:
        """The best of ``values`` (at least one) in this objective's direction."""
        return max(values) if self.direction == "maximize" else min(values)
