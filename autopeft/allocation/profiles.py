"""Per-(layer, module) sensitivity and importance profiles, measured on calibration batches.

Two kinds are measured from the same gradients of the task loss (model in eval mode, so no
dropout; the classification head is the trial's seeded head):

* ``sensitivity`` — the sum over batches of squared gradients of each candidate weight matrix,
  divided by its number of entries (SPT, He et al. 2023, https://arxiv.org/abs/2308.13228; the
  empirical diagonal Fisher of FIM-guided rank allocation);
* ``importance`` — first-order Taylor importance ``|W * dL/dW|`` averaged over batches and over
  the matrix's entries (Molchanov et al. 2019, https://arxiv.org/abs/1906.10771; the
  sensitivity of AdaLoRA, https://arxiv.org/abs/2303.10512).

Cell scores are normalised per matrix (mean per entry), then scaled to sum to 1 over the
profile. Layer scores (IST / LoRA-drop style) sum each layer's *total*, not per-entry, score,
also scaled to sum to 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from autopeft.models.layout import ModelLayout

Cell = tuple[int, str]
GRADIENT_KINDS = ("sensitivity", "importance")


@dataclass(frozen=True)
class Profile:
    """Scores of one kind over a model's (layer, module type) cells.

    Attributes:
        kind: ``sensitivity``, ``importance`` or ``adalora``.
        scores: Cell -> score, summing to 1 (the allocators' input).
        layer_scores: Layer -> score, summing to 1.
        seconds: Wall time it took to measure (shared by kinds measured together).
        extra: Kind-specific data (e.g. AdaLoRA's learned ranks).
    """

    kind: str
    scores: dict[Cell, float]
    layer_scores: dict[int, float]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (cells as ``"layer.module"`` keys)."""
        return {
            "kind": self.kind,
            "scores": {f"{layer}.{m}": s for (layer, m), s in self.scores.items()},
            "layer_scores": {str(k): v for k, v in self.layer_scores.items()},
            "seconds": self.seconds,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        """Inverse of :meth:`to_json`."""
        scores = {}
        for key, value in data["scores"].items():
            layer, module = key.split(".", 1)
            scores[(int(layer), module)] = float(value)
        layers = {int(k): float(v) for k, v in data["layer_scores"].items()}
        return cls(data["kind"], scores, layers, float(data["seconds"]), data.get("extra", {}))

    def modules(self) -> list[str]:
        """Module types in first-seen order."""
        return list(dict.fromkeys(m for _, m in self.scores))

    def layers(self) -> list[int]:
        """Layer indices, ascending."""
        return sorted({layer for layer, _ in self.scores})


def calibration_batches(
    train: dict[str, torch.Tensor], n_batches: int, batch_size: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """``n_batches`` seeded random batches of the tokenized training split (wrapping around
    with a fresh permutation if the split is smaller than ``n_batches * batch_size``)."""
    import torch

    n = train["labels"].shape[0]
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    batches = []
    cursor = 0
    for _ in range(n_batches):
        if cursor + min(batch_size, n) > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        batches.append({k: v[idx] for k, v in train.items()})
    return batches


def gradient_profiles(
    model: nn.Module,
    layout: ModelLayout,
    batches: list[dict[str, torch.Tensor]],
    kinds: tuple[str, ...] = GRADIENT_KINDS,
    device: torch.device | None = None,
) -> dict[str, Profile]:
    """Measure ``kinds`` (a subset of :data:`GRADIENT_KINDS`) on every cell of ``layout``.

    The model's weights are not changed; ``requires_grad`` is restored to False and the
    gradients are dropped afterwards.
    """
    import torch

    unknown = set(kinds) - set(GRADIENT_KINDS)
    if unknown:
        raise ValueError(f"unknown gradient profile kinds {sorted(unknown)}")
    t0 = time.perf_counter()
    modules = dict(model.named_modules())
    weights = {(s.layer, s.module): modules[_find(modules, s.name)].weight for s in layout.sites}
    sens = {c: 0.0 for c in weights}
    imp = {c: 0.0 for c in weights}
    was_training = model.training
    model.eval()
    try:
        for w in weights.values():
            w.requires_grad_(True)
        for batch in batches:
            batch = {k: v.to(device) if device is not None else v for k, v in batch.items()}
            model(**batch).loss.backward()
            with torch.no_grad():
                for c, w in weights.items():
                    g = w.grad
                    sens[c] += float(g.double().pow(2).sum())
                    imp[c] += float((w.double() * g.double()).abs().sum())
                    w.grad = None
    finally:
        for w in weights.values():
            w.requires_grad_(False)
            w.grad = None
        model.train(was_training)
    seconds = time.perf_counter() - t0
    numel = {c: w.numel() for c, w in weights.items()}
    totals = {"sensitivity": sens, "importance": imp}
    out = {}
    for kind in kinds:
        total = totals[kind]
        per_entry = {c: total[c] / numel[c] / len(batches) for c in total}
        layer_total: dict[int, float] = {}
        for (layer, _), value in total.items():
            layer_total[layer] = layer_total.get(layer, 0.0) + value
        out[kind] = Profile(kind, normalise(per_entry), normalise(layer_total), seconds)
    return out


def _find(modules: dict[str, Any], name: str) -> str:
    """The full module name of a layout site inside ``modules`` (peft wrappers add prefixes)."""
    if name in modules:
        return name
    hits = [n for n in modules if n.endswith("." + name)]
    if len(hits) != 1:
        raise KeyError(f"module {name!r} not found in the model")
    return hits[0]


def normalise(values: dict[Any, float]) -> dict[Any, float]:
    total = sum(values.values())
    if total <= 0:
        return {k: 1.0 / len(values) for k in values}
    return {k: v / total for k, v in values.items()}
