"""Prefix tuning on an encoder whose forward names its cache ``cache`` (transformers >= 5.24).

The backbone of a tiny BERT classifier is given a subclass whose forward takes ``cache`` and not
``past_key_values``, as every transformers >= 5.24 model does; this reproduces the failure on
any installed transformers. Without the shim peft refuses the model; with it the logits equal
those of the unchanged model, and the backbone keeps no trace of the shim.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
import torch

from autopeft.methods import prefix_compat

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")


def _cache_named_bert() -> type:
    from transformers import BertModel

    native = "cache" in inspect.signature(BertModel.forward).parameters

    class CacheNamedBert(BertModel):
        def forward(  # type: ignore[override]
            self, input_ids: Any = None, attention_mask: Any = None, cache: Any = None, **kw: Any
        ) -> Any:
            key = "cache" if native else "past_key_values"
            return super().forward(input_ids, attention_mask, **{key: cache}, **kw)

    return CacheNamedBert


def _pair() -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """(peft model on a plain BERT, the same weights with a ``cache``-named backbone, batch)."""
    import peft
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, num_labels=2,
    )  # fmt: skip
    prefix = peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    base = BertForSequenceClassification(config).eval()
    other = copy.deepcopy(base)
    plain = peft.get_peft_model(base, prefix)
    other.bert.__class__ = _cache_named_bert()
    renamed = peft.get_peft_model(other, prefix)
    renamed.load_state_dict(plain.state_dict())
    batch = {
        "input_ids": torch.randint(1, 64, (2, 5), generator=torch.Generator().manual_seed(1)),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
    }
    return plain, renamed, batch


def test_peft_refuses_a_cache_named_backbone_without_the_shim() -> None:
    import peft.peft_model as pm

    _, renamed, batch = _pair()
    forward = pm.PeftModelForSequenceClassification._prefix_tuning_forward
    unshimmed = getattr(forward, "__wrapped__", forward)
    with pytest.raises(ValueError, match="does not support past key values"):
        unshimmed(renamed, **batch)


def test_the_shim_gives_the_logits_of_the_unchanged_model() -> None:
    prefix_compat.install()
    prefix_compat.install()  # idempotent: wrapped once
    import peft.peft_model as pm

    forward = pm.PeftModelForSequenceClassification._prefix_tuning_forward
    assert not hasattr(forward.__wrapped__, "__wrapped__")
    plain, renamed, batch = _pair()
    with torch.no_grad():
        want = plain(**batch).logits
        got = renamed(**batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert "forward" not in vars(renamed.base_model.bert)  # no trace left on the backbone
    # the prefix matters: changing it changes the logits (the cache reached the attention)
    with torch.no_grad():
        renamed.prompt_encoder["default"].embedding.weight.mul_(3)
        assert not torch.equal(renamed(**batch).logits, got)


def test_the_shim_lasts_one_call_and_only_where_needed() -> None:
    plain, renamed, _ = _pair()
    with prefix_compat.past_key_values_accepted(renamed) as shimmed:
        assert shimmed
        assert "past_key_values" in inspect.signature(renamed.base_model.bert.forward).parameters
    assert "forward" not in vars(renamed.base_model.bert)
    backbone = plain.base_model.bert
    takes_old_name = "past_key_values" in inspect.signature(backbone.forward).parameters
    with prefix_compat.past_key_values_accepted(plain) as shimmed:
        assert shimmed is not takes_old_name  # transformers < 5.24: BERT needs no shim
