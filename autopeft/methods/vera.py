"""VeRA (Kopiczko et al., 2024, https://arxiv.org/abs/2310.11454): frozen random low-rank
projections ``A`` (``r x in``) and ``B`` (``out x r``) shared by all adapted modules, with a
trainable scaling vector of ``r`` (``lambda_d``) and one of ``out_features`` (``lambda_b``) per
module: ``dW = diag(lambda_b) B diag(lambda_d) A``.

What counts as trainable: only the two vectors, ``r + out_features`` per adapted cell. The
shared projections are frozen buffers regenerated from ``projection_prng_key`` (and saved with the
adapter, ``save_projection=True``, so a reload never depends on the generator); they cost memory
but are not trained, so they are not in ``trainable_params``. ``rank`` is one global integer
(peft shares the projections, so it cannot vary per cell); placement per cell via ``active``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from autopeft.methods.placement import PlacementMethod, names
from autopeft.methods.registry import register_method

if TYPE_CHECKING:
    from peft import VeraConfig

    from autopeft.space.view import Point, SpaceView


@register_method("vera")
class VeraMethod(PlacementMethod):
    """Vector-based random matrix adaptation on linear leaves."""

    parameters: ClassVar[dict[str, bool]] = {"active": True, "rank": False}
    size_param: ClassVar[str | None] = "rank"
    adapter_attr: ClassVar[str] = "vera_lambda_b"
    param_marker: ClassVar[str] = "vera_lambda_"

    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        return size + bound.layout.site(layer, module).out_features

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> VeraConfig:
        from peft import VeraConfig

        cells = self.cell_sizes(bound, point)
        return VeraConfig(
            task_type=task_type,
            r=int(bound.value(point, "rank")),
            target_modules=names(bound, self, cells),
            fan_in_fan_out=bound.layout.uses_conv1d,
            save_projection=True,
            projection_prng_key=0,
            vera_dropout=0.0,
        )

    def built_sizes(self, model: object) -> dict[str, int]:
        sizes = super().built_sizes(model)  # type: ignore[arg-type]
        rank = {
            name.split("base_model.model.", 1)[-1]: int(m.vera_lambda_d["default"].numel())
            for name, m in model.named_modules()  # type: ignore[attr-defined]
            if getattr(m, "vera_lambda_d", None) is not None and "default" in m.vera_lambda_d
        }
        return {n: rank[n] for n in sizes}
