"""AdaLoRA (Zhang et al., 2023, https://arxiv.org/abs/2303.10512): SVD-form LoRA whose ranks are
pruned during training to a budget by smoothed importance ``|theta * grad|`` x uncertainty.

Parameters: ``init_r`` (required: the rank every targeted matrix starts with), ``target_r``
(required: the average final rank; the budget is ``target_r x number of matrices`` rank units),
``alpha`` (default ``2 * init_r``), ``tinit_ratio``/``tfinal_ratio`` (warm-up and final fractions
of the trial's steps; default 0.1 and 0.2), ``orth_reg_weight`` (default 0.5), ``dropout``
(default 0), plus the common ``target_modules`` and ``learning_rate``. Sizes are global (peft has
no per-module ``init_r``).

Parameter accounting: AdaLoRA trains ``P`` (``init_r x d_in``), ``E`` (``init_r``) and ``Q``
(``d_out x init_r``) in every targeted matrix, so the trainable count of a trial is
``init_r * (d_in + d_out + 1)`` per matrix — what it costs to train (peft's
``get_nb_trainable_parameters`` reports the same ``init_r`` sizes). The pruned result is
exported as a **plain LoRA** config whose ``rank_pattern`` holds the learned ranks, with
``lora_alpha = alpha * k / init_r`` per module so the scale of each kept direction is unchanged;
it has about ``target_r * (d_in + d_out)`` parameters per matrix on average.

``total_step`` comes from the fidelity at run time (:meth:`runtime_config`), and
``update_and_allocate(step)`` runs after every optimizer step, before ``zero_grad``
(:meth:`after_optimizer_step`), as peft requires.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

from autopeft.core.compiled import CompiledConfig
from autopeft.core.validation import FieldIssue
from autopeft.methods.base import Method, check_trainable_count, config_to_json
from autopeft.methods.registry import register_method
from autopeft.models.layout import Cell
from autopeft.space.schema import ParamSpec

if TYPE_CHECKING:
    from peft import AdaLoraConfig
    from torch import nn

    from autopeft.space.schema import SearchSpace
    from autopeft.space.view import Point, SpaceView

# Steps the compiled schedule is written for; rescaled to the fidelity's max_steps at run time.
NOMINAL_STEPS = 1000


@register_method("adalora")
class AdaLoraMethod(Method):
    """AdaLoRA on the targeted linear leaves; learned ranks exported as plain LoRA."""

    parameters: ClassVar[dict[str, bool]] = {
        "init_r": False,
        "target_r": False,
        "alpha": False,
        "tinit_ratio": False,
        "tfinal_ratio": False,
        "orth_reg_weight": False,
        "dropout": False,
    }

    def check_space(self, space: SearchSpace) -> None:
        super().check_space(space)
        params = space.parameters
        for name in ("init_r", "target_r"):
            if name not in params:
                raise FieldIssue(("parameters",), f"method 'adalora' needs `{name}`")
            for v in _values(params[name]):
                if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                    raise FieldIssue(("parameters", name), "must be integers >= 1", v)
        if max(_values(params["target_r"])) > min(_values(params["init_r"])):
            raise FieldIssue(
                ("parameters", "target_r"),
                "must be <= every init_r (AdaLoRA only prunes)",
                max(_values(params["target_r"])),
            )
        tinit = _values(params.get("tinit_ratio", 0.1))
        tfinal = _values(params.get("tfinal_ratio", 0.2))
        if min(tinit + tfinal) < 0 or max(tinit) + max(tfinal) >= 1:
            raise FieldIssue(
                ("parameters", "tinit_ratio"),
                "tinit_ratio and tfinal_ratio must be >= 0 with a sum < 1 "
                f"(got {max(tinit)} and {max(tfinal)})",
                max(tinit),
            )

    def cell_sizes(self, bound: SpaceView, point: Point) -> dict[Cell, int]:
        targets = bound.target_modules(point)
        init_r = int(bound.value(point, "init_r"))
        return {(layer, m): init_r for layer, m in bound.searched_cells if m in targets}

    def count_params(self, bound: SpaceView, point: Point) -> int:
        total = 0
        for (layer, module), r in self.cell_sizes(bound, point).items():
            site = bound.layout.site(layer, module)
            total += r * (site.in_features + site.out_features + 1)
        return total

    def check_bound(self, bound: SpaceView) -> None:
        largest = max(_values(bound.space.parameters["init_r"]))
        for layer, module in bound.searched_cells:
            site = bound.layout.site(layer, module)
            if largest > min(site.in_features, site.out_features):
                bound.fail(
                    ("parameters", "init_r"),
                    f"exceeds the smaller dimension of {site.name} "
                    f"({site.in_features} -> {site.out_features})",
                    largest,
                )

    def min_params(self, bound: SpaceView) -> int:
        smallest = min(_values(bound.space.parameters["init_r"]))
        costs = []
        for modules in bound.target_options():
            cells = [(layer, m) for layer, m in bound.searched_cells if m in modules]
            costs.append(sum(_width(bound, c) + 1 for c in cells))
        return smallest * min(costs)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> AdaLoraConfig:
        from peft import AdaLoraConfig

        names = sorted(bound.layout.site(*c).name for c in self.cell_sizes(bound, point))
        tinit = float(bound.value(point, "tinit_ratio", default=0.1))
        tfinal = float(bound.value(point, "tfinal_ratio", default=0.2))
        init_r = int(bound.value(point, "init_r"))
        return AdaLoraConfig(
            task_type=task_type,
            target_modules=names,
            fan_in_fan_out=bound.layout.uses_conv1d,
            init_r=init_r,
            target_r=int(bound.value(point, "target_r")),
            lora_alpha=float(bound.value(point, "alpha", default=2.0 * init_r)),  # type: ignore[arg-type]  # peft annotates int; floats work
            lora_dropout=float(bound.value(point, "dropout", default=0.0)),
            orth_reg_weight=float(bound.value(point, "orth_reg_weight", default=0.5)),
            total_step=NOMINAL_STEPS,
            tinit=round(tinit * NOMINAL_STEPS),
            tfinal=round(tfinal * NOMINAL_STEPS),
        )

    def runtime_config(self, peft_config: dict[str, Any], max_steps: int) -> dict[str, Any]:
        """Rescale the schedule to ``max_steps`` (keeping the warm-up and final fractions)."""
        total = int(peft_config["total_step"])
        tinit = int(peft_config["tinit"] * max_steps / total)
        tfinal = int(peft_config["tfinal"] * max_steps / total)
        if tinit >= max_steps - tfinal:
            tinit, tfinal = 0, 0
        return {**peft_config, "total_step": max_steps, "tinit": tinit, "tfinal": tfinal}

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        """Update importance and prune to the scheduled budget (``step`` counts from 1)."""
        model.base_model.update_and_allocate(step)  # type: ignore[union-attr,operator]

    def learned_config(self, model: nn.Module, compiled: CompiledConfig) -> dict[str, Any] | None:
        """A plain LoRA config (JSON) with the learned ranks in ``rank_pattern``."""
        configs: Any = model.peft_config
        config = configs["default"]
        ranks = learned_ranks(config.rank_pattern or {})
        if not ranks:
            return None
        return lora_export(ranks, config, compiled)

    def verify(self, model: nn.Module, compiled: CompiledConfig) -> None:
        """Check ranks and counts, after freezing peft's ``ranknum`` (:func:`freeze_ranknum`)."""
        freeze_ranknum(model)
        found: dict[str, int] = {}
        for name, module in model.named_modules():
            lora_e = getattr(module, "lora_E", None)
            if lora_e is not None and "default" in lora_e:
                found[name.split("base_model.model.", 1)[-1]] = lora_e["default"].shape[0]
        if found != compiled.module_sizes:
            raise RuntimeError(f"built AdaLoRA ranks {found} differ from {compiled.module_sizes}")
        check_trainable_count(model, "lora_", compiled, "AdaLoRA")


