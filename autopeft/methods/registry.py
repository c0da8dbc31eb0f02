"""Method registry: name -> :class:`~autopeft.methods.base.Method`, imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from autopeft.exceptions import SearchSpaceError
from autopeft.methods.base import Method

# Built-in methods: name -> module that registers it (imported lazily).
_BUILTIN: dict[str, str] = {
    "lora": "autopeft.methods.lora",
    # LoRA with ranks from an `allocation:` block; bind_space picks it for such spaces.
    "allocated_lora": "autopeft.allocation.method",
    "adalora": "autopeft.methods.adalora",
    "loha": "autopeft.methods.loha",
    "lokr": "autopeft.methods.lokr",
    "ia3": "autopeft.methods.ia3",
    "vera": "autopeft.methods.vera",
    "ln_tuning": "autopeft.methods.ln_tuning",
    "prefix_tuning": "autopeft.methods.prompts",
    "prompt_tuning": "autopeft.methods.prompts",
    "serial_adapter": "autopeft.methods.bottleneck.methods",
    "parallel_adapter": "autopeft.methods.bottleneck.methods",
    "sappa": "autopeft.methods.bottleneck.sappa",
}
_REGISTRY: dict[str, type[Method]] = {}
# Registered variants that bind_space picks by itself; a space file never names them.
_VARIANTS = frozenset({"allocated_lora"})


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator registering a :class:`Method` under ``name``; duplicates are rejected.

    The class's :attr:`Method.name` (what compiled configs and messages call it) becomes
    ``name`` unless the class sets its own (a variant that compiles to a known method)."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name]!r}")
        if "name" not in cls.__dict__:
            cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def method_names() -> list[str]:
    """Every method name a space file may use, built-in or registered."""
    return sorted((set(_BUILTIN) | set(_REGISTRY)) - _VARIANTS)


def get_method(name: str) -> Method:
    """A fresh instance of the method ``name``; unknown names list the valid ones."""
    if name not in _REGISTRY and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _REGISTRY:
        raise SearchSpaceError(
            f"unknown method {name!r}; known methods: {', '.join(method_names())}"
        )
    return _REGISTRY[name]()
