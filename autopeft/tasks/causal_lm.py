"""Causal language modelling (``task: causal_lm``): instruction or completion fine-tuning.

Data: prompt/completion pairs or chat ``messages`` (:func:`autopeft.data.load_completions`).
A chat prompt, or a plain prompt when ``dataset.chat_template`` is true, is rendered with the
tokenizer's chat template (with the generation prompt); a completion is followed by the EOS
token. A row is ``prompt + completion`` tokens: when longer than ``fidelity.seq_len`` the
prompt loses tokens **from its start**; a completion that leaves no room for one prompt token is
an error naming the row. The loss is the mean next-token NLL on completion tokens only (prompt
and padding are ``-100``).

Metrics on the validation part: ``eval_loss`` (mean completion-token NLL, token-weighted),
``perplexity`` (its exponential), both minimised, and ``exact_match`` (greedy generation of up
to ``evaluation.max_new_tokens`` tokens from the prompt, scored by
:mod:`autopeft.tasks.answers`), maximised. Generation is the slow part, so ``exact_match`` is
computed when it is the study's metric or ``evaluation.generate`` is true.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from autopeft.exceptions import DatasetError
from autopeft.tasks.answers import exact_match, normalize
from autopeft.tasks.base import (
    Autocast,
    DatasetLike,
    EvaluationLike,
    FidelityLike,
    LoadOptions,
    Task,
)
from autopeft.tasks.loading import finish, load_tokenizer, model_kwargs, quiet_transformers

if TYPE_CHECKING:
    from torch import nn

    from autopeft.data import CompletionDataset, Splits
    from autopeft.models.layout import ModelLayout

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    """Token ids of each row after truncation: the prompt part and the completion part."""

    prompts: list[list[int]]
    completions: list[list[int]]


@dataclass
class CausalEval:
    """The validation part, encoded for :meth:`CausalLanguageModeling.evaluate`."""

    tensors: dict[str, torch.Tensor]
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    answers: tuple[str, ...]
    generate: bool
    max_new_tokens: int
    answer_pattern: str | None
    batch_size: int
    pad_token_id: int
    eos_token_id: int
    tokenizer: Any


class CausalLanguageModeling(Task):
    """``AutoModelForCausalLM`` trained on completions."""

    name: ClassVar[str] = "causal_lm"
    peft_task_type: ClassVar[str] = "CAUSAL_LM"

    def load_data(self, dataset: DatasetLike, base_dir: Path) -> CompletionDataset:
        from autopeft.data import load_completions

        return load_completions(
            dataset.source,
            prompt_column=dataset.prompt_column,
            completion_column=dataset.completion_column,
            messages_column=dataset.messages_column,
            base_dir=base_dir,
            format=dataset.format,
            hub=dataset.hub_source,
        )

    def layout(self, config: Any, data: CompletionDataset) -> ModelLayout:
        from autopeft.models.layout import layout_on_meta

        return layout_on_meta(config, None)

    def load_model(
        self, path: Path, data: CompletionDataset, options: LoadOptions
    ) -> tuple[nn.Module, Any]:
        from transformers import AutoModelForCausalLM

        quiet_transformers()
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs(options))
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.use_cache = False  # training needs no KV cache; generation asks for one
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        return finish(model, options), tokenizer

    def check(
        self,
        path: Path,
        splits: Splits[Any],
        fidelity: FidelityLike,
        dataset: DatasetLike,
    ) -> None:
        """Every row of every split must fit ``seq_len`` (see the module docstring)."""
        tokenizer = load_tokenizer(path)
        for part in (splits.train, splits.validation, splits.test):
            encode_rows(tokenizer, part, fidelity.seq_len, dataset.chat_template)

    def encode(
        self,
        tokenizer: Any,
        part: CompletionDataset,
        fidelity: FidelityLike,
        dataset: DatasetLike,
    ) -> dict[str, torch.Tensor]:
        rows = encode_rows(tokenizer, part, fidelity.seq_len, dataset.chat_template)
        return training_tensors(rows, fidelity.seq_len, tokenizer.pad_token_id)

    def encode_eval(
        self,
        tokenizer: Any,
        part: CompletionDataset,
        fidelity: FidelityLike,
        dataset: DatasetLike,
        evaluation: EvaluationLike,
        metric: str,
    ) -> CausalEval:
        rows = encode_rows(tokenizer, part, fidelity.seq_len, dataset.chat_template)
        ids, mask = left_padded(rows.prompts, tokenizer.pad_token_id)
        generate = evaluation.generate
        return CausalEval(
            tensors=training_tensors(rows, fidelity.seq_len, tokenizer.pad_token_id),
            prompt_ids=ids,
            prompt_mask=mask,
            answers=part.completions,
            generate=metric == "exact_match" if generate is None else bool(generate),
            max_new_tokens=evaluation.max_new_tokens,
            answer_pattern=evaluation.answer_pattern,
            batch_size=evaluation.batch_size,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tokenizer=tokenizer,
        )

    @torch.no_grad()
    def evaluate(
        self, model: nn.Module, data: CausalEval, device: torch.device, autocast: Autocast
    ) -> dict[str, float]:
        model.eval()
        loss = completion_nll(model, data.tensors, data.batch_size, device, autocast)
        metrics = {"eval_loss": loss, "perplexity": math.exp(min(loss, 80.0))}
        if data.generate:
            predictions = generate_answers(model, data, device, autocast)
            metrics["exact_match"] = exact_match(predictions, data.answers, data.answer_pattern)
        return metrics

    def majority_share(
        self, part: CompletionDataset, metric: str, evaluation: EvaluationLike
    ) -> float | None:
        """Exact match of always answering ``part``'s most common answer (after the
        normalisation of :mod:`autopeft.tasks.answers`); None for the loss metrics."""
        if metric != "exact_match" or not len(part):
            return None
        pattern = re.compile(evaluation.answer_pattern) if evaluation.answer_pattern else None
        answers = Counter(normalize(a, pattern, gold=True) for a in part.completions)
        return max(answers.values()) / len(part)

    def describe(self, data: CompletionDataset) -> str:
        chats = sum(isinstance(p, tuple) for p in data.prompts)
        kind = "chat" if chats == len(data) else "prompt/completion" if not chats else "mixed"
        return f"{len(data)} {kind} examples"


def render_prompts(tokenizer: Any, part: CompletionDataset, chat: bool) -> list[list[int]]:
    """Prompt token ids: chat messages (or plain prompts when ``chat``) through the tokenizer's
    chat template with the generation prompt; other plain prompts with special tokens."""
    texts: list[str] = []
    templated: list[bool] = []
    for where, prompt in zip(part.origins, part.prompts, strict=True):
        if isinstance(prompt, tuple) or chat:
            turns = prompt if isinstance(prompt, tuple) else (("user", prompt),)
            texts.append(_chat_text(tokenizer, turns, where))
            templated.append(True)
        else:
            texts.append(prompt)
            templated.append(False)

    def ids(batch: list[str], special: bool) -> list[list[int]]:
        return list(tokenizer(batch, add_special_tokens=special)["input_ids"]) if batch else []

    with_special = ids([t for t, c in zip(texts, templated, strict=True) if not c], True)
    without = ids([t for t, c in zip(texts, templated, strict=True) if c], False)
    plain, chats = iter(with_special), iter(without)
    return [list(next(chats) if c else next(plain)) for c in templated]


def _chat_text(tokenizer: Any, turns: tuple[tuple[str, str], ...], where: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        return plain_chat(turns)
    messages = [{"role": role, "content": content} for role, content in turns]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return str(text)


def plain_chat(turns: tuple[tuple[str, str], ...]) -> str:
    """Chat turns as plain text, for a tokenizer without a chat template (base models):
    ``### User:`` / ``### Assistant:`` sections ending with the assistant's header."""
    parts = [f"### {role.capitalize()}:\n{content}\n\n" for role, content in turns]
    return "".join(parts) + "### Assistant:\n"


