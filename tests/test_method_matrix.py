"""The method matrix: every registered method on tiny random BERT and Llama classifiers.

For each method: load and bind a space file, draw a feasible point, compile it, and check that
the compiled parameter count equals (a) the method's formula, (b) the trainable parameters of the
built peft model outside the classification head, and (c) the model's own ``verify``; then one
optimizer step on the adapter alone lowers the loss on a fixed batch, and ``save_pretrained`` ->
``PeftModel.from_pretrained`` on a fresh base model gives identical logits.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from autopeft.methods.base import config_from_json
from autopeft.methods.binding import bind_space, load_space
from autopeft.methods.builtin import method_names
from autopeft.models.layout import ModelLayout
from autopeft.search.samplers.random import RandomSampler

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

TINY = dict(
    vocab_size=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=2,
)
FAMILIES = {"bert": ("BertConfig", {}), "llama": ("LlamaConfig", {"num_key_value_heads": 1})}
PER_CELL = "per: [layer, module]"
# method -> its `parameters:` block (and optional module_presets) for the matrix.
CASES: dict[str, str] = {
    "lora": f"""\
  target_modules: {{type: categorical, choices: [qv, all_linear]}}
  rank: {{type: int, choices: [0, 2, 4], {PER_CELL}}}
  use_dora: {{type: categorical, choices: [false, true]}}
  use_rslora: true
""",
    "loha": f"""\
  target_modules: attn
  rank: {{type: int, choices: [0, 2, 4], {PER_CELL}}}
""",
    "lokr": f"""\
  target_modules: all_linear
  rank: {{type: int, choices: [0, 2, 8, 16], {PER_CELL}}}
""",
    "ia3": f"""\
  target_modules: ia3
  active: {{type: int, choices: [0, 1], {PER_CELL}}}
""",
    "vera": """\
  target_modules: qv
  rank: 4
  active: {type: int, choices: [0, 1], per: layer}
""",
    "ln_tuning": "  active: {type: int, choices: [0, 1], per: layer}\n",
    "prefix_tuning": "  num_virtual_tokens: {type: int, low: 2, high: 4}\n",
    "prompt_tuning": "  num_virtual_tokens: {type: int, low: 2, high: 4}\n",
    "serial_adapter": "  size: {type: int, choices: [0, 2, 4], per: layer}\n",
    "parallel_adapter": "  size: {type: int, choices: [0, 2, 4], per: layer}\n",
    "sappa": """\
  serial: {type: int, low: 0, high: 10}
  parallel: {type: int, low: 0, high: 10}
  prefix: {type: int, low: 0, high: 10}
  active: {type: int, choices: [0, 1], per: layer}
