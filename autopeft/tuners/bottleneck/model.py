"""Bottleneck adapters as a ``peft`` tuner: serial (Pfeiffer et al., 2021,
https://arxiv.org/abs/2005.00247) and parallel (He et al., 2022, https://arxiv.org/abs/2110.04366)
adapters around each layer's feed-forward block, with a bottleneck size per layer.

Where they hook in (the FFN is ``up`` (+ ``gate``) -> activation -> ``down``):

* the ``down`` linear (BERT ``output.dense``, Llama ``mlp.down_proj``) is wrapped by
  :class:`BottleneckLayer`: ``y = down(a)``; the **serial** adapter adds ``S(y)`` to the FFN
  output, and the **parallel** adapter adds ``scaling * P(x)`` computed from the FFN *input* ``x``:
  ``out = y + S(y) + scaling * P(x)``. In BERT this is before the output dropout and the
  residual + LayerNorm (``LayerNorm(dropout(out) + attention_output)``), i.e. the Pfeiffer
  position; in Llama (pre-norm) the result goes into the residual sum of the decoder layer.
* the FFN input ``x`` is read by :class:`FeedForwardTap`, a pass-through wrapper of the ``up``
  linear (BERT ``intermediate.dense``, Llama ``mlp.up_proj``) that hands its input to the
  ``down`` wrapper of the same layer (a per-layer slot, emptied after use).

Each adapter is ``up(relu(down(h)))`` with biases: ``2 * d * b + b + d`` trainable parameters for
width ``d`` and bottleneck ``b``; its up-projection starts at zero, so a new adapter is the
identity. Learned attention prefixes per layer (for the AutoPEFT space) are in :mod:`.prefix`.
Importing :mod:`autopeft` registers the peft type ``BOTTLENECK`` (see
:mod:`autopeft.tuners.bottleneck.registration`, the one registration point), after which
``PeftConfig.from_pretrained``, ``get_peft_model`` and ``PeftModel.from_pretrained`` work as
for built-in types.
"""

from __future__ import annotations

from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, _get_submodules
from torch import nn

from autopeft.tuners.bottleneck.config import PEFT_TYPE, BottleneckConfig
from autopeft.tuners.bottleneck.layer import BottleneckLayer, FeedForwardTap, _Slot
from autopeft.tuners.bottleneck.prefix import PrefixAttention

__all__ = ["PEFT_TYPE", "BottleneckConfig", "BottleneckModel"]


class BottleneckModel(BaseTuner):
    """The ``peft`` tuner that injects :class:`BottleneckLayer`, :class:`FeedForwardTap` and
    :class:`~autopeft.tuners.bottleneck.prefix.PrefixAttention`."""

    prefix: str = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict[str, list[str]] = {}  # noqa: RUF012 - peft's attribute

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict) -> PeftConfig:
        return peft_config

    def _create_and_replace(
        self,
        peft_config: PeftConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        parameter_name: str | None = None,
    ) -> None:
        config: BottleneckConfig = peft_config  # type: ignore[assignment]
        layer, _, rel = current_key.removeprefix(config.stack + ".").partition(".")
        slots: dict[str, _Slot] = self.__dict__.setdefault("_bottleneck_slots", {})
        slot = slots.setdefault(layer, _Slot())
        if rel == config.attention and config.attention:
            if not isinstance(target, PrefixAttention):
                target = PrefixAttention(target, adapter_name)
                setattr(parent, target_name, target)
            target.update_layer(adapter_name, int(config.prefix_lengths[layer]), config.kv_width)
            return
        if rel == config.ffn_input:
            if not isinstance(target, FeedForwardTap):
                setattr(parent, target_name, FeedForwardTap(target, slot))
            return
        if not isinstance(target, BottleneckLayer):
            new = BottleneckLayer(target, adapter_name, slot)
            setattr(parent, target_name, new)
            target = new
        target.update_layer(
            adapter_name,
            int(config.serial_sizes.get(layer, 0)),
            int(config.parallel_sizes.get(layer, 0)),
            float(config.parallel_scaling),
        )
        if adapter_name not in self.active_adapters:
            target.requires_grad_(False)

    def _unload_and_optionally_merge(  # type: ignore[override]  # peft's unload() returns it
        self,
        merge: bool = True,
        progressbar: bool = False,
        safe_merge: bool = False,
        adapter_names: list[str] | None = None,
    ) -> nn.Module:
        if merge:
            raise ValueError("bottleneck adapters are non-linear and cannot be merged")
        for key in [k for k, m in self.model.named_modules() if _is_wrapper(m)]:
            parent, target, name = _get_submodules(self.model, key)
            base = target.restore() if isinstance(target, PrefixAttention) else target.base_layer
            setattr(parent, name, base)
        return self.model

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        pass


def _is_wrapper(module: nn.Module) -> bool:
    return isinstance(module, BottleneckLayer | FeedForwardTap | PrefixAttention)
