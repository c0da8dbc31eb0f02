"""Train an autopeft export on a causal LM with nothing but peft + transformers, then generate.

    python examples/train_exported.py EXPORT_DIR --train train.jsonl --prompts eval.jsonl \
        [--steps 12] [--lr 2e-3] [--batch-size 8] [--max-new-tokens 6]

This is the training job a user writes: ``PeftConfig.from_pretrained(EXPORT_DIR)`` and
``get_peft_model(base, config)`` rebuild the searched adapter on the base model named in the
export; a plain AdamW loop trains it on ``train.jsonl`` rows ``{"prompt": ..., "completion":
...}`` (prompts already rendered with the chat template; the loss covers the completion and the
EOS token only). Prints one JSON line with the adapter's per-module sizes, then one JSON line
per row of ``--prompts``: the base model's and the adapted model's greedy answers.
"""

from __future__ import annotations

import argparse
import json

import torch
from peft import PeftConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def read_jsonl(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def module_sizes(model: torch.nn.Module) -> dict[str, int]:
    """LoRA rank per adapted module; for other methods, trainable parameters per module."""
    sizes = {
        name.removeprefix("base_model.model."): module.lora_A["default"].weight.shape[0]
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "default" in module.lora_A
    }
    if not sizes:
        for name, param in model.named_parameters():
            if param.requires_grad:
                owner = name.removeprefix("base_model.model.").rsplit(".", 1)[0]
                sizes[owner] = sizes.get(owner, 0) + param.numel()
    return sizes


def batch(tokenizer, rows: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """Right-padded ids with labels on completion + EOS tokens only."""
    seqs, labels = [], []
    for row in rows:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        answer = [*answer, tokenizer.eos_token_id]
        seqs.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    lab = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


@torch.no_grad()
def answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(
        **ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--train", required=True)
    parser.add_argument("--prompts", required=True)
    parser.add_argument("--model", help="a local copy of the base model")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=6)
    args = parser.parse_args()

    torch.manual_seed(0)
    config = PeftConfig.from_pretrained(args.export_dir)
    path = args.model or config.base_model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    model = get_peft_model(base, config)
    print(json.dumps({"module_sizes": module_sizes(model)}, sort_keys=True), flush=True)

    rows = read_jsonl(args.train)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr)
    model.train()
    for step in range(args.steps):
        start = step * args.batch_size % len(rows)
        loss = model(**batch(tokenizer, rows[start : start + args.batch_size])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    for row in read_jsonl(args.prompts):
        with model.disable_adapter():
            before = answer(model, tokenizer, row["prompt"], args.max_new_tokens)
        after = answer(model, tokenizer, row["prompt"], args.max_new_tokens)
        print(json.dumps({"gold": row["completion"], "base": before, "adapted": after}))


if __name__ == "__main__":
    main()
