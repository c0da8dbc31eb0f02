"""The training recipe of a stored trial: what ``training.json`` carries beside the adapter.

A trial is more than its ``adapter_config.json``: it was trained with a learning rate, a
schedule, a number of steps, a batch size, a sequence length and a precision, on named data
fields, and measured by a metric. :func:`training_recipe` gathers all of it from the stored
study, framework-neutral; the framework formats (:mod:`autopeft.results.formats`) translate it.

The schedule is the one every trial runs (:mod:`autopeft.trial.runner`): AdamW, linear warmup
over ``warmup_steps`` then linear decay to 0 at ``max_steps``, no gradient clipping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autopeft.exceptions import StudyError

if TYPE_CHECKING:
    from autopeft.results.views import StudyView
    from autopeft.storage.records import TrialRecord

RECIPE_FILE = "training.json"
"""The file the recipe is written to, beside ``adapter_config.json``."""

RECIPE_VERSION = 1


def model_reference(view: StudyView) -> str:
    """The base model as a training job elsewhere names it: a built-in model's Hub ID, else
    the spec's ``model`` exactly as written (a Hub ID or the user's own path), never the
    directory the search machine loaded it from."""
    from autopeft.models.resolve import HUB_IDS

    written = str(view.spec.get("model", {}).get("path", "")) or view.model_path
    return HUB_IDS.get(written, written)


def num_labels(view: StudyView, record: TrialRecord) -> int | None:
    """A classifier's number of labels, read from its linear head's parameter count (the
    head is ``hidden x K`` weights, plus ``K`` biases in encoders); None for other tasks or
    a head of another shape."""
    if view.spec.get("task", "seq_cls") != "seq_cls":
        return None
    head = int(record.metrics.get("head_params", 0))
    hidden = view.hidden_size
    for per_label in (hidden + 1, hidden):
        if hidden and head and head % per_label == 0:
            return head // per_label
    return None


def fingerprint_digest(fingerprint: str) -> str:
    """A short stable digest of a study's fingerprint (the canonical JSON of everything that
    defines its search): equal digests, same search."""
    import hashlib

    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:16]


def training_recipe(view: StudyView, record: TrialRecord) -> dict[str, Any]:
    """``training.json`` of a complete trial: everything needed to train it again.

    Raises:
        StudyError: The trial did not complete (it has no measured values to reproduce).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:  # not `autopeft.__version__`: the package root imports this module lazily
        release = version("autopeft")
    except PackageNotFoundError:
        release = "unknown"
    if record.state.name != "COMPLETE":
        raise StudyError(
            f"trial {record.number} of study {view.name!r} is {record.state.name}, not "
            "COMPLETE: only complete trials can be exported"
        )
    spec, fid = view.spec, view.spec.get("fidelity", {})
    model = spec.get("model", {})
    steps = int(record.metrics.get("steps", fid.get("max_steps", 0)))
    return {
        "version": RECIPE_VERSION,
        "autopeft_version": release,
        "study": view.name,
        "trial": record.number,
        "fingerprint": fingerprint_digest(view.fingerprint),
        "method": record.method,
        "task": spec.get("task", "seq_cls"),
        "model": {
            "base_model_name_or_path": model_reference(view),
            "as_written": model.get("path"),
            "revision": model.get("revision"),
            "num_hidden_layers": model.get("num_hidden_layers"),
            "num_labels": num_labels(view, record),
        },
        "training": {
            "optimizer": "adamw",
            "learning_rate": float(record.metrics.get("learning_rate", fid.get("learning_rate"))),
            "lr_scheduler": "linear",
            "warmup_steps": int(float(fid.get("warmup_ratio", 0.1)) * steps),
            "weight_decay": float(fid.get("weight_decay", 0.0)),
            "max_grad_norm": None,
            "max_steps": steps,
            "batch_size": int(fid.get("batch_size", 16)),
            "seq_len": int(fid.get("seq_len", 64)),
            "precision": str(record.metrics.get("precision", model.get("precision", "fp32"))),
            "gradient_checkpointing": bool(
                record.metrics.get("gradient_checkpointing", fid.get("gradient_checkpointing"))
            ),
            "quantization": model.get("quantization"),
            "seed": int(spec.get("seed", 0)),
        },
        "data": {
            **spec.get("dataset", {}),
            "study_split": spec.get("split", {}),
            "train_examples": fid.get("train_examples"),
            "eval_examples": fid.get("eval_examples"),
        },
        "evaluation": spec.get("evaluation"),
        "result": {
            "metric": spec.get("metric"),
            # the search's validation value (``values`` holds the confirmed test means when the
            # trial was chosen with ``--confirmed``)
            "value": record.metrics.get(
                str(spec.get("metric")), record.values.get(str(spec.get("metric")))
            ),
            "values": dict(record.values),
            "trainable_params": record.metrics.get("trainable_params"),
            "split": "validation",
        },
    }
