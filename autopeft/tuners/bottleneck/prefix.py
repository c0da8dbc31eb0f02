"""Learned key/value prefixes for one attention module, inside the bottleneck tuner.

peft cannot put a prompt-learning type and a tuner in one ``PeftModel``, so the prefix of the
AutoPEFT space lives in our tuner: :class:`PrefixAttention` wraps a layer's self-attention module
and owns ``P`` learned key and value vectors per key/value head. The attention module keeps
running its own code; only the attention *kernel* changes: the wrapped module gets a private copy
of the model config whose ``_attn_implementation`` is ``"autopeft_prefix"``, a function registered
with transformers' ``AttentionInterface`` that prepends the prefix to ``key``/``value`` (after
the projections and rotary embeddings, as prefix tuning does), widens the attention mask by ``P``
always-visible columns, and calls the model's original kernel (``sdpa`` or ``eager``). Masks are
still built by the model from its unchanged config, so layers without a prefix are untouched.

Trainable parameters per layer: ``2 * P * kv_width`` (``kv_width`` = output width of the key
projection, ``num_key_value_heads * head_dim``), exactly as peft's prefix tuning.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

IMPLEMENTATION = "autopeft_prefix"
_OWNER = "_autopeft_prefix_owner"


class PrefixKV(nn.Module):
    """``P`` key and value vectors per key/value head: ``heads x P x head_dim`` each."""

    def __init__(self, heads: int, length: int, head_dim: int) -> None:
        super().__init__()
        self.key = nn.Parameter(torch.randn(heads, length, head_dim) * 0.02)
        self.value = nn.Parameter(torch.randn(heads, length, head_dim) * 0.02)


class PrefixAttention(nn.Module, BaseTunerLayer):
    """Wraps a self-attention module; its forward is the module's own, with a prefix kernel."""

    adapter_layer_names = ("bottleneck_prefix",)

    def __init__(self, base_layer: nn.Module, adapter_name: str) -> None:
        super().__init__()
        self.base_layer: Any = base_layer  # an attention module with a ``config``
        self.bottleneck_prefix = nn.ModuleDict({})
        self._active_adapter = adapter_name
        self.merged_adapters: list[str] = []
        original: Any = base_layer.config
        self.inner_implementation: str = original._attn_implementation or "eager"
        self.original_config = original
        config = copy.copy(original)
        config._attn_implementation_internal = IMPLEMENTATION
        base_layer.config = config
        base_layer.__dict__[_OWNER] = self  # a plain reference: not a submodule

    def update_layer(self, adapter_name: str, length: int, kv_width: int) -> None:
        base = self.base_layer
        head_dim = int(getattr(base, "head_dim", 0) or base.attention_head_size)
        self.bottleneck_prefix[adapter_name] = PrefixKV(kv_width // head_dim, length, head_dim)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters)

    def prefix(self, batch: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The active adapter's ``batch x heads x P x head_dim`` keys and values, or None."""
        if self.disable_adapters:
            return None
        active = [a for a in self.active_adapters if a in self.bottleneck_prefix]
        if not active:
            return None
        kv: Any = self.bottleneck_prefix[active[0]]
        return (
            kv.key.unsqueeze(0).expand(batch, -1, -1, -1),
            kv.value.unsqueeze(0).expand(batch, -1, -1, -1),
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_layer(*args, **kwargs)

    def restore(self) -> nn.Module:
        """Undo the wrapping; returns the original attention module."""
        self.base_layer.config = self.original_config
        self.base_layer.__dict__.pop(_OWNER, None)
        return self.base_layer

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise ValueError("prefixes cannot be merged into weights")

    def unmerge(self) -> None:
        pass


def prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> Any:
    """The ``autopeft_prefix`` kernel: prefix keys/values, widen the mask, call the original."""
    import sys

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    owner: PrefixAttention = module.__dict__[_OWNER]
    name = owner.inner_implementation
    # the model's own eager kernel (Llama's repeats key/value heads, BERT's does not)
    eager = sys.modules[type(module).__module__].eager_attention_forward
    inner = eager if name == "eager" else ALL_ATTENTION_FUNCTIONS.get_interface(name, eager)
    kv = owner.prefix(query.shape[0])
    if kv is not None:
        length = kv[0].shape[2]
        key = torch.cat([kv[0].to(key.dtype), key], dim=2)
        value = torch.cat([kv[1].to(value.dtype), value], dim=2)
        attention_mask = _widen(attention_mask, query, length, name, module)
    return inner(module, query, key, value, attention_mask, **kwargs)


def _widen(
    mask: torch.Tensor | None, query: torch.Tensor, length: int, name: str, module: nn.Module
) -> torch.Tensor | None:
    """The mask with ``length`` visible key columns in front (built if the model gave none
    and the module is causal)."""
    q = query.shape[2]
    if mask is None:
        if not getattr(module, "is_causal", False) or q == 1:
            return None
        causal = torch.ones(q, q, dtype=torch.bool, device=query.device).tril()
        mask = causal[None, None]
        if name != "sdpa":
            mask = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill(
                ~mask, torch.finfo(query.dtype).min
            )
    fill: Any = True if mask.dtype == torch.bool else 0.0
    return nn.functional.pad(mask, (length, 0), value=fill)


def register_kernel() -> None:
    """Make ``autopeft_prefix`` a known attention implementation (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, prefix_attention)
