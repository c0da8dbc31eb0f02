"""The bottom layer: the vocabulary every other layer shares.

Objectives and their directions, trial states, compiled configurations, Pareto filtering, the
hypervolume frame and rule, and the validation base of every user-facing file. Nothing here
imports another autopeft layer (only :mod:`autopeft.exceptions`), and torch/botorch load only
when a Pareto front or a hypervolume is computed.
"""

from autopeft.core.compiled import CompiledConfig
from autopeft.core.objectives import DIRECTIONS, PARAMS_OBJECTIVE, Direction, Objective
from autopeft.core.states import TrialState

__all__ = [
    "DIRECTIONS",
    "PARAMS_OBJECTIVE",
    "CompiledConfig",
    "Direction",
    "Objective",
    "TrialState",
]
