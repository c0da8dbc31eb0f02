"""Run one trial: copy the base model, attach the compiled adapter, train, measure, evaluate."""

from __future__ import annotations

import copy
import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from autopeft.exceptions import TrialError
from autopeft.methods.base import CompiledConfig, config_from_json
from autopeft.methods.registry import get_method
from autopeft.trial.context import TrialContext
from autopeft.trial.memory import PeakMemoryMeter, model_state_tensors

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TrialRequest:
    """What a worker needs to run a trial: its number, compiled config and seed."""

    number: int
    compiled: CompiledConfig
    seed: int


@dataclass(frozen=True)
class TrialResult:
    """What comes back: measurements, or the failure and whether the config caused it."""

    number: int
    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    infeasible: bool = False


def run_trial(
    ctx: TrialContext, request: TrialRequest, on_step: StepCallback | None = None
) -> TrialResult:
    """Run ``request`` on ``ctx``; every failure becomes a failed :class:`TrialResult`."""
    try:
        return TrialResult(request.number, True, _run(ctx, request, on_step))
    except TrialError as exc:
        return TrialResult(request.number, False, error=str(exc), infeasible=exc.infeasible)
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        return TrialResult(
            request.number, False, error=f"out of memory: {exc}"[:500], infeasible=True
        )
    except Exception as exc:  # a trial must never take the study down
        return TrialResult(request.number, False, error=f"{type(exc).__name__}: {exc}"[:500])


def _run(ctx: TrialContext, request: TrialRequest, on_step: StepCallback | None) -> dict[str, Any]:
    from peft import get_peft_model

    compiled, fid = request.compiled, ctx.fidelity
    t0 = time.perf_counter()
    torch.manual_seed(request.seed)
    method = get_method(compiled.method)
    config = config_from_json(method.runtime_config(compiled.peft_config, fid.max_steps))
    with warnings.catch_warnings():  # peft calls a deprecated transformers alias
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = get_peft_model(copy.deepcopy(ctx.model), config)
    method.verify(model, compiled)
    model.to(ctx.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    head = sum(p.numel() for p in trainable) - compiled.trainable_params
    lr = float(compiled.training.get("learning_rate", fid.learning_rate))
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=fid.weight_decay)
    warmup = int(fid.warmup_ratio * fid.max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, warmup, fid.max_steps)
    )
    t1 = time.perf_counter()
    after_step = functools.partial(method.after_optimizer_step, model)
    loss, peak, how = _train(ctx, model, optimizer, schedule, request.seed, on_step, after_step)
    t2 = time.perf_counter()
    quality = evaluate(ctx, model)
    t3 = time.perf_counter()
    learned = method.learned_config(model, compiled)
    return {
        **({"learned_peft_config": learned} if learned else {}),
        **quality,
        "trainable_params": compiled.trainable_params,
        "head_params": head,
        "peak_memory_bytes": peak,
        "peak_memory_mb": peak / 2**20,
        "memory_method": how,
        "final_train_loss": loss,
        "learning_rate": lr,
        "setup_seconds": t1 - t0,
        "train_seconds": t2 - t1,
        "eval_seconds": t3 - t2,
        "device": str(ctx.device),
    }


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def _train(
    ctx: TrialContext,
    model: Any,
    optimizer: Any,
    schedule: Any,
    seed: int,
    on_step: StepCallback | None,
    after_step: Callable[[int], None] | None = None,
) -> tuple[float, int, str]:
    """Train ``max_steps`` steps; peak memory is measured over the first ``memory_steps``
    (shapes are fixed, so later steps repeat the same profile)."""
    fid = ctx.fidelity
    n = ctx.train["labels"].shape[0]
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    model.train()
    meter = PeakMemoryMeter(ctx.device, seed=model_state_tensors(model, optimizer))
    loss_value = math.nan
    cursor = 0
    measuring = False
    try:
        for step in range(fid.max_steps):
            if step == 0:
                meter.__enter__()
                measuring = True
            if cursor + fid.batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor : cursor + fid.batch_size]
            cursor += fid.batch_size
            batch = {k: v[idx].to(ctx.device) for k, v in ctx.train.items()}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step(step + 1)  # before zero_grad: AdaLoRA reads the gradients
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            if measuring and step + 1 >= fid.memory_steps:
                meter.__exit__(None, None, None)
                measuring = False
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrialError(f"training diverged: loss is {loss_value} at step {step}")
            if on_step is not None:
                on_step(step + 1, fid.max_steps)
    finally:
        if measuring:
            meter.__exit__(None, None, None)
    return loss_value, meter.peak_bytes, meter.method


@torch.no_grad()
def evaluate(ctx: TrialContext, model: Any, batch_size: int = 64) -> dict[str, float]:
    """Accuracy and macro-F1 on the validation tensors."""
    model.eval()
    data = ctx.validation
    preds = []
    for start in range(0, data["labels"].shape[0], batch_size):
        batch = {
            k: v[start : start + batch_size].to(ctx.device)
            for k, v in data.items()
            if k != "labels"
        }
        preds.append(model(**batch).logits.argmax(-1).cpu())
    pred, gold = torch.cat(preds), data["labels"]
    return {
        "accuracy": float((pred == gold).float().mean()),
        "macro_f1": _macro_f1(pred, gold, ctx.num_labels),
    }


def _macro_f1(pred: torch.Tensor, gold: torch.Tensor, k: int) -> float:
    scores = []
    for c in range(k):
        tp = int(((pred == c) & (gold == c)).sum())
        fp, fn = int(((pred == c) & (gold != c)).sum()), int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0
