"""Training that a promotion extends instead of repeating (multi-fidelity studies).

A trial below the top rung writes a checkpoint when its training ends: every trainable
parameter (adapter and task head), the optimizer's state, the data order (shuffle generator,
permutation, cursor) and the random-number state. A promotion loads its source's checkpoint and
trains only the steps between the two rungs, so it ends with the weights one uninterrupted run
of the upper rung's steps would have (same seed; float rounding aside).

That needs a learning-rate schedule that does not depend on where training stops:
warmup-stable-decay (:func:`wsd_factor`). The warmup is ``warmup_ratio`` of the top rung's
steps, the rate then stays constant, and it decays linearly to zero only between the
second-highest rung and the top rung, which only a top-rung trial trains through.

Checkpoints are files (``torch.save``) under the study's checkpoint directory
(:func:`checkpoint_path`), so every worker on the machine reads and writes them; workers on
several machines need that directory on a filesystem they share. A missing or unreadable
checkpoint is not an error: the trial trains from scratch and says so in its ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Continuation:
    """How a multi-fidelity trial's training relates to its rungs.

    Attributes:
        top_steps: The top rung's steps (the schedule's length).
        decay_from: The step the learning rate starts decaying from (the second-highest rung).
        resume: Checkpoint to continue from (a promotion's source), or None.
        save: Where to write this trial's checkpoint when it ends, or None (the top rung).
    """

    top_steps: int
    decay_from: int
    resume: str | None = None
    save: str | None = None


def wsd_factor(step: int, warmup: int, decay_from: int, total: int) -> float:
    """Learning-rate multiplier at ``step`` (from 0): linear warmup over ``warmup`` steps,
    constant until ``decay_from``, then linear to zero at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if step < decay_from:
        return 1.0
    return max(0.0, (total - step) / max(1, total - decay_from))


def checkpoint_path(directory: str | Path, number: int) -> str:
    """The checkpoint file of trial ``number`` in a study's checkpoint ``directory``."""
    return str(Path(directory) / f"trial-{number}.pt")


def save_checkpoint(path: str, model: Any, optimizer: Any, step: int, stream: dict) -> None:
    """Write the state a continuation needs (atomically: a killed worker leaves no half file).

    Args:
        path: The file to write.
        model: The model being trained; its trainable parameters are saved by name.
        optimizer: Its optimizer.
        step: Steps trained so far.
        stream: The data order and random state (:func:`autopeft.trial.runner._train`'s).
    """
    import torch

    state = {
        "step": step,
        "params": {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad},
        "optimizer": optimizer.state_dict(),
        "stream": stream,
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(target)


def load_checkpoint(path: str | None) -> dict | None:
    """The state :func:`save_checkpoint` wrote, or None when the file is missing or unreadable."""
    if not path or not Path(path).is_file():
        return None
    import torch

    try:
        return dict(torch.load(path, map_location="cpu", weights_only=False))
    except Exception:  # a damaged file: train from scratch instead
        return None


def restore(model: Any, optimizer: Any, state: dict) -> bool:
    """Load ``state``'s parameters and optimizer state into ``model`` and ``optimizer``;
    False (nothing changed) when its parameters are not the model's trainable ones."""
    import torch

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    saved = state["params"]
    if set(saved) != set(trainable) or any(saved[n].shape != p.shape for n, p in trainable.items()):
        return False
    with torch.no_grad():
        for n, p in trainable.items():
            p.copy_(saved[n].to(p.device, p.dtype))
    optimizer.load_state_dict(state["optimizer"])
    return True


def remove_checkpoint(path: str) -> None:
    """Delete a checkpoint file (nothing when it is gone already)."""
    Path(path).unlink(missing_ok=True)
