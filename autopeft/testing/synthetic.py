"""A synthetic PEFT-like problem for testing and benchmarking samplers without training.

Accuracy saturates in the adapter capacity placed in each (layer, module) cell, weighted by
unequal, seeded layer and module importances, and falls off with the log-distance of the
learning rate from its optimum; parameter counts are exact (the real compiler's); peak memory
grows with the number of adapted modules and their parameters; a high learning rate combined with
a large total rank diverges (a failure region). Noise is small and seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autopeft.methods.binding import bind_space
from autopeft.models.layout import ModelLayout
from autopeft.space.bound import BoundSpace, Point
from autopeft.space.schema import SearchSpace

BASE_ACC, TOP_ACC = 0.30, 0.92
LR_OPT = 3e-3


@dataclass
class SyntheticPeft:
    """``evaluate(point)`` -> objective values, or None when the configuration fails."""

    bound: BoundSpace
    seed: int = 0
    noise: float = 0.005

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        layers = self.bound.layout.num_layers
        self.layer_weight = rng.dirichlet(np.full(layers, 0.7)) * layers
        self.module_weight = {
            m: float(w)
            for m, w in zip(
                self.bound.modules, rng.uniform(0.2, 1.5, len(self.bound.modules)), strict=True
            )
        }
        self.rng = np.random.default_rng(self.seed + 1)

    def capacity(self, point: Point) -> float:
        total = 0.0
        for (layer, module), rank in self.bound.method.cell_sizes(self.bound, point).items():
            total += self.layer_weight[layer] * self.module_weight[module] * math.log1p(rank)
        return total

    def evaluate(self, point: Point) -> dict[str, float] | None:
        sizes = self.bound.method.cell_sizes(self.bound, point)
        lr = float(self.bound.value(point, "learning_rate", default=LR_OPT))
        if lr > 2 * LR_OPT and sum(sizes.values()) > 60:
            return None  # diverged
        saturation = 1.0 - math.exp(-self.capacity(point) / 6.0)
        lr_penalty = 0.12 * math.log(lr / LR_OPT) ** 2
        acc = BASE_ACC + (TOP_ACC - BASE_ACC) * saturation - lr_penalty
        params = self.bound.count_params(point)
        memory = 150.0 + 0.9 * len(sizes) + params * 4 * 4 / 2**20
        return {
            "accuracy": float(np.clip(acc + self.rng.normal(0, self.noise), 0, 1)),
            "trainable_params": float(params),
            "peak_memory_mb": float(memory + self.rng.normal(0, 0.05)),
        }


def bert_like_layout(layers: int = 6, hidden: int = 384, ffn: int = 1536) -> ModelLayout:
    """The layout of a BERT encoder of this size, without building it."""
    import transformers

    from autopeft.models.layout import layout_on_meta

    config = transformers.BertConfig(
        vocab_size=128,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=ffn,
    )
    return layout_on_meta(config, 6)


def synthetic_problem(space: SearchSpace, seed: int = 0, layers: int = 6) -> SyntheticPeft:
    """A synthetic problem over ``space`` on a BERT-like layout."""
    return SyntheticPeft(bind_space(space, bert_like_layout(layers)), seed)
