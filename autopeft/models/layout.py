"""Discover a model's layer stack and its linear module types, for any transformer family.

A *cell* is a (layer index, module type) pair, e.g. ``(3, "v")``. Module types are family-neutral
roles (``q k v o gate up down``, and ``qkv``/``gate_up`` for fused projections) mapped from each
family's own leaf names, so one search-space file works on BERT (``attention.self.value``),
Llama (``self_attn.v_proj``) and Phi-3 (``self_attn.qkv_proj``) alike. The leaves are
``nn.Linear`` and GPT-2's ``Conv1D`` (weight stored ``in x out``). A leaf that no family table
names keeps its relative path as its module type, so unknown families still work, with their own
names.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Cell = tuple[int, str]
"""A (layer index, module type) pair, e.g. ``(3, "v")``."""

# family -> module type -> leaf path relative to one layer of the stack.
FAMILY_ROLES: dict[str, dict[str, str]] = {
    "bert": {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "o": "attention.output.dense",
        "up": "intermediate.dense",
        "down": "output.dense",
    },
    "llama": {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.o_proj",
        "gate": "mlp.gate_proj",
        "up": "mlp.up_proj",
        "down": "mlp.down_proj",
    },
    "deberta": {  # DeBERTa-v2/v3
        "q": "attention.self.query_proj",
        "k": "attention.self.key_proj",
        "v": "attention.self.value_proj",
        "o": "attention.output.dense",
        "up": "intermediate.dense",
        "down": "output.dense",
    },
    "phi3": {
        "qkv": "self_attn.qkv_proj",
        "o": "self_attn.o_proj",
        "gate_up": "mlp.gate_up_proj",
        "down": "mlp.down_proj",
    },
    "gpt2": {  # Conv1D leaves
        "qkv": "attn.c_attn",
        "o": "attn.c_proj",
        "up": "mlp.c_fc",
        "down": "mlp.c_proj",
    },
    "gpt_neox": {
        "qkv": "attention.query_key_value",
        "o": "attention.dense",
        "up": "mlp.dense_h_to_4h",
        "down": "mlp.dense_4h_to_h",
    },
    "falcon": {
        "qkv": "self_attention.query_key_value",
        "o": "self_attention.dense",
        "up": "mlp.dense_h_to_4h",
        "down": "mlp.dense_4h_to_h",
    },
    "opt": {
        "q": "self_attn.q_proj",
        "k": "self_attn.k_proj",
        "v": "self_attn.v_proj",
        "o": "self_attn.out_proj",
        "up": "fc1",
        "down": "fc2",
    },
    "modernbert": {
        "qkv": "attn.Wqkv",
        "o": "attn.Wo",
        "gate_up": "mlp.Wi",
        "down": "mlp.Wo",
    },
    "distilbert": {
        "q": "attention.q_lin",
        "k": "attention.k_lin",
        "v": "attention.v_lin",
        "o": "attention.out_lin",
        "up": "ffn.lin1",
        "down": "ffn.lin2",
    },
}

KNOWN_MODULES = frozenset(role for roles in FAMILY_ROLES.values() for role in roles)

# A fused module type -> the module types it holds.
FUSED: dict[str, tuple[str, ...]] = {"qkv": ("q", "k", "v"), "gate_up": ("gate", "up")}

# Named groups of module types; members the model lacks are dropped ("all_linear" = every leaf).
# Each names the fused form too, so a preset means the same thing on every family.
BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {
    "qv": ("q", "v"),
    "qkv": ("q", "k", "v", "qkv"),
    "attn": ("q", "k", "v", "qkv", "o"),
    "mlp": ("gate", "up", "gate_up", "down"),
    "all_linear": (),
}


@dataclass(frozen=True)
class LinearSite:
    """One linear leaf of one layer: the unit a per-cell size applies to."""

    layer: int
    module: str
    name: str
    in_features: int
    out_features: int
    conv1d: bool = False
    """True for GPT-2's ``Conv1D`` (weight ``in x out``; peft needs ``fan_in_fan_out``)."""


