"""Objectives: what a study measures and which direction is better."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]
DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize")

PARAMS_OBJECTIVE = "trainable_params"
"""The objective counted exactly from the configuration (an integer), not measured."""


@dataclass(frozen=True)
class Objective:
    """One objective of a study: a measured name and the direction that is better."""

    name: str
    direction: Direction
