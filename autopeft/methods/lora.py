"""LoRA (Hu et al., 2021, https://arxiv.org/abs/2106.09685) with a rank per (layer, module) cell.

Parameters: ``rank`` (int >= 0, may be ``per: layer`` or ``per: [layer, module]``; 0 = no
adapter in that cell), ``alpha`` (the absolute ``lora_alpha``) or ``alpha_ratio`` (``lora_alpha =
ratio * rank`` per cell; default 2), ``dropout`` (in [0, 1)), ``use_rslora`` (scaling
``alpha / sqrt(r)``, Kalajdzievski 2023; no extra parameters) and ``use_dora`` (DoRA, Liu et al.
2024, https://arxiv.org/abs/2402.09353: adds one trainable magnitude vector of ``out_features``
per adapted module), both booleans, constant or ``{type: categorical, choices: [false, true]}``,
plus the common ``target_modules`` and ``learning_rate``.

Compilation follows the verified peft rules: only cells with rank > 0 go in ``target_modules``,
as exact full module names; ``r`` is the most common rank and the other cells are listed in
``rank_pattern``/``alpha_pattern`` under their exact full names, which never overlap.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.core.compiled import CompiledConfig
from autopeft.core.validation import FieldIssue
from autopeft.methods.base import Method, check_trainable_count
from autopeft.methods.registry import register_method
from autopeft.models.layout import Cell
from autopeft.space.bound import BoundSpace
from autopeft.space.schema import ParamSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from peft import PeftConfig
    from torch import Tensor, nn

    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView

DEFAULT_ALPHA_RATIO = 2.0


@register_method("lora")
class LoraMethod(Method):
    """Low-rank adapters ``W + (alpha / r) * B @ A`` on linear leaves."""

    parameters: ClassVar[dict[str, bool]] = {
        "rank": True,
        "alpha": False,
        "alpha_ratio": False,
        "dropout": False,
        "use_rslora": False,
        "use_dora": False,
    }
    #: Attribute of a peft tuner layer holding the adapter's first factor, and the substring of
    #: its trainable parameter names (for :meth:`verify`).
    adapter_attr: ClassVar[str] = "lora_A"
    param_marker: ClassVar[str] = "lora_"
    display: ClassVar[str] = "LoRA"

    def check_space(self, space: SearchSpace) -> None:
        super().check_space(space)
        params = space.parameters
        if "rank" not in params:
            raise FieldIssue(("parameters",), f"method {self.name!r} needs a `rank` parameter")
        self.check_scaling(space)

    def check_scaling(self, space: SearchSpace) -> None:
        """Rules of every parameter but ``rank``: alpha or its ratio, dropout, the flags."""
        params = space.parameters
        if "alpha" in params and "alpha_ratio" in params:
            raise FieldIssue(
                ("parameters", "alpha_ratio"), "give `alpha` or `alpha_ratio`, not both"
            )
        rank = params.get("rank")
        if isinstance(rank, ParamSpec) and rank.type != "int":
            raise FieldIssue(("parameters", "rank", "type"), "rank must be type int", rank.type)
        _check_range(params, "rank", 0, 4096, integer=True)
        _check_range(params, "alpha", 0, None)
        _check_range(params, "alpha_ratio", 0, None, open_low=True)
        _check_range(params, "dropout", 0, 1, open_high=True)
        _check_range(params, "learning_rate", 0, None, open_low=True)
        for flag in ("use_rslora", "use_dora"):
            _check_bool(params, flag)

    def cell_params(
        self, bound: SpaceView, point: Point | None, layer: int, module: str, rank: int
    ) -> int:
        """Trainable parameters of one adapted cell (LoRA: ``r * (in + out)``, DoRA adds
        ``out``). ``point=None`` asks for the cheapest setting of the other parameters."""
        site = bound.layout.site(layer, module)
        dora = point is not None and bound.value(point, "use_dora", default=False)
        extra = site.out_features if dora else 0
        return rank * (site.in_features + site.out_features) + extra

    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        targets = bound.target_modules(point)
        sizes = {}
        if type(bound) is not BoundSpace:  # a view that reads values its own way
            for layer, module in bound.searched_cells:
                if module in targets:
                    rank = int(bound.value(point, "rank", layer, module))
                    if rank > 0:
                        sizes[(layer, module)] = rank
            return sizes
        for cell, name, constant in _rank_cells(bound):
            if cell[1] in targets:
                rank = int(point[name] if name is not None else constant)
                if rank > 0:
                    sizes[cell] = rank
        return sizes

    def canonical(self, bound: SpaceView, point: Point) -> Point:
        """Ranks of per-cell dimensions whose module type is not targeted become the smallest
        rank (they build nothing)."""
        spec = bound.space.parameters["rank"]
        if not isinstance(spec, ParamSpec) or spec.per != "cell":
            return point
        targets = bound.target_modules(point)
        lowest = min(_ranks(bound))
        out = dict(point)
        for layer, module in bound.searched_cells:
            if module not in targets:
                out[bound.dim_name("rank", spec, layer, module)] = lowest
        return out

    def params_tensor(self, bound: SpaceView, encoder: Any) -> Callable[[Tensor], Tensor] | None:
        """Exact parameter counts of encoded rows: sum over cells of rank x (in + out), masked
        by the cells' membership in the row's ``target_modules`` choice."""
        import torch

        dora = bound.space.parameters.get("use_dora", False)
        if type(self).cell_params is not LoraMethod.cell_params or dora is not False:
            return None  # not linear in the rank: count point by point
        spec = bound.space.parameters["rank"]
        column = {d.name: j for j, d in enumerate(encoder.dims)}
        cells = bound.searched_cells
        widths = torch.tensor([_width(bound, layer, m) for layer, m in cells], dtype=torch.double)
        table = torch.tensor(_ranks(bound), dtype=torch.double)
        if isinstance(spec, ParamSpec) and spec.choices is None and spec.type == "int":
            return None  # ranges are encoded on a unit scale; use the generic path
        rank_cols = (
            [column[bound.dim_name("rank", spec, layer, m)] for layer, m in cells]
            if isinstance(spec, ParamSpec)
            else None
        )
        targets = bound.space.parameters.get("target_modules", "all_linear")
        options = bound.target_options()
        member = torch.tensor(
            [[float(m in opt) for _, m in cells] for opt in options], dtype=torch.double
        )
        target_col = column.get("target_modules") if isinstance(targets, ParamSpec) else None

        def count(x: Tensor) -> Tensor:
            if rank_cols is None:
                ranks = table[0].expand(*x.shape[:-1], len(cells))
            else:
                index = x[..., rank_cols].round().clamp(0, len(table) - 1).long()
                ranks = table[index]
            if target_col is None:
                mask = member[0]
            else:
                mask = member[x[..., target_col].round().clamp(0, len(options) - 1).long()]
            return (ranks * widths * mask).sum(-1)

        return count

    def count_params(self, bound: SpaceView, point: Point) -> int:
        return self.count_cells(bound, point, self.cell_sizes(bound, point))

    def count_cells(self, bound: SpaceView, point: Point, sizes: dict[Cell, int]) -> int:
        """:meth:`count_params` from the point's :meth:`cell_sizes`, already computed (a
        feasibility check needs both; each costs a pass over every cell)."""
        return sum(
            self.cell_params(bound, point, layer, module, rank)
            for (layer, module), rank in sizes.items()
        )

    def check_bound(self, bound: SpaceView) -> None:
        """Every rank the space allows must fit every cell it can land on."""
        largest = max(_ranks(bound))
        for layer, module in bound.searched_cells:
            site = bound.layout.site(layer, module)
            if largest > min(site.in_features, site.out_features):
                bound.fail(
                    ("parameters", "rank"),
                    f"rank {largest} exceeds the smaller dimension of {site.name} "
                    f"({site.in_features} -> {site.out_features}); use ranks <= "
                    f"{min(site.in_features, site.out_features)}",
                    largest,
                )

    def min_params(self, bound: SpaceView) -> int:
        """The smallest positive rank on the cheapest placement the sharing of ``rank`` allows:
        one cell (per cell), one whole layer (per layer) or every targeted cell (global)."""
        spec = bound.space.parameters["rank"]
        positive = [r for r in _ranks(bound) if r > 0]
        if not positive:
            bound.fail(("parameters", "rank"), "allows no rank above 0, so no adapter", spec)
        per = spec.per if isinstance(spec, ParamSpec) else "study"
        low = min(positive)
        costs = []
        for modules in bound.target_options():
            layers = [
                [self.cell_params(bound, None, layer, m, low) for m in modules]
                for layer in range(bound.layout.num_layers)
            ]
            if per == "cell":
                costs.append(min(min(cells) for cells in layers))
            elif per == "layer":
                costs.append(min(sum(cells) for cells in layers))
            else:
                costs.append(sum(sum(cells) for cells in layers))
        return min(costs)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> PeftConfig:
        from peft import LoraConfig

        kwargs = self.rank_kwargs(bound, point, task_type)
        kwargs["lora_dropout"] = float(bound.value(point, "dropout", default=0.0))
        kwargs["bias"] = "none"
        kwargs["use_rslora"] = bool(bound.value(point, "use_rslora", default=False))
        kwargs["use_dora"] = bool(bound.value(point, "use_dora", default=False))
        if bound.layout.uses_conv1d:
            kwargs["fan_in_fan_out"] = True
        return LoraConfig(**kwargs)

    def rank_kwargs(self, bound: SpaceView, point: Point, task_type: str) -> dict[str, Any]:
        """``task_type``, exact ``target_modules``, ``r``, ``rank_pattern`` and the alphas."""
        sizes = {
            bound.layout.site(*cell).name: r for cell, r in self.cell_sizes(bound, point).items()
        }
        r = Counter(sizes.values()).most_common(1)[0][0]
        kwargs: dict[str, Any] = {
            "task_type": task_type,
            "target_modules": sorted(sizes),
            "r": r,
            "rank_pattern": {n: k for n, k in sorted(sizes.items()) if k != r},
        }
        alpha = bound.value(point, "alpha")
        if alpha is not None:
            kwargs["lora_alpha"] = float(alpha)
        else:
            ratio = float(bound.value(point, "alpha_ratio", default=DEFAULT_ALPHA_RATIO))
            kwargs["lora_alpha"] = ratio * r
            kwargs["alpha_pattern"] = {n: ratio * k for n, k in kwargs["rank_pattern"].items()}
        return kwargs

    def verify(self, model: nn.Module, compiled: CompiledConfig) -> None:
        expected = compiled.module_sizes
        found: dict[str, int] = {}
        for name, module in model.named_modules():
            adapter = getattr(module, "r", None)
            if (
                getattr(module, self.adapter_attr, None) is not None
                and adapter
                and "default" in adapter
            ):
                found[name.split("base_model.model.", 1)[-1]] = adapter["default"]
        if found != expected:
            raise RuntimeError(
                f"built {self.display} ranks {found} differ from the compiled ranks {expected}"
            )
        check_trainable_count(model, self.param_marker, compiled, self.display)


@functools.lru_cache(maxsize=16)
def _rank_cells(bound: BoundSpace) -> tuple[tuple[Cell, str | None, Any], ...]:
    """Each searched cell with the name of its rank dimension (None: the rank is a constant,
    given third), as :meth:`SpaceView.value` reads it; worked out once per bound space."""
    spec = bound.space.parameters.get("rank")
    out: list[tuple[Cell, str | None, Any]] = []
    for layer, module in bound.searched_cells:
        if isinstance(spec, ParamSpec):
            out.append(((layer, module), bound.dim_name("rank", spec, layer, module), None))
        else:
            out.append(((layer, module), None, spec))
    return tuple(out)


def _ranks(bound: SpaceView) -> list[int]:
    spec = bound.space.parameters["rank"]
    values: tuple[Any, ...] | None = spec.values() if isinstance(spec, ParamSpec) else (spec,)
    return [int(v) for v in values or ()]


def _width(bound: SpaceView, layer: int, module: str) -> int:
    site = bound.layout.site(layer, module)
    return site.in_features + site.out_features


def _check_bool(params: dict[str, Any], name: str) -> None:
    spec = params.get(name)
    values = spec.choices if isinstance(spec, ParamSpec) else (spec,)
    if spec is None:
        return
    if isinstance(spec, ParamSpec) and spec.type != "categorical":
        raise FieldIssue(("parameters", name, "type"), f"{name} must be categorical", spec.type)
    for v in values or ():
        if not isinstance(v, bool):
            raise FieldIssue(("parameters", name), f"{name} values must be true or false", v)


def _check_range(
    params: dict[str, Any],
    name: str,
    low: float,
    high: float | None,
    *,
    integer: bool = False,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    if name not in params:
        return
    spec = params[name]
    values: list[Any] = (
        [spec.low, spec.high]
        if isinstance(spec, ParamSpec) and spec.choices is None
        else (list(spec.choices) if isinstance(spec, ParamSpec) and spec.choices else [spec])
    )
    lo_word = ">" if open_low else ">="
    hi_word = "<" if open_high else "<="
    rule = f"{name} values must be {lo_word} {low}" + (
        f" and {hi_word} {high}" if high is not None else ""
    )
    for v in values:
        bad_type = (
            not isinstance(v, int | float)
            or isinstance(v, bool)
            or (integer and not float(v).is_integer())
        )
        too_low = not bad_type and (v <= low if open_low else v < low)
        too_high = not bad_type and high is not None and (v >= high if open_high else v > high)
        if bad_type or too_low or too_high:
            kind = "integers" if integer else "numbers"
            loc: tuple[str, ...] = ("parameters", name)
            raise FieldIssue(loc, f"{rule} ({kind})", v)
