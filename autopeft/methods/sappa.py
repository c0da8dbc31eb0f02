"""``sappa``: the AutoPEFT space (Zhou et al., 2024, https://arxiv.org/abs/2301.12132) — a
serial adapter, a parallel adapter and an attention prefix, each of one global size chosen from
an 11-rung ladder, plus one on/off flag per layer shared by all three modules.

Parameters: ``serial``, ``parallel``, ``prefix`` (ints in ``[0, 10]``: rungs of the ladder),
``active`` (0/1, ``per: layer``; default all on), plus ``learning_rate``.

The ladder is scaled to the model's hidden size ``h``: rung 0 is off and rung ``k >= 1`` is
``max(1, h >> (10 - k))``. For ``h = 768`` (BERT-base) that is the paper's
{off, 1, 3, 6, 12, 24, 48, 96, 192, 384, 768}; for smaller models the bottom rungs coincide
(``h = 384``: 1, 1, 3, ...), and :meth:`SappaMethod.canonical` maps such twins to the lower rung.
The same ladder gives the prefix length in tokens. All three live in one ``BOTTLENECK`` peft
model (see :mod:`.tuner`, :mod:`.prefix`). Trainable parameters per active layer:
``(2hs + s + h) [s > 0] + (2hp + p + h) [p > 0] + 2 * P * kv_width``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.core.compiled import CompiledConfig
from autopeft.core.validation import FieldIssue
from autopeft.methods.base import Method, check_trainable_count
from autopeft.methods.bottleneck import FFN_OUT, adapter_params, ffn_paths
from autopeft.methods.registry import register_method
from autopeft.models.layout import Cell
from autopeft.space.schema import ParamSpec

if TYPE_CHECKING:
    from torch import nn

    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView

RUNGS = 10
MODULES = ("serial", "parallel", "prefix")


def ladder(hidden: int) -> list[int]:
    """Size of each rung ``0..10`` for hidden size ``hidden``."""
    return [0] + [max(1, hidden >> (RUNGS - k)) for k in range(1, RUNGS + 1)]


@register_method("sappa")
class SappaMethod(Method):
    """Serial + parallel adapters + prefix, sizes on a hidden-scaled ladder, a layer mask."""

    parameters: ClassVar[dict[str, bool]] = {
        "serial": False,
        "parallel": False,
        "prefix": False,
        "active": True,
    }

    def check_space(self, space: SearchSpace) -> None:
        super().check_space(space)
        for name in MODULES:
            if name not in space.parameters:
                raise FieldIssue(("parameters",), f"method 'sappa' needs a `{name}` parameter")
            for v in _values(space.parameters[name]):
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= RUNGS:
                    raise FieldIssue(("parameters", name), f"rungs are integers 0..{RUNGS}", v)
        active = space.parameters.get("active", 1)
        if isinstance(active, ParamSpec) and active.per == "cell":
            raise FieldIssue(("parameters", "active", "per"), "one flag per layer", "cell")
        for v in _values(active):
            if v not in (0, 1) or isinstance(v, bool):
                raise FieldIssue(("parameters", "active"), "active values must be 0 or 1", v)

    def check_bound(self, bound: SpaceView) -> None:
        missing = [m for m in ("k", "up", FFN_OUT) if m not in bound.layout.modules]
        if missing:
            bound.fail(
                ("method",),
                f"sappa needs the separate module types {missing}, which this "
                f"{bound.layout.family} model lacks (it has {', '.join(bound.layout.modules)})",
                self.name,
            )
        if bound.layout.family == "deberta" or not bound.layout.past_key_values:
            bound.fail(
                ("method",),
                f"sappa's prefixes need standard self-attention; this {bound.layout.family} model "
                "has not",
                self.name,
            )

    # -- sizes ------------------------------------------------------------------------------
    def sizes(self, bound: SpaceView, point: Point) -> dict[str, int]:
        table = ladder(bound.layout.hidden_size)
        return {m: table[int(bound.value(point, m))] for m in MODULES}

    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        sizes = self.sizes(bound, point)
        out = {}
        for layer in range(bound.layout.num_layers):
            if int(bound.value(point, "active", layer, None, default=1)):
                out.update({(layer, m): s for m, s in sizes.items() if s > 0})
        return out

    def site_name(self, bound: SpaceView, layer: int, module: str) -> str:
        if module == "prefix":
            return f"{_attention(bound, layer)}:prefix"
        return f"{bound.layout.site(layer, FFN_OUT).name}:{module}"

    def module_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        if module == "prefix":
            return 2 * size * bound.layout.site(layer, "k").out_features
        return adapter_params(bound.layout.site(layer, FFN_OUT).out_features, size)

    def count_params(self, bound: SpaceView, point: Point) -> int:
        return sum(
            self.module_params(bound, layer, module, size)
            for (layer, module), size in self.cell_sizes(bound, point).items()
        )

    def canonical(self, bound: SpaceView, point: Point) -> Point:
        """Rungs that give the same size as a lower rung (small models) become that rung."""
        table = ladder(bound.layout.hidden_size)
        out = dict(point)
        for name in MODULES:
            spec = bound.space.parameters[name]
            if isinstance(spec, ParamSpec):
                allowed = [int(v) for v in _values(spec)]
                rung = int(point[name])
                out[name] = min(r for r in allowed if table[r] == table[rung])
        return out

    def min_params(self, bound: SpaceView) -> int:
        table = ladder(bound.layout.hidden_size)
        per_layer = []
        for layer in range(bound.layout.num_layers):
            costs = [
                self.module_params(bound, layer, m, min(table[r] for r in rungs))
                for m in MODULES
                if (rungs := [int(r) for r in _values(bound.space.parameters[m]) if int(r) > 0])
            ]
            if not costs:
                bound.fail(("parameters",), "every size allows only rung 0 (off)", None)
            per_layer.append(min(costs))
        active = bound.space.parameters.get("active", 1)
        return min(per_layer) if isinstance(active, ParamSpec) else sum(per_layer)

    # -- peft -------------------------------------------------------------------------------
    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> Any:
        from autopeft.tuners.bottleneck.config import BottleneckConfig
        from autopeft.tuners.bottleneck.registration import ensure_registered

        ensure_registered()
        cells = self.cell_sizes(bound, point)
        by_module: dict[str, dict[str, int]] = {m: {} for m in MODULES}
        for (layer, module), size in cells.items():
            by_module[module][str(layer)] = size
        ffn_in, ffn_out = ffn_paths(bound)
        prefix = f"{bound.layout.stack}.0."
        return BottleneckConfig(
            task_type=task_type,
            stack=bound.layout.stack,
            ffn_input=ffn_in,
            ffn_output=ffn_out,
            attention=_attention(bound, 0).removeprefix(prefix),
            kv_width=bound.layout.site(0, "k").out_features,
            serial_sizes=by_module["serial"],
            parallel_sizes=by_module["parallel"],
            prefix_lengths=by_module["prefix"],
        )

    def verify(self, model: nn.Module, compiled: CompiledConfig) -> None:
        found: dict[str, int] = {}
        for name, module in model.named_modules():
            short = name.split("base_model.model.", 1)[-1]
            for kind in ("serial", "parallel"):
                adapters = getattr(module, f"bottleneck_{kind}", None)
                if adapters is not None and "default" in adapters:
                    found[f"{short}:{kind}"] = adapters["default"].down.out_features
            prefixes = getattr(module, "bottleneck_prefix", None)
            if prefixes is not None and "default" in prefixes:
                found[f"{short}:prefix"] = prefixes["default"].key.shape[1]
        if found != compiled.module_sizes:
            raise RuntimeError(f"built sappa modules {found} differ from {compiled.module_sizes}")
        check_trainable_count(model, "bottleneck_", compiled, "sappa")


def _attention(bound: SpaceView, layer: int) -> str:
    """Full name of a layer's self-attention module (the parent of its ``k`` projection)."""
    return bound.layout.site(layer, "k").name.rsplit(".", 1)[0]


def _values(spec: Any) -> tuple[Any, ...]:
    return (spec.values() or ()) if isinstance(spec, ParamSpec) else (spec,)
