"""LoRA whose per-cell ranks come from an ``allocation:`` block: a profile and a budget.

The space has no ``rank`` dimensions; its points carry the allocation knobs (strategy, budget,
temperature) and :func:`~autopeft.allocation.space.allocated_ranks` turns them into a rank per
(layer, module) cell on the model, from the profile the study measured. Everything else (alpha,
dropout, rsLoRA, DoRA, the peft config and its verification) is plain LoRA, and compiled configs
name the method ``lora``: an export is an ordinary LoRA adapter.

:func:`autopeft.methods.binding.bind_space` picks this method for a LoRA space with an
``allocation:`` block (registry name ``allocated_lora``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.allocation.space import allocated_ranks, check_allocation, min_allocation_params
from autopeft.core.validation import FieldIssue
from autopeft.methods.base import Method
from autopeft.methods.lora import LoraMethod
from autopeft.methods.registry import register_method
from autopeft.space.allocation import DIM_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import Tensor

    from autopeft.models.layout import Cell
    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView


@register_method("allocated_lora")
class AllocatedLoraMethod(LoraMethod):
    """LoRA with profile-allocated ranks (see the module docstring)."""

    name: ClassVar[str] = "lora"

    def check_space(self, space: SearchSpace) -> None:
        if space.allocation is None:
            raise FieldIssue(
                ("method",),
                "allocated LoRA needs an `allocation:` block; write `method: lora` with one",
                space.method,
            )
        Method.check_space(self, space)
        if "rank" in space.parameters:
            raise FieldIssue(
                ("parameters", "rank"),
                "ranks come from `allocation`; remove `rank`",
                space.parameters["rank"],
            )
        self.check_scaling(space)

    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        return {c: r for c, r in allocated_ranks(bound, point).items() if r > 0}

    def canonical(self, bound: SpaceView, point: Point) -> Point:
        """``uniform`` ignores the temperature, so it takes the range's low end."""
        allocation = bound.space.allocation
        name = DIM_PREFIX + "temperature"
        if allocation is not None and name in point and allocation.knobs(point)[0] == "uniform":
            return {**point, name: allocation.temperature[0]}
        return point

    def params_tensor(self, bound: SpaceView, encoder: Any) -> Callable[[Tensor], Tensor] | None:
        return None  # ranks depend on the profile: count point by point

    def check_bound(self, bound: SpaceView) -> None:
        """Allocations cap ranks per cell themselves, but their budget range must fit."""
        check_allocation(bound)

    def min_params(self, bound: SpaceView) -> int:
        return min_allocation_params(bound)
