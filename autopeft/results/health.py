"""Health checks of a study: can its answer be trusted, and what to change if not.

Each check reads only what the study stored (and its confirmations, when given) and returns at
most one :class:`Finding`: a one-line statement, the evidence behind it and what to do. A
healthy study gives no findings. The checks:

* ``edge`` — the front sits on the edge of the space: most front members use a searched
  dimension's largest value, or the best trial uses nearly the whole parameter budget;
* ``noise`` — the metric's seed noise (from ``autopeft confirm``, or from points that were
  trained twice) is as large as the gaps between neighbouring front members;
* ``method_share`` — in a method-choice space, one method took most model-based proposals
  while another was barely tried;
* ``fidelity`` — in a multi-fidelity study, the low rungs do not rank configurations as the top
  rung does (Spearman correlation on the configurations that reached both);
* ``failures`` — many trials failed or were skipped (memory cap, budget);
* ``saturated`` — the best trials score no better than always giving the same answer, or most
  trials tie at the best value: the metric cannot separate configurations;
* ``memory`` — the predicted peak memory is far from what the trials measured.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autopeft.core.states import TrialState
from autopeft.results.picks import primary_objective
from autopeft.storage.records import TrialRecord

if TYPE_CHECKING:
    from autopeft.results.views import StudyView
    from autopeft.storage.confirmations import Confirmation

__all__ = ["Finding", "check_study", "spearman", "stored_bounds"]

# Thresholds, stated once (each check's docstring says how it uses its own).
EDGE_SHARE = 0.5  # share of front members at a dimension's largest value
BUDGET_SHARE = 0.9  # the best trial's share of max_trainable_params
MIN_FRONT = 3
METHOD_SHARE = 0.8  # one method's share of model-based proposals
RARE_SHARE = 0.1  # another method's share, below which it was "barely tried"
MIN_MODEL_BASED = 5
MIN_RUNG_PAIRS = 4
RUNG_CORRELATION = 0.5
FAILURE_SHARE = 0.25
TIE_SHARE = 0.5  # share of complete trials tied at the best metric value
MIN_TRIALS = 4
MEMORY_ERROR = 0.25  # median |predicted - measured| / measured


@dataclass(frozen=True)
class Finding:
    """One health finding: ``check`` (its name), ``message`` (one line), ``evidence`` (the
    numbers behind it) and ``action`` (what to do)."""

    check: str
    message: str
    evidence: str
    action: str

    def line(self) -> str:
        return f"{self.check}: {self.message} ({self.evidence}); {self.action}"


def check_study(
    view: StudyView,
    *,
    confirmations: Mapping[int, Confirmation] | None = None,
    bounds: Mapping[str, Sequence[Any]] | None = None,
    majority: float | None = None,
) -> list[Finding]:
    """Run every check on ``view``; empty for a healthy study.

    Args:
        view: The stored study.
        confirmations: Its confirmed trials (``autopeft confirm``), by trial number.
        bounds: Searched dimension -> its allowed values in order (or ``(low, high)``), for the
            edge check; without it, the edge check reads only the budget.
        majority: The share of validation rows that the most common answer gets right (a
            metric any configuration reaches by always giving that answer); defaults to the
            one stored with the study (``view.majority``, measured when it was prepared).
    """
    checks = [
        _edge(view, bounds or {}),
        _noise(view, confirmations or {}),
        _method_share(view),
        _fidelity(view),
        _failures(view),
        _saturated(view, view.majority if majority is None else majority),
        _memory(view),
    ]
    return [f for f in checks if f is not None]


def _edge(view: StudyView, bounds: Mapping[str, Sequence[Any]]) -> Finding | None:
    front = view.front()
    if len(front) < MIN_FRONT:
        return None
    for dim, values in sorted(bounds.items()):
        numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numeric) < 2 or set(numeric) <= {0, 1}:
            continue  # an on/off switch (IA3's per-cell ``active``) has no larger value to allow
        top = max(numeric)
        at_top = [r.number for r in front if r.params.get(dim) == top]
        if len(at_top) > EDGE_SHARE * len(front):
            return Finding(
                "edge",
                f"most of the front uses the largest {dim!r}",
                f"{len(at_top)} of {len(front)} front members at {top:g}: trials {at_top}",
                f"widen the space: allow {dim} above {top:g}",
            )
    primary = primary_objective(view.objectives)
    best = max(front, key=lambda r: _signed(r, primary.name, primary.direction))
    params = best.values.get("trainable_params")
    if params is not None and view.budget and params >= BUDGET_SHARE * view.budget:
        return Finding(
            "edge",
            "the best trial uses nearly the whole parameter budget",
            f"trial {best.number}: {params:,.0f} of {view.budget:,} trainable parameters",
            "raise max_trainable_params in the search space to see whether more capacity helps",
        )
    return None


def _noise(view: StudyView, confirmations: Mapping[int, Confirmation]) -> Finding | None:
    primary = primary_objective(view.objectives)
    front = sorted(view.front(), key=lambda r: r.values.get(primary.name, 0.0))
    if len(front) < 2:
        return None
    gaps = [
        abs(b.values[primary.name] - a.values[primary.name])
        for a, b in itertools.pairwise(front)
        if primary.name in a.values and primary.name in b.values
    ]
    stds = [
        c.std[primary.name]
        for c in confirmations.values()
        if primary.name in c.std and c.finished >= 2
    ]
    source = "confirm"
    if not stds:
        stds, source = _repeat_spread(_searched_complete(view), primary.name), "repeated points"
    if not stds or not gaps:
        return None
    noise, gap = statistics.median(stds), statistics.median(gaps)
    if noise < gap:
        return None
    return Finding(
        "noise",
        f"{primary.name} is as noisy as the gaps between front members",
        f"seed std {noise:.4f} ({source}) vs median gap {gap:.4f} between neighbours",
        "train longer (fidelity.steps), use a larger validation split, or compare with "
        "`autopeft confirm --seeds 3` before choosing",
    )


def _repeat_spread(records: Sequence[TrialRecord], metric: str) -> list[float]:
    """Standard deviations of ``metric`` over points that were trained more than once."""
    groups: dict[str, list[float]] = {}
    for r in records:
        if metric in r.values and r.params:
            key = repr(sorted(r.params.items()))
            groups.setdefault(key, []).append(r.values[metric])
    return [statistics.stdev(v) for v in groups.values() if len(v) >= 2]


def _method_share(view: StudyView) -> Finding | None:
    n_initial = int((view.spec.get("sampler") or {}).get("options", {}).get("n_initial", 10))
    searched = view.searched()  # references are no proposals
    later = [
        r.method
        for r in searched
        if r.number >= n_initial and r.state.is_finished() and r.method and not r.rung
    ]
    methods = Counter(r.method for r in searched if r.method)
    if len(methods) < 2 or len(later) < MIN_MODEL_BASED:
        return None
    counts = Counter(later)
    top, top_n = counts.most_common(1)[0]
    rare = [m for m in methods if m != top and counts.get(m, 0) <= RARE_SHARE * len(later)]
    if top_n < METHOD_SHARE * len(later) or not rare:
        return None
    return Finding(
        "method_share",
        f"{top!r} took most model-based proposals; {', '.join(map(repr, rare))} barely tried",
        f"{top_n} of {len(later)} proposals after the first {n_initial} trials",
        "if the other methods matter to you, give them their own study (one method per space) "
        "or raise n_trials",
    )


def _fidelity(view: StudyView) -> Finding | None:
    if not view.rung_steps():
        return None
    by_number = {r.number: r for r in view.records}
    primary = primary_objective(view.objectives).name
    top = len(view.rung_steps()) - 1
    pairs = []
    for r in view.records:
        if r.rung != top or primary not in r.values:
            continue
        source = by_number.get(r.promoted_from) if r.promoted_from is not None else None
        while source is not None and source.rung and source.promoted_from is not None:
            source = by_number.get(source.promoted_from)
        if source is not None and primary in source.values:
            pairs.append((source.values[primary], r.values[primary]))
    if len(pairs) < MIN_RUNG_PAIRS:
        return None
    rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
    if rho >= RUNG_CORRELATION:
        return None
    return Finding(
        "fidelity",
        "the lowest rung does not predict the top rung",
        f"Spearman {rho:.2f} between rung 0 and rung {top} {primary} over {len(pairs)} "
        f"configurations (threshold {RUNG_CORRELATION})",
        "raise the lowest rung's steps or search at full fidelity",
    )


def _failures(view: StudyView) -> Finding | None:
    ran = [r for r in view.records if r.state.is_finished() and not r.interrupted]
    failed = [r for r in ran if r.state == TrialState.FAIL]
    skipped = [r for r in ran if r.metrics.get("skipped")]
    if len(ran) < MIN_TRIALS or len(failed) + len(skipped) <= FAILURE_SHARE * len(ran):
        return None
    reasons = Counter((r.fail_reason or "?").split(":")[0][:60] for r in failed)
    common = "; ".join(f"{n}x {reason}" for reason, n in reasons.most_common(2))
    return Finding(
        "failures",
        "many trials failed or were skipped",
        f"{len(failed)} failed, {len(skipped)} skipped of {len(ran)}"
        + (f"; most common: {common}" if common else ""),
        "lower the largest ranks or the batch size, raise the memory cap, or fix the reported "
        "error before spending more trials",
    )


def _saturated(view: StudyView, majority: float | None) -> Finding | None:
    primary = primary_objective(view.objectives)
    values = [r.values[primary.name] for r in _searched_complete(view) if primary.name in r.values]
    if len(values) < MIN_TRIALS:
        return None
    best = max(values) if primary.direction == "maximize" else min(values)
    if majority is not None and primary.direction == "maximize" and best <= majority + 1e-9:
        return Finding(
            "saturated",
            f"the best {primary.name} is no better than always giving the most common answer",
            f"best {best:.4f} vs majority-answer share {majority:.4f}",
            "use a metric or a validation split that separates configurations (more rows, "
            "balanced answers), or train longer",
        )
    tied = sum(1 for v in values if abs(v - best) < 1e-9)
    if tied >= max(3, TIE_SHARE * len(values)):
        return Finding(
            "saturated",
            f"most trials tie at the best {primary.name}",
            f"{tied} of {len(values)} complete trials at exactly {best:.4f}",
            "the metric cannot separate these configurations: use a finer metric, more "
            "validation rows, or a harder task",
        )
    return None


def _memory(view: StudyView) -> Finding | None:
    errors = view.memory_errors()
    if len(errors) < MIN_TRIALS:
        return None
    median = statistics.median(abs(e) for e in errors)
    if median <= MEMORY_ERROR:
        return None
    side = "under" if statistics.median(errors) < 0 else "over"
    return Finding(
        "memory",
        f"predicted peak memory is far from measured ({side}-predicted)",
        f"median |error| {100 * median:.0f}% over {len(errors)} trials",
        "memory caps and GPU packing rely on the prediction: set a safer memory cap, and "
        "report the model family so the memory model can learn it",
    )


def stored_bounds(view: StudyView) -> dict[str, tuple[Any, ...]]:
    """Each searched dimension's allowed values as the stored Optuna study knows them:
    the choices of a categorical, ``(low, high)`` of a numeric dimension."""
    from optuna.distributions import CategoricalDistribution
    from sqlalchemy.exc import SQLAlchemyError

    from autopeft.storage.optuna_rows import read_distributions
    from autopeft.storage.store import Store

    store = Store(view.url, create=False)
    try:  # one query over Optuna's parameter rows (get_trials: 8 s on 5,000 trials)
        dists = read_distributions(store.engine, view.name)
    except SQLAlchemyError:
        dists = {}
        for trial in store.optuna_study(view.name).get_trials(deepcopy=False):
            for name, dist in trial.distributions.items():
                dists.setdefault(name, dist)
    bounds: dict[str, tuple[Any, ...]] = {}
    for name, dist in dists.items():
        if isinstance(dist, CategoricalDistribution):
            bounds[name] = tuple(dist.choices)
        else:
            bounds[name] = (dist.low, dist.high)
    return bounds


def _searched_complete(view: StudyView) -> list[TrialRecord]:
    """The complete trials the search proposed (references are compared, not judged)."""
    return [r for r in view.complete() if r.reference is None]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""

    def ranks(xs: Sequence[float]) -> list[float]:
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        out = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2.0
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    if len(set(ra)) < 2 or len(set(rb)) < 2:
        return 0.0
    return statistics.correlation(ra, rb)


def _signed(record: TrialRecord, name: str, direction: str) -> float:
    value = record.values.get(name, float("-inf") if direction == "maximize" else float("inf"))
    return value if direction == "maximize" else -value
