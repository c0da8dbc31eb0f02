"""Task families: everything that depends on what the model is trained to do.

A task (``seq_cls``, ``causal_lm``) owns the model class, how its data is loaded and encoded, the
loss the trial trains on, the metrics it evaluates and the ``task_type`` its peft configs carry.
Adding a task family is one new module with a :class:`~autopeft.tasks.base.Task` subclass and one
line in :data:`TASKS`. This module is light: it imports nothing heavy until :func:`get_task`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from autopeft.core.objectives import Direction

if TYPE_CHECKING:
    from autopeft.tasks.base import Task

# task name -> (module, class name, peft task type)
TASKS: dict[str, tuple[str, str, str]] = {
    "seq_cls": ("autopeft.tasks.seq_cls", "SequenceClassification", "SEQ_CLS"),
    "causal_lm": ("autopeft.tasks.causal_lm", "CausalLanguageModeling", "CAUSAL_LM"),
}
# task name -> metric -> direction; the first metric is the task's default.
TASK_METRICS: dict[str, dict[str, Direction]] = {
    "seq_cls": {"accuracy": "maximize", "macro_f1": "maximize"},
    "causal_lm": {"eval_loss": "minimize", "perplexity": "minimize", "exact_match": "maximize"},
}


def default_metric(task: str) -> str:
    """The metric a study of ``task`` optimises unless its spec names one."""
    return next(iter(TASK_METRICS[task]))


def peft_task_type(task: str) -> str:
    """The ``task_type`` of the peft configs a study of ``task`` builds."""
    return TASKS[task][2]


def get_task(name: str) -> Task:
    """An instance of the task family ``name`` (``seq_cls`` or ``causal_lm``)."""
    module, cls, _ = TASKS[name]
    task: Task = getattr(importlib.import_module(module), cls)()
    return task


__all__ = ["TASKS", "TASK_METRICS", "default_metric", "get_task", "peft_task_type"]
