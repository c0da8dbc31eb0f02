"""The architecture matrix: every method on tiny random-weight models of the architectures people
fine-tune (:data:`autopeft.testing.tiny_models.ARCHITECTURES`, built from their config classes).

For each architecture: the layout finds 2 layers, the family and the module roles (fused
``qkv``/``gate_up`` projections and GPT-2's ``Conv1D`` included) with the real leaves' shapes,
and the family-neutral presets resolve. For each (architecture, method): either the space binds,
the compiled count equals the method's formula and the trainable adapter parameters of the built
peft model, ``verify`` passes, one AdamW step lowers the loss (language modelling on decoders,
classification on encoders), and ``save_pretrained`` -> ``PeftModel.from_pretrained`` on a fresh
base gives identical logits; or, where the method cannot apply (:data:`UNSUPPORTED`), binding the
space fails with one located message.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from autopeft.exceptions import SearchSpaceError
from autopeft.methods.base import config_from_json
from autopeft.methods.binding import bind_space, load_space
from autopeft.methods.builtin import method_names
from autopeft.models.layout import ModelLayout, layout_on_meta
from autopeft.search.samplers.random import RandomSampler
from autopeft.testing.tiny_models import ARCHITECTURES, VOCAB

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*is_gradient_checkpointing:FutureWarning",
    "ignore:.*(eos|bos|pad|cls|sep)_token_id:UserWarning",
)

PER_CELL = "per: [layer, module]"
# method -> its `parameters:` block, family-neutral (no preset that a fused model lacks).
SPACES: dict[str, str] = {
    "lora": f"""\
  target_modules: {{type: categorical, choices: [attn, all_linear]}}
  rank: {{type: int, choices: [0, 2, 4], {PER_CELL}}}
  use_dora: {{type: categorical, choices: [false, true]}}
""",
    "adalora": """\
  target_modules: {type: categorical, choices: [attn, all_linear]}
  init_r: 4
  target_r: 2
""",
    "loha": f"""\
  target_modules: attn
  rank: {{type: int, choices: [0, 2, 4], {PER_CELL}}}
""",
    "lokr": f"""\
  target_modules: all_linear
  rank: {{type: int, choices: [0, 2, 8], {PER_CELL}}}
""",
    "ia3": f"""\
  target_modules: ia3
  active: {{type: int, choices: [0, 1], {PER_CELL}}}
""",
    "vera": """\
  target_modules: qkv
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

# (architecture, method) -> the message binding the space must fail with.
_FUSED_SAPPA = "sappa needs the separate module types"
_NO_CACHE = "prefix_tuning needs a model that takes past_key_values"
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("gpt2", "loha"): "loha cannot adapt this gpt2 model's Conv1D layers",
    ("gpt2", "lokr"): "lokr cannot adapt this gpt2 model's Conv1D layers",
    ("modernbert", "ln_tuning"): "ln_tuning knows the norms of",
    ("deberta_v2", "prefix_tuning"): _NO_CACHE,
    ("modernbert", "prefix_tuning"): _NO_CACHE,
    ("deberta_v2", "sappa"): "sappa's prefixes need standard self-attention",
    **{(arch, "sappa"): _FUSED_SAPPA for arch in ("phi3", "gpt2", "gpt_neox", "modernbert")},
}

HEAD = ("classifier", "score", "modules_to_save")
_BASES: dict[str, nn.Module] = {}


def test_every_method_is_in_the_matrix() -> None:
    assert set(method_names()) == set(SPACES)


def fresh(arch: str) -> nn.Module:
    """The base model of ``arch`` in float64 (tiny random models have tiny gradients)."""
    if arch not in _BASES:
        _BASES[arch] = ARCHITECTURES[arch].build(seed=0).double()
    return copy.deepcopy(_BASES[arch])


