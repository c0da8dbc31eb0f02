"""The AutoPEFT space: the ladder, and serial + parallel + prefix in one peft model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from autopeft.methods.base import config_from_json
from autopeft.methods.binding import bind_space, load_space
from autopeft.methods.sappa import ladder
from autopeft.models.layout import ModelLayout

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

SPACE = """\
version: 1
name: sappa
method: sappa
max_trainable_params: 100000
parameters:
  serial: {type: int, low: 0, high: 10}
  parallel: {type: int, low: 0, high: 10}
  prefix: {type: int, low: 0, high: 10}
  active: {type: int, choices: [0, 1], per: layer}
"""


def test_ladder_is_the_papers_on_bert_base_and_scales() -> None:
    assert ladder(768) == [0, 1, 3, 6, 12, 24, 48, 96, 192, 384, 768]
    assert ladder(384) == [0, 1, 1, 3, 6, 12, 24, 48, 96, 192, 384]
    assert ladder(32)[-1] == 32 and len(ladder(32)) == 11


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_serial_parallel_prefix_in_one_model(
    family: str, implementation: str, tmp_path: Path
) -> None:
    import peft
    import transformers

    common = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2)
    if family == "bert":
        config = transformers.BertConfig(**common, intermediate_size=64, num_labels=2)
    else:
        config = transformers.LlamaConfig(
            **common, intermediate_size=64, num_labels=2, num_key_value_heads=1, pad_token_id=0
        )
    config._attn_implementation = implementation
    torch.manual_seed(0)
    base = transformers.AutoModelForSequenceClassification.from_config(config).eval()
    (tmp_path / "s.yaml").write_text(SPACE)
    bound = bind_space(load_space(tmp_path / "s.yaml"), ModelLayout.from_model(base))
    point = {"serial": 10, "parallel": 8, "prefix": 7, "active.0": 1, "active.1": 0, "active.2": 1}
    assert bound.canonical(dict(point, prefix=3))["prefix"] == 1  # h=32: rungs 1..5 are all 1
    compiled = bound.compile(point)
    kv = 32 if family == "bert" else 16  # one key/value head of 16 in the Llama config
    per_layer = (2 * 32 * 32 + 32 + 32) + (2 * 32 * 8 + 8 + 32) + 2 * 4 * kv  # prefix: 4 tokens
    assert compiled.trainable_params == 2 * per_layer == bound.count_params(point)
    assert set(compiled.placement) == {0, 2}

    model = peft.get_peft_model(copy.deepcopy(base), config_from_json(compiled.peft_config))
    bound.method.verify(model, compiled)
    ids = torch.randint(1, 64, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0  # padding must still be masked with the prefix in front
    for name, p in model.named_parameters():
        if "bottleneck_" in name:
            torch.nn.init.normal_(p, std=0.1)  # move every module off its identity init
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).logits
        padded = model(
            input_ids=torch.cat([ids[:1, :5], torch.full((1, 4), 7)], 1),
            attention_mask=torch.tensor([[1] * 5 + [0] * 4]),
        ).logits
        with model.disable_adapter():
            plain = model(input_ids=ids, attention_mask=mask).logits
        reference = base(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(plain, reference)
    assert not torch.allclose(out, reference, atol=1e-4)
    if family == "bert":  # no position of padded tokens leaks into the unpadded ones
        torch.testing.assert_close(padded[0], out[0], atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path / "a")
    again = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "a").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids, attention_mask=mask).logits, out)
    unloaded = model.unload()
    with torch.no_grad():
        torch.testing.assert_close(unloaded(input_ids=ids, attention_mask=mask).logits, reference)
    kernels = {m.config._attn_implementation for m in unloaded.modules() if hasattr(m, "config")}
    assert kernels == {implementation}
