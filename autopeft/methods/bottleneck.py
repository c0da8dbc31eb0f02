"""``serial_adapter`` and ``parallel_adapter``: bottleneck adapters (see :mod:`.tuner`) on the
feed-forward block of the chosen layers.

Parameters: ``size`` (the bottleneck width, an int >= 0, may be ``per: layer``; 0 = no adapter
in that layer), ``active`` (0/1, may be ``per: layer``), plus ``learning_rate``. Trainable
parameters per adapted layer: ``2 * d * b + b + d`` for hidden width ``d`` and bottleneck ``b``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from autopeft.core.validation import FieldIssue
from autopeft.methods.placement import PlacementMethod
from autopeft.methods.registry import register_method
from autopeft.space.schema import ParamSpec

if TYPE_CHECKING:
    from torch import nn

    from autopeft.models.layout import Cell
    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView
    from autopeft.tuners.bottleneck.config import BottleneckConfig

FFN_IN, FFN_OUT = "up", "down"


def adapter_params(width: int, bottleneck: int) -> int:
    """Parameters of one ``up(relu(down(h)))`` adapter with biases."""
    return 2 * width * bottleneck + bottleneck + width


def ffn_input(modules: tuple[str, ...]) -> str:
    """The module type that reads the FFN's input: ``up``, or a fused ``gate_up``."""
    return FFN_IN if FFN_IN in modules or "gate_up" not in modules else "gate_up"


def ffn_paths(bound: SpaceView) -> tuple[str, str]:
    """Paths of the FFN input and output linears inside one layer."""
    prefix = f"{bound.layout.stack}.0."
    kinds = (ffn_input(bound.layout.modules), FFN_OUT)
    return tuple(  # type: ignore[return-value]
        bound.layout.site(0, m).name.removeprefix(prefix) for m in kinds
    )


class _BottleneckMethod(PlacementMethod):
    parameters: ClassVar[dict[str, bool]] = {"size": True, "active": True}
    size_param: ClassVar[str | None] = "size"
    placement_per_cell: ClassVar[bool] = False
    adapter_attr: ClassVar[str] = ""
    param_marker: ClassVar[str] = "bottleneck_"
    #: ``serial`` or ``parallel``.
    kind: ClassVar[str]

    def check_space(self, space: SearchSpace) -> None:
        super().check_space(space)
        spec = space.parameters["size"]
        if isinstance(spec, ParamSpec) and spec.per == "cell":
            raise FieldIssue(("parameters", "size", "per"), "size can vary per layer only", "cell")

    def check_bound(self, bound: SpaceView) -> None:
        modules = bound.layout.modules
        missing = [m for m in (ffn_input(modules), FFN_OUT) if m not in modules]
        if missing:
            bound.fail(
                ("method",),
                "bottleneck adapters need the FFN module types up (or gate_up) and down; "
                "this model has " + ", ".join(bound.layout.modules),
                self.name,
            )

    def cells(self, bound: SpaceView, point: Point | None) -> list[Cell]:
        return [(layer, FFN_OUT) for layer in range(bound.layout.num_layers)]

    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        return adapter_params(bound.layout.site(layer, FFN_OUT).out_features, size)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> BottleneckConfig:
        from autopeft.tuners.bottleneck.config import BottleneckConfig
        from autopeft.tuners.bottleneck.registration import ensure_registered

        ensure_registered()
        sizes = {str(layer): s for (layer, _), s in self.cell_sizes(bound, point).items()}
        ffn_in, ffn_out = ffn_paths(bound)
        return BottleneckConfig(
            task_type=task_type,
            stack=bound.layout.stack,
            ffn_input=ffn_in,
            ffn_output=ffn_out,
            **{f"{self.kind}_sizes": sizes},  # type: ignore[arg-type]
        )

    def built_sizes(self, model: nn.Module) -> dict[str, int]:
        found = {}
        for name, module in model.named_modules():
            adapters = getattr(module, f"bottleneck_{self.kind}", None)
            if adapters is not None and "default" in adapters:
                short = name.split("base_model.model.", 1)[-1]
                found[short] = adapters["default"].down.out_features
        return found


@register_method("serial_adapter")
class SerialAdapterMethod(_BottleneckMethod):
    """Pfeiffer-style serial adapter after each chosen layer's FFN."""

    kind: ClassVar[str] = "serial"


@register_method("parallel_adapter")
class ParallelAdapterMethod(_BottleneckMethod):
    """He et al.'s parallel adapter beside each chosen layer's FFN."""

    kind: ClassVar[str] = "parallel"
