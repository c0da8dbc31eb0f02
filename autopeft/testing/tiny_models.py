"""Tiny random-weight models of the architectures people fine-tune, built offline from their
config classes (no download): the architecture matrix's test models.

Every model has 2 layers, hidden width 32, 4 attention heads (2 key/value heads where the family
has grouped-query attention) and a 64-token vocabulary: a few thousand parameters, built in
milliseconds. ``task`` is ``causal_lm`` for decoders and ``seq_cls`` for encoders.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

VOCAB = 64
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
_GQA = dict(_COMMON, num_key_value_heads=2)


@dataclass(frozen=True)
class TinyArch:
    """One row of the matrix: a config class, its arguments, the task and the expected layout."""

    config_class: str
    kwargs: dict[str, Any]
    task: str
    family: str
    modules: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> Any:
        import transformers

        return getattr(transformers, self.config_class)(**copy.deepcopy(self.kwargs))

    def build(self, seed: int = 0) -> Any:
        """The model with random weights from ``seed`` (a causal LM or a 2-label classifier)."""
        import torch
        import transformers

        config = self.config()
        torch.manual_seed(seed)
        if self.task == "causal_lm":
            return transformers.AutoModelForCausalLM.from_config(config)
        config.num_labels = 2
        return transformers.AutoModelForSequenceClassification.from_config(config)


_LLAMA_LIKE = ("q", "k", "v", "o", "gate", "up", "down")
_BERT_LIKE = ("q", "k", "v", "o", "up", "down")

ARCHITECTURES: dict[str, TinyArch] = {
    "llama": TinyArch("LlamaConfig", _GQA, "causal_lm", "llama", _LLAMA_LIKE),
    "mistral": TinyArch("MistralConfig", _GQA, "causal_lm", "llama", _LLAMA_LIKE),
    "qwen2": TinyArch("Qwen2Config", _GQA, "causal_lm", "llama", _LLAMA_LIKE),
    "qwen3": TinyArch("Qwen3Config", dict(_GQA, head_dim=8), "causal_lm", "llama", _LLAMA_LIKE),
    "gemma2": TinyArch("Gemma2Config", dict(_GQA, head_dim=8), "causal_lm", "llama", _LLAMA_LIKE),
    "phi3": TinyArch("Phi3Config", _GQA, "causal_lm", "phi3", ("o", "qkv", "gate_up", "down")),
    "gpt2": TinyArch(
        "GPT2Config",
        dict(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "causal_lm",
        "gpt2",
        ("qkv", "o", "up", "down"),
    ),
    "gpt_neox": TinyArch(
        "GPTNeoXConfig", _COMMON, "causal_lm", "gpt_neox", ("qkv", "o", "up", "down")
    ),
    "opt": TinyArch(
        "OPTConfig",
        dict(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            word_embed_proj_dim=32,
            max_position_embeddings=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        "causal_lm",
        "opt",
        ("k", "v", "q", "o", "up", "down"),
    ),
    "bert": TinyArch("BertConfig", _COMMON, "seq_cls", "bert", _BERT_LIKE),
    "roberta": TinyArch(
        "RobertaConfig", dict(_COMMON, pad_token_id=1), "seq_cls", "bert", _BERT_LIKE
    ),
    "deberta_v2": TinyArch("DebertaV2Config", _COMMON, "seq_cls", "deberta", _BERT_LIKE),
    "modernbert": TinyArch(
        "ModernBertConfig",
        dict(_COMMON, cls_token_id=1, sep_token_id=2),
        "seq_cls",
        "modernbert",
        ("qkv", "o", "gate_up", "down"),
    ),
}
