"""Peak training memory predicted before a trial runs, from the method's structure and the
study's measured trials.

The structural estimate of a trial's peak, in bytes, is the sum of five terms:

- ``base``: the frozen base model's parameters and buffers (in the model's precision);
- ``head`` (causal LM only): :data:`HEAD_COPIES` fp32 copies of the ``batch x seq_len x vocab``
  logits, which dominate small decoders with large vocabularies;
- ``state``: the adapter's parameters times 16 bytes (fp32 weights, gradients and AdamW's two
  moments);
- ``adapted``: per adapted module, the activations its adapter keeps for the backward pass,
  ``batch x seq_len x (in_features + size) x 4`` bytes (the adapter's input and its low-rank
  intermediate), an input shared by several adapted modules (q, k and v; gate and up) once;
- ``depth``: the frozen layers' activations autograd keeps, from the lowest adapted layer to the
  top (below it nothing requires a gradient, so nothing is saved), ``batch x seq_len x units x
  bytes`` per layer, where ``units`` counts the layer's linear outputs, its distinct linear
  inputs (q, k and v share one) and, for eager attention, its attention probabilities.

:class:`MemoryModel` fits ``peak ~ a + b_state*state + b_adapted*adapted + b_depth*depth`` to the
study's complete trials by least squares with a Gaussian prior centred on the structure
(``a = base``, every ``b = 1``), so a handful of trials bends the estimate towards what was
measured and many trials let the data speak. Below :data:`MIN_FIT_TRIALS` trials it predicts the
pure structural estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from autopeft.models.layout import ModelLayout, model_on_meta

__all__ = [
    "MIN_FIT_TRIALS",
    "MemoryModel",
    "MemoryStructure",
    "count_base_bytes",
    "head_copies",
    "largest_configuration",
    "study_memory_model",
]

#: Complete trials needed before measurements correct the structural estimate.
MIN_FIT_TRIALS = 3
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_NOISE = 0.02  # assumed relative noise of a measured peak (prior strength)
#: fp32 copies of a causal LM's ``batch x seq_len x vocab`` logits alive at the peak, early in
#: backward: the log-softmax output the loss saved, its gradient and the logits' gradient (the
#: logits themselves are freed after the forward pass when only the loss is kept). Measured on
#: the tiny decoders of the architecture matrix, where the head dominates; see
#: bench/memory_arch.py for the errors per architecture and on SmolLM2-135M.
HEAD_COPIES = 3.0
_SIZE_PARAMS = frozenset({"rank", "size", "init_r"})  # per-cell sizes, for the largest config
_SHARED_INPUT = {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "gate_up", "up": "gate_up"}


@dataclass(frozen=True)
class MemoryStructure:
    """What a study's trials share: the base model, the layer stack and the batch shape.

    Attributes:
        base_bytes: Bytes of the base model's parameters and buffers.
        layout: The model's layer stack and linear leaves.
        tokens: Tokens per training batch (``batch_size x seq_len``).
        layer_units: Activation values autograd keeps per token in one frozen layer.
        act_bytes: Bytes per activation value (the precision's).
        head_bytes: Bytes of a causal LM's logits at the peak (0 for a classifier).
    """

    base_bytes: int
    layout: ModelLayout
    tokens: int
    layer_units: float
    act_bytes: int = 4
    head_bytes: int = 0

    @classmethod
    def build(
        cls,
        layout: ModelLayout,
        base_bytes: int,
        *,
        batch_size: int,
        seq_len: int,
        heads: int = 1,
        precision: str = "fp32",
        vocab: int = 0,
        head_copies: float = HEAD_COPIES,
    ) -> MemoryStructure:
        """The structure of a study: ``heads`` attention heads, ``precision`` of the base,
        ``vocab`` the LM head's width for a causal LM (0 for a classifier)."""
        layer0 = [s for s in layout.sites if s.layer == 0] or list(layout.sites)
        # each linear's output, and each distinct input once (q, k and v share theirs)
        outputs = sum(s.out_features for s in layer0)
        inputs = sum(
            dict((_SHARED_INPUT.get(s.module, s.module), s.in_features) for s in layer0).values()
        )
        units = outputs + inputs + 2 * heads * seq_len  # eager attention: probs + dropout
        tokens = batch_size * seq_len
        head = int(head_copies * tokens * vocab * 4)
        return cls(base_bytes, layout, tokens, units, _BYTES.get(precision, 4), head)

    def features(self, trainable_params: int, placement: Mapping[Any, Mapping[str, int]]) -> list:
        """``[state, adapted, depth]`` bytes of one configuration (see the module docstring)."""
        cells = [
            (int(layer), m, int(size))
            for layer, row in placement.items()
            for m, size in row.items()
        ]
        cells = [c for c in cells if c[2] > 0]
        state = 16.0 * trainable_params
        inputs: dict[tuple[int, str], int] = {}  # q, k and v (gate and up) share one input
        sizes = 0
        for layer, module, size in cells:
            try:
                width = self.layout.site(layer, module).in_features
            except KeyError:
                width = self.layout.hidden_size
            inputs[(layer, _SHARED_INPUT.get(module, module))] = width
            sizes += size
        adapted = 4.0 * self.tokens * (sum(inputs.values()) + sizes)
        depth = 0.0
        if cells:
            layers = self.layout.num_layers - min(c[0] for c in cells)
            depth = float(self.act_bytes) * self.tokens * layers * self.layer_units
        return [state, adapted, depth]

    def structural(
        self, trainable_params: int, placement: Mapping[Any, Mapping[str, int]]
    ) -> float:
        """The pure structural estimate, in bytes."""
        return self.fixed_bytes + sum(self.features(trainable_params, placement))

    @property
    def fixed_bytes(self) -> int:
        """Bytes every configuration pays: the base model and the LM head's logits."""
        return self.base_bytes + self.head_bytes


class MemoryModel:
    """Predicts a configuration's peak memory; refit with :meth:`fit` as trials complete.

    Args:
        structure: The study's :class:`MemoryStructure`.
    """

    def __init__(self, structure: MemoryStructure) -> None:
        self.structure = structure
        self.n_fit = 0
        self._theta = np.array([float(structure.fixed_bytes), 1.0, 1.0, 1.0])

    def fit(
        self, observations: Iterable[tuple[int, Mapping[Any, Mapping[str, int]], float]]
    ) -> None:
        """Fit on ``(trainable_params, placement, measured peak bytes)`` of complete trials.

        Below :data:`MIN_FIT_TRIALS` observations the structural estimate is kept. Otherwise the
        posterior mean of a Gaussian linear model whose prior is centred on the structure:
        ``a ~ N(base, (base/2)^2)``, ``b ~ N(1, 1)``, noise ``2%`` of the mean peak.
        """
        rows, ys = [], []
        for params, placement, peak in observations:
            rows.append([1.0, *self.structure.features(params, placement)])
            ys.append(float(peak))
        self.n_fit = len(ys)
        prior = np.array([float(self.structure.fixed_bytes), 1.0, 1.0, 1.0])
        if self.n_fit < MIN_FIT_TRIALS:
            self._theta = prior
            return
        x, y = np.array(rows), np.array(ys)
        sigma2 = (_NOISE * float(np.mean(y))) ** 2
        tau2 = np.array([(0.5 * max(prior[0], 1.0)) ** 2, 1.0, 1.0, 1.0])
        precision = np.diag(sigma2 / tau2)
        self._theta = np.linalg.solve(x.T @ x + precision, x.T @ y + precision @ prior)

    def predict(self, trainable_params: int, placement: Mapping[Any, Mapping[str, int]]) -> float:
        """Predicted peak bytes of a configuration (never below the base model's bytes)."""
        x = np.array([1.0, *self.structure.features(trainable_params, placement)])
        return max(float(x @ self._theta), float(self.structure.base_bytes))


def count_base_bytes(
    config: Any, num_labels: int | None, precision: str = "fp32"
) -> tuple[int, int]:
    """(bytes of parameters and buffers, attention heads whose probabilities autograd keeps:
    0 unless attention is eager) of the model ``config`` describes,
    built on the meta device: a classifier with ``num_labels`` labels, or with None a causal LM.
    Quantized bases are not modelled (their bytes come out as the precision's)."""
    model = model_on_meta(config, num_labels)
    width = _BYTES.get(precision, 4)
    params = sum(p.numel() for p in model.parameters()) * width
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    # only eager attention keeps its probabilities (SDPA and flash kernels recompute them)
    eager = getattr(model.config, "_attn_implementation", "eager") == "eager"
    heads = int(getattr(config, "num_attention_heads", 1) or 1) if eager else 0
    return params + buffers, heads


def study_memory_model(
    model_path: Any,
    layout: ModelLayout,
    *,
    num_labels: int | None,
    batch_size: int,
    seq_len: int,
    precision: str = "fp32",
    num_hidden_layers: int | None = None,
) -> MemoryModel:
    """The unfitted :class:`MemoryModel` of a study's model (its config read from
    ``model_path``, the base built on the meta device) and batch shape."""
    from transformers import AutoConfig

    extra = {"num_hidden_layers": num_hidden_layers} if num_hidden_layers else {}
    config = AutoConfig.from_pretrained(model_path, local_files_only=True, **extra)
    base, heads = count_base_bytes(config, num_labels, precision)
    vocab = int(getattr(config, "vocab_size", 0) or 0) if num_labels is None else 0
    structure = MemoryStructure.build(
        layout,
        base,
        batch_size=batch_size,
        seq_len=seq_len,
        heads=heads,
        precision=precision,
        vocab=vocab,
        head_copies=head_copies(config),
    )
    return MemoryModel(structure)


def head_copies(config: Any) -> float:
    """:data:`HEAD_COPIES`, plus one where the logits are soft-capped (Gemma 2: the ``tanh``
    keeps its output for backward)."""
    return HEAD_COPIES + (1.0 if getattr(config, "final_logit_softcapping", None) else 0.0)


def largest_configuration(bound: Any) -> tuple[int, dict[int, dict[str, int]]]:
    """A configuration at least as large as any of a bound space's: the budget's parameters, and
    every searchable cell adapted at the largest size any dimension allows (for GPU packing)."""
    sizes = [16]
    for dim in bound.dimensions:
        spec = dim.spec
        if dim.param not in _SIZE_PARAMS or spec.type != "int":
            continue
        values = [spec.high] if spec.high is not None else list(spec.choices or ())
        sizes += [int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    allocation = getattr(bound.space, "allocation", None)
    if allocation is not None and getattr(allocation, "max_rank", None):
        sizes.append(int(allocation.max_rank))
    size = min(max(sizes), 4096)
    modules = getattr(bound, "modules", None) or bound.layout.modules
    placement = {layer: dict.fromkeys(modules, size) for layer in range(bound.layout.num_layers)}
    return int(bound.space.max_trainable_params), placement
