"""The method registry: name -> :class:`~autopeft.methods.base.Method` class, filled by
:func:`register_method` as method modules are imported. Looking a method up by name (and importing
a built-in one on first use) is :mod:`autopeft.methods.builtin`."""

from __future__ import annotations

from collections.abc import Callable

from autopeft.methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}


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


def registered() -> dict[str, type[Method]]:
    """The registered methods by name (the live table: do not modify)."""
    return _REGISTRY
