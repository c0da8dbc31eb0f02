"""Train an autopeft export (``autopeft export NAME --format trl``) with TRL, and report its metric.

    python train.py [EXPORT_DIR] [--train FILE --validation FILE] [--model PATH] [--seed S]

Needs only torch, transformers, peft, trl and datasets. Reads ``adapter_config.json`` (the
trial's exact adapter, any peft method), ``training.json`` (task, data fields, labels, metric)
and ``sft_config.json`` (``trl.SFTConfig`` arguments: the searched learning rate, schedule,
steps, batch size, sequence length, precision and seed). Data default to ``data/train.jsonl``
and ``data/validation.jsonl`` in the export (``autopeft export --with-data`` writes the study's
own examples there); ``--model`` replaces the base model named in the export (a local copy).

A causal-LM study trains with ``SFTTrainer`` on prompt/completion rows (loss on the completion
only, as autopeft's trials) and reports ``eval_loss`` or greedy ``exact_match``; a
classification study trains with ``transformers.Trainer`` (``SFTTrainer`` trains language
models only) on the same arguments and reports ``accuracy``. The last line printed is one JSON
object: the metric, its value, the value the search stored, the adapter's per-module sizes and
the logged training losses.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from peft import PeftConfig, get_peft_model

with contextlib.suppress(ImportError):  # plain peft types load without autopeft
    import autopeft  # noqa: F401 - registers autopeft's bottleneck adapter type with peft

SFT_ONLY = ("max_length", "packing", "completion_only_loss", "assistant_only_loss")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("export_dir", nargs="?", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--train", help="JSONL/CSV rows (default: EXPORT_DIR/data/train.jsonl)")
    parser.add_argument("--validation", help="default: EXPORT_DIR/data/validation.jsonl")
    parser.add_argument("--model", help="a local copy of the base model")
    parser.add_argument("--seed", type=int, help="replace the trial's seed")
    parser.add_argument("--steps", type=int, help="replace the trial's steps")
    parser.add_argument("--output", default=None, help="where to save the trained adapter")
    args = parser.parse_args(argv)

    export = Path(args.export_dir)
    recipe = json.loads((export / "training.json").read_text())
    sft = json.loads((export / "sft_config.json").read_text())
    if args.seed is not None:
        sft["seed"] = sft["data_seed"] = args.seed
    if args.steps is not None:
        sft["max_steps"] = args.steps
    config = PeftConfig.from_pretrained(str(export))
    model_path = args.model or recipe["model"]["base_model_name_or_path"]
    train = load_rows(args.train or export / "data" / "train.jsonl")
    validation = load_rows(args.validation or export / "data" / "validation.jsonl")
    output = args.output or str(export / "trained")
    transformers.set_seed(sft["seed"])
    if recipe["task"] == "seq_cls":
        report = train_classifier(recipe, sft, config, model_path, (train, validation), output)
    else:
        report = train_causal(recipe, sft, config, model_path, (train, validation), output)
    report["stored"] = recipe["result"]["value"]
    print(json.dumps(report, sort_keys=True))
    return report


def load_rows(path: str | Path) -> datasets.Dataset:
    kind = "csv" if str(path).endswith(".csv") else "json"
    return datasets.load_dataset(kind, data_files=str(path), split="train")


def model_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    t = recipe["training"]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t["precision"], torch.float32)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if recipe["model"].get("num_hidden_layers"):
        kwargs["num_hidden_layers"] = recipe["model"]["num_hidden_layers"]
    if t["quantization"]:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=t["quantization"] == "nf4",
            load_in_8bit=t["quantization"] == "int8",
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=dtype,
        )
    return kwargs


def module_sizes(model: torch.nn.Module) -> dict[str, int]:
    """LoRA: full module name -> rank; other methods: -> trainable adapter parameters."""
    sizes = {
        name.removeprefix("base_model.model."): int(module.lora_A["default"].weight.shape[0])
        for name, module in model.named_modules()
        if hasattr(module, "lora_A") and "default" in module.lora_A
    }
    if not sizes:
        for name, param in model.named_parameters():
            if param.requires_grad and "modules_to_save" not in name:
                owner = name.removeprefix("base_model.model.").rsplit(".", 1)[0]
                sizes[owner] = sizes.get(owner, 0) + param.numel()
    return sizes


def losses(trainer: transformers.Trainer) -> list[float]:
    return [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]


def train_classifier(
    recipe: dict[str, Any],
    sft: dict[str, Any],
    config: PeftConfig,
    model_path: str,
    data: tuple[datasets.Dataset, datasets.Dataset],
    output: str,
) -> dict[str, Any]:
    fields = recipe["data"]
    text, label = fields["text_column"], fields["label_column"]
    names = fields.get("labels") or sorted({str(v) for v in data[0][label]})
    ids = {name: i for i, name in enumerate(names)}
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    seq_len = recipe["training"]["seq_len"]

    def encode(rows: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(rows[text], padding="max_length", truncation=True, max_length=seq_len)
        enc["labels"] = [ids[str(v)] for v in rows[label]]
        return dict(enc)

    train, validation = (d.map(encode, batched=True, remove_columns=d.column_names) for d in data)
    torch.manual_seed(sft["seed"])  # the head is initialised under the trial's seed
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(names), **model_kwargs(recipe)
    )
    base.config.pad_token_id = tokenizer.pad_token_id
    model = get_peft_model(base, config)
    known = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    plain = {k: v for k, v in sft.items() if k in known and k not in SFT_ONLY}
    trainer = transformers.Trainer(
        model=model,
        args=transformers.TrainingArguments(output_dir=output, **plain),
        train_dataset=train,
    )
    trainer.train()
    predictions = trainer.predict(validation)
    logits: Any = predictions.predictions
    accuracy = float((logits.argmax(-1) == predictions.label_ids).mean())
    model.save_pretrained(output)
    return {
        "metric": "accuracy",
        "value": accuracy,
        "module_sizes": module_sizes(model),
        "losses": losses(trainer),
    }


def completion_rows(recipe: dict[str, Any], rows: datasets.Dataset) -> datasets.Dataset:
    """Rows in TRL's prompt-completion form (conversational when the study used a chat
    template); ``messages`` rows split into the turns before the last assistant turn and
    that turn."""
    fields = recipe["data"]
    prompt, completion, messages = (
        fields["prompt_column"],
        fields["completion_column"],
        fields["messages_column"],
    )
    chat = bool(fields.get("chat_template"))

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        if row.get(messages):
            turns = list(row[messages])
            return {"prompt": turns[:-1], "completion": turns[-1:]}
        if chat or not isinstance(row[prompt], str):
            user = row[prompt]
            turns = user if isinstance(user, list) else [{"role": "user", "content": user}]
            return {
                "prompt": turns,
                "completion": [{"role": "assistant", "content": row[completion]}],
            }
        return {"prompt": row[prompt], "completion": row[completion]}

    return rows.map(convert, remove_columns=rows.column_names)


def train_causal(
    recipe: dict[str, Any],
    sft: dict[str, Any],
    config: PeftConfig,
    model_path: str,
    data: tuple[datasets.Dataset, datasets.Dataset],
    output: str,
) -> dict[str, Any]:
    from trl import SFTConfig, SFTTrainer

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    base = transformers.AutoModelForCausalLM.from_pretrained(model_path, **model_kwargs(recipe))
    train, validation = (completion_rows(recipe, d) for d in data)
    trainer = SFTTrainer(
        model=base,
        args=SFTConfig(output_dir=output, **sft),
        train_dataset=train,
        eval_dataset=validation,
        processing_class=tokenizer,
        peft_config=config,
    )
    trainer.train()
    trained: Any = trainer.model
    metric = recipe["result"]["metric"]
    report: dict[str, Any] = {
        "metric": metric,
        "module_sizes": module_sizes(trained),
        "losses": losses(trainer),
    }
    if metric == "exact_match":
        report["value"] = exact_match(trained, tokenizer, validation, recipe)
    else:
        report["value"] = float(trainer.evaluate()["eval_loss"])
    trained.save_pretrained(output)
    return report


@torch.no_grad()
def exact_match(
    model: Any, tokenizer: Any, rows: datasets.Dataset, recipe: dict[str, Any]
) -> float:
    """Greedy answers vs. the completions, both case-folded and stripped of whitespace runs
    and edge punctuation (the last ``answer_pattern`` match first, when the study had one)."""
    evaluation = recipe.get("evaluation") or {}
    pattern = re.compile(evaluation["answer_pattern"]) if evaluation.get("answer_pattern") else None

    def norm(text: str, gold: bool = False) -> str:
        if pattern is not None:
            found = list(pattern.finditer(text))
            if found:
                last = found[-1]
                text = (last.group(1) if pattern.groups else last.group(0)) or ""
            elif not gold:
                return ""
        return re.sub(r"\s+", " ", text.casefold()).strip().strip(".,;:!?\"'`").strip()

    model.eval()
    hits = 0
    for row in rows:
        prompt, gold = row["prompt"], row["completion"]
        if isinstance(prompt, list):
            ids = tokenizer.apply_chat_template(  # a dict on transformers 5, asked for on 4
                prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            gold = gold[-1]["content"]
        else:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        ids = ids.to(model.device)
        out = model.generate(
            input_ids=ids,
            max_new_tokens=int(evaluation.get("max_new_tokens", 16)),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        hits += norm(answer) == norm(gold, gold=True)
    return hits / max(1, len(rows))


if __name__ == "__main__":
    main()
