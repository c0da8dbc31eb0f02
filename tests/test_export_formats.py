"""Export formats: every method x format round-trips to the trial's per-module sizes; the field
names each format writes exist in that tool's schema; LLaMA-Factory's ``lost:`` list is exact.

Axolotl and LLaMA-Factory do not install next to this project's transformers, so their readers
here follow their published code, pinned below with the version and commit read; TRL installs,
and its ``SFTConfig`` is checked directly.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from torch import nn

from autopeft.core.objectives import Objective
from autopeft.exceptions import StudyError, UnsupportedError, UserInputError
from autopeft.results.formats import FORMATS, render
from autopeft.results.views import StudyView
from autopeft.search.samplers.random import RandomSampler
from autopeft.storage.records import TrialRecord
from tests.test_method_matrix import CASES, HEAD, bind, fresh

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")

# Axolotl 0.18.0, https://github.com/axolotl-ai-cloud/axolotl at 067b021 (2026-07-24):
# src/axolotl/utils/schemas/{peft,training,model,config}.py; read by
# src/axolotl/loaders/adapter.py::_build_peft_lora_config.
AXOLOTL_KEYS = {
    "base_model", "adapter", "load_in_4bit", "load_in_8bit", "lora_r", "lora_alpha",
    "lora_dropout", "lora_target_modules", "lora_rank_pattern", "lora_alpha_pattern",
    "peft_layers_to_transform", "peft_use_dora", "peft_use_rslora", "learning_rate",
    "lr_scheduler", "warmup_steps", "weight_decay", "optimizer", "max_grad_norm", "max_steps",
    "micro_batch_size", "gradient_accumulation_steps", "sequence_len", "bf16", "fp16",
    "gradient_checkpointing", "seed",
}  # fmt: skip
# LLaMA-Factory 0.9.6.dev0, https://github.com/hiyouga/LLaMA-Factory at ff6d4d1 (2026-08-18):
# src/llamafactory/hparams/{finetuning_args,model_args,data_args}.py plus transformers'
# Seq2SeqTrainingArguments; read by src/llamafactory/model/adapter.py::_setup_lora_tuning.
LLAMAFACTORY_KEYS = {
    "model_name_or_path", "stage", "do_train", "finetuning_type", "lora_rank", "lora_alpha",
    "lora_dropout", "lora_target", "use_dora", "use_rslora", "quantization_bit",
    "disable_gradient_checkpointing", "cutoff_len",
}  # fmt: skip


def view_of(record: TrialRecord, model: nn.Module, task: str = "seq_cls") -> StudyView:
    spec = {
        "task": task,
        "model": {"path": "org/tiny", "precision": "fp32", "quantization": None},
        "dataset": {"source": "data.csv", "text_column": "text", "label_column": "label"},
        "fidelity": {"max_steps": 4, "batch_size": 8, "seq_len": 16, "learning_rate": 1e-3},
        "metric": "accuracy",
        "seed": 0,
    }
    sites = tuple(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
    objectives = [Objective("accuracy", "maximize"), Objective("trainable_params", "minimize")]
    return StudyView(
        name="s", url="sqlite://", spec=spec, model_path="/cache/tiny", budget=10**6,
        objectives=objectives, records=[record], fingerprint="fp", hidden_size=32, sites=sites,
    )  # fmt: skip


def record_of(peft_config: dict[str, Any], method: str, sizes: dict[str, int]) -> TrialRecord:
    values = {"accuracy": 0.5, "trainable_params": 100.0}
    metrics = {"steps": 4.0, "learning_rate": 2e-3, "head_params": 66.0}
    return TrialRecord(
        number=0, state="COMPLETE", values=values, method=method, metrics=metrics,  # type: ignore[arg-type]
        peft_config=peft_config, module_sizes=sizes,
    )  # fmt: skip


def per_module(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape of every trainable adapter tensor, by name (the classification head left
    out): equal for two builds exactly when every module got the same adapter sizes."""
    return {
        name: tuple(param.shape)
        for name, param in model.named_parameters()
        if param.requires_grad and not any(h in name for h in HEAD)
    }


def build(family: str, config: Any) -> nn.Module:
    import peft

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a target that matches nothing
        return peft.get_peft_model(fresh(family), config)


def axolotl_config(cfg: dict[str, Any]) -> Any:
    """Axolotl's ``_build_peft_lora_config`` for the keys the export writes."""
    from peft import LoraConfig

    kwargs: dict[str, Any] = {}
    for key, name in (("peft_use_dora", "use_dora"), ("peft_use_rslora", "use_rslora")):
        if cfg.get(key):
            kwargs[name] = cfg[key]
    patterns = (("lora_rank_pattern", "rank_pattern"), ("lora_alpha_pattern", "alpha_pattern"))
    for key, name in patterns:
        if cfg.get(key):
            kwargs[name] = cfg[key]
    return LoraConfig(
        r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], target_modules=cfg["lora_target_modules"],
        layers_to_transform=cfg.get("peft_layers_to_transform"), lora_dropout=cfg["lora_dropout"],
        bias="none", task_type="SEQ_CLS", **kwargs,
    )  # fmt: skip


