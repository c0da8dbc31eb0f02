"""IA3 (Liu et al., 2022, https://arxiv.org/abs/2205.05638): a learned scaling vector per adapted
linear leaf. No size; placement per (layer, module) cell via ``active``.

Trainable parameters per cell: ``in_features`` for the FFN output projection (module type
``down``, which IA3 scales on its input, as the paper scales the FFN's inner activation) and
``out_features`` for every other module type (keys, values, ...). The paper's placement is
``target_modules: [k, v, down]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from autopeft.methods.placement import PlacementMethod, names
from autopeft.methods.registry import register_method

if TYPE_CHECKING:
    from peft import IA3Config

    from autopeft.space.view import Point, SpaceView

FEEDFORWARD = "down"


@register_method("ia3")
class Ia3Method(PlacementMethod):
    """Learned rescaling vectors on linear leaves."""

    parameters: ClassVar[dict[str, bool]] = {"active": True}
    adapter_attr: ClassVar[str] = "ia3_l"
    param_marker: ClassVar[str] = "ia3_l"

    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        site = bound.layout.site(layer, module)
        return site.in_features if module == FEEDFORWARD else site.out_features

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> IA3Config:
        from peft import IA3Config

        cells = self.cell_sizes(bound, point)
        ff = {c: s for c, s in cells.items() if c[1] == FEEDFORWARD}
        return IA3Config(
            task_type=task_type,
            target_modules=names(bound, self, cells),
            fan_in_fan_out=bound.layout.uses_conv1d,
            feedforward_modules=names(bound, self, ff),
        )
