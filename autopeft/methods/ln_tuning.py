"""LN tuning (Zhao et al., 2024, https://arxiv.org/abs/2312.11420): train copies of the layer
norms of chosen layers. No size; placement per layer via ``active`` (``per: layer``).

The norms of a layer come from a per-family table (the layout records linear leaves only), so the
method is available for the families in :data:`NORMS`. Trainable parameters per norm: its weight
(``hidden``) plus its bias where the family's norm has one (LayerNorm: BERT, DistilBERT; Llama's
RMSNorm has none). The explicit full names are required: peft has no BERT default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from autopeft.methods.placement import PlacementMethod, names
from autopeft.methods.registry import register_method

if TYPE_CHECKING:
    from peft import LNTuningConfig

    from autopeft.models.layout import Cell
    from autopeft.space.view import Point, SpaceView

# family -> norm role -> path inside one layer; and whether that family's norms have a bias.
NORMS: dict[str, dict[str, str]] = {
    "bert": {"ln_attn": "attention.output.LayerNorm", "ln_ffn": "output.LayerNorm"},
    "llama": {"ln_attn": "input_layernorm", "ln_ffn": "post_attention_layernorm"},
    "distilbert": {"ln_attn": "sa_layer_norm", "ln_ffn": "output_layer_norm"},
    "deberta": {"ln_attn": "attention.output.LayerNorm", "ln_ffn": "output.LayerNorm"},
    "phi3": {"ln_attn": "input_layernorm", "ln_ffn": "post_attention_layernorm"},
    "gpt2": {"ln_attn": "ln_1", "ln_ffn": "ln_2"},
    "gpt_neox": {"ln_attn": "input_layernorm", "ln_ffn": "post_attention_layernorm"},
    "opt": {"ln_attn": "self_attn_layer_norm", "ln_ffn": "final_layer_norm"},
}
HAS_BIAS = {
    "bert": True,
    "llama": False,
    "distilbert": True,
    "deberta": True,
    "phi3": False,
    "gpt2": True,
    "gpt_neox": True,
    "opt": True,
}


@register_method("ln_tuning")
class LnTuningMethod(PlacementMethod):
    """Tune the layer norms of the chosen layers."""

    parameters: ClassVar[dict[str, bool]] = {"active": True}
    placement_per_cell: ClassVar[bool] = False
    adapter_attr: ClassVar[str] = "ln_tuning_layers"
    param_marker: ClassVar[str] = "ln_tuning_layers"

    def check_bound(self, bound: SpaceView) -> None:
        if bound.layout.family not in NORMS:
            bound.fail(
                ("method",),
                f"ln_tuning knows the norms of {', '.join(NORMS)} models, not of this "
                f"{bound.layout.family!r} model",
                self.name,
            )

    def cells(self, bound: SpaceView, point: Point | None) -> list[Cell]:
        roles = NORMS.get(bound.layout.family, {})
        return [(layer, role) for layer in range(bound.layout.num_layers) for role in roles]

    def site_name(self, bound: SpaceView, layer: int, module: str) -> str:
        return f"{bound.layout.stack}.{layer}.{NORMS[bound.layout.family][module]}"

    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        return bound.layout.hidden_size * (2 if HAS_BIAS[bound.layout.family] else 1)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> LNTuningConfig:
        from peft import LNTuningConfig

        cells = self.cell_sizes(bound, point)
        return LNTuningConfig(task_type=task_type, target_modules=names(bound, self, cells))