def llamafactory_config(cfg: dict[str, Any], task_type: str = "SEQ_CLS") -> Any:
    """LLaMA-Factory's ``_setup_lora_tuning`` for the keys the export writes (its
    ``task_type`` is always CAUSAL_LM; the test model's task is used so the head matches)."""
    from peft import LoraConfig

    from autopeft.results.formats.llamafactory import parse_target

    return LoraConfig(
        r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"] or cfg["lora_rank"] * 2,
        target_modules=parse_target(cfg["lora_target"]), lora_dropout=cfg["lora_dropout"],
        use_rslora=cfg["use_rslora"], use_dora=cfg["use_dora"], task_type=task_type,
    )  # fmt: skip


def _yaml(files: dict[str, bytes], name: str) -> dict[str, Any]:
    return dict(yaml.safe_load(files[name]))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("method", list(CASES))
def test_every_method_round_trips_through_every_format(
    method: str, fmt: str, tmp_path: Path
) -> None:
    from peft import PeftConfig

    from autopeft.methods.base import config_from_json

    family = "llama"
    bound = bind(method, family, tmp_path)
    compiled = bound.compile(RandomSampler(bound, [], seed=3).propose([], 1)[0])
    expected = per_module(build(family, config_from_json(compiled.peft_config)))
    record = record_of(compiled.peft_config, method, compiled.module_sizes)
    view = view_of(record, fresh(family))
    if fmt in ("axolotl", "llamafactory") and method != "lora":
        with pytest.raises(UnsupportedError, match=f"--format {fmt} cannot express a"):
            render(view, record, fmt)
        return
    rendered = render(view, record, fmt)
    assert {"adapter_config.json", "training.json", "README.md"} <= set(rendered.files)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "adapter_config.json").write_bytes(rendered.files["adapter_config.json"])
    config = PeftConfig.from_pretrained(str(tmp_path / "export"))
    assert config.base_model_name_or_path == "org/tiny"  # as written, not the cache path
    assert per_module(build(family, config)) == expected
    if fmt == "axolotl":
        rebuilt = axolotl_config(_yaml(rendered.files, "axolotl.yaml"))
        assert per_module(build(family, rebuilt)) == expected
        assert compiled.module_sizes == {
            n: s for n, s in _lora_ranks(build(family, rebuilt)).items()
        }
    if fmt == "llamafactory":
        lf = llamafactory_config(_yaml(rendered.files, "llamafactory.yaml"))
        rebuilt_sizes = per_module(build(family, lf))
        sizes_lost = any(x.startswith(("per-module ranks", "layer ")) for x in rendered.lost)
        assert (rebuilt_sizes == expected) != sizes_lost, rendered.lost


def _lora_ranks(model: nn.Module) -> dict[str, int]:
    return {
        n.removeprefix("base_model.model."): int(m.lora_A["default"].weight.shape[0])
        for n, m in model.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    }


def test_field_names_exist_in_each_tool(tmp_path: Path) -> None:
    from peft import LoraConfig
    from trl import SFTConfig

    from autopeft.results.formats.axolotl import FIELDS

    bound = bind("lora", "llama", tmp_path)
    compiled = bound.compile(RandomSampler(bound, [], seed=3).propose([], 1)[0])
    record = record_of(compiled.peft_config, "lora", compiled.module_sizes)
    view = view_of(record, fresh("llama"))
    sft = json.loads(render(view, record, "trl").files["sft_config.json"])
    assert set(sft) <= {f.name for f in dataclasses.fields(SFTConfig)}
    SFTConfig(output_dir=str(tmp_path / "out"), **{**sft, "bf16": False, "fp16": False})
    assert set(FIELDS) <= {f.name for f in dataclasses.fields(LoraConfig)}
    assert set(_yaml(render(view, record, "axolotl").files, "axolotl.yaml")) <= AXOLOTL_KEYS
    training_args = {f.name for f in dataclasses.fields(SFTConfig)}  # transformers' arguments
    lf = set(_yaml(render(view, record, "llamafactory").files, "llamafactory.yaml"))
    assert lf <= LLAMAFACTORY_KEYS | training_args, lf - LLAMAFACTORY_KEYS - training_args