@dataclass(frozen=True)
class ModelLayout:
    """The layer stack of a model and the linear leaves of each layer.

    Attributes:
        family: The leaf-naming family (a key of :data:`FAMILY_ROLES`, e.g. ``llama`` also for
            Mistral, Qwen and Gemma, ``bert`` also for RoBERTa) or ``generic``.
        stack: Full name of the layer ``ModuleList`` (``bert.encoder.layer``).
        num_layers: Number of layers in the stack.
        modules: Module types of one layer, in model order.
        sites: Every (layer, module type) cell's linear leaf.
        hidden_size: Width of the residual stream (input width of the ``q`` leaf or first leaf).
    """

    family: str
    stack: str
    num_layers: int
    modules: tuple[str, ...]
    sites: tuple[LinearSite, ...]
    hidden_size: int
    past_key_values: bool = True
    """Whether the model (or its backbone) takes ``past_key_values``: peft's prefix tuning
    needs it (DeBERTa and ModernBERT do not)."""

    def site(self, layer: int, module: str) -> LinearSite:
        """The linear leaf of a cell; KeyError if the model has no such cell."""
        return self._index()[(layer, module)]

    def _index(self) -> dict[tuple[int, str], LinearSite]:
        cache = self.__dict__.get("_site_index")
        if cache is None:
            cache = {(s.layer, s.module): s for s in self.sites}
            object.__setattr__(self, "_site_index", cache)
        return cache

    def resolve_preset(self, members: tuple[str, ...]) -> tuple[str, ...]:
        """Module types of a preset that exist in this model, in model order."""
        if not members:
            return self.modules
        return tuple(m for m in self.modules if m in members)

    @property
    def uses_conv1d(self) -> bool:
        """Whether the leaves are GPT-2 style ``Conv1D`` (peft then needs ``fan_in_fan_out``)."""
        return any(s.conv1d for s in self.sites)

    def fused_members(self, members: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """Fused module types of this model whose parts ``members`` names without naming the
        fused type itself (e.g. ``{"qkv": ("q", "v")}`` for ``qv`` on Phi-3): such a preset
        cannot place adapters on the parts separately."""
        out = {}
        for fused, parts in FUSED.items():
            named = tuple(p for p in parts if p in members and p not in self.modules)
            if fused in self.modules and named and fused not in members:
                out[fused] = named
        return out

    def kv_width(self, layer: int) -> int:
        """Width of one layer's key (= value) projection output: the ``k`` leaf's, or for a fused
        ``qkv`` leaf ``(out - hidden) / 2`` (queries are ``hidden`` wide)."""
        if "k" in self.modules:
            return self.site(layer, "k").out_features
        return (self.site(layer, "qkv").out_features - self.hidden_size) // 2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, stored with the study."""
        return {
            "family": self.family,
            "stack": self.stack,
            "num_layers": self.num_layers,
            "modules": list(self.modules),
            "hidden_size": self.hidden_size,
            "sites": [s.__dict__ for s in self.sites],
            "past_key_values": self.past_key_values,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelLayout:
        """Inverse of :meth:`to_dict`."""
        sites = tuple(LinearSite(**s) for s in data["sites"])
        return cls(
            data["family"],
            data["stack"],
            data["num_layers"],
            tuple(data["modules"]),
            sites,
            data["hidden_size"],
            data.get("past_key_values", True),
        )

    @classmethod
    def from_model(cls, model: nn.Module) -> ModelLayout:
        """Find the layer stack (the ``ModuleList`` of identical blocks holding the most linear
        leaves) and name each leaf's module type. Works on meta-device models."""
        stack_name, stack = _find_stack(model)
        leaves = [_linear_leaves(block) for block in stack]
        family, roles = _detect_family(leaves[0])
        sites = tuple(
            LinearSite(i, roles.get(rel, rel), f"{stack_name}.{i}.{rel}", *_shape(leaf))
            for i, block_leaves in enumerate(leaves)
            for rel, leaf in block_leaves.items()
        )
        modules = tuple(roles.get(rel, rel) for rel in leaves[0])
        first = next((s for s in sites if s.module in ("q", "qkv")), sites[0])
        return cls(
            family, stack_name, len(stack), modules, sites, first.in_features, _takes_cache(model)
        )


def _takes_cache(model: nn.Module) -> bool:
    """peft's test for prefix tuning: the model's or its backbone's ``forward`` takes
    ``past_key_values``, or ``cache``, its name since transformers 5.24, which
    :mod:`autopeft.methods.prefix_compat` maps for peft."""
    import inspect

    candidates = [model, getattr(model, "base_model", model)]
    names = ("past_key_values", "cache")
    return any(n in inspect.signature(m.forward).parameters for m in candidates for n in names)


def _find_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        count = sum(len(_linear_leaves(child)) for child in module)
        if count and (best is None or count > best[0]):
            best = (count, name, module)
    if best is None:
        raise ValueError(f"no stack of layers with linear leaves found in {type(model).__name__}")
    return best[1], best[2]


def _leaf_types() -> tuple[type[nn.Module], ...]:
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D)


def _linear_leaves(block: nn.Module) -> dict[str, nn.Module]:
    kinds = _leaf_types()
    return {n: m for n, m in block.named_modules() if isinstance(m, kinds) and n}


def _shape(leaf: nn.Module) -> tuple[int, int, bool]:
    """``(in_features, out_features, conv1d)`` of a linear or ``Conv1D`` leaf."""
    if isinstance(leaf, nn.Linear):
        return leaf.in_features, leaf.out_features, False
    weight: torch.Tensor = leaf.weight  # type: ignore[assignment]  # Conv1D: in x out
    return int(weight.shape[0]), int(weight.shape[1]), True


def _detect_family(leaves: dict[str, nn.Module]) -> tuple[str, dict[str, str]]:
    """The family whose every leaf path the block has (the most specific if several do)."""
    complete = Counter(
        {
            f: len(roles)
            for f, roles in FAMILY_ROLES.items()
            if all(p in leaves for p in roles.values())
        }
    )
    if not complete:
        return "generic", {}
    family = complete.most_common(1)[0][0]
    return family, {path: role for role, path in FAMILY_ROLES[family].items()}


def layout_on_meta(config: Any, num_labels: int | None = 2) -> ModelLayout:
    """The layout of a model built from ``config`` on the meta device (no weights are read or
    allocated): a sequence classifier with ``num_labels`` labels, or with ``num_labels=None``
    a causal language model."""
    return ModelLayout.from_model(model_on_meta(config, num_labels))


def model_on_meta(config: Any, num_labels: int | None = 2) -> torch.nn.Module:
    """The model ``config`` describes, built on the meta device (``config`` is not changed):
    a sequence classifier with ``num_labels`` labels, or with ``num_labels=None`` a causal LM."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    config = copy.deepcopy(config)
    with torch.device("meta"):
        if num_labels is None:
            return AutoModelForCausalLM.from_config(config)
        config.num_labels = num_labels
        return AutoModelForSequenceClassification.from_config(config)
