"""The ``allocation:`` block of a search-space file: ranks from a profile and a budget.

Instead of one rank dimension per (layer, module) cell, three low-dimensional knobs::

    allocation:
      strategy: [uniform, sensitivity, importance]   # categorical (one value: fixed)
      budget: [20000, 150000]                        # LoRA parameters, int, log scale
      temperature: [0.0, 3.0]                        # float; 0 = uniform ranks
      min_rank: 0          # 0 lets a cell get no adapter
      max_rank: 16
      rank_unit: 2         # ranks are multiples of this
      calibration_batches: 4

Bounds are inclusive. ``budget`` and ``temperature`` take ``[low, high]`` or one value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autopeft.core.validation import StrictModel
from autopeft.space.params import ParamSpec

Strategy = Literal["uniform", "sensitivity", "importance", "adalora"]
DIM_PREFIX = "allocation."


class AllocationSpec(StrictModel):
    """Validated ``allocation:`` block (see the module docstring)."""

    strategy: tuple[Strategy, ...]
    """How the budget is spread over (layer, module) cells: ``uniform``, ``sensitivity``,
    ``importance`` or ``adalora`` (a measured profile); a list is searched as a categorical."""
    budget: tuple[int, int]
    """LoRA parameters to allocate: ``[low, high]`` (searched) or one value."""
    budget_log: bool = True
    """Search ``budget`` on a log scale."""
    temperature: tuple[float, float] = (1.0, 1.0)
    """Sharpness of the allocation: 0 gives uniform ranks, higher concentrates ranks on the top
    cells; ``[low, high]`` (searched) or one value."""
    min_rank: int = Field(default=0, ge=0)
    """Smallest rank of a cell; 0 lets a cell get no adapter."""
    max_rank: int = Field(default=16, ge=1, le=4096)
    """Largest rank of a cell."""
    rank_unit: int = Field(default=1, ge=1)
    """Ranks are multiples of this."""
    calibration_batches: int = Field(default=4, ge=1, le=1000)
    """Batches the profile (sensitivity, importance) is measured on."""

    @field_validator("strategy", mode="before")
    @classmethod
    def _one_strategy(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("budget", "temperature", mode="before")
    @classmethod
    def _one_value(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _check(self) -> AllocationSpec:
        if not self.strategy or len(set(self.strategy)) != len(self.strategy):
            raise ValueError(f"strategy must be unique and non-empty, got {list(self.strategy)}")
        lo, hi = self.budget
        if not 0 < lo <= hi:
            raise ValueError(f"budget needs 0 < low <= high, got [{lo}, {hi}]")
        t_lo, t_hi = self.temperature
        if not 0 <= t_lo <= t_hi:
            raise ValueError(f"temperature needs 0 <= low <= high, got [{t_lo}, {t_hi}]")
        for name in ("min_rank", "max_rank"):
            if getattr(self, name) % self.rank_unit:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be a multiple of rank_unit={self.rank_unit}"
                )
        if self.min_rank > self.max_rank:
            raise ValueError(f"min_rank={self.min_rank} must be <= max_rank={self.max_rank}")
        return self

    def dimensions(self) -> dict[str, ParamSpec]:
        """The searched knobs (those with more than one value), by dimension name."""
        dims: dict[str, ParamSpec] = {}
        if len(self.strategy) > 1:
            dims[DIM_PREFIX + "strategy"] = ParamSpec(type="categorical", choices=self.strategy)
        if self.budget[0] < self.budget[1]:
            dims[DIM_PREFIX + "budget"] = ParamSpec(
                type="int", low=self.budget[0], high=self.budget[1], log=self.budget_log
            )
        if self.temperature[0] < self.temperature[1]:
            dims[DIM_PREFIX + "temperature"] = ParamSpec(
                type="float", low=self.temperature[0], high=self.temperature[1]
            )
        return dims

    def knobs(self, point: dict[str, Any]) -> tuple[str, int, float]:
        """(strategy, budget, temperature) of a point; fixed knobs take their one value."""
        strategy = point.get(DIM_PREFIX + "strategy", self.strategy[0])
        budget = int(point.get(DIM_PREFIX + "budget", self.budget[0]))
        temperature = float(point.get(DIM_PREFIX + "temperature", self.temperature[0]))
        return str(strategy), budget, temperature

    def profile_kinds(self) -> list[str]:
        """The profile kinds the strategies need (``uniform`` needs none)."""
        return [s for s in self.strategy if s != "uniform"]
