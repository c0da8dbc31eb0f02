"""Bottleneck adapters as a ``peft`` tuner: serial (Pfeiffer et al., 2021,
https://arxiv.org/abs/2005.00247) and parallel (He et al., 2022, https://arxiv.org/abs/2110.04366)
adapters around each layer's feed-forward block, with a bottleneck size per layer.

Where they hook in (the FFN is ``up`` (+ ``gate``) -> activation -> ``down``):

* the ``down`` linear (BERT ``output.dense``, Llama ``mlp.down_proj``) is wrapped by
  :class:`BottleneckLayer`: ``y = down(a)``; the **serial** adapter adds ``S(y)`` to the FFN
  output, and the **parallel** adapter adds ``scaling * P(x)`` computed from the FFN *input* ``x``:
  ``out = y + S(y) + scaling * P(x)``. In BERT this is before the output dropout and the
  residual + LayerNorm (``LayerNorm(dropout(out) + attention_output)``), i.e. the Pfeiffer
  position; in Llama (pre-norm) the result goes into the residual sum of the decoder layer.
* the FFN input ``x`` is read by :class:`FeedForwardTap`, a pass-through wrapper of the ``up``
  linear (BERT ``intermediate.dense``, Llama ``mlp.up_proj``) that hands its input to the
  ``down`` wrapper of the same layer (a per-layer slot, emptied after use).

Each adapter is ``up(relu(down(h)))`` with biases: ``2 * d * b + b + d`` trainable parameters for
width ``d`` and bottleneck ``b``; its up-projection starts at zero, so a new adapter is the
identity. Learned attention prefixes per layer (for the AutoPEFT space) are in :mod:`.prefix`.
Importing :mod:`autopeft` registers the peft type ``BOTTLENECK`` (see
:mod:`autopeft.methods.bottleneck.register`, the one registration point), after which
``PeftConfig.from_pretrained``, ``get_peft_model`` and ``PeftModel.from_pretrained`` work as
for built-in types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, _get_submodules
from torch import nn

from autopeft.methods.bottleneck.prefix import PrefixAttention

PEFT_TYPE = "BOTTLENECK"


@dataclass
class BottleneckConfig(PeftConfig):
    """Config of serial / parallel bottleneck adapters.

    Attributes:
        stack: Full name of the layer ``ModuleList`` (``bert.encoder.layer``).
        ffn_input: Path of the FFN's input linear inside one layer (``intermediate.dense``).
        ffn_output: Path of the FFN's output linear inside one layer (``output.dense``).
        attention: Path of the self-attention module inside one layer (``attention.self``).
        kv_width: Output width of the key projection (prefix keys/values per token and layer).
        serial_sizes: Layer index (as a string) -> serial bottleneck size; absent = none.
        parallel_sizes: Layer index (as a string) -> parallel bottleneck size; absent = none.
        prefix_lengths: Layer index (as a string) -> prefix length (see :mod:`.prefix`).
        parallel_scaling: Factor on the parallel adapter's output.
        modules_to_save: Extra trainable, saved modules (the classification head).
    """

    stack: str = ""
    ffn_input: str = ""
    ffn_output: str = ""
    attention: str = ""
    kv_width: int = 0
    serial_sizes: dict[str, int] = field(default_factory=dict)
    parallel_sizes: dict[str, int] = field(default_factory=dict)
    prefix_lengths: dict[str, int] = field(default_factory=dict)
    parallel_scaling: float = 1.0
    target_modules: list[str] | None = None
    modules_to_save: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        sizes = {**self.serial_sizes, **self.parallel_sizes}
        for key, size in [*sizes.items(), *self.prefix_lengths.items()]:
            if not str(key).isdigit() or int(size) < 1:
                raise ValueError(f"bottleneck sizes need layer-index keys and sizes >= 1: {key}")
        names = [f"{self.stack}.{i}.{self.ffn_output}" for i in sorted(sizes, key=int)]
        names += [
            f"{self.stack}.{i}.{self.ffn_input}" for i in sorted(self.parallel_sizes, key=int)
        ]
        names += [
            f"{self.stack}.{i}.{self.attention}" for i in sorted(self.prefix_lengths, key=int)
        ]
        self.target_modules = names


class Adapter(nn.Module):
    """``up(relu(down(h)))``; ``up`` starts at zero."""

    def __init__(self, width: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(h)))


class _Slot:
    """Hands one tensor from a layer's FFN input tap to its output wrapper."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None


