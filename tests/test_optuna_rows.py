"""Store.records reads Optuna's tables directly (autopeft.storage.optuna_rows): the same trials
as Optuna's own reader, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest


def _optuna_view(trial) -> tuple:
    values = None if trial.values is None else list(trial.values)
    attrs = {k: v for k, v in trial.user_attrs.items() if k in ("fail_reason", "rung", "reference")}
    return trial.number, trial.state.name, values, dict(trial.params), list(trial.params), attrs


def test_every_state_value_kind_and_distribution_reads_as_optuna_has_it(storage_url: str) -> None:
    import optuna
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
    from optuna.trial import TrialState, create_trial

    from autopeft.storage.optuna_rows import read_distributions, read_trials
    from autopeft.storage.store import Store

    store = Store(storage_url)  # our tables beside Optuna's, as in every study database
    study = optuna.create_study(
        study_name="raw", storage=store.optuna, directions=["maximize", "minimize"]
    )
    optuna.create_study(study_name="other", storage=store.optuna).enqueue_trial({"x": 1.0})
    dists = {
        "method": CategoricalDistribution(["lora", "ia3", None]),
        "rank.0.q": CategoricalDistribution([0, 2, 4, 8]),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "layers": IntDistribution(1, 6),
    }
    points = [
        {"method": "ia3", "rank.0.q": 8, "lr": 3e-3, "layers": 4},
        {"method": None, "rank.0.q": 0, "lr": 1e-4, "layers": 1},
        {"method": "lora", "rank.0.q": 2, "lr": 1e-2, "layers": 6},
    ]
    study.add_trial(create_trial(params=points[0], distributions=dists, values=[0.75, 4096]))
    study.add_trial(
        create_trial(params=points[1], distributions=dists, values=[-math.inf, math.inf])
    )
    study.add_trial(
        create_trial(
            params=points[2], distributions=dists, state=TrialState.FAIL,
            user_attrs={"fail_reason": "OutOfMemoryError: boom", "rung": 1, "other": [1, 2]},
        )
    )  # fmt: skip
    study.add_trial(create_trial(params={}, distributions={}, state=TrialState.PRUNED))
    running = study.ask({"method": dists["method"]})
    study.set_user_attr("unrelated", 1)
    running.set_user_attr("reference", "lora-r8-qv")

    ours = read_trials(store.engine, "raw")
    theirs = study.get_trials(deepcopy=False)
    assert [_optuna_view(t) for t in ours] == [_optuna_view(t) for t in theirs]
    assert [t.state.name for t in ours] == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED", "RUNNING"]
    assert ours[1].values == [-math.inf, math.inf] and ours[0].params["rank.0.q"] == 8
    assert "other" not in ours[2].user_attrs  # only the attributes records() reads
    assert read_trials(store.engine, "absent") == []
    first: dict = {}
    for trial in theirs:
        for name, dist in trial.distributions.items():
            first.setdefault(name, dist)
    assert read_distributions(store.engine, "raw") == first == dists


@pytest.mark.parametrize("n", [30])
def test_records_equal_the_optuna_reader_on_a_seeded_study(storage_url: str, n: int) -> None:
    from autopeft.storage.store import Store, _record
    from autopeft.storage.tables import TrialRow
    from autopeft.testing.load_study import seed_study

    seeded = seed_study(storage_url, n, name="load")
    store = Store(seeded.url)
    objectives = store.objectives("load")
    with store.session() as s:
        rows = {r.number: r for r in s.query(TrialRow).filter_by(study_name="load")}
        trials = store.optuna_study("load").get_trials(deepcopy=False)
        expected = [_record(t, rows.get(t.number), objectives) for t in trials]
    records = store.records("load")
    assert records == expected and len(records) == n
    assert {r.state for r in records} >= {"COMPLETE", "FAIL"}
