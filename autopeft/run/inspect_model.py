"""``autopeft inspect MODEL``: what autopeft sees in a model before you write a space for it.

The model is resolved as a study resolves it (a built-in name, a local directory or ``.gguf``
file, see :mod:`autopeft.models.resolve`), built on the meta device from its config (no weights
read), and described: family, layer count, each module role with its leaf, shape and parameter
count, the presets and methods that apply (and why the others do not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autopeft.exceptions import UserInputError
from autopeft.methods.applicability import (
    Applicability,
    method_applicability,
    preset_applicability,
)
from autopeft.models.layout import ModelLayout

TASKS = ("causal_lm", "seq_cls")
# model types fine-tuned as encoders (classification) when the config does not say
_ENCODERS = frozenset(
    {"bert", "roberta", "xlm-roberta", "deberta", "deberta-v2", "modernbert", "distilbert"}
    | {"electra", "albert", "mpnet", "camembert"}
)


@dataclass(frozen=True)
class Role:
    """One module role of a layer: its leaf, shape and parameters (per layer and in all)."""

    module: str
    leaf: str
    in_features: int
    out_features: int
    params: int
    all_layers: int


@dataclass(frozen=True)
class ModelReport:
    """What :func:`inspect_model` found."""

    model: str
    path: Path
    model_type: str
    task: str
    layout: ModelLayout
    total_params: int
    roles: tuple[Role, ...]
    presets: tuple[Applicability, ...]
    methods: tuple[Applicability, ...]

    def lines(self) -> list[str]:
        """The report as text lines."""
        lay = self.layout
        out = [
            f"model: {self.model}" + ("" if str(self.path) == self.model else f" ({self.path})"),
            f"architecture: {self.model_type} (leaf names: {lay.family}), task {self.task}",
            f"layers: {lay.num_layers} in {lay.stack}, hidden size {lay.hidden_size}, "
            f"{self.total_params:,} parameters",
            "module roles (one layer):",
        ]
        width = max(len(r.leaf) for r in self.roles)
        for r in self.roles:
            kind = " Conv1D" if lay.site(0, r.module).conv1d else ""
            out.append(
                f"  {r.module:<8} {r.leaf:<{width}}  {r.in_features} -> {r.out_features}{kind}  "
                f"{r.params:,} params ({r.all_layers:,} in all layers)"
            )
        out.append("presets:")
        out += [_row(p, ", ".join(p.modules)) for p in self.presets]
        out.append("methods:")
        out += [_row(m, "applies") for m in self.methods]
        return out


def _row(item: Applicability, ok: str) -> str:
    return f"  {item.name:<16} {ok if item.applies else 'no: ' + item.reason}"


def inspect_model(model: str, task: str | None = None, base_dir: Path | None = None) -> ModelReport:
    """Describe ``model`` (see the module docstring).

    Raises:
        UserInputError: an unknown model or task, or a model with no layer stack.
    """
    import torch
    from transformers import AutoConfig

    from autopeft.models.layout import model_on_meta
    from autopeft.models.resolve import resolve_model

    if task is not None and task not in TASKS:
        raise UserInputError(f"--task: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    path = resolve_model(model, base_dir)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    task = task or _default_task(config)
    net: torch.nn.Module = model_on_meta(config, None if task == "causal_lm" else 2)
    try:
        layout = ModelLayout.from_model(net)
    except ValueError as exc:
        raise UserInputError(f"model {model!r}: {exc}") from None
    leaves = dict(net.named_modules())
    roles = []
    for site in (s for s in layout.sites if s.layer == 0):
        params = sum(p.numel() for p in leaves[site.name].parameters())
        every = sum(
            sum(p.numel() for p in leaves[s.name].parameters())
            for s in layout.sites
            if s.module == site.module
        )
        leaf = site.name.removeprefix(f"{layout.stack}.0.")
        roles.append(Role(site.module, leaf, site.in_features, site.out_features, params, every))
    return ModelReport(
        model,
        path,
        str(getattr(config, "model_type", "?")),
        task,
        layout,
        sum(p.numel() for p in net.parameters()),
        tuple(roles),
        tuple(preset_applicability(layout)),
        tuple(method_applicability(layout)),
    )


def _default_task(config: object) -> str:
    """``causal_lm`` if the config names a causal-LM architecture or is not a known encoder."""
    names = getattr(config, "architectures", None) or ()
    if any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names):
        return "causal_lm"
    if any(n.endswith(("ForSequenceClassification", "ForMaskedLM")) for n in names):
        return "seq_cls"
    return "seq_cls" if getattr(config, "model_type", "") in _ENCODERS else "causal_lm"
