"""The method as a searched dimension: a space whose ``method`` is a categorical choice.

Dimensions are the union, in this order: ``method`` (categorical), the shared parameters of
``parameters:`` (one dimension each, used by whichever method is chosen), then every method's own
dimensions namespaced by the method: ``lora.rank.3.v``, ``ia3.active.0.k``, ... A method block
may override a shared parameter (e.g. its own ``learning_rate`` range): that method then uses its
namespaced copy (``prompt_tuning.learning_rate``) and ignores the shared one.

**Inactive dimensions.** A point carries every dimension (so Optuna's model-based samplers and
the BoTorch encoding see one fixed-length vector; see FACTS: they do not model conditional
parameters). Only the chosen method's dimensions matter; :meth:`MethodChoiceSpace.canonical`
sets every other method's dimensions to a fixed value (the first value of a finite domain: the
smallest rung of a ladder or the first categorical choice; the lower bound of a float range) and
canonicalises the active method's own unused dimensions through that method. So two points that
build the same adapter encode identically, and the surrogate sees the inactive columns as
constants (no spurious signal). Budget, counts and compilation dispatch on ``point["method"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.exceptions import SearchSpaceError
from autopeft.methods.base import Method
from autopeft.methods.builtin import get_method
from autopeft.models.layout import BUILTIN_PRESETS, Cell
from autopeft.space.bound import BoundSpace
from autopeft.space.schema import ParamSpec, SearchSpace
from autopeft.space.view import Dimension, Point, SpaceView

if TYPE_CHECKING:
    from torch import nn

    from autopeft.core.compiled import CompiledConfig
    from autopeft.models.layout import ModelLayout

METHOD = "method"


def method_space(space: SearchSpace, method: str) -> SearchSpace:
    """The single-method space of ``method``: the shared parameters plus its own block."""
    return SearchSpace(
        version=space.version,
        name=f"{space.name}.{method}",
        description=space.description,
        method=method,
        max_trainable_params=space.max_trainable_params,
        module_presets=space.module_presets,
        parameters={**space.parameters, **space.methods.get(method, {})},
    )


class MethodChoiceSpace(BoundSpace):
    """A :class:`BoundSpace` whose points choose their method (see the module docstring).

    Attributes:
        subspaces: Method name -> that method's own :class:`BoundSpace` on the same model.
    """

    def __init__(self, space: SearchSpace, layout: ModelLayout, where: str = "") -> None:
        self.space = space
        self.layout = layout
        self._where = where or f"search space {space.name!r}"
        self.presets = {**BUILTIN_PRESETS, **space.module_presets}
        self.subspaces: dict[str, BoundSpace] = {}
        for name in space.method_choices():
            self.subspaces[name] = BoundSpace(
                method_space(space, name), layout, get_method(name), f"{self._where}: {name}"
            )
        self.method = MethodChoice(self)
        self.modules = tuple(
            m for m in layout.modules if any(m in s.modules for s in self.subspaces.values())
        )
        assert isinstance(space.method, ParamSpec)
        dims = [Dimension(METHOD, METHOD, space.method)]
        self._shared = set(space.searched())
        seen: set[str] = set()
        for name, sub in self.subspaces.items():  # shared dimensions, once each
            new = [d for d in sub.dimensions if self._key(name, d) == d.name]
            dims += [d for d in new if d.name not in seen]
            seen.update(d.name for d in new)
        for name, sub in self.subspaces.items():
            dims += [_namespaced(name, d) for d in sub.dimensions if self._key(name, d) != d.name]
        self.dimensions = tuple(dims)

    def _key(self, method: str, dim: Dimension) -> str:
        """The name of a subspace dimension in this space: shared parameters keep their name
        unless the method's own block overrides them; the rest are namespaced."""
        own = self.space.methods.get(method, {})
        if dim.param in self._shared and dim.param not in own:
            return dim.name
        return f"{method}.{dim.name}"

    # -- dispatch ---------------------------------------------------------------------------
    def split(self, point: Point) -> tuple[str, BoundSpace, Point]:
        """The chosen method, its subspace, and the point in that subspace's dimensions."""
        name = point[METHOD]
        sub = self.subspaces.get(name)
        if sub is None:
            raise SearchSpaceError(
                f"method={name!r} is outside {self._where}: expected one of {list(self.subspaces)}"
            )
        inner = {d.name: point[self._key(name, d)] for d in sub.dimensions}
        return name, sub, inner

    def value(self, point: Point, param: str, layer: int | None = None,
              module: str | None = None, default: Any = None) -> Any:  # fmt: skip
        _, sub, inner = self.split(point)
        return sub.value(inner, param, layer, module, default)

    def target_modules(self, point: Point) -> tuple[str, ...]:
        _, sub, inner = self.split(point)
        return sub.target_modules(inner)

    def canonical(self, point: Point) -> Point:
        name, sub, inner = self.split(point)
        inner = sub.canonical(inner)
        out = {d.name: _fixed(d.spec) for d in self.dimensions}
        out[METHOD] = name
        for d in sub.dimensions:
            out[self._key(name, d)] = inner[d.name]
        return out

    def count_params(self, point: Point) -> int:
        _, sub, inner = self.split(point)
        return sub.count_params(inner)

    def is_feasible(self, point: Point) -> bool:
        _, sub, inner = self.split(point)
        if not sub.is_feasible(inner):
            return False
        rule = getattr(self, "constraint", None)  # see BoundSpace.constrained
        return rule is None or rule(point)

    def compile(self, point: Point, task_type: str = "SEQ_CLS") -> CompiledConfig:
        self.check_point(point)
        _, sub, inner = self.split(point)
        return sub.compile(inner, task_type)

    def target_options(self) -> list[tuple[str, ...]]:
        return [o for sub in self.subspaces.values() for o in sub.target_options()]


class MethodChoice(Method):
    """The :class:`Method` face of a :class:`MethodChoiceSpace`: every call dispatches on the
    point's method. Compiled configs name the chosen method, so ``verify`` is never reached."""

    name: ClassVar[str] = "choice"
    parameters: ClassVar[dict[str, bool]] = {}  # never registered: no parameters of its own

    def __init__(self, space: MethodChoiceSpace) -> None:
        self.choice = space

    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        _, sub, inner = self.choice.split(point)
        return sub.method.cell_sizes(sub, inner)

    def count_params(self, bound: SpaceView, point: Point) -> int:
        return self.choice.count_params(point)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> Any:
        name, sub, inner = self.choice.split(point)
        return get_method(name).build_config(sub, inner, task_type)

    def canonical(self, bound: SpaceView, point: Point) -> Point:
        return self.choice.canonical(point)

    def min_params(self, bound: SpaceView) -> int:
        return min(s.method.min_params(s) for s in self.choice.subspaces.values())

    def verify(self, model: nn.Module, compiled: CompiledConfig) -> None:
        get_method(compiled.method).verify(model, compiled)


def _namespaced(method: str, dim: Dimension) -> Dimension:
    return Dimension(
        f"{method}.{dim.name}", f"{method}.{dim.param}", dim.spec, dim.layer, dim.module
    )


def _fixed(spec: ParamSpec) -> Any:
    """The value an inactive dimension takes (see the module docstring)."""
    values = spec.values()
    if values:
        return values[0]
    return int(spec.low) if spec.type == "int" else float(spec.low)  # type: ignore[arg-type]
