"""Base of methods whose adapter has one shared size (or none) and a placement: IA3, VeRA, LN
tuning, prompt methods, bottleneck adapters.

Parameters every such method understands: ``active`` (int choices within ``[0, 1]``; may be
``per: layer`` or ``per: [layer, module]`` where the method places per cell; 0 switches the
cell off; default 1) and, if the method has one, its size parameter :attr:`size_param` (an int;
``per: layer`` where :attr:`size_per_layer`; 0 = off).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.core.compiled import CompiledConfig
from autopeft.core.validation import FieldIssue
from autopeft.methods.base import Method, check_trainable_count
from autopeft.models.layout import Cell
from autopeft.space.schema import ParamSpec

if TYPE_CHECKING:
    from torch import nn

    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView


class PlacementMethod(Method):
    """A method placed on cells, each adapted cell costing :meth:`cell_params` parameters."""

    #: Name of the size parameter (None: the method has no size).
    size_param: ClassVar[str | None] = None
    #: Whether ``active`` may be ``per: [layer, module]`` (else only per layer or global).
    placement_per_cell: ClassVar[bool] = True
    #: Attribute of a built peft module that marks an adapted module, and the substring of the
    #: adapter's trainable parameter names (for :meth:`verify`).
    adapter_attr: ClassVar[str]
    param_marker: ClassVar[str]

    def check_space(self, space: SearchSpace) -> None:
        super().check_space(space)
        active = space.parameters.get("active")
        values: tuple[Any, ...]
        if isinstance(active, ParamSpec):
            if active.per == "cell" and not self.placement_per_cell:
                raise FieldIssue(("parameters", "active", "per"), "only per layer here", "cell")
            values = active.values() or ()
        else:
            values = () if active is None else (active,)
        for v in values:
            if v not in (0, 1) or isinstance(v, bool):
                raise FieldIssue(("parameters", "active"), "active values must be 0 or 1", v)
        if self.size_param is not None:
            if self.size_param not in space.parameters:
                raise FieldIssue(
                    ("parameters",), f"method {self.name!r} needs a `{self.size_param}` parameter"
                )
            spec = space.parameters[self.size_param]
            sizes: tuple[Any, ...] | None = (
                spec.values() if isinstance(spec, ParamSpec) else (spec,)
            )
            for v in sizes or ():
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise FieldIssue(
                        ("parameters", self.size_param),
                        f"{self.size_param} values must be integers >= 0",
                        v,
                    )

    # -- placement ----------------------------------------------------------------------------
    def cells(self, bound: SpaceView, point: Point | None) -> list[Cell]:
        """Candidate cells (default: the searched linear cells whose module type is targeted;
        ``point=None``: every candidate of any targeting)."""
        if point is None:
            return list(bound.searched_cells)
        targets = bound.target_modules(point)
        return [(layer, m) for layer, m in bound.searched_cells if m in targets]

    def size(self, bound: SpaceView, point: Point, layer: int, module: str) -> int:
        if self.size_param is None:
            return 1
        return int(bound.value(point, self.size_param, layer, module))

    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        sizes = {}
        for layer, module in self.cells(bound, point):
            if int(bound.value(point, "active", layer, module, default=1)):
                size = self.size(bound, point, layer, module)
                if size > 0:
                    sizes[(layer, module)] = size
        return sizes

    @abstractmethod
    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        """Trainable parameters of one adapted cell of ``size``."""

    def count_params(self, bound: SpaceView, point: Point) -> int:
        return sum(
            self.cell_params(bound, layer, module, size)
            for (layer, module), size in self.cell_sizes(bound, point).items()
        )

    def canonical(self, bound: SpaceView, point: Point) -> Point:
        """Dimensions of cells the point cannot use (untargeted module types) take their
        smallest value."""
        used = set(self.cells(bound, point))
        out = dict(point)
        for dim in bound.dimensions:
            if dim.module is not None and (dim.layer, dim.module) not in used:
                out[dim.name] = min(dim.spec.values() or (out[dim.name],))
        return out

    def min_params(self, bound: SpaceView) -> int:
        """Smallest positive size on the cheapest placement the sharing of ``active`` and the
        size allows: one cell, one layer or every candidate cell."""
        sizes = [1]
        if self.size_param is not None:
            spec = bound.space.parameters[self.size_param]
            values = spec.values() if isinstance(spec, ParamSpec) else (spec,)
            sizes = [int(v) for v in values or () if int(v) > 0]  # type: ignore[arg-type]
            if not sizes:
                bound.fail(("parameters", self.size_param), "allows no size above 0", spec)
        pers = [
            s.per if isinstance(s, ParamSpec) else "study"
            for s in (bound.space.parameters.get("active", 1),)
        ]
        layers: dict[int, list[int]] = {}
        for layer, module in self.cells(bound, None):
            layers.setdefault(layer, []).append(self.cell_params(bound, layer, module, min(sizes)))
        if not layers:
            bound.fail(("parameters", "target_modules"), "places no adapter on this model", None)
        per = pers[0]
        if per == "cell":
            return min(min(c) for c in layers.values())
        if per == "layer" or self._size_per_layer(bound):
            return min(sum(c) for c in layers.values())
        return sum(sum(c) for c in layers.values())

    def _size_per_layer(self, bound: SpaceView) -> bool:
        spec = bound.space.parameters.get(self.size_param or "")
        return isinstance(spec, ParamSpec) and spec.per != "study" and 0 in (spec.values() or ())

    # -- checks on the built model ----------------------------------------------------------
    def built_sizes(self, model: nn.Module) -> dict[str, Any]:
        """Full module name -> the built adapter's size (default: 1 per adapted module)."""
        found = {}
        for name, module in model.named_modules():
            holder = getattr(module, self.adapter_attr, None)
            if holder is not None and "default" in holder:
                found[name.split("base_model.model.", 1)[-1]] = 1
        return found

    def verify(self, model: nn.Module, compiled: CompiledConfig) -> None:
        found = self.built_sizes(model)
        if found != compiled.module_sizes:
            raise RuntimeError(
                f"built {self.name} modules {found} differ from the compiled "
                f"{compiled.module_sizes}"
            )
        check_trainable_count(model, self.param_marker, compiled, self.name)


def names(bound: SpaceView, method: Method, cells: dict[Cell, int]) -> list[str]:
    """Sorted full module names of ``cells``."""
    return sorted(method.site_name(bound, layer, module) for layer, module in cells)