def layout_of(arch: str) -> ModelLayout:
    spec = ARCHITECTURES[arch]
    return layout_on_meta(spec.config(), None if spec.task == "causal_lm" else 2)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_layout_finds_layers_roles_and_shapes(arch: str) -> None:
    spec = ARCHITECTURES[arch]
    layout = layout_of(arch)
    assert layout == ModelLayout.from_model(fresh(arch))  # the meta build is the real one
    assert (layout.family, layout.num_layers, layout.modules) == (spec.family, 2, spec.modules)
    assert layout.hidden_size == 32
    named = dict(fresh(arch).named_modules())
    for site in layout.sites:
        weight = named[site.name].weight
        shape = (site.in_features, site.out_features)
        assert tuple(weight.shape) == (shape if site.conv1d else shape[::-1]), site
    assert layout.uses_conv1d == (arch == "gpt2")
    # presets mean the same on every family: attention, feed-forward, every leaf
    assert set(layout.resolve_preset(("q", "k", "v", "qkv", "o"))) == set(spec.modules) & {
        "q",
        "k",
        "v",
        "qkv",
        "o",
    }
    assert layout.resolve_preset(()) == spec.modules


@pytest.mark.parametrize("arch", [a for a, s in ARCHITECTURES.items() if "qkv" in s.modules])
def test_a_preset_splitting_a_fused_projection_is_refused(arch: str, tmp_path: Path) -> None:
    path = write_space(tmp_path, "lora", "  target_modules: qv\n  rank: 4\n")
    with pytest.raises(SearchSpaceError, match=r"fuses q, k, v into one 'qkv' projection"):
        bind_space(load_space(path), layout_of(arch), path)


def write_space(tmp_path: Path, method: str, parameters: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(
        f"version: 1\nname: m\nmethod: {method}\nmax_trainable_params: 100000\n"
        "module_presets: {ia3: [k, v, qkv, down]}\nparameters:\n" + parameters
    )
    return path


def bind(arch: str, method: str, tmp_path: Path):
    path = write_space(tmp_path, method, SPACES[method])
    return bind_space(load_space(path), layout_of(arch), path)


def batch(task: str) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, VOCAB, (4, 7), generator=gen)
    # unbalanced labels: on a tiny random classifier every row's logits are nearly equal, and with
    # balanced labels the loss would be flat in them
    labels = input_ids.clone() if task == "causal_lm" else torch.tensor([1, 1, 1, 0])
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def adapter_params(model: nn.Module) -> int:
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if p.requires_grad and not any(h in n for h in HEAD)
    )


@pytest.mark.parametrize("method", list(SPACES))
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_method_on_architecture(arch: str, method: str, tmp_path: Path) -> None:
    import peft

    task = ARCHITECTURES[arch].task
    if (arch, method) in UNSUPPORTED:
        with pytest.raises(SearchSpaceError, match=UNSUPPORTED[(arch, method)]):
            bind(arch, method, tmp_path)
        return
    bound = bind(arch, method, tmp_path)
    point = RandomSampler(bound, [], seed=3).propose([], 1)[0]
    compiled = bound.compile(point, "CAUSAL_LM" if task == "causal_lm" else "SEQ_CLS")
    assert compiled.trainable_params == bound.count_params(point) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a target that matches nothing
        model = peft.get_peft_model(fresh(arch), config_from_json(compiled.peft_config))
    bound.method.verify(model, compiled)
    assert adapter_params(model) == compiled.trainable_params

    for n, p in model.named_parameters():  # the adapter alone trains
        if any(h in n for h in HEAD):
            p.requires_grad_(False)
    data = batch(task)
    inputs = {k: v for k, v in data.items() if k != "labels"}
    model.eval()  # no dropout
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.0)
    before = model(**data).loss
    before.backward()
    optimizer.step()
    with torch.no_grad():
        assert float(model(**data).loss) < float(before)
        logits = model(**inputs).logits

    model.save_pretrained(tmp_path / "adapter")
    reloaded = peft.PeftModel.from_pretrained(fresh(arch), tmp_path / "adapter").eval()
    with torch.no_grad():
        again = reloaded(**inputs).logits
    torch.testing.assert_close(again, logits, rtol=0, atol=1e-6)
