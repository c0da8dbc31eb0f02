"""LoKr (Edalati et al., 2022, https://arxiv.org/abs/2212.10650; the LyCORIS variant): a
Kronecker product ``dW = W1 (x) W2`` with ``W2`` low-rank, a rank per (layer, module) cell.

Parameters: ``rank`` (int >= 0, ``per`` allowed; 0 = no adapter), ``alpha`` or ``alpha_ratio``
(default 2), plus ``target_modules`` and ``learning_rate``. Compiled like LoRA.

Trainable parameters of a linear ``in -> out`` at rank ``r`` (peft's defaults
``decompose_both=False``, ``decompose_factor=-1``): factor ``in = m * n`` and ``out = l * k`` with
peft's ``factorization`` (the divisor pair nearest the square root, smaller first); ``W1`` is a
full ``l x m`` matrix, ``W2`` is a full ``k x n`` matrix when ``r >= max(k, n) / 2`` and
``(k x r) @ (r x n)`` otherwise. So the count is not linear in ``r``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from autopeft.methods.loha import _lycoris_kwargs, refuse_conv1d
from autopeft.methods.lora import LoraMethod
from autopeft.methods.registry import register_method

if TYPE_CHECKING:
    from peft import LoKrConfig

    from autopeft.space.view import Point, SpaceView


def factorization(dimension: int) -> tuple[int, int]:
    """``(m, n)`` with ``m * n == dimension`` and ``m <= n``, as peft's ``factorization(d, -1)``:
    grow ``m`` through the divisors while ``m + n`` does not increase."""
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n:
            break
        m, n = new_m, new_n
    return (n, m) if m > n else (m, n)


def lokr_params(in_features: int, out_features: int, rank: int) -> int:
    """Trainable parameters of one LoKr-adapted linear (see the module docstring)."""
    in_m, in_n = factorization(in_features)
    out_l, out_k = factorization(out_features)
    w1 = out_l * in_m
    w2 = out_k * in_n if rank >= max(out_k, in_n) / 2 else rank * (out_k + in_n)
    return w1 + w2


@register_method("lokr")
class LokrMethod(LoraMethod):
    """Low-rank Kronecker product adapters on linear leaves."""

    parameters: ClassVar[dict[str, bool]] = {"rank": True, "alpha": False, "alpha_ratio": False}
    adapter_attr: ClassVar[str] = "lokr_w1"
    display: ClassVar[str] = "LoKr"
    param_marker: ClassVar[str] = "lokr_"

    def cell_params(
        self, bound: SpaceView, point: Point | None, layer: int, module: str, rank: int
    ) -> int:
        site = bound.layout.site(layer, module)
        return lokr_params(site.in_features, site.out_features, rank)

    def check_bound(self, bound: SpaceView) -> None:
        refuse_conv1d(self.name, bound)
        super().check_bound(bound)

    def build_config(self, bound: SpaceView, point: Point, task_type: str) -> LoKrConfig:
        from peft import LoKrConfig

        return LoKrConfig(**_lycoris_kwargs(self.rank_kwargs(bound, point, task_type)))
