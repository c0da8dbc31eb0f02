"""A searched parameter of a search-space file: its type, domain and sharing (``per``)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from autopeft.core.validation import StrictModel

Scalar = int | float | str | bool
Per = Literal["study", "layer", "cell"]


class ParamSpec(StrictModel):
    """A searched parameter: ``int``, ``float`` or ``categorical``; bounds inclusive.

    Attributes:
        type: ``int`` (a range ``low..high`` with ``step``, or an ordinal ladder ``choices``),
            ``float`` (``low..high``) or ``categorical`` (``choices``, unordered).
        log: Sample and model on a log scale (``low > 0`` required).
        per: ``study`` (one value, the default), ``layer`` or ``[layer, module]`` (a value per
            (layer, module type) cell).
    """

    type: Literal["int", "float", "categorical"]
    """``int`` (a range ``low..high`` with ``step``, or an ordinal ladder ``choices``), ``float``
    (``low..high``) or ``categorical`` (``choices``, unordered)."""
    low: int | float | None = None
    """Lower bound, inclusive (``int``, ``float``)."""
    high: int | float | None = None
    """Upper bound, inclusive (``int``, ``float``)."""
    step: int | None = Field(default=None, ge=1)
    """Spacing of an ``int`` range; ``high - low`` must be a multiple of it."""
    log: bool = False
    """Sample and model on a log scale (``low > 0`` required)."""
    choices: tuple[Scalar, ...] | None = None
    """The values of a ``categorical`` parameter, or the sorted ladder of an ``int`` one."""
    per: Per = "study"
    """Sharing: ``study`` (one value, the default), ``layer`` (a value per layer) or ``[layer,
    module]`` (a value per (layer, module type) cell); the layers and module types come from the
    model."""

    @field_validator("per", mode="before")
    @classmethod
    def _normalise_per(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if list(value) == ["layer", "module"]:
                return "cell"
            if list(value) == ["layer"]:
                return "layer"
            raise ValueError("must be 'layer' or [layer, module]")
        if value == "module":
            raise ValueError("must be 'layer' or [layer, module]")
        return value

    @model_validator(mode="after")
    def _check_domain(self) -> ParamSpec:
        if self.type == "categorical" or (self.type == "int" and self.choices is not None):
            self._check_choices()
        else:
            self._check_range()
        return self

    def _check_choices(self) -> None:
        if not self.choices:
            raise ValueError(f"type {self.type} needs a non-empty `choices` list")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"`choices` must be unique, got {list(self.choices)}")
        if self.type == "int" and not all(_is_int(c) for c in self.choices):
            raise ValueError(f"type int needs integer choices, got {list(self.choices)}")
        if self.type == "int" and list(self.choices) != sorted(self.choices):  # type: ignore[type-var,unused-ignore]
            raise ValueError(
                f"int choices are an ordered ladder: sort them, got {list(self.choices)}"
            )
        if self.low is not None or self.high is not None:
            raise ValueError("give either `choices` or `low`/`high`, not both")

    def _check_range(self) -> None:
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type} needs `low` and `high` (or `choices`)")
        if self.low > self.high:
            raise ValueError(f"`low <= high` must hold, but got low={self.low}, high={self.high}")
        if self.type == "int" and not (_is_int(self.low) and _is_int(self.high)):
            raise ValueError(f"type int needs integer bounds, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        if self.step is not None and self.type != "int":
            raise ValueError("`step` applies to type int only")
        if self.log and (self.step or 1) != 1:
            raise ValueError("log scale and step > 1 cannot be combined")
        if self.step and (self.high - self.low) % self.step:
            raise ValueError(
                f"bounds are inclusive, so high - low must be a multiple of step, but got "
                f"low={_num(self.low)}, high={_num(self.high)}, step={self.step}"
            )

    def values(self) -> tuple[Scalar, ...] | None:
        """The finite list of values, for choices and int ranges; None for floats."""
        if self.choices is not None:
            return self.choices
        if self.type == "int":
            assert self.low is not None and self.high is not None
            return tuple(range(int(self.low), int(self.high) + 1, self.step or 1))
        return None

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the domain (bounds inclusive)."""
        finite = self.values()
        if finite is not None:
            return any(value == v and type(value) is type(v) for v in finite) or (
                self.type == "int" and _is_int(value) and int(value) in finite
            )
        assert self.low is not None and self.high is not None
        return isinstance(value, int | float) and self.low <= float(value) <= self.high

    def describe(self) -> str:
        """The domain in words, for error messages."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        scale = ", log scale" if self.log else ""
        step = f", step {self.step}" if self.step and self.step > 1 else ""
        return f"{self.type} in [{_num(self.low)}, {_num(self.high)}]{step}{scale}"


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and (
        isinstance(value, int)
        or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    )


def _num(value: float | None) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)
