"""Discover a model's layer stack and its linear module types, for any transformer family.

A *cell* is a (layer index, module type) pair, e.g. ``(3, "v")``. Module types are family-neutral
roles (``q k v o gate up down``) mapped from each family's own leaf names, so one search-space
file works on BERT (``attention.self.value``) and Llama (``self_attn.v_proj``) alike. A leaf
that no family table names keeps its relative path as its module type, so unknown families still
work, with their own names.
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

# Named groups of module types; members the model lacks are dropped ("all_linear" = every leaf).
BUILTIN_PRESETS: dict[str, tuple[str, ...]] = {
    "qv": ("q", "v"),
    "qkv": ("q", "k", "v"),
    "attn": ("q", "k", "v", "o"),
    "mlp": ("gate", "up", "down"),
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


@dataclass(frozen=True)
class ModelLayout:
    """The layer stack of a model and the linear leaves of each layer.

    Attributes:
        family: ``bert``, ``llama``, ``distilbert`` or ``generic``.
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, stored with the study."""
        return {
            "family": self.family,
            "stack": self.stack,
            "num_layers": self.num_layers,
            "modules": list(self.modules),
            "hidden_size": self.hidden_size,
            "sites": [s.__dict__ for s in self.sites],
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
        )

    @classmethod
    def from_model(cls, model: nn.Module) -> ModelLayout:
        """Find the layer stack (the ``ModuleList`` of identical blocks holding the most linear
        leaves) and name each leaf's module type. Works on meta-device models."""
        stack_name, stack = _find_stack(model)
        leaves = [_linear_leaves(block) for block in stack]
        family, roles = _detect_family(leaves[0])
        sites = tuple(
            LinearSite(
                i, roles.get(rel, rel), f"{stack_name}.{i}.{rel}", lin.in_features, lin.out_features
            )
            for i, block_leaves in enumerate(leaves)
            for rel, lin in block_leaves.items()
        )
        modules = tuple(roles.get(rel, rel) for rel in leaves[0])
        first = next((s for s in sites if s.module == "q"), sites[0])
        return cls(family, stack_name, len(stack), modules, sites, first.in_features)


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


def _linear_leaves(block: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear) and n}


def _detect_family(leaves: dict[str, nn.Linear]) -> tuple[str, dict[str, str]]:
    score = Counter(
        {f: sum(p in leaves for p in roles.values()) for f, roles in FAMILY_ROLES.items()}
    )
    family, hits = score.most_common(1)[0]
    if hits < len(FAMILY_ROLES[family]):
        return "generic", {}
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
