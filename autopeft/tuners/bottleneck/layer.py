"""The bottleneck tuner's layers: the adapter, the FFN-input tap and the wrapped ``down`` linear
(see :mod:`autopeft.tuners.bottleneck.model` for where they hook in)."""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn


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
        if hasattr(base_layer, "in_features"):
            self.in_features = base_layer.in_features
            self.out_features = base_layer.out_features
        else:  # GPT-2's Conv1D: weight is in x out
            self.in_features, self.out_features = base_layer.weight.shape

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
