"""Every searchable method under peft's ``CAUSAL_LM`` task on a tiny random Llama decoder with
grouped-query attention (``k``/``v`` narrower than ``q``), tied and untied embeddings.

The spaces are the method matrix's (:data:`tests.test_method_matrix.CASES`) plus AdaLoRA and
allocated LoRA. For each method: bind the space to the causal LM's layout (built on the meta
device), draw feasible points, compile them for ``CAUSAL_LM`` and check that (a) the compiled
count equals the method's formula and every trainable parameter of the built peft model (there
is no head: nothing else may train), (b) the method's ``verify`` passes; then, on the largest
point, (c) one AdamW step on a fixed language-modelling batch lowers the loss, (d)
``save_pretrained`` -> ``PeftModel.from_pretrained`` on a fresh base built with the same seed
gives identical logits, and (e) greedy ``generate`` runs, agrees token by token with the argmax
of a full forward pass (the cache and the adapter agree) and gives each row of a left-padded
batch what the row gives alone.

The base is float64 (tiny random models have tiny gradients), which also exercises peft's cast
of adapters to a base that is not float32 (as bf16 on a GPU does).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from autopeft.methods.base import config_from_json
from autopeft.methods.binding import bind_space, load_space
from autopeft.methods.builtin import method_names
from autopeft.models.layout import ModelLayout, layout_on_meta
from autopeft.search.samplers.random import SobolSampler
from tests.test_method_matrix import CASES, write_space

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

# hidden 32, 4 query heads of 8, 2 key/value heads: k and v are 32 -> 16.
LLAMA = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=None,  # greedy decoding never stops early, so every row has 3 new tokens
)
# method -> (space method name, parameters block, extra top-level keys): the matrix's cases,
# AdaLoRA, and LoRA with an `allocation:` block (bound to allocated_lora, compiled as lora).
SPACES: dict[str, tuple[str, str, str]] = {
    **{m: (m, body, "") for m, body in CASES.items()},
    "adalora": (
        "adalora",
        "  target_modules: {type: categorical, choices: [qv, all_linear]}\n"
        "  init_r: 4\n  target_r: 2\n",
        "",
    ),
    "allocated_lora": (
        "lora",
        "  target_modules: {type: categorical, choices: [qv, all_linear]}\n",
        "allocation: {strategy: uniform, budget: [200, 2000], max_rank: 8}\n",
    ),
}
# the method name compiled configs carry
COMPILED_AS = {"allocated_lora": "lora"}
SEED_OF_BASE = 0


def test_every_method_has_a_causal_case() -> None:
    assert set(method_names()) | {"allocated_lora"} == set(SPACES)


def llama_config(tie: bool):
    import transformers

    return transformers.LlamaConfig(**LLAMA, tie_word_embeddings=tie)


def fresh(tie: bool) -> nn.Module:
    """The base causal LM, built from the same seed every time (float64: tiny random models
    have tiny gradients)."""
    import transformers

    torch.manual_seed(SEED_OF_BASE)
    model = transformers.AutoModelForCausalLM.from_config(llama_config(tie))
    return model.double()


def bind(method: str, tie: bool, tmp_path: Path):
    name, parameters, extra = SPACES[method]
    path = write_space(tmp_path, name, parameters, extra=extra)
    layout = layout_on_meta(llama_config(tie), num_labels=None)
    return bind_space(load_space(path), layout, path)


def batch() -> dict[str, torch.Tensor]:
    """A fixed next-token batch; the loss ignores the last two positions of row 0."""
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, LLAMA["vocab_size"], (4, 7), generator=gen)
    labels = input_ids.clone()
    labels[0, -2:] = -100
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def test_layout_on_meta_is_the_built_causal_lm() -> None:
    layout = layout_on_meta(llama_config(True), num_labels=None)
    assert layout == ModelLayout.from_model(fresh(True))
    k = layout.site(0, "k")
    assert (layout.hidden_size, k.in_features, k.out_features) == (32, 32, 16)


def build_checked(bound, point, tie: bool):
    """Compile ``point`` for ``CAUSAL_LM``, build it on a fresh base and check (a) and (b)."""
    import peft

    compiled = bound.compile(point, "CAUSAL_LM")
    assert compiled.peft_config["task_type"] == "CAUSAL_LM"
    assert compiled.trainable_params == bound.count_params(point) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a target that matches nothing
        model = peft.get_peft_model(fresh(tie), config_from_json(compiled.peft_config))
    bound.method.verify(model, compiled)  # before collecting the trainable ones, as trials do
    # no head under CAUSAL_LM: every trainable parameter is the adapter's
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == (
        compiled.trainable_params
    )
    return model, compiled


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("method", list(SPACES))
def test_method_under_causal_lm(method: str, tie: bool, tmp_path: Path) -> None:
    import peft

    bound = bind(method, tie, tmp_path)
    # (a) + (b) on six points of a Sobol design (every choice of a categorical comes up); the
    # rest on the one with the most parameters (the most sites)
    built = [
        build_checked(bound, point, tie) for point in SobolSampler(bound, [], seed=0).propose([], 6)
    ]
    model, compiled = max(built, key=lambda b: b[1].trainable_params)
    assert compiled.method == COMPILED_AS.get(method, method)
    trainable = [p for p in model.parameters() if p.requires_grad]

    # (c) one AdamW step on the adapter lowers the language-modelling loss
    data = batch()
    model.eval()  # no dropout
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.0)
    before = model(**data).loss
    before.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    optimizer.step()
    optimizer.zero_grad()
    inputs = {k: v for k, v in data.items() if k != "labels"}
    with torch.no_grad():
        assert float(model(**data).loss) < float(before)
        logits = model(**inputs).logits

    # (d) export -> reload on a fresh base from the same seed -> identical logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(fresh(tie), tmp_path / "adapter").eval()
    with torch.no_grad():
        again = reloaded(**inputs).logits
    # prompt encoders are saved in float32 (peft casts them), hence 1e-6 and not 1e-12
    torch.testing.assert_close(again, logits, rtol=0, atol=1e-6)

    # (e) greedy generation (how exact match is evaluated) with the cache agrees with the
    # argmax of a full forward pass over the growing sequence ...
    prompt = data["input_ids"][:2, :4]
    out = greedy(reloaded, prompt, torch.ones_like(prompt))
    assert torch.equal(out[:, :4], prompt)
    with torch.no_grad():
        for step in range(4, 7):
            seq = out[:, :step]
            full = reloaded(input_ids=seq, attention_mask=torch.ones_like(seq)).logits
            assert torch.equal(full[:, -1].argmax(-1), out[:, step])
    # ... and a left-padded batch (as batched evaluation pads) generates what each row alone does
    padded = prompt.clone()
    padded[1, :2] = LLAMA["pad_token_id"]
    mask = (torch.arange(4) >= torch.tensor([[0], [2]])).long()
    together = greedy(reloaded, padded, mask)
    alone = greedy(reloaded, prompt[1:, 2:], torch.ones(1, 2, dtype=torch.long))
    assert torch.equal(together[:, 4:], torch.cat([out[:1, 4:], alone[:, 2:]]))


def greedy(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Three greedy tokens after ``input_ids``, with the cache."""
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=3,
            do_sample=False,
            use_cache=True,
            pad_token_id=LLAMA["pad_token_id"],
        )
    assert out.shape == (input_ids.shape[0], input_ids.shape[1] + 3)
    return out


def test_verify_rejects_a_stray_trainable_parameter(tmp_path: Path) -> None:
    """Under ``CAUSAL_LM`` nothing but the adapter may train: ``verify`` names the intruder."""
    bound = bind("lora", True, tmp_path)
    model, compiled = build_checked(bound, SobolSampler(bound, [], seed=0).propose([], 1)[0], True)
    model.get_output_embeddings().weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="neither the adapter's nor a saved module's"):
        bound.method.verify(model, compiled)
