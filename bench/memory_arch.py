"""Predicted vs measured peak training memory on the architecture matrix, on CPU.

For each architecture of :data:`autopeft.testing.tiny_models.ARCHITECTURES` (with an
8,192-token vocabulary, so the LM head's logits weigh as they do in real decoders) and
for SmolLM2-135M (the built-in, ``--smollm``): LoRA on every linear leaf is built, two AdamW
steps run on a random batch under the trials' own meter (:class:`~autopeft.trial.memory.
PeakMemoryMeter`, seeded like a trial), and the measured peak is compared with the structural
prediction of :mod:`autopeft.trial.memory_model` (what a study predicts before its first trial).

Run: ``PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/memory_arch.py [--smollm]``
"""

from __future__ import annotations

import argparse
import sys

import torch

from autopeft.methods.base import config_from_json
from autopeft.methods.binding import bind_space, load_space
from autopeft.models.layout import ModelLayout
from autopeft.testing.tiny_models import ARCHITECTURES
from autopeft.trial.memory import PeakMemoryMeter, model_state_tensors
from autopeft.trial.memory_model import MemoryStructure, count_base_bytes, head_copies

SPACE = (
    "version: 1\nname: mem\nmethod: lora\nmax_trainable_params: 100000000\n"
    "parameters:\n  target_modules: {targets}\n  rank: 8\n"
)


def measure(model, config, task: str, batch: int, seq: int, path) -> tuple[float, float]:
    """(predicted MiB, measured MiB) of LoRA r=8 on every linear leaf."""
    import peft

    num_labels = None if task == "causal_lm" else 2
    layout = ModelLayout.from_model(model)
    bound = bind_space(load_space(path), layout, path)
    point = {d.name: d.spec.choices[0] if d.spec.choices else d.spec.low for d in bound.dimensions}
    compiled = bound.compile(point, "CAUSAL_LM" if task == "causal_lm" else "SEQ_CLS")
    base, heads = count_base_bytes(config, num_labels)
    structure = MemoryStructure.build(
        layout,
        base,
        batch_size=batch,
        seq_len=seq,
        heads=heads,
        vocab=_vocab(config, task),
        head_copies=head_copies(config),
    )
    predicted = structure.structural(compiled.trainable_params, compiled.placement)
    model = peft.get_peft_model(model, config_from_json(compiled.peft_config))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (batch, seq), generator=gen)
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    data["labels"] = ids.clone() if task == "causal_lm" else torch.arange(batch) % 2
    model.train()
    meter = PeakMemoryMeter("cpu", seed=model_state_tensors(model, optimizer))
    with meter:
        for _ in range(2):
            model(**data).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return predicted / 2**20, meter.peak_bytes / 2**20


def _vocab(config, task: str) -> int:
    return int(config.vocab_size) if task == "causal_lm" else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smollm", action="store_true", help="also SmolLM2-135M (slow)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--targets", default="all_linear", help="LoRA preset (r=8)")
    parser.add_argument("--vocab", type=int, default=8192, help="tiny models' vocabulary")
    parser.add_argument("--only-smollm", action="store_true")
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    torch.set_num_threads(1)
    path = Path(tempfile.mkdtemp()) / "space.yaml"
    path.write_text(SPACE.format(targets=args.targets))
    rows = []
    for name, arch in ({} if args.only_smollm else ARCHITECTURES).items():
        config = arch.config()
        config.vocab_size = args.vocab
        if arch.task == "seq_cls":
            config.num_labels = 2
        import transformers

        torch.manual_seed(0)
        auto = (
            transformers.AutoModelForCausalLM
            if arch.task == "causal_lm"
            else transformers.AutoModelForSequenceClassification
        )
        model = auto.from_config(config)
        rows.append((name, *measure(model, config, arch.task, args.batch, args.seq, path)))
    if args.smollm or args.only_smollm:
        import transformers

        from autopeft.models.resolve import resolve_model

        directory = resolve_model("smollm2-135m")
        config = transformers.AutoConfig.from_pretrained(directory)
        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
        rows.append(
            ("smollm2-135m", *measure(model, config, "causal_lm", args.batch, args.seq, path))
        )
    print(f"{'architecture':<14} {'predicted MiB':>14} {'measured MiB':>13} {'error':>7}")
    for name, predicted, measured in rows:
        error = (predicted - measured) / measured
        print(f"{name:<14} {predicted:>14.1f} {measured:>13.1f} {error:>+7.1%}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
