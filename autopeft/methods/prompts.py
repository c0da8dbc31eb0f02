"""Prompt methods: prefix tuning (Li & Liang, 2021, https://arxiv.org/abs/2101.00190) and prompt
tuning (Lester et al., 2021, https://arxiv.org/abs/2104.08691). Size ``num_virtual_tokens``
(one global integer >= 1); peft places them on every layer (prefix) or at the input (prompt),
so there is no per-layer placement.

Trainable parameters (``prefix_projection=False``, random init):

* prefix tuning: ``P * num_layers * 2 * kv_width``, a key and a value vector per virtual token
  and layer; ``kv_width`` is the output width of the ``k`` projection (``hidden`` in BERT,
  ``num_key_value_heads * head_dim`` in Llama with grouped-query attention; read off a fused
  ``qkv`` projection where there is one);
* prompt tuning: ``P * hidden``, one input embedding per virtual token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.methods import prefix_compat
from autopeft.methods.placement import PlacementMethod
from autopeft.methods.registry import register_method

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn

    from autopeft.models.layout import Cell
    from autopeft.space.view import Point, SpaceView

MARKER = "prompt_encoder"


class _PromptMethod(PlacementMethod):
    parameters: ClassVar[dict[str, bool]] = {"num_virtual_tokens": False}
    size_param: ClassVar[str | None] = "num_virtual_tokens"
    adapter_attr: ClassVar[str] = MARKER
    param_marker: ClassVar[str] = MARKER
    #: Module type naming the cell(s) in the placement.
    role: ClassVar[str]

    def site_name(self, bound: SpaceView, layer: int, module: str) -> str:
        return f"{MARKER}.{self.role}.{layer}"

    def built_sizes(self, model: nn.Module) -> dict[str, int]:
        configs: Any = model.peft_config
        config = configs["default"]
        return {
            f"{MARKER}.{self.role}.{layer}": config.num_virtual_tokens
            for layer in self._built_layers(config)
        }

    def runtime_config(self, peft_config: dict[str, Any], max_steps: int) -> dict[str, Any]:
        prefix_compat.install()  # a trial process builds from JSON, without build_config
        return peft_config

    def _built_layers(self, config: PeftConfig) -> range:
        raise NotImplementedError


@register_method("prefix_tuning")
class PrefixTuningMethod(_PromptMethod):
    """Learned key/value prefixes in every layer's attention."""

    role: ClassVar[str] = "prefix"

    def check_bound(self, bound: SpaceView) -> None:
        if "k" not in bound.layout.modules and "qkv" not in bound.layout.modules:
            bound.fail(
                ("method",), "prefix_tuning needs a model with a `k` or `qkv` projection", self.name
            )
        if not bound.layout.past_key_values:
            bound.fail(
                ("method",),
                f"prefix_tuning needs a model that takes past_key_values (peft's requirement); "
                f"this {bound.layout.family} model does not",
                self.name,
            )

    def cells(self, bound: SpaceView, point: Point | None) -> list[Cell]:
        return [(layer, self.role) for layer in range(bound.layout.num_layers)]

    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        return 2 * size * bound.layout.kv_width(layer)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> PeftConfig:
        from peft import PrefixTuningConfig

        prefix_compat.install()
        size = int(bound.value(point, "num_virtual_tokens"))
        return PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=size, prefix_projection=False
        )

    def _built_layers(self, config: PeftConfig) -> range:
        return range(config.num_layers)  # type: ignore[attr-defined]


@register_method("prompt_tuning")
class PromptTuningMethod(_PromptMethod):
    """Learned soft-prompt embeddings prepended to the input."""

    role: ClassVar[str] = "prompt"

    def cells(self, bound: SpaceView, point: Point | None) -> list[Cell]:
        return [(0, self.role)]

    def cell_params(self, bound: SpaceView, layer: int, module: str, size: int) -> int:
        return size * bound.layout.hidden_size

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> PeftConfig:
        from peft import PromptTuningConfig

        prefix_compat.install()
        size = int(bound.value(point, "num_virtual_tokens"))
        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=size)

    def _built_layers(self, config: PeftConfig) -> range:
        return range(1)
