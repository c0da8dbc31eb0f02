"""``studies/llm_gpu.yaml``: the GPU template. Its Hub model is not cached here (and Hub IDs
resolve on another branch), so the spec and its space are checked by the schema, and the space
is bound to the real model's shape: Qwen2.5-1.5B's config built on the meta device (no weights),
plus a fused Phi-3 of the same kind, to show its presets carry across families."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopeft.executors.gpu_plan import CudaView, plan_gpus
from autopeft.methods.binding import bind_space
from autopeft.models.layout import layout_on_meta
from autopeft.search.samplers.random import RandomSampler
from autopeft.spec import load_study
from autopeft.trial.memory_model import (
    MemoryModel,
    MemoryStructure,
    count_base_bytes,
    largest_configuration,
)

TEMPLATE = Path(__file__).resolve().parents[1] / "studies" / "llm_gpu.yaml"
# Qwen/Qwen2.5-1.5B-Instruct's config.json (the shapes that matter)
QWEN_1_5B = dict(
    vocab_size=151936,
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    tie_word_embeddings=True,
)
PHI3_MINI = dict(
    vocab_size=32064,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
)


def test_the_template_spec_and_space_pass_the_schema() -> None:
    files = load_study(TEMPLATE)
    spec = files.spec
    assert spec.model.path == "Qwen/Qwen2.5-1.5B-Instruct" and spec.model.precision == "bf16"
    assert spec.task == "causal_lm" and spec.executor.gpus_per_trial == "auto"
    assert "gradient_checkpointing" in files.space.searched()


@pytest.mark.parametrize(
    ("config_class", "shape"), [("Qwen2Config", QWEN_1_5B), ("Phi3Config", PHI3_MINI)]
)
def test_the_space_binds_to_real_model_shapes(config_class: str, shape: dict) -> None:
    import transformers

    files = load_study(TEMPLATE)
    config = getattr(transformers, config_class)(**shape)
    bound = bind_space(files.space, layout_on_meta(config, None), files.space_path)
    points = RandomSampler(bound, [], seed=0).propose([], 8)
    counts = [bound.count_params(p) for p in points]
    assert all(0 < c <= files.space.max_trainable_params for c in counts), counts
    compiled = bound.compile(points[0], "CAUSAL_LM")
    assert "gradient_checkpointing" in compiled.training


def test_the_largest_configuration_fits_an_80gb_gpu_twice() -> None:
    """The memory prediction behind ``gpus_per_trial: auto`` for the template on one H100."""
    import transformers

    files = load_study(TEMPLATE)
    config = transformers.Qwen2Config(**QWEN_1_5B)
    layout = layout_on_meta(config, None)
    bound = bind_space(files.space, layout, files.space_path)
    fid = files.spec.fidelity
    base, heads = count_base_bytes(config, None, "bf16")
    structure = MemoryStructure.build(
        layout,
        base,
        batch_size=fid.batch_size,
        seq_len=fid.seq_len,
        heads=heads,
        precision="bf16",
        vocab=config.vocab_size,
    )
    peak = MemoryModel(structure).predict(*largest_configuration(bound))
    print(f"predicted peak of the largest configuration: {peak / 2**30:.1f} GiB")
    assert 3 * 2**30 < peak < 36 * 2**30  # more than the bf16 base, two fit in 72 GiB
    plan = plan_gpus(files.spec.executor, CudaView(("H100",), (80 * 2**30,)), peak)
    assert (plan.gpus_per_trial, plan.workers) == (0.5, 2)
