"""The search-space file schema (``search_spaces/*.yaml``), parsed into frozen models.

A space names one PEFT method, a hard trainable-parameter budget, and its parameters. Each
parameter is either a constant (a plain value) or a typed range::

    version: 1
    name: lora_layerwise
    method: lora
    max_trainable_params: 150000
    parameters:
      target_modules: {type: categorical, choices: [qv, attn, all_linear]}
      rank: {type: int, choices: [0, 2, 4, 8], per: [layer, module]}
      dropout: 0.0
      learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}

The method itself can be searched: ``method: {type: categorical, choices: [lora, ia3, ...]}``
plus a ``methods:`` block with each method's own parameters (``parameters:`` then holds only
the ones every chosen method shares, e.g. ``learning_rate``); see :mod:`autopeft.methods.choice`::

    method: {type: categorical, choices: [lora, ia3]}
    parameters:
      learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    methods:
      lora: {rank: {type: int, choices: [0, 4, 8], per: layer}, target_modules: qv}
      ia3: {target_modules: attn}

Bounds are **inclusive**: ``{type: int, low: 0, high: 8}`` can draw 0 and 8. ``per`` expands a
parameter into one dimension per layer (``per: layer``) or per (layer, module type) cell
(``per: [layer, module]``); the layers and module types come from the model, not the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from autopeft.core.validation import StrictModel
from autopeft.space.allocation import AllocationSpec
from autopeft.space.params import ParamSpec, Per, Scalar

__all__ = ["ParamSpec", "ParamValue", "Per", "Scalar", "SearchSpace"]


def _param_kind(value: Any) -> str:
    if isinstance(value, dict | ParamSpec):
        return "Spec"
    return "List" if isinstance(value, list | tuple) else "Constant"


# A mapping is a searched ParamSpec; a list is a constant list (e.g. module types); else a constant.
ParamValue = Annotated[
    Annotated[ParamSpec, Tag("Spec")]
    | Annotated[tuple[str, ...], Tag("List")]
    | Annotated[Scalar, Tag("Constant")],
    Discriminator(_param_kind),
]


class SearchSpace(StrictModel):
    """A whole search-space file. Method-specific checks run after this, in the method."""

    version: Literal[1] = 1
    """The space format version; only ``1`` exists."""
    name: str = Field(min_length=1)
    """The space's name."""
    description: str = ""
    """Free text."""
    method: str | ParamSpec = "lora"
    """The PEFT method (``lora``, ``adalora``, ``loha``, ``lokr``, ``ia3``, ``vera``, ``prefix``,
    ``prompt``, ``ln_tuning``, ``bottleneck``, ``sappa``, ...), or ``{type: categorical,
    choices: [...]}`` to search the method (with a ``methods:`` block)."""
    max_trainable_params: int = Field(gt=0)
    """Hard budget: a configuration with more trainable adapter parameters is never trained."""
    module_presets: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Named lists of module types (``qv: [query, value]``), usable as
    ``target_modules`` choices."""
    parameters: dict[str, ParamValue]
    """The method's parameters: a constant, a list (constant module types) or a searched ``{type:
    ...}`` parameter. Shared by every method when the method is searched."""
    allocation: AllocationSpec | None = None
    """Ranks from a measured profile and a parameter budget instead of a rank per cell
    (LoRA only)."""
    methods: dict[str, dict[str, ParamValue]] = Field(default_factory=dict)
    """When the method is searched: each method's own parameters, by method name."""

    def method_choices(self) -> tuple[str, ...]:
        """The method names this space can use (one, unless the method is searched)."""
        if isinstance(self.method, ParamSpec):
            return tuple(str(c) for c in self.method.choices or ())
        return (self.method,)

    def searched(self) -> dict[str, ParamSpec]:
        """The parameters that are searched (not constants)."""
        return {k: v for k, v in self.parameters.items() if isinstance(v, ParamSpec)}

    def constants(self) -> dict[str, Any]:
        """The parameters fixed to one value."""
        return {k: v for k, v in self.parameters.items() if not isinstance(v, ParamSpec)}