class FeedForwardTap(nn.Module):
    """Pass-through wrapper of the FFN input linear: records its input for the parallel adapter."""

    def __init__(self, base_layer: nn.Module, slot: _Slot) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.slot = slot

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.slot.value = x
        return self.base_layer(x, *args, **kwargs)


class BottleneckLayer(nn.Module, BaseTunerLayer):
    """Wraps the FFN output linear of one layer with serial and/or parallel adapters."""

    adapter_layer_names = ("bottleneck_serial", "bottleneck_parallel")

    def __init__(self, base_layer: Any, adapter_name: str, slot: _Slot) -> None:
        # base_layer: the FFN's output leaf, any linear-like module (nn.Linear, a quantized one)
        super().__init__()
        self.base_layer = base_layer
        self.bottleneck_serial = nn.ModuleDict({})
        self.bottleneck_parallel = nn.ModuleDict({})
        self.slot = slot
        self.scaling: dict[str, float] = {}
        self._active_adapter = adapter_name
        self.merged_adapters: list[str] = []
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features

    def update_layer(self, adapter_name: str, serial: int, parallel: int, scaling: float) -> None:
        width = self.out_features
        if serial:
            self.bottleneck_serial[adapter_name] = Adapter(width, serial)
        if parallel:
            self.bottleneck_parallel[adapter_name] = Adapter(width, parallel)
        self.scaling[adapter_name] = scaling
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        ffn_input, self.slot.value = self.slot.value, None
        if self.disable_adapters:
            return result
        out = result
        for name in self.active_adapters:
            if name in self.bottleneck_serial:
                out = out + self.bottleneck_serial[name](result)
            if name in self.bottleneck_parallel:
                if ffn_input is None:
                    raise RuntimeError("parallel adapter: the FFN input tap did not run")
                out = out + self.scaling[name] * self.bottleneck_parallel[name](ffn_input)
        return out

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError("bottleneck adapters are non-linear and cannot be merged")

    def unmerge(self) -> None:
        pass

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


class BottleneckModel(BaseTuner):
    """The ``peft`` tuner that injects :class:`BottleneckLayer`, :class:`FeedForwardTap` and
    :class:`~autopeft.methods.bottleneck.prefix.PrefixAttention`."""

    prefix: str = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}  # noqa: RUF012 - peft's attribute

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict) -> PeftConfig:
        return peft_config

    def _create_and_replace(
        self,
        peft_config: PeftConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        parameter_name: str | None = None,
    ) -> None:
        config: BottleneckConfig = peft_config  # type: ignore[assignment]
        layer, _, rel = current_key.removeprefix(config.stack + ".").partition(".")
        slots: dict[str, _Slot] = self.__dict__.setdefault("_bottleneck_slots", {})
        slot = slots.setdefault(layer, _Slot())
        if rel == config.attention and config.attention:
            if not isinstance(target, PrefixAttention):
                target = PrefixAttention(target, adapter_name)
                setattr(parent, target_name, target)
            target.update_layer(adapter_name, int(config.prefix_lengths[layer]), config.kv_width)
            return
        if rel == config.ffn_input:
            if not isinstance(target, FeedForwardTap):
                setattr(parent, target_name, FeedForwardTap(target, slot))
            return
        if not isinstance(target, BottleneckLayer):
            new = BottleneckLayer(target, adapter_name, slot)
            setattr(parent, target_name, new)
            target = new
        target.update_layer(
            adapter_name,
            int(config.serial_sizes.get(layer, 0)),
            int(config.parallel_sizes.get(layer, 0)),
            float(config.parallel_scaling),
        )
        if adapter_name not in self.active_adapters:
            target.requires_grad_(False)

    def _unload_and_optionally_merge(  # type: ignore[override]  # peft's unload() returns it
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        if merge:
            raise ValueError("bottleneck adapters are non-linear and cannot be merged")
        for key in [k for k, m in self.model.named_modules() if _is_wrapper(m)]:
            parent, target, name = _get_submodules(self.model, key)
            base = target.restore() if isinstance(target, PrefixAttention) else target.base_layer
            setattr(parent, name, base)
        return self.model

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        pass


def _is_wrapper(module: nn.Module) -> bool:
    return isinstance(module, BottleneckLayer | FeedForwardTap | PrefixAttention)
