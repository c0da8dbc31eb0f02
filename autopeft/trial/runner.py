"""Run one trial: attach the compiled adapter to the base, train, measure, evaluate, restore.

The base model is reused across trials (see :mod:`autopeft.trial.reuse`): the adapter is
attached in place and removed afterwards, whatever happens in between.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from autopeft.core.compiled import CompiledConfig
from autopeft.exceptions import TrialError
from autopeft.methods.base import config_from_json
from autopeft.methods.builtin import get_method
from autopeft.trial.context import TrialContext, device_label
from autopeft.trial.continuation import Continuation
from autopeft.trial.curve import CURVE_KEY, LossCurve
from autopeft.trial.memory import MemoryCapExceeded, PeakMemoryMeter, model_state_tensors

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TrialRequest:
    """What a worker needs to run a trial: its number, compiled config and seed, and in a
    multi-fidelity study its rung's training ``steps`` (default: the fidelity's
    ``max_steps``) and ``continuation`` (:mod:`autopeft.trial.continuation`)."""

    number: int
    compiled: CompiledConfig
    seed: int
    steps: int | None = None
    continuation: Continuation | None = None

    def total_steps(self, fidelity: Any) -> int:
        """Training steps of this trial under ``fidelity`` (a :class:`FidelitySpec`)."""
        return self.steps or int(fidelity.max_steps)


@dataclass(frozen=True)
class TrialResult:
    """What comes back: measurements, or the failure and whether the config caused it.

    ``infeasible``: the configuration itself failed (out of memory, over the memory cap).
    ``lost``: the worker running it died (killed, crashed); not the configuration's fault, so
    the driver may re-run the point.
    """

    number: int
    ok: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    infeasible: bool = False
    lost: bool = False


def run_trial(
    ctx: TrialContext, request: TrialRequest, on_step: StepCallback | None = None
) -> TrialResult:
    """Run ``request`` on ``ctx``; every failure becomes a failed :class:`TrialResult`.

    After an out-of-memory the failed trial's tensors are released (the exception and its
    frames are gone once the ``except`` block ends) and CUDA's cache is emptied, so the worker
    stays usable."""
    try:
        return TrialResult(request.number, True, _run(ctx, request, on_step))
    except TrialError as exc:
        result = TrialResult(request.number, False, error=str(exc), infeasible=exc.infeasible)
    except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
        message = str(exc) if isinstance(exc, MemoryCapExceeded) else f"out of memory: {exc}"
        result = TrialResult(request.number, False, error=message[:500], infeasible=True)
    except Exception as exc:  # a trial must never take the study down
        result = TrialResult(request.number, False, error=f"{type(exc).__name__}: {exc}"[:500])
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def _run(ctx: TrialContext, request: TrialRequest, on_step: StepCallback | None) -> dict[str, Any]:
    compiled = request.compiled
    method = get_method(compiled.method)
    steps = request.total_steps(ctx.fidelity)
    config = config_from_json(method.runtime_config(compiled.peft_config, steps))
    t0 = time.perf_counter()
    torch.manual_seed(request.seed)
    with ctx.base.attached(config) as model:
        metrics = _train_and_evaluate(ctx, request, model, t0, on_step)
    metrics["restore_seconds"] = time.perf_counter() - t0 - metrics.pop("_used_seconds")
    metrics["base_reloads"] = ctx.base.reloads
    return metrics


def _train_and_evaluate(
    ctx: TrialContext,
    request: TrialRequest,
    model: Any,
    t0: float,
    on_step: StepCallback | None,
) -> dict[str, Any]:
    compiled, fid = request.compiled, ctx.fidelity
    method = get_method(compiled.method)
    method.verify(model, compiled)
    if not getattr(model, "is_quantized", False):  # bitsandbytes models are placed at load
        model.to(ctx.device)
    checkpointing = bool(
        compiled.training.get("gradient_checkpointing", ctx.gradient_checkpointing)
    )
    base: Any = ctx.model  # the module peft wraps in place
    if checkpointing:
        base.gradient_checkpointing_enable({"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    head = sum(p.numel() for p in trainable) - compiled.trainable_params
    lr = float(compiled.training.get("learning_rate", fid.learning_rate))
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=fid.weight_decay)
    steps = request.total_steps(fid)
    start, stream, note = _resume(request, model, optimizer, steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(request, fid, steps, start))
    t1 = time.perf_counter()
    after_step = functools.partial(method.after_optimizer_step, model)
    try:
        loss, peak, how, curve = _train(
            ctx, model, optimizer, schedule, (request.seed, steps), on_step, after_step, stream
        )
    finally:
        if checkpointing:
            base.gradient_checkpointing_disable()
    if request.continuation is not None and request.continuation.save:
        from autopeft.trial.continuation import save_checkpoint

        save_checkpoint(request.continuation.save, model, optimizer, steps, stream)
    t2 = time.perf_counter()
    quality = ctx.evaluate(model)
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
        CURVE_KEY: curve,
        "steps": steps,
        **({"continued_from_step": start} if start else {}),
        **({"note": note} if note else {}),
        "learning_rate": lr,
        "precision": ctx.precision,
        "device": device_label(ctx.device),
        "gradient_checkpointing": checkpointing,
        "setup_seconds": t1 - t0,
        "train_seconds": t2 - t1,
        "eval_seconds": t3 - t2,
        "_used_seconds": t3 - t0,
    }


def _resume(request: TrialRequest, model: Any, optimizer: Any, steps: int) -> tuple[int, dict, str]:
    """(first step, data/random stream state, note) of a trial, loading its source's
    checkpoint into ``model`` and ``optimizer`` when it continues one."""
    from autopeft.trial.continuation import load_checkpoint, restore

    cont = request.continuation
    if cont is None or not cont.resume:
        return 0, {}, ""
    state = load_checkpoint(cont.resume)
    if state is None:
        return 0, {}, f"checkpoint {cont.resume} is missing: trained from scratch"
    method = get_method(request.compiled.method)
    peft = request.compiled.peft_config
    if method.runtime_config(peft, state["step"]) != method.runtime_config(peft, steps):
        return 0, {}, f"{request.compiled.method} depends on the step count: trained from scratch"
    if not restore(model, optimizer, state):
        return 0, {}, f"checkpoint {cont.resume} does not fit the model: trained from scratch"
    return int(state["step"]), dict(state["stream"]), ""


def _schedule(request: TrialRequest, fid: Any, steps: int, start: int) -> Callable[[int], float]:
    """The learning-rate multiplier of scheduler step ``s`` (training step ``start + s``):
    linear decay over the trial's steps, or warmup-stable-decay in a multi-fidelity study."""
    from autopeft.trial.continuation import wsd_factor

    cont = request.continuation
    if cont is None:
        warmup = int(fid.warmup_ratio * steps)
        return lambda s: _lr_factor(s, warmup, steps)
    warmup = int(fid.warmup_ratio * cont.top_steps)
    return lambda s: wsd_factor(start + s, warmup, cont.decay_from, cont.top_steps)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def _train(
    ctx: TrialContext,
    model: Any,
    optimizer: Any,
    schedule: Any,
    seed_steps: tuple[int, int],
    on_step: StepCallback | None,
    after_step: Callable[[int], None] | None = None,
    stream: dict | None = None,
) -> tuple[float, int, str, list[list[float]]]:
    """Train up to ``steps`` steps (``seed_steps``: the seed and the steps); peak memory is
    measured over the first ``memory_steps`` (shapes are fixed, so later steps repeat the
    profile). ``stream``: the data order, random state and loss curve to continue from
    (empty: start at step 0), updated in place with the state at the end.

    Returns the last step's loss, the peak memory in bytes and how it was measured, and the
    loss curve (:mod:`autopeft.trial.curve`) from the configuration's first step."""
    fid = ctx.fidelity
    seed, steps = seed_steps
    n = ctx.n_train
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=ctx.precision == "fp16")
    generator = torch.Generator().manual_seed(seed)
    stream = {} if stream is None else stream
    first = int(stream.get("step", 0))
    if first:
        generator.set_state(stream["generator"])
        order, cursor = stream["order"], int(stream["cursor"])
        torch.set_rng_state(stream["rng"])
        if "scaler" in stream:
            scaler.load_state_dict(stream["scaler"])
    else:
        order, cursor = torch.randperm(n, generator=generator), 0
    curve = LossCurve(stream.get("loss_curve") if first else None)
    model.train()
    meter = PeakMemoryMeter(
        ctx.device, seed=model_state_tensors(model, optimizer), cap_bytes=ctx.memory_cap_bytes
    )
    loss_value = math.nan
    measuring = False
    try:
        for step in range(first, steps):
            if step == first:
                meter.__enter__()
                measuring = True
            if cursor + fid.batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor : cursor + fid.batch_size]
            cursor += fid.batch_size
            batch = {k: v[idx].to(ctx.device) for k, v in ctx.train.items()}
            with ctx.autocast():
                loss = model(**batch).loss
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if after_step is not None:
                after_step(step + 1)  # before zero_grad: AdaLoRA reads the gradients
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            if measuring:
                meter.check()
            if measuring and step + 1 >= fid.memory_steps:
                meter.__exit__(None, None, None)
                measuring = False
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrialError(f"training diverged: loss is {loss_value} at step {step}")
            curve.add(step + 1, loss_value)
            if on_step is not None:
                on_step(step + 1, steps)
    finally:
        if measuring:
            meter.__exit__(None, None, None)
    stream.update(step=steps, generator=generator.get_state(), order=order, cursor=cursor)
    stream["rng"] = torch.get_rng_state()
    stream["loss_curve"] = curve.state()
    if scaler.is_enabled():
        stream["scaler"] = scaler.state_dict()
    return loss_value, meter.peak_bytes, meter.method, curve.points()
