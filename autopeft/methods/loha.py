"""LoHa (Hyeon-Woo et al., 2022, https://arxiv.org/abs/2108.06098): a Hadamard product of two
low-rank products, ``dW = (W1a @ W1b) * (W2a @ W2b)``, with a rank per (layer, module) cell.

Parameters: ``rank`` (int >= 0, may be ``per: layer`` or ``per: [layer, module]``; 0 = no adapter
in that cell), ``alpha`` or ``alpha_ratio`` (default 2), plus ``target_modules`` and
``learning_rate``. Compiled like LoRA (exact full names, ``rank_pattern``/``alpha_pattern``).
Trainable parameters per adapted linear cell: ``2 * r * (in + out)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.methods.lora import LoraMethod
from autopeft.methods.registry import register_method

if TYPE_CHECKING:
    from peft import LoHaConfig

    from autopeft.space.view import Point, SpaceView


@register_method("loha")
class LohaMethod(LoraMethod):
    """Low-rank Hadamard product adapters on linear leaves."""

    parameters: ClassVar[dict[str, bool]] = {"rank": True, "alpha": False, "alpha_ratio": False}
    adapter_attr: ClassVar[str] = "hada_w1_a"
    display: ClassVar[str] = "LoHa"
    param_marker: ClassVar[str] = "hada_"

    def cell_params(
        self, bound: SpaceView, point: Point | None, layer: int, module: str, rank: int
    ) -> int:
        site = bound.layout.site(layer, module)
        return 2 * rank * (site.in_features + site.out_features)

    def check_bound(self, bound: SpaceView) -> None:
        refuse_conv1d(self.name, bound)
        super().check_bound(bound)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> LoHaConfig:
        from peft import LoHaConfig

        return LoHaConfig(**_lycoris_kwargs(self.rank_kwargs(bound, point, task_type)))


def refuse_conv1d(name: str, bound: SpaceView) -> None:
    """peft's LyCORIS layers (LoHa, LoKr) adapt ``nn.Linear`` and convolutions, not GPT-2's
    ``Conv1D``."""
    if bound.layout.uses_conv1d:
        bound.fail(
            ("method",),
            f"{name} cannot adapt this {bound.layout.family} model's Conv1D layers (peft's LoHa "
            "and LoKr take nn.Linear only); use lora, ia3 or vera",
            name,
        )


def _lycoris_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """LoRA keyword names -> the LyCORIS configs' (``lora_alpha`` is ``alpha`` there)."""
    out = dict(kwargs)
    out["alpha"] = out.pop("lora_alpha", 8.0)
    return out
