"""Which methods and module presets apply to a model: each method's smallest space is bound to
the model's layout, and each built-in preset resolved, exactly as a study would.

Used by ``autopeft inspect``; the reasons are the messages binding a space would give.
"""

from __future__ import annotations

from dataclasses import dataclass

from autopeft.exceptions import SearchSpaceError
from autopeft.methods.binding import bind_space, check_methods
from autopeft.methods.builtin import method_names
from autopeft.models.layout import BUILTIN_PRESETS, ModelLayout
from autopeft.space.schema import SearchSpace

# method -> the parameters of a small space that every model it supports accepts.
PROBE_PARAMETERS: dict[str, dict[str, object]] = {
    "lora": {"rank": 2},
    "adalora": {"init_r": 2, "target_r": 1},
    "loha": {"rank": 2},
    "lokr": {"rank": 2},
    "ia3": {},
    "vera": {"rank": 2},
    "ln_tuning": {},
    "prefix_tuning": {"num_virtual_tokens": 2},
    "prompt_tuning": {"num_virtual_tokens": 2},
    "serial_adapter": {"size": 2},
    "parallel_adapter": {"size": 2},
    "sappa": {"serial": 1, "parallel": 0, "prefix": 0},
}


@dataclass(frozen=True)
class Applicability:
    """A method or preset and whether it applies: ``reason`` is empty when it does."""

    name: str
    reason: str = ""
    modules: tuple[str, ...] = ()

    @property
    def applies(self) -> bool:
        return not self.reason


def method_applicability(layout: ModelLayout) -> list[Applicability]:
    """Every registered method, bound with a small space to ``layout``."""
    out = []
    for name in method_names():
        data = {
            "version": 1,
            "name": f"probe-{name}",
            "method": name,
            "max_trainable_params": 10**12,
            "parameters": PROBE_PARAMETERS.get(name, {}),
        }
        try:
            space = SearchSpace.model_validate(data)
            check_methods(space)
            bind_space(space, layout, f"method {name}")
        except SearchSpaceError as exc:
            out.append(Applicability(name, _reason(str(exc))))
        except Exception as exc:
            out.append(Applicability(name, _reason(str(exc))))
        else:
            out.append(Applicability(name))
    return out


def preset_applicability(layout: ModelLayout) -> list[Applicability]:
    """Every built-in module preset: the module types it picks on ``layout``, or why not."""
    out = []
    for name, members in BUILTIN_PRESETS.items():
        fused = layout.fused_members(members)
        resolved = layout.resolve_preset(members)
        if fused:
            kind, parts = next(iter(fused.items()))
            out.append(Applicability(name, f"{', '.join(parts)} are fused into {kind!r}"))
        elif not resolved:
            out.append(Applicability(name, "no module of this model"))
        else:
            out.append(Applicability(name, modules=resolved))
    return out


def _reason(message: str) -> str:
    """The rule of a located message (``file: key: rule (got value)`` -> ``rule``)."""
    rule = message.split(": ", 2)[-1]
    return rule.rsplit(" (got ", 1)[0]
