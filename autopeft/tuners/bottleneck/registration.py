"""Register the ``BOTTLENECK`` peft type with peft's own method registry, once.

``peft.utils.register_peft_method`` requires the name to be a member of ``peft.PeftType``, a
closed ``enum``; we add the member first (the only way to register a type from outside peft in
0.21). :func:`ensure_registered` is idempotent. ``import autopeft`` arranges for it
to run as soon as ``peft`` is imported (see :mod:`autopeft.tuners.bottleneck.hook`), so user
code needs nothing but ``import autopeft`` before ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

from typing import Any

from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import PeftType, register_peft_method

from autopeft.tuners.bottleneck.model import PEFT_TYPE, BottleneckConfig, BottleneckModel
from autopeft.tuners.bottleneck.prefix import register_kernel

__all__ = ["BottleneckConfig", "ensure_registered"]

_done = False


def ensure_registered() -> None:
    """Make ``peft`` know the ``BOTTLENECK`` type (config, tuner and state-dict prefix)."""
    global _done
    if _done:
        return
    register_kernel()
    _add_enum_member(PeftType, PEFT_TYPE)
    if PeftType[PEFT_TYPE] not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(
            name=PEFT_TYPE.lower(), config_cls=BottleneckConfig, model_cls=BottleneckModel
        )
    _done = True


def _add_enum_member(enum_cls: type, name: str) -> None:
    """Add ``name = "name"`` to a ``(str, Enum)`` class (no-op if present)."""
    if name in enum_cls._member_map_:  # type: ignore[attr-defined]
        return
    member: Any = str.__new__(enum_cls, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = enum_cls
    member.__init__(name)
    type.__setattr__(enum_cls, name, member)
    enum_cls._member_map_[name] = member  # type: ignore[attr-defined]
    enum_cls._value2member_map_[name] = member  # type: ignore[attr-defined]
    enum_cls._member_names_.append(name)  # type: ignore[attr-defined]