def encode_rows(tokenizer: Any, part: CompletionDataset, seq_len: int, chat: bool) -> Encoded:
    """Prompt and completion ids of each row, the prompt cut from its start to fit ``seq_len``.

    Raises:
        DatasetError: A completion (with its EOS token) leaves no room for a prompt token.
    """
    prompts = render_prompts(tokenizer, part, chat)
    eos = tokenizer.eos_token_id
    completions = [
        [*ids, eos]
        for ids in tokenizer(list(part.completions), add_special_tokens=False)["input_ids"]
    ]
    kept: list[list[int]] = []
    for where, prompt, completion in zip(part.origins, prompts, completions, strict=True):
        room = seq_len - len(completion)
        if room < 1:
            raise DatasetError(
                f"{where}: the completion is {len(completion)} tokens with its EOS token, which "
                f"leaves no room for the prompt in fidelity.seq_len={seq_len}; expected a "
                f"seq_len of at least {len(completion) + 1} or a shorter completion"
            )
        kept.append(prompt[-room:] if len(prompt) > room else prompt)
    return Encoded(kept, completions)


def training_tensors(rows: Encoded, seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` of shape ``[n, seq_len]``, right-padded;
    labels are ``-100`` on prompt and padding tokens."""
    n = len(rows.prompts)
    ids = torch.full((n, seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((n, seq_len), dtype=torch.long)
    labels = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    for i, (prompt, completion) in enumerate(zip(rows.prompts, rows.completions, strict=True)):
        p, c = len(prompt), len(completion)
        ids[i, : p + c] = torch.tensor(prompt + completion)
        mask[i, : p + c] = 1
        labels[i, p : p + c] = torch.tensor(completion)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded to the longest (for batched generation) and their attention mask."""
    width = max((len(p) for p in prompts), default=1)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        if prompt:
            ids[i, width - len(prompt) :] = torch.tensor(prompt)
            mask[i, width - len(prompt) :] = 1
    return ids, mask


def completion_nll(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    batch_size: int,
    device: torch.device,
    autocast: Autocast,
) -> float:
    """Mean NLL per completion token over all rows (each batch's mean loss weighted by its
    number of predicted tokens)."""
    total, tokens = 0.0, 0
    for start in range(0, tensors["input_ids"].shape[0], batch_size):
        batch = {k: v[start : start + batch_size].to(device) for k, v in tensors.items()}
        count = int((batch["labels"][:, 1:] != IGNORE).sum())
        if not count:
            continue
        with autocast():
            loss = model(**batch).loss
        total += float(loss) * count
        tokens += count
    return total / tokens if tokens else math.nan


def generate_answers(
    model: nn.Module, data: CausalEval, device: torch.device, autocast: Autocast
) -> list[str]:
    """Greedy generations of up to ``max_new_tokens`` tokens, decoded without special tokens."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=data.max_new_tokens,
        do_sample=False,
        use_cache=True,
        pad_token_id=data.pad_token_id,
        eos_token_id=data.eos_token_id,
    )
    generated: list[list[int]] = []
    for start in range(0, data.prompt_ids.shape[0], data.batch_size):
        ids = data.prompt_ids[start : start + data.batch_size].to(device)
        mask = data.prompt_mask[start : start + data.batch_size].to(device)
        with autocast():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)  # type: ignore[operator]
        if out.shape[1] >= ids.shape[1] and torch.equal(out[:, : ids.shape[1]], ids):
            out = out[:, ids.shape[1] :]
        generated.extend(out.cpu().tolist())
    eos = data.eos_token_id
    return [
        data.tokenizer.decode(_until_eos(ids, eos), skip_special_tokens=True) for ids in generated
    ]


def _until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids
