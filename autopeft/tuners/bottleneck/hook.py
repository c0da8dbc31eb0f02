"""Register autopeft's peft types (``BOTTLENECK``) whenever ``peft`` is imported after
``import autopeft``, without importing peft (and torch) at ``import autopeft`` time.

If peft is already imported, registration happens at once. Otherwise a meta-path finder waits
for the ``peft`` package to finish loading, registers, and removes itself. The registration
itself is :func:`autopeft.tuners.bottleneck.registration.ensure_registered`, the one place that
makes peft know the type; autopeft's own code calls it before it builds or reads a config.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any


def install() -> None:
    """Arrange for :func:`autopeft.tuners.bottleneck.registration.ensure_registered` to run once
    peft is importable."""
    if "peft" in sys.modules and hasattr(sys.modules["peft"], "PeftModel"):
        _register()
    elif not any(isinstance(f, _PeftFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PeftFinder())


def _register() -> None:
    loading = (
        "autopeft.tuners.bottleneck.registration",
        "autopeft.tuners.bottleneck.model",
        "autopeft.tuners.bottleneck.config",
        "autopeft.tuners.bottleneck.layer",
    )
    if any(_initializing(name) for name in loading):
        return  # peft is being imported by our own tuner, whose callers register before use
    from autopeft.tuners.bottleneck.registration import ensure_registered

    ensure_registered()


def _initializing(name: str) -> bool:
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and bool(getattr(spec, "_initializing", False))


class _PeftFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level ``peft`` package to register after it executes."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "peft":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _register()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
