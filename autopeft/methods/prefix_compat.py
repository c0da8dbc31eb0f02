"""Prompt learning (prefix tuning above all) under transformers >= 5.24.

transformers 5.24 renamed the ``past_key_values`` argument of model forwards to ``cache`` (the
old name is still accepted through ``deprecate_kwarg`` until 5.40). peft 0.21.2 still looks for
the old name in two places:

* prefix tuning on a classifier checks the *signature* of the model's forward, then of its
  backbone's, and raises ``ValueError: Model does not support past key values which are required
  for prefix tuning`` (BERT; Llama classifiers too), although the call itself would work;
* its causal-LM generation step reads ``model_kwargs["past_key_values"]``, finds nothing, and
  re-injects the prompt at every step: the prefix is lost and greedy tokens disagree with a full
  forward pass (prefix and prompt tuning).

:func:`install` wraps peft's ``_prefix_tuning_forward`` of the sequence-classification,
token-classification and question-answering models and ``PeftModelForCausalLM.
prepare_inputs_for_generation``, once per process. The forward wrapper opens
:func:`past_key_values_accepted`: the module peft checks, when its forward takes ``cache`` but
not ``past_key_values``, gets for that one call an instance-level ``forward`` that takes
``past_key_values`` and passes it on as ``cache``. The generation wrapper renames ``cache`` to
``past_key_values`` on the way into peft's logic (see :func:`_wrap_generation`). A model that
still takes ``past_key_values`` (transformers < 5.24) is left alone, and models keep no trace of
the shim between calls. Checked: on a tiny BERT the logits under transformers 5.25 with the shim
equal those under 5.23 without it; on a tiny Llama with a prefix, greedy tokens under 5.25 with
the shim equal those under 5.23 and agree with a full forward pass.

The prompt methods (:mod:`autopeft.methods.prompts`) install it whenever they build or prepare a
config, so trials, and models rebuilt from an export in the same process, work.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: The peft model classes whose prefix-tuning forward checks the backbone's signature.
_PEFT_CLASSES = (
    "PeftModelForSequenceClassification",
    "PeftModelForTokenClassification",
    "PeftModelForQuestionAnswering",
)
_MARK = "_autopeft_prefix_shim"


def _params(fn: Any) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


@contextmanager
def past_key_values_accepted(peft_model: Any) -> Iterator[bool]:
    """While open, the module peft checks takes ``past_key_values`` if it takes ``cache``.

    Args:
        peft_model: a peft prompt-learning model (``PeftModelFor...``).

    Yields:
        True when a module got the shim for the duration; False when none needs it.
    """
    module = _module_needing_shim(peft_model)
    if module is None:
        yield False
        return
    original = module.forward
    params = _params(original)

    @functools.wraps(original)
    def forward(*args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
        if past_key_values is not None:
            kwargs["cache"] = past_key_values
        return original(*args, **kwargs)

    extra = inspect.Parameter("past_key_values", inspect.Parameter.KEYWORD_ONLY, default=None)
    plain = [p for p in params.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in params.values() if p.kind == inspect.Parameter.VAR_KEYWORD]
    forward.__signature__ = inspect.Signature([*plain, extra, *rest])  # type: ignore[attr-defined]
    module.forward = forward  # an instance attribute, removed on exit: the class is untouched
    try:
        yield True
    finally:
        del module.forward


def _module_needing_shim(peft_model: Any) -> Any:
    """The module whose forward peft checks for ``past_key_values`` and finds ``cache``: the
    model with its head if that takes a cache (decoders), else the backbone (BERT), else None."""
    head = peft_model.base_model
    params = _params(head.forward)
    if "past_key_values" in params:
        return None
    if "cache" in params:
        return None if "forward" in vars(head) else head
    name = getattr(peft_model, "transformer_backbone_name", None)
    if not name:
        return None
    backbone = head.get_submodule(name)
    if "forward" in vars(backbone):  # shimmed already (a re-entrant call) or patched by someone
        return None
    params = _params(backbone.forward)
    return backbone if "cache" in params and "past_key_values" not in params else None


def install() -> None:
    """Wrap peft's prefix-tuning forwards and its causal-LM generation step (idempotent; a no-op
    for whatever peft lacks)."""
    import peft.peft_model as pm

    for cls_name, attr, wrap in [
        *((name, "_prefix_tuning_forward", _wrap) for name in _PEFT_CLASSES),
        ("PeftModelForCausalLM", "prepare_inputs_for_generation", _wrap_generation),
    ]:
        cls = getattr(pm, cls_name, None)
        original = getattr(cls, attr, None)
        if cls is None or original is None or getattr(original, _MARK, False):
            continue
        setattr(cls, attr, wrap(original))


def _wrap(original: Any) -> Any:
    @functools.wraps(original)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        with past_key_values_accepted(self):
            return original(self, *args, **kwargs)

    setattr(forward, _MARK, True)
    return forward


def _wrap_generation(original: Any) -> Any:
    """peft's generation step reads and writes the cache as ``model_kwargs["past_key_values"]``;
    transformers >= 5.24 names it ``cache``, so peft re-injects the prompt at every step and the
    prefix is dropped (greedy tokens then disagree with a full forward pass). Rename it on the
    way into peft's logic; the forward still accepts ``past_key_values``."""

    @functools.wraps(original)
    def prepare(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = self.peft_config[self.active_adapter]
        params = _params(self.base_model.forward)
        if not config.is_prompt_learning or "past_key_values" in params or "cache" not in params:
            return original(self, *args, **kwargs)
        base_prepare = self.base_model_prepare_inputs_for_generation

        def renamed(*a: Any, **kw: Any) -> Any:
            if "cache" in kw and "past_key_values" not in kw:
                kw["past_key_values"] = kw.pop("cache")
            out = base_prepare(*a, **kw)
            if "cache" in out and "past_key_values" not in out:
                out["past_key_values"] = out.pop("cache")
            return out

        self.base_model_prepare_inputs_for_generation = renamed
        try:
            return original(self, *args, **kwargs)
        finally:
            self.base_model_prepare_inputs_for_generation = base_prepare

    setattr(prepare, _MARK, True)
    return prepare
