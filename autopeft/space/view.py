"""The two faces of a bound search space, as protocols: what a method reads of the space, and
what the space asks of its method.

Methods (``autopeft.methods``) sit above this layer and compile points; they see a space only
through :class:`SpaceView`, never through :class:`~autopeft.space.bound.BoundSpace` itself.
The bound space holds its method through :class:`MethodLike`, so this layer never imports the
method registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

if TYPE_CHECKING:
    from torch import Tensor

    from autopeft.core.compiled import CompiledConfig
    from autopeft.models.layout import Cell, ModelLayout
    from autopeft.space.schema import ParamSpec, SearchSpace

Point = dict[str, Any]
"""A point of a space: dimension name -> value."""


@dataclass(frozen=True)
class Dimension:
    """One searched coordinate, e.g. ``rank.3.v`` (param ``rank``, layer 3, module ``v``)."""

    name: str
    param: str
    spec: ParamSpec
    layer: int | None = None
    module: str | None = None


class SpaceView(Protocol):
    """What a method reads of a search space bound to a model.

    Attributes:
        space: The validated search-space file.
        layout: The model's layer stack and linear leaves.
        profiles: Allocation profiles by kind (for ``allocation:`` spaces).
        dimensions: Every searched coordinate, in order.
    """

    space: SearchSpace
    layout: ModelLayout
    profiles: dict[str, Any]
    dimensions: tuple[Dimension, ...]

    @property
    def searched_cells(self) -> tuple[Cell, ...]:
        """Every (layer, module type) cell a per-cell parameter spans."""

    def value(
        self,
        point: Point,
        param: str,
        layer: int | None = None,
        module: str | None = None,
        default: Any = None,
    ) -> Any:
        """The value of ``param`` at a cell (constant, global, per layer or per cell)."""

    def target_modules(self, point: Point) -> tuple[str, ...]:
        """The module types ``point`` places adapters on."""

    def target_options(self) -> list[tuple[str, ...]]:
        """The module types of each value ``target_modules`` can take."""

    def dim_name(self, param: str, spec: ParamSpec, layer: int | None, module: str | None) -> str:
        """The dimension name of ``param`` at a cell (``rank.3.v``)."""

    def fail(self, loc: tuple[str | int, ...], message: str, value: Any) -> NoReturn:
        """Raise a located :class:`~autopeft.exceptions.SearchSpaceError`."""


class MethodLike(Protocol):
    """What a bound space asks of its method (see ``autopeft.methods.base.Method``)."""

    @property
    def name(self) -> str: ...

    def check_bound(self, bound: Any) -> None: ...

    def min_params(self, bound: Any) -> int: ...

    def cell_sizes(self, bound: Any, point: Point) -> dict[Cell, int]: ...

    def count_params(self, bound: Any, point: Point) -> int: ...

    def canonical(self, bound: Any, point: Point) -> Point: ...

    def compile(self, bound: Any, point: Point, task_type: str) -> CompiledConfig: ...

    def params_tensor(self, bound: Any, encoder: Any) -> Callable[[Tensor], Tensor] | None: ...
