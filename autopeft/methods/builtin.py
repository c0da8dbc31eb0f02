"""Methods by name: the built-in ones are imported on first use, then looked up in the registry
(:mod:`autopeft.methods.registry`), where each method module registers itself."""

from __future__ import annotations

import importlib

from autopeft.exceptions import SearchSpaceError
from autopeft.methods.base import Method
from autopeft.methods.registry import registered

# Built-in methods: name -> module that registers it (imported lazily).
_BUILTIN: dict[str, str] = {
    "lora": "autopeft.methods.lora",
    # LoRA with ranks from an `allocation:` block; bind_space picks it for such spaces.
    "allocated_lora": "autopeft.methods.allocated",
    "adalora": "autopeft.methods.adalora",
    "loha": "autopeft.methods.loha",
    "lokr": "autopeft.methods.lokr",
    "ia3": "autopeft.methods.ia3",
    "vera": "autopeft.methods.vera",
    "ln_tuning": "autopeft.methods.ln_tuning",
    "prefix_tuning": "autopeft.methods.prompts",
    "prompt_tuning": "autopeft.methods.prompts",
    "serial_adapter": "autopeft.methods.bottleneck",
    "parallel_adapter": "autopeft.methods.bottleneck",
    "sappa": "autopeft.methods.sappa",
}
# Registered variants that bind_space picks by itself; a space file never names them.
_VARIANTS = frozenset({"allocated_lora"})


def method_names() -> list[str]:
    """Every method name a space file may use, built-in or registered."""
    return sorted((set(_BUILTIN) | set(registered())) - _VARIANTS)


def get_method(name: str) -> Method:
    """A fresh instance of the method ``name``; unknown names list the valid ones."""
    if name not in registered() and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in registered():
        raise SearchSpaceError(
            f"unknown method {name!r}; known methods: {', '.join(method_names())}"
        )
    return registered()[name]()