# -- LLaMA-Factory's lost: list, one feature at a time ------------------------------------------
def _lf(family: str, task: str, **lora: Any) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Render a LoRA config on the tiny model as LLaMA-Factory; returns (lost, the trial's
    per-module sizes, those LLaMA-Factory rebuilds)."""
    from peft import LoraConfig

    config = LoraConfig(task_type="SEQ_CLS", **lora)
    model = build(family, config)
    record = record_of(json.loads(json.dumps(config.to_dict(), default=sorted)), "lora", {})
    rendered = render(view_of(record, fresh(family), task), record, "llamafactory")
    text = rendered.files["llamafactory.yaml"].decode()
    for item in rendered.lost:  # printed and written as a comment
        assert f"#   - {item}\n" in text
    rebuilt = build(family, llamafactory_config(yaml.safe_load(text)))
    return rendered.lost, per_module(model), per_module(rebuilt)


QV = [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]


def test_llamafactory_is_exact_for_one_rank_on_every_layer() -> None:
    lost, trial, rebuilt = _lf("llama", "causal_lm", r=4, lora_alpha=8, target_modules=QV)
    assert lost == [] and rebuilt == trial


def test_llamafactory_loses_per_module_ranks() -> None:
    pattern = {QV[0]: 2}
    lost, trial, rebuilt = _lf(
        "llama", "causal_lm", r=4, lora_alpha=8, target_modules=QV, rank_pattern=pattern,
        alpha_pattern={QV[0]: 4},
    )  # fmt: skip
    assert lost == ["per-module ranks (2..4 over 4 modules): lora_rank 4 on every module"]
    assert rebuilt != trial and set(rebuilt) == set(trial)


def test_llamafactory_loses_per_module_scaling() -> None:
    lost, _, _ = _lf(
        "llama", "causal_lm", r=4, lora_alpha=8, target_modules=QV, alpha_pattern={QV[0]: 16}
    )
    assert lost == ["per-module alpha/rank scaling: lora_alpha 8 on every module"]


def test_llamafactory_loses_the_layer_placement() -> None:
    lost, trial, rebuilt = _lf("llama", "causal_lm", r=4, lora_alpha=8, target_modules=QV[:2])
    assert lost == [
        "layer placement: 2 modules adapted, lora_target adapts 4 "
        "(2 more, e.g. model.layers.1.self_attn.q_proj)"
    ]
    modules = [
        {k.split(".lora_")[0].removeprefix("base_model.model.") for k in d}
        for d in (rebuilt, trial)
    ]
    assert modules[0] - modules[1] == set(QV[2:])


def test_llamafactory_loses_fields_it_has_no_key_for() -> None:
    lost, _, _ = _lf(
        "llama", "causal_lm", r=4, lora_alpha=8, target_modules=QV, init_lora_weights="gaussian"
    )
    assert lost == ["LoRA fields with no LLaMA-Factory key: init_lora_weights"]


def test_llamafactory_loses_a_classification_task() -> None:
    lost, _, _ = _lf("llama", "seq_cls", r=4, lora_alpha=8, target_modules=QV)
    assert lost == [
        "task seq_cls: LLaMA-Factory trains causal LMs (task_type CAUSAL_LM); "
        "the classification head is not expressed"
    ]


def test_llamafactory_refuses_a_regex_target() -> None:
    with pytest.raises(UnsupportedError, match="cannot express target_modules"):
        _lf("llama", "causal_lm", r=4, lora_alpha=8, target_modules=r".*q_proj")


# -- bad input ------------------------------------------------------------------------------------
def test_unknown_format_and_incomplete_trial_are_refused(tmp_path: Path) -> None:
    bound = bind("lora", "llama", tmp_path)
    compiled = bound.compile(RandomSampler(bound, [], seed=3).propose([], 1)[0])
    record = record_of(compiled.peft_config, "lora", compiled.module_sizes)
    view = view_of(record, fresh("llama"))
    with pytest.raises(UserInputError, match="unknown export format 'keras'; expected one of peft"):
        render(view, record, "keras")
    failed = dataclasses.replace(record, state="FAIL")  # type: ignore[arg-type]
    with pytest.raises(StudyError, match="trial 0 of study 's' is FAIL, not COMPLETE"):
        render(view, failed, "peft")


def test_training_json_carries_the_recipe(tmp_path: Path) -> None:
    bound = bind("lora", "bert", tmp_path)
    compiled = bound.compile(RandomSampler(bound, [], seed=3).propose([], 1)[0])
    record = record_of(compiled.peft_config, "lora", compiled.module_sizes)
    recipe = json.loads(render(view_of(record, fresh("bert")), record).files["training.json"])
    assert recipe["training"] == {
        "optimizer": "adamw", "learning_rate": 2e-3, "lr_scheduler": "linear",
        "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": None, "max_steps": 4,
        "batch_size": 8, "seq_len": 16, "precision": "fp32", "gradient_checkpointing": False,
        "quantization": None, "seed": 0,
    }  # fmt: skip
    assert recipe["model"]["base_model_name_or_path"] == "org/tiny"
    assert recipe["model"]["num_labels"] == 2  # head_params 66 = 2 x (32 + 1)
    assert recipe["result"]["value"] == 0.5 and recipe["trial"] == 0
