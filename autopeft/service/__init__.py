"""autopeft as a service: the HTTP API and web UI of ``autopeft serve``, and its client.

``create_app`` needs the ``service`` extra (FastAPI); :class:`~autopeft.service.client.Client`
needs only the standard library. Both load lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Client", "create_app"]

_LAZY = {"create_app": "autopeft.service.app", "Client": "autopeft.service.client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autopeft.service' has no attribute {name!r}")