def freeze_ranknum(model: nn.Module) -> None:
    """Make AdaLoRA's ``ranknum`` parameters non-trainable again.

    peft 0.21.2 creates ``ranknum`` (the constant ``float(init_r)`` the output is divided by) as
    a frozen parameter in a ``ParameterDict``, then casts the adapter to the base layer's dtype;
    on a base that is not float32 (bf16 or fp16 on a GPU, float64) the cast tensor is stored back
    through the ``ParameterDict``, which wraps it as a new parameter with ``requires_grad=True``.
    The optimizer would then train it (one extra parameter per module), and since peft does not
    save it, the reloaded adapter would compute something else."""
    from peft.tuners.adalora import AdaLoraLayer

    for module in model.modules():
        if isinstance(module, AdaLoraLayer):
            for value in module.ranknum.values():
                value.requires_grad_(False)


def learned_ranks(rank_pattern: dict[str, Any]) -> dict[str, int]:
    """Module name -> kept rank, from AdaLoRA's ``rank_pattern`` of boolean masks (keys like
    ``bert.encoder.layer.0.attention.self.query.lora_E[.default]``)."""
    out = {}
    for key, mask in rank_pattern.items():
        name = key.split(".lora_E", 1)[0]
        out[name] = int(sum(bool(m) for m in mask))
    return out


def lora_export(ranks: dict[str, int], adalora: Any, compiled: CompiledConfig) -> dict[str, Any]:
    """Plain LoRA config JSON for the learned ``ranks`` (modules pruned to 0 left out)."""
    from peft import LoraConfig

    kept = {n: k for n, k in sorted(ranks.items()) if k > 0}
    if not kept:
        return {}
    r = Counter(kept.values()).most_common(1)[0][0]
    scale = float(adalora.lora_alpha) / float(adalora.init_r)
    config = LoraConfig(
        task_type=compiled.peft_config.get("task_type"),
        target_modules=sorted(kept),
        r=r,
        lora_alpha=scale * r,  # type: ignore[arg-type]  # peft annotates int; floats work
        rank_pattern={n: k for n, k in kept.items() if k != r},
        alpha_pattern={n: scale * k for n, k in kept.items() if k != r},
        lora_dropout=float(adalora.lora_dropout),
        bias="none",
    )
    return config_to_json(config)


def _values(spec: Any) -> list[Any]:
    if isinstance(spec, ParamSpec):
        return list(spec.values() or [spec.low, spec.high])
    return [spec]


def _width(bound: SpaceView, cell: Cell) -> int:
    site = bound.layout.site(*cell)
    return site.in_features + site.out_features
