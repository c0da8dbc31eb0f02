"""A search space bound to a model: concrete dimensions, budget, and compilation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from autopeft.exceptions import SearchSpaceError
from autopeft.models.layout import BUILTIN_PRESETS, FUSED, KNOWN_MODULES, Cell, ModelLayout
from autopeft.space.schema import ParamSpec, SearchSpace
from autopeft.space.view import Dimension, MethodLike, Point

if TYPE_CHECKING:
    from autopeft.core.compiled import CompiledConfig

__all__ = ["BoundSpace", "Dimension", "Point"]


class BoundSpace:
    """A :class:`SearchSpace` on a concrete :class:`ModelLayout` with its method.

    It implements :class:`~autopeft.space.view.SpaceView` (what methods read) and delegates
    counting, canonical forms and compilation to its :class:`~autopeft.space.view.MethodLike`.

    Construction validates everything that needs the model: preset names, module types, sizes
    that fit the modules, and that the budget admits at least one configuration.
    """

    def __init__(
        self, space: SearchSpace, layout: ModelLayout, method: MethodLike, where: str = ""
    ) -> None:
        self.space = space
        self.layout = layout
        self.method = method
        self._where = where or f"search space {space.name!r}"
        self.presets = {**BUILTIN_PRESETS, **space.module_presets}
        #: Allocation profiles by kind (filled by ``autopeft.allocation.ensure_profiles``).
        self.profiles: dict[str, Any] = {}
        #: An extra feasibility rule samplers respect (see :meth:`constrained`), and its words.
        self.constraint: Callable[[Point], bool] | None = None
        self.constraint_note = ""
        self.modules = self._cell_modules()
        self.dimensions = tuple(self._expand())
        method.check_bound(self)
        smallest = method.min_params(self)
        if smallest > space.max_trainable_params:
            self.fail(
                ("max_trainable_params",),
                f"is below the smallest configuration of this model ({smallest:,} parameters)",
                space.max_trainable_params,
            )

    # -- values of a point ------------------------------------------------------------------
    def value(
        self,
        point: Point,
        param: str,
        layer: int | None = None,
        module: str | None = None,
        default: Any = None,
    ) -> Any:
        """The value of ``param`` at a cell, whether the parameter is constant, global,
        per layer or per cell; ``default`` if the space does not have it."""
        spec = self.space.parameters.get(param)
        if spec is None:
            return default
        if not isinstance(spec, ParamSpec):
            return spec
        return point[self.dim_name(param, spec, layer, module)]

    def target_modules(self, point: Point) -> tuple[str, ...]:
        """The module types a point places adapters on."""
        chosen = self.value(point, "target_modules", default="all_linear")
        return self._resolve(chosen)

    @staticmethod
    def dim_name(param: str, spec: ParamSpec, layer: int | None, module: str | None) -> str:
        if spec.per == "cell":
            return f"{param}.{layer}.{module}"
        return f"{param}.{layer}" if spec.per == "layer" else param

    def check_point(self, point: Point) -> None:
        """Raise :class:`SearchSpaceError` unless ``point`` has exactly this space's dimensions,
        each inside its domain."""
        names = {d.name for d in self.dimensions}
        extra, missing = set(point) - names, names - set(point)
        if extra or missing:
            raise SearchSpaceError(
                f"point does not match {self._where}: "
                f"unknown {sorted(extra)}, missing {sorted(missing)}"
            )
        for dim in self.dimensions:
            if not dim.spec.contains(point[dim.name]):
                raise SearchSpaceError(
                    f"{dim.name}={point[dim.name]!r} is outside {self._where}: expected "
                    + dim.spec.describe()
                )

    # -- method delegates ---------------------------------------------------------------
    def canonical(self, point: Point) -> Point:
        """An equivalent point whose unused dimensions take fixed values (see the method)."""
        return self.method.canonical(self, point)

    def count_params(self, point: Point) -> int:
        """Exact trainable adapter parameters of ``point``."""
        return self.method.count_params(self, point)

    def is_feasible(self, point: Point) -> bool:
        """Whether ``point`` places at least one adapter, fits the parameter budget and passes
        the :attr:`constraint` (samplers propose only such points)."""
        if not self._fits(point):
            return False
        return self.constraint is None or self.constraint(point)

    def _fits(self, point: Point) -> bool:
        sizes = self.method.cell_sizes(self, point)
        if not sizes:
            return False
        count_cells = getattr(self.method, "count_cells", None)  # counts from the sizes
        count = count_cells(self, point, sizes) if count_cells else self.count_params(point)
        return count <= self.space.max_trainable_params

    def constrained(self, rule: Callable[[Point], bool], note: str) -> BoundSpace:
        """A view of this space whose :meth:`is_feasible` also asks ``rule`` (e.g. "predicted
        peak memory under the cap"); ``note`` names it in errors. Compilation ignores it."""
        view = copy.copy(self)
        view.constraint, view.constraint_note = rule, note
        return view

    def compile(self, point: Point, task_type: str = "SEQ_CLS") -> CompiledConfig:
        """Compile a point; it must place an adapter and fit the budget."""
        self.check_point(point)
        if not self._fits(point):
            raise SearchSpaceError(
                f"point is infeasible in {self._where} (no adapter or over budget)"
            )
        return self.method.compile(self, point, task_type)

    def target_options(self) -> list[tuple[str, ...]]:
        """The module types of each value ``target_modules`` can take."""
        spec = self.space.parameters.get("target_modules", "all_linear")
        options = spec.choices if isinstance(spec, ParamSpec) else (spec,)
        return [self._resolve(option) for option in options or ()]

    @cached_property
    def searched_cells(self) -> tuple[Cell, ...]:
        """Every (layer, module type) cell a per-cell parameter spans."""
        return tuple((layer, m) for layer in range(self.layout.num_layers) for m in self.modules)

    def fail(self, loc: tuple[str | int, ...], message: str, value: Any) -> NoReturn:
        """Raise a located :class:`SearchSpaceError` for this space's file."""
        key = ".".join(map(str, loc))
        raise SearchSpaceError(f"{self._where}: {key}: {message} (got {value!r})")

    # -- construction ----------------------------------------------------------------------
    def _resolve(self, chosen: Any) -> tuple[str, ...]:
        if isinstance(chosen, str):
            if chosen in self.space.module_presets:
                self._check_known(self.space.module_presets[chosen], ("module_presets", chosen))
            if chosen not in self.presets:
                self.fail(
                    ("parameters", "target_modules"),
                    "unknown module preset; presets: " + ", ".join(sorted(self.presets)),
                    chosen,
                )
            return self._fitting(tuple(self.presets[chosen]), chosen)
        self._check_known(chosen, ("parameters", "target_modules"))
        return self._fitting(tuple(chosen), chosen)

    def _fitting(self, members: tuple[str, ...], chosen: Any) -> tuple[str, ...]:
        """The preset's module types in this model; parts of a fused projection named without
        it (``qv`` on Phi-3's ``qkv_proj``) cannot be adapted apart, so that is an error."""
        fused = self.layout.fused_members(members)
        if fused:
            kind, parts = next(iter(fused.items()))
            self.fail(
                ("parameters", "target_modules"),
                f"this {self.layout.family} model fuses {', '.join(FUSED[kind])} into one "
                f"{kind!r} projection, so {', '.join(parts)} cannot be adapted apart; use a "
                f"preset that names {kind!r} (e.g. "
                + ("attn, qkv" if kind == "qkv" else "mlp")
                + ", all_linear); its module types are "
                + ", ".join(self.layout.modules),
                chosen,
            )
        return self.layout.resolve_preset(members)

    def _check_known(self, modules: Any, loc: tuple[str | int, ...]) -> None:
        """Module types absent from this model but known in another family are dropped (so one
        file serves BERT and Llama); a name known nowhere is a typo."""
        unknown = [m for m in modules if m not in self.layout.modules and m not in KNOWN_MODULES]
        if unknown:
            self.fail(
                loc,
                f"module type {unknown[0]!r} is not in this model; its module types are "
                + ", ".join(self.layout.modules),
                list(modules),
            )

    def _cell_modules(self) -> tuple[str, ...]:
        spec = self.space.parameters.get("target_modules", "all_linear")
        options = spec.choices if isinstance(spec, ParamSpec) else (spec,)
        union: set[str] = set()
        for option, resolved in zip(options or (), self.target_options(), strict=True):
            if not resolved:
                self.fail(
                    ("parameters", "target_modules"),
                    "preset matches no module of this model, whose module types are "
                    + ", ".join(self.layout.modules),
                    option,
                )
            union.update(resolved)
        return tuple(m for m in self.layout.modules if m in union)

    def _expand(self) -> list[Dimension]:
        dims = []
        for param, spec in self.space.searched().items():
            if spec.per == "cell":
                dims += [
                    Dimension(self.dim_name(param, spec, layer, m), param, spec, layer, m)
                    for layer, m in self.searched_cells
                ]
            elif spec.per == "layer":
                dims += [
                    Dimension(self.dim_name(param, spec, layer, None), param, spec, layer)
                    for layer in range(self.layout.num_layers)
                ]
            else:
                dims.append(Dimension(param, param, spec))
        if self.space.allocation is not None:
            dims += [Dimension(n, n, s) for n, s in self.space.allocation.dimensions().items()]
        return dims
