"""Plain, immutable views of stored trials: what reports, exports and the CLI read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autopeft.core.states import TrialState, has_result


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored: its searched point, its compiled placement and its measurements.

    Attributes:
        number: The Optuna trial number within the study (0-based, unique).
        state: The trial's :class:`~autopeft.core.states.TrialState`.
        values: Objective name -> value, for complete trials and partial-rung (PRUNED) ones
            (empty otherwise).
        params: The searched point (dimension name -> value), as the sampler proposed it.
        method: The PEFT method name (``lora``, ...).
        placement: Layer index -> {module type -> size}; only cells with size > 0.
        metrics: Every other measurement: ``head_params``, ``train_seconds``, ``eval_seconds``,
            ``setup_seconds``, ``peak_memory_bytes``, ``loss_curve`` (``[[step, loss], ...]``,
            see :mod:`autopeft.trial.curve`; absent in trials stored before it), ...
        peft_config: The compiled peft config as a JSON-able dict (what export writes).
        fail_reason: Why a failed trial failed; None otherwise.
        infeasible: The failure came from the configuration itself (out of memory, ...).
        interrupted: The trial's driver died; its point is re-run and it does not count.
        module_sizes: Full module name -> adapter size, as the model names the modules.
        hypervolume: The study's hypervolume once this complete trial was in (None otherwise).
        rung: A multi-fidelity study's rung (0 = lowest); None in a single-fidelity study.
            A trial that finished below the top rung is ``PRUNED`` and keeps its ``values``
            (its rung's results), which fronts and hypervolumes never read.
        promoted_from: The trial at the rung below whose configuration this one trains
            further; None for a new configuration.
        reference: The name of the reference this trial trains (a configuration given in the
            spec's ``references:``, not proposed by the search); None for a searched trial.
        reference_in_space: A reference whose point lies in the search space (``params``
            holds it and the sampler sees it as an observation).
    """

    number: int
    state: TrialState
    values: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    placement: dict[int, dict[str, int]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    peft_config: dict[str, Any] = field(default_factory=dict)
    fail_reason: str | None = None
    infeasible: bool = False
    interrupted: bool = False
    module_sizes: dict[str, int] = field(default_factory=dict)
    hypervolume: float | None = None
    rung: int | None = None
    promoted_from: int | None = None
    reference: str | None = None
    reference_in_space: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", TrialState(self.state))  # accept the plain name too

    @property
    def new_configuration(self) -> bool:
        """Whether the trial trains a configuration for the first time (a single-fidelity
        trial, or a multi-fidelity one at its entry rung: the lowest, or above rungs that
        ``rungs: auto`` dropped), not a multi-fidelity promotion."""
        return self.promoted_from is None

    @property
    def searched_new(self) -> bool:
        """A new configuration proposed by the search (not a promotion, not a reference)."""
        return self.new_configuration and self.reference is None

    @property
    def searched_result(self) -> bool:
        """A searched trial with its top-rung result (:func:`~autopeft.core.states.has_result`):
        what fronts, best values and hypervolumes are made of. References are compared with
        them, never counted in them."""
        return has_result(self) and self.reference is None

    @property
    def counts_for_budget(self) -> bool:
        """Whether the trial counts against the study's ``n_trials``: finished, and neither
        interrupted (its point is re-run), skipped before launch (predicted over the memory
        cap), a multi-fidelity promotion (rung above 0) nor a reference."""
        return (
            self.reference is None
            and self.state.is_finished()
            and not self.interrupted
            and not self.metrics.get("skipped")
            and self.new_configuration
        )

    @property
    def counts_as_failed(self) -> bool:
        """Whether the trial is one of the budget's (:attr:`counts_for_budget`) that failed:
        what a study's "failed" counts."""
        return self.counts_for_budget and self.state == TrialState.FAIL

    @property
    def seen_by_samplers(self) -> bool:
        """Whether samplers see the trial: running, complete, partial (PRUNED) or failed, and
        not interrupted (its re-run stands for it). Skipped trials are seen (as failures). A
        reference is seen only when its point lies in the search space."""
        if self.reference is not None and not self.reference_in_space:
            return False
        return self.state != TrialState.WAITING and not self.interrupted

    @property
    def sampler_state(self) -> TrialState:
        """The state samplers see: a PRUNED trial (finished below the top rung, with its
        rung's results) as COMPLETE."""
        return TrialState.COMPLETE if self.state == TrialState.PRUNED else self.state

    @property
    def ranked_for_promotion(self) -> bool:
        """Whether the promotion rule sees the trial: seen by samplers and launched (a trial
        skipped before launch never trained at its rung); references are never promoted."""
        return self.seen_by_samplers and not self.metrics.get("skipped") and self.reference is None

    @property
    def rung_values(self) -> dict[str, float]:
        """Its rung's results: the values of a COMPLETE or PRUNED trial, else empty."""
        return dict(self.values) if self.state in (TrialState.COMPLETE, TrialState.PRUNED) else {}

    def charged_steps(self, rungs: Sequence[int]) -> int:
        """Training steps the trial is charged against ``fidelity.budget_steps``, given the
        study's steps per rung (one entry: single fidelity): what it reports having trained
        once finished (``steps - continued_from_step``), else what it was scheduled (a
        promotion continuing its source). Interrupted and skipped trials and references: 0
        (rules: :mod:`autopeft.search.budget`)."""
        if self.reference is not None or self.interrupted or self.metrics.get("skipped"):
            return 0
        if self.state.is_finished() and "steps" in self.metrics:
            return int(self.metrics["steps"]) - int(self.metrics.get("continued_from_step", 0))
        if self.rung is None or len(rungs) < 2:
            return int(rungs[-1])
        below = rungs[self.rung - 1] if self.promoted_from is not None and self.rung > 0 else 0
        return int(rungs[self.rung] - below)

    def fidelity(self, rungs: Sequence[int]) -> float:
        """The share of the top rung's training steps the trial had, given the study's
        training steps per rung (1 in a single-fidelity study)."""
        if self.rung is None or len(rungs) < 2:
            return 1.0
        return rungs[min(self.rung, len(rungs) - 1)] / rungs[-1]

    def placement_summary(self) -> str:
        """Compact per-layer placement, e.g. ``L0:q4,v8 L2:v2`` (empty layers omitted)."""
        return placement_summary(self.placement)


def placement_summary(placement: dict[int, dict[str, int]]) -> str:
    """``L0:q4,v8 L2:v2`` for a layer -> {module type -> size} mapping; ``-`` when empty.

    Runs of consecutive layers with the same cells are merged (``L3-7:q8,v8``), so a 30-layer
    placement stays readable in a table. When every layer adapts the same modules, each with
    one size, the modules are named once: ``q,k,v,o,gate,up,down: L0-1=8 L2=2 L5-8=8``.
    """
    layers = [(layer, cells) for layer, cells in sorted(placement.items()) if cells]
    if not layers:
        return "-"
    modules = {tuple(cells) for _, cells in layers}
    uniform = all(len(set(cells.values())) == 1 for _, cells in layers)
    if len(modules) == 1 and uniform and len(layers) > 1:
        texts = [(layer, str(next(iter(cells.values())))) for layer, cells in layers]
        head = ",".join(next(iter(modules))) + ": "
        return head + " ".join(f"{span}={text}" for span, text in _runs(texts))
    texts = [(layer, ",".join(f"{m}{r}" for m, r in cells.items())) for layer, cells in layers]
    return " ".join(f"{span}:{text}" for span, text in _runs(texts))


def _runs(texts: list[tuple[int, str]]) -> list[tuple[str, str]]:
    """Consecutive layers with the same text merged: [("L0-2", text), ("L5", other)]."""
    runs: list[list[Any]] = []
    for layer, text in texts:
        if runs and runs[-1][1] == layer - 1 and runs[-1][2] == text:
            runs[-1][1] = layer
        else:
            runs.append([layer, layer, text])
    return [(f"L{a}" if a == b else f"L{a}-{b}", text) for a, b, text in runs]
