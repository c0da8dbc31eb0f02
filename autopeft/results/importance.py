"""Which search dimensions move each objective, from the study's own trials.

The estimate is Optuna's fANOVA (:class:`optuna.importance.FanovaImportanceEvaluator`: a random
forest fitted on the stored study's complete trials, each dimension's share of the variance it
explains) run on the stored Optuna study, one objective at a time. It is labelled as such
wherever it is shown. Per-cell spaces have hundreds of dimensions (``rank.3.q``), which nobody
reads one by one, so the shares are also summed by group: per parameter (``rank``, all cells),
per layer (``layer 3``, all modules) and per module type (``module q``, all layers).

A study with more than :data:`MAX_TRIALS` complete trials is estimated on a seeded random sample
of that many (fANOVA's forest grows with the trials: a 5,000-trial study took minutes, 500 of its
trials 27 s for three objectives), and the estimate says so in its ``method``.
"""

from __future__ import annotations

import random
import warnings
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autopeft.results.views import StudyView

__all__ = ["METHOD", "Importance", "group_of", "importances"]

METHOD = "Optuna fANOVA on the stored trials"
MIN_TRIALS = 4
MAX_TRIALS = 200
"""At most this many complete trials (a seeded random sample of a larger study) enter fANOVA."""


@dataclass(frozen=True)
class Importance:
    """Importances for one objective.

    Attributes:
        objective: The objective's name.
        dims: Dimension name -> share of explained variance (sums to 1), largest first.
        groups: Group kind (``parameter``, ``layer``, ``module``) -> group label -> summed
            share, largest first.
        trials: How many complete trials the estimate used.
        method: How it was estimated (:data:`METHOD`).
        note: Why there is no estimate (too few trials, nothing varies); empty otherwise.
    """

    objective: str
    dims: dict[str, float] = field(default_factory=dict)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    trials: int = 0
    method: str = METHOD
    note: str = ""


def group_of(dim: str) -> dict[str, str]:
    """The groups a dimension belongs to: ``rank.3.q`` -> parameter ``rank``, layer ``3``,
    module ``q``; ``dropout.2`` -> parameter ``dropout``, layer ``2``; ``learning_rate`` ->
    parameter only."""
    parts = dim.split(".")
    out = {"parameter": parts[0]}
    if len(parts) >= 2 and parts[1].isdigit():
        out["layer"] = f"layer {parts[1]}"
        if len(parts) >= 3:
            out["module"] = f"module {'.'.join(parts[2:])}"
    return out


def importances(view: StudyView, *, seed: int = 0) -> list[Importance]:
    """One :class:`Importance` per objective of the stored study ``view`` (fANOVA over its
    complete top-rung trials; fewer than :data:`MIN_TRIALS` gives a note instead)."""
    import optuna

    from autopeft.storage.store import Store

    study = Store(view.url, create=False).optuna_study(view.name)
    numbers = sorted(r.number for r in view.complete())
    method = METHOD
    if len(numbers) > MAX_TRIALS:  # read only the sample: the whole study is slow to decode
        numbers = sorted(random.Random(seed).sample(numbers, MAX_TRIALS))
        method = f"{METHOD} (a random {MAX_TRIALS} of {len(view.complete())} complete trials)"
        storage, study_id = study._storage, study._study_id
        trials = [
            storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id, n))
            for n in numbers
        ]
    else:
        wanted = set(numbers)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number in wanted]
    trials = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [
        replace(_one(study, trials, index, objective.name, seed), method=method)
        for index, objective in enumerate(view.objectives)
    ]


def _one(study: object, trials: list, index: int, name: str, seed: int) -> Importance:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    usable = [t for t in trials if t.values is not None and len(t.values) > index]
    if len(usable) < MIN_TRIALS:
        return Importance(name, trials=len(usable), note=f"needs {MIN_TRIALS} complete trials")
    varied = _varied_params(usable)
    if not varied:
        return Importance(name, trials=len(usable), note="no searched dimension varies")
    frozen = optuna.create_study(directions=study.directions)  # type: ignore[attr-defined]
    frozen.add_trials(usable)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dims = get_param_importances(
                frozen,
                evaluator=FanovaImportanceEvaluator(seed=seed),
                params=varied,
                target=lambda t: t.values[index],
                normalize=True,
            )
        except (RuntimeError, ValueError) as exc:  # e.g. the objective is constant
            return Importance(name, trials=len(usable), note=f"no estimate: {exc}")
    groups: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for dim, share in dims.items():
        for kind, label in group_of(dim).items():
            groups[kind][label] += share
    ordered = {
        kind: dict(sorted(g.items(), key=lambda kv: -kv[1])) for kind, g in sorted(groups.items())
    }
    return Importance(name, dict(dims), ordered, len(usable))


def _varied_params(trials: list) -> list[str]:
    """Dimensions present in every trial with more than one distinct value."""
    names = set.intersection(*(set(t.params) for t in trials))
    return sorted(n for n in names if len({repr(t.params[n]) for t in trials}) > 1)