""",
}
HEAD = ("classifier.", "score.")


def test_every_registered_method_is_in_the_matrix() -> None:
    assert set(method_names()) - {"adalora"} == set(CASES)


_BASES: dict[str, nn.Module] = {}


def fresh(family: str) -> nn.Module:
    if family not in _BASES:
        import transformers

        cls, extra = FAMILIES[family]
        config = getattr(transformers, cls)(**TINY, **extra, pad_token_id=0)
        torch.manual_seed(0)
        _BASES[family] = transformers.AutoModelForSequenceClassification.from_config(config)
    return copy.deepcopy(_BASES[family])


def write_space(
    tmp_path: Path, method: str, parameters: str, budget: int = 100000, extra: str = ""
) -> Path:
    """A space file for ``method`` with a ``parameters:`` block (and ``extra`` top-level keys)."""
    path = tmp_path / "space.yaml"
    path.write_text(
        f"version: 1\nname: m\nmethod: {method}\nmax_trainable_params: {budget}\n"
        "module_presets: {ia3: [k, v, down]}\n" + extra + "parameters:\n" + parameters
    )
    return path


def bind(method: str, family: str, tmp_path: Path, budget: int = 100000):
    path = write_space(tmp_path, method, CASES[method], budget)
    return bind_space(load_space(path), ModelLayout.from_model(fresh(family)), path)


def adapter_params(model: nn.Module) -> int:
    """Trainable parameters outside the classification head, read from the built model."""
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.requires_grad and not any(h in n for h in HEAD)
    )


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("method", list(CASES))
def test_method_matrix(method: str, family: str, tmp_path: Path) -> None:
    import peft

    bound = bind(method, family, tmp_path)
    point = RandomSampler(bound, [], seed=3).propose([], 1)[0]
    compiled = bound.compile(point)
    assert compiled.method == method
    assert compiled.trainable_params == bound.count_params(point) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a target that matches nothing
        model = peft.get_peft_model(fresh(family), config_from_json(compiled.peft_config))
    bound.method.verify(model, compiled)
    assert adapter_params(model) == compiled.trainable_params

    # one step on the adapter alone lowers the loss on a fixed batch
    for n, p in model.named_parameters():
        if any(h in n for h in HEAD):
            p.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1, TINY["vocab_size"], (8, 6), generator=gen),
        "attention_mask": torch.ones(8, 6, dtype=torch.long),
        "labels": torch.arange(8) % 2,
    }
    model.double().eval()  # double: tiny random models have tiny gradients; eval: no dropout
    trainable = [p for p in model.parameters() if p.requires_grad]
    before = model(**batch).loss
    before.backward()
    with torch.no_grad():  # a steepest-descent step of length 1e-2 in the adapter's parameters
        norm = torch.sqrt(sum((p.grad**2).sum() for p in trainable if p.grad is not None))
        assert norm > 0, "the adapter gets no gradient"
        for p in trainable:
            if p.grad is not None:
                p -= 1e-2 * p.grad / norm
        after = model(**batch).loss
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert float(after) < float(before.detach())

    # export -> reload on a fresh base -> identical logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(fresh(family).double(), tmp_path / "adapter")
    reloaded.eval()
    with torch.no_grad():
        again = reloaded(**{k: v for k, v in batch.items() if k != "labels"}).logits
    # prompt encoders are saved in float32 (peft casts them), hence 1e-6 and not 1e-12
    torch.testing.assert_close(again, logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", list(CASES))
def test_budget_holds_for_every_method(method: str, tmp_path: Path) -> None:
    """A budget just above the cheapest configuration: every proposal fits; one below it is
    rejected when the space is bound."""
    from autopeft.exceptions import SearchSpaceError

    smallest = bind(method, "llama", tmp_path).method.min_params(bind(method, "llama", tmp_path))
    budget = 3 * smallest + 1000  # tight, yet loose enough for rejection sampling
    bound = bind(method, "llama", tmp_path, budget)
    points = RandomSampler(bound, [], seed=0).propose([], 15)
    counts = [bound.count_params(p) for p in points]
    assert all(0 < c <= budget for c in counts), counts
    assert min(counts) >= smallest
    with pytest.raises(SearchSpaceError, match="max_trainable_params: is below the smallest"):
        bind(method, "llama", tmp_path, smallest - 1)


@pytest.mark.slow
def test_import_autopeft_is_enough_to_load_a_bottleneck_export(tmp_path: Path) -> None:
    """A fresh interpreter: `import autopeft`, then plain peft reads our adapter type."""
    bound = bind("serial_adapter", "bert", tmp_path)
    compiled = bound.compile(RandomSampler(bound, [], seed=0).propose([], 1)[0])
    config_from_json(compiled.peft_config).save_pretrained(str(tmp_path / "export"))
    code = (
        "import sys, autopeft\n"
        "assert 'peft' not in sys.modules and 'torch' not in sys.modules\n"
        "from peft import PeftConfig\n"
        f"c = PeftConfig.from_pretrained({str(tmp_path / 'export')!r})\n"
        "print(type(c).__name__, c.peft_type, sorted(c.serial_sizes.items()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    sizes = sorted((str(k), v) for k, v in compiled.peft_config["serial_sizes"].items())
    assert out.stdout.strip() == f"BottleneckConfig BOTTLENECK {sizes}"
