"""``autopeft init``: a study spec and a search space sized to a model and a dataset.

The space is LoRA with a rank per layer on the module presets the model has, under a budget of
:data:`BUDGET_FRACTION` of the model's parameters; the spec's sequence length is sized to the
data (95th percentile of the tokenized rows, every completion fitting). Both files are written
to a staging directory, validated there exactly as ``autopeft run`` would (model, data, space,
sampler), and only then moved into place, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import math
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autopeft.core.files import ensure_directory
from autopeft.exceptions import OutputError

BUDGET_FRACTION = 0.01
"""The space's ``max_trainable_params``: this fraction of the base model's parameters."""
RANKS = (0, 2, 4, 8, 16)
FILES = ("study.yaml", "space.yaml")


@dataclass(frozen=True)
class Scaffold:
    """What ``init`` wrote, and the facts it sized the files by."""

    spec_path: Path
    space_path: Path
    task: str
    family: str
    num_layers: int
    model_params: int
    budget: int
    presets: tuple[str, ...]
    data: str
    seq_len: int
    examples: tuple[int, int, int]


def scaffold_study(
    model: str,
    data: str,
    *,
    out: Path,
    task: str | None = None,
    name: str | None = None,
    trials: int = 20,
    max_steps: int = 100,
    revision: str | None = None,
    force: bool = False,
) -> Scaffold:
    """Write ``study.yaml`` and ``space.yaml`` for ``model`` and ``data`` into ``out``.

    Raises:
        UserInputError: the model or the data cannot be used (named as ``run`` would name
            them), or ``out`` already holds the files (without ``force``).
    """
    from transformers import AutoConfig

    from autopeft.data.sniff import sniff
    from autopeft.models.layout import model_on_meta
    from autopeft.models.resolve import resolve_model
    from autopeft.tasks import get_task

    cwd = Path.cwd()
    model_path = resolve_model(model, cwd, revision)
    guess = sniff(data, task, cwd)
    dataset = _dataset_block(data, guess.columns, cwd)
    config = AutoConfig.from_pretrained(model_path, local_files_only=True)
    loaded = get_task(guess.task).load_data(_as_spec(dataset), cwd)
    labels = getattr(loaded, "label_names", None)
    meta = model_on_meta(config, len(labels) if labels is not None else None)
    model_params = sum(p.numel() for p in meta.parameters())
    from autopeft.models.layout import BUILTIN_PRESETS, ModelLayout

    layout = ModelLayout.from_model(meta)
    presets = tuple(n for n, m in BUILTIN_PRESETS.items() if n == "all_linear" or _has(layout, m))
    budget = max(1, int(model_params * BUDGET_FRACTION))
    seq_len = _seq_len(guess.task, model_path, loaded, dataset)
    ref = model if not (cwd / model).exists() else str((cwd / model).resolve())
    spec = _spec(name or _name(model, data), guess.task, ref, revision, dataset, trials)
    spec["fidelity"] = _fidelity(len(loaded), seq_len, max_steps)
    space = _space(spec["name"], presets, budget, layout.num_layers, model_params)
    spec_path, space_path, sizes = _write_validated(out, spec, space, force)
    return Scaffold(
        spec_path, space_path, guess.task, layout.family, layout.num_layers, model_params,
        budget, presets, guess.description, seq_len, sizes,
    )  # fmt: skip


def _has(layout: Any, members: tuple[str, ...]) -> bool:
    return bool(members) and bool(layout.resolve_preset(members))


def _name(model: str, data: str) -> str:
    stem = Path(model.rstrip("/")).name.removesuffix(".gguf") + "_" + Path(data).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-") or "study"


def _dataset_block(data: str, columns: dict[str, str], cwd: Path) -> dict[str, Any]:
    local = cwd / data
    source = str(local.resolve()) if local.exists() else data
    return {"source": source, **columns}


def _as_spec(dataset: dict[str, Any]) -> Any:
    from autopeft.spec import DatasetSpec

    return DatasetSpec.model_validate(dataset)


def _spec(
    name: str,
    task: str,
    model: str,
    revision: str | None,
    dataset: dict[str, Any],
    trials: int,
) -> dict[str, Any]:
    model_block: Any = {"path": model, "revision": revision} if revision else model
    spec: dict[str, Any] = {
        "version": 1,
        "name": name,
        "description": f"written by autopeft init for {model}",
        "task": task,
        "model": model_block,
        "dataset": dataset,
    }
    if task == "causal_lm":
        spec["metric"] = "eval_loss"  # no generation: fast, and right for free-form answers
    spec.update(search_space="space.yaml", n_trials=trials, seed=0)
    return spec


def _fidelity(examples: int, seq_len: int, max_steps: int) -> dict[str, Any]:
    return {
        "train_examples": min(1000, max(1, int(examples * 0.7))),
        "max_steps": max_steps,
        "eval_examples": min(200, max(1, int(examples * 0.15))),
        "seq_len": seq_len,
        "batch_size": 8,
    }


def _seq_len(task: str, model_path: Path, data: Any, dataset: dict[str, Any]) -> int:
    """The 95th percentile of tokenized row lengths rounded up to 16 (32..1024); for causal
    LM also long enough for every completion with its EOS token and one prompt token."""
    from autopeft.tasks.loading import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    if task == "causal_lm":
        from autopeft.tasks.causal_lm import render_prompts

        prompts = render_prompts(tokenizer, data, bool(dataset.get("chat_template", False)))
        answers = tokenizer(list(data.completions), add_special_tokens=False)["input_ids"]
        lengths = [len(p) + len(a) + 1 for p, a in zip(prompts, answers, strict=True)]
        floor = max(len(a) + 2 for a in answers)
    else:
        pairs = list(data.text_pairs) or None
        lengths = [len(ids) for ids in tokenizer(list(data.texts), pairs)["input_ids"]]
        floor = 0
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return min(1024, max(32, floor, 16 * math.ceil(max(p95, floor) / 16)))


def _space(
    name: str, presets: tuple[str, ...], budget: int, layers: int, params: int
) -> dict[str, Any]:
    return {
        "version": 1,
        "name": f"{name}_lora",
        "description": (
            f"LoRA with a rank per layer ({layers} layers) on the module presets this model "
            f"has; budget {BUDGET_FRACTION:.0%} of its {params:,} parameters"
        ),
        "method": "lora",
        "max_trainable_params": budget,
        "parameters": {
            "target_modules": {"type": "categorical", "choices": list(presets)},
            "rank": {"type": "int", "choices": list(RANKS), "per": "layer"},
            "alpha_ratio": 2.0,
            "dropout": 0.0,
            "learning_rate": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
        },
    }


def _write_validated(
    out: Path, spec: dict[str, Any], space: dict[str, Any], force: bool
) -> tuple[Path, Path, tuple[int, int, int]]:
    """Write both files to a staging directory in ``out``, validate them as ``run`` would,
    then move them into place; returns their paths and the train/validation/test sizes."""
    from autopeft.run.prepare import prepare_study

    taken = [f for f in FILES if (out / f).exists()]
    if taken and not force:
        raise OutputError(
            f"{out / taken[0]} exists already; choose another --out directory or pass --force"
        )
    created = not out.exists()
    ensure_directory(out, "output directory")
    staging = out / f".autopeft-init-{uuid.uuid4().hex[:8]}"
    done = False
    try:
        staging.mkdir()
        for file, data in zip(FILES, (spec, space), strict=True):
            (staging / file).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        p = prepare_study(staging / "study.yaml", storage="sqlite://")  # writes nothing
        for file in FILES:
            (staging / file).replace(out / file)
        done = True
    except OSError as exc:
        raise OutputError(f"cannot write the study files into {out} ({exc.strerror})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            shutil.rmtree(out, ignore_errors=True)
    sizes = (len(p.splits.train), len(p.splits.validation), len(p.splits.test))
    return out / FILES[0], out / FILES[1], sizes
