"""autopeft: automatic PEFT configuration search.

The public API re-exported here loads its heavy dependencies (torch, peft, optuna) lazily::

    import autopeft
    outcome = autopeft.run_study("studies/demo.yaml")
    config = autopeft.load_peft_config("sqlite:///runs/demo.db", "demo", pick="knee")
    config, training_args = autopeft.load_trial("sqlite:///runs/demo.db", "demo", pick="knee")
"""

from __future__ import annotations

import importlib
from typing import Any

from autopeft.exceptions import AutoPeftError, UserInputError
from autopeft.tuners.bottleneck import hook as _peft_hook

__version__ = "0.1.0"

__all__ = [
    "AutoPeftError",
    "Client",
    "UserInputError",
    "__version__",
    "export_config",
    "list_studies",
    "load_peft_config",
    "load_space",
    "load_study",
    "load_trial",
    "load_view",
    "prepare_study",
    "run_study",
]

_LAZY = {
    "Client": "autopeft.service.client",
    "run_study": "autopeft.run.driver",
    "prepare_study": "autopeft.run.prepare",
    "load_study": "autopeft.spec",
    "load_space": "autopeft.methods.binding",
    "load_peft_config": "autopeft.results.export",
    "export_config": "autopeft.results.export",
    "load_trial": "autopeft.results.export",
    "list_studies": "autopeft.results.views",
    "load_view": "autopeft.results.views",
}


# `import autopeft` makes peft know autopeft's own peft types (bottleneck adapters) as soon as
# peft is imported, so `PeftModel.from_pretrained` reads our exports; peft itself stays lazy.
_peft_hook.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autopeft' has no attribute {name!r}")
