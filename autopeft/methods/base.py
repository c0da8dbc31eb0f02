"""The method contract: how a searched point becomes a real ``peft`` config.

To add a method, subclass :class:`Method` in ``autopeft/methods/<name>.py``, decorate it with
``@register_method("<name>")`` and list the module in ``builtin._BUILTIN``. Override exactly:

* :attr:`parameters` — the parameter names the method understands, and which may be ``per``;
* :meth:`check_space` — method rules on the space file (ranges, required parameters);
* :meth:`cell_sizes` — the per-(layer, module type) sizes of a point (0 = no adapter there);
* :meth:`count_params` — the exact number of trainable adapter parameters, before building;
* :meth:`build_config` — the ``peft`` config object;
* :meth:`verify` — check a built model against :meth:`count_params` and :meth:`cell_sizes`.

Optional: :meth:`canonical`, :meth:`params_tensor`, :meth:`check_bound`, :meth:`min_params`, and
:meth:`site_name` for methods whose cells are not linear leaves (norms, prefixes, adapters).
Methods with one shared size and a placement build on :class:`~autopeft.methods.placement.
PlacementMethod`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.core.compiled import CompiledConfig
from autopeft.core.validation import FieldIssue
from autopeft.models.layout import Cell
from autopeft.space.schema import ParamSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from peft import PeftConfig
    from torch import Tensor, nn

    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView

# Parameters every method accepts: they configure training or placement, not the adapter.
# ``gradient_checkpointing`` (a boolean, fixed or ``{type: categorical, choices: [false, true]}``)
# overrides the spec's ``fidelity.gradient_checkpointing`` per trial.
COMMON_PARAMETERS = frozenset({"learning_rate", "target_modules", "gradient_checkpointing"})


class Method(ABC):
    """Base class of every PEFT method autopeft can search."""

    name: ClassVar[str]
    #: Parameter name -> whether it may vary per layer / per cell (``per:``).
    parameters: ClassVar[dict[str, bool]]

    def check_space(self, space: SearchSpace) -> None:
        """Raise :class:`~autopeft.core.validation.FieldIssue` for a parameter it cannot take.

        The base rule: every parameter is known, and only per-cell-capable ones use ``per``.
        """

        allowed = set(self.parameters) | COMMON_PARAMETERS
        for name, value in space.parameters.items():
            if name not in allowed:
                raise FieldIssue(
                    ("parameters", name),
                    f"unknown parameter for method {self.name!r}; allowed: "
                    + ", ".join(sorted(allowed)),
                )
            per = value.per if isinstance(value, ParamSpec) else "study"
            if per != "study" and not self.parameters.get(name, False):
                raise FieldIssue(("parameters", name, "per"), f"{name} cannot vary per {per}", per)

    @abstractmethod
    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        """Size of the adapter at every active cell (only sizes > 0)."""

    @abstractmethod
    def count_params(self, bound: SpaceView, point: Point) -> int:
        """Exact trainable adapter parameters of ``point`` (classification head excluded)."""

    @abstractmethod
    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> PeftConfig:
        """The ``peft`` config of ``point``."""

    @abstractmethod
    def verify(self, model: nn.Module, compiled: CompiledConfig) -> None:
        """Raise ``RuntimeError`` if the built model disagrees with the compiled arithmetic."""

    def canonical(self, bound: SpaceView, point: Point) -> Point:
        """An equivalent point with the dimensions ``point`` does not use set to a fixed value
        (so the surrogate model sees one encoding per distinct adapter). Default: unchanged."""
        return point

    def params_tensor(self, bound: SpaceView, encoder: Any) -> Callable[[Tensor], Tensor] | None:
        """Optional vectorised :meth:`count_params` over encoded rows (``... x d`` -> ``...``),
        for samplers that score many candidates; None means "decode and count one by one"."""
        return None

    def runtime_config(self, peft_config: dict[str, Any], max_steps: int) -> dict[str, Any]:
        """The peft config JSON to build for a trial of ``max_steps`` steps (methods whose
        config depends on the training length, like AdaLoRA's ``total_step``). Default: as is."""
        return peft_config

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:  # noqa: B027 - hook
        """Called after every ``optimizer.step()`` and before ``zero_grad`` (gradients are
        still there); ``step`` counts from 1. Default: nothing."""

    def learned_config(self, model: nn.Module, compiled: CompiledConfig) -> dict[str, Any] | None:
        """After training: a peft config JSON to export instead of the compiled one (e.g. the
        ranks AdaLoRA learned, as plain LoRA); None (the default) exports the compiled one."""
        return None

    def check_bound(self, bound: SpaceView) -> None:  # noqa: B027 - optional hook
        """Raise (via ``bound.fail``) if the space does not fit the model's module sizes."""

    def min_params(self, bound: SpaceView) -> int:
        """The fewest trainable parameters any valid point can have (for budget checks)."""
        return 0

    def site_name(self, bound: SpaceView, layer: int, module: str) -> str:
        """Full name of the module a cell adapts (default: the cell's linear leaf)."""
        return bound.layout.site(layer, module).name

    def compile(self, bound: SpaceView, point: Point, task_type: str) -> CompiledConfig:
        """Compile ``point`` into a :class:`CompiledConfig`."""
        placement: dict[int, dict[str, int]] = {}
        module_sizes: dict[str, int] = {}
        order = {m: i for i, m in enumerate(bound.layout.modules)}
        cells = sorted(
            self.cell_sizes(bound, point).items(),
            key=lambda c: (c[0][0], order.get(c[0][1], len(order)), c[0][1]),
        )
        for (layer, module), size in cells:
            placement.setdefault(layer, {})[module] = size
            module_sizes[self.site_name(bound, layer, module)] = size
        training = {}
        constants = bound.space.constants()
        if "learning_rate" in point or "learning_rate" in constants:
            training["learning_rate"] = float(bound.value(point, "learning_rate"))
        if "gradient_checkpointing" in point or "gradient_checkpointing" in constants:
            training["gradient_checkpointing"] = bool(bound.value(point, "gradient_checkpointing"))
        config = self.build_config(bound, point, task_type)
        return CompiledConfig(
            self.name,
            config_to_json(config),
            placement,
            module_sizes,
            self.count_params(bound, point),
            training,
        )


#: Name part of the trainable copies peft keeps of ``modules_to_save`` (the classification head).
SAVED_MODULE_MARKER = ".modules_to_save."


def check_trainable_count(
    model: nn.Module, marker: str, compiled: CompiledConfig, label: str
) -> None:
    """Raise ``RuntimeError`` unless the trainable parameters whose names contain ``marker``
    add up to the compiled arithmetic and nothing else trains but peft's ``modules_to_save``
    copies (the classification head under ``SEQ_CLS``; none under ``CAUSAL_LM``), for
    :meth:`Method.verify`."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    stray = [n for n, _ in trainable if marker not in n and SAVED_MODULE_MARKER not in n]
    if stray:
        raise RuntimeError(
            f"built {label} model trains parameters that are neither the adapter's nor a "
            f"saved module's: {', '.join(stray[:5])}" + (" ..." if len(stray) > 5 else "")
        )
    counted = sum(p.numel() for n, p in trainable if marker in n)
    if counted != compiled.trainable_params:
        raise RuntimeError(
            f"built model has {counted} {label} parameters, compiled arithmetic says "
            f"{compiled.trainable_params}"
        )


def config_to_json(config: PeftConfig) -> dict[str, Any]:
    """A ``peft`` config as plain JSON data (sets become sorted lists, enums their values)."""
    return json.loads(json.dumps(config.to_dict(), default=_json_default, sort_keys=True))


def config_from_json(data: dict[str, Any]) -> PeftConfig:
    """Rebuild the ``peft`` config of :func:`config_to_json`."""
    from peft import get_peft_config

    from autopeft.tuners.bottleneck.registration import ensure_registered

    ensure_registered()
    return get_peft_config(dict(data))


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot serialise {type(value).__name__}")
