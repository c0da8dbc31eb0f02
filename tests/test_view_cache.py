"""The service's study cache (autopeft.results.view_cache) over a seeded study
(autopeft.testing.load_study): served from memory while nothing changed, loaded again after any
write a driver makes, always equal to a fresh read; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from autopeft.core.compiled import CompiledConfig
from autopeft.core.states import TrialState


@pytest.fixture()
def seeded(storage_url: str):
    from autopeft.testing.load_study import seed_study

    return seed_study(storage_url, 24, name="load")


def test_seeded_study_is_what_the_service_reads(seeded, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from autopeft.service import create_app
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token

    app = create_app(seeded.url, data_dir=tmp_path / "svc")
    headers = {"Authorization": f"Bearer {create_token(Store(seeded.url), 'read')[1]}"}
    client = TestClient(app)
    status = client.get("/api/studies/load", headers=headers).json()
    assert seeded.trials == 24 and seeded.complete + seeded.failed + seeded.interrupted == 24
    assert status["counts"]["complete"] == seeded.complete > 0
    assert status["state"] == "complete" and status["finished"] == status["target"]
    assert status["hypervolume"] is not None and 0 < status["hypervolume"] <= 1
    front = client.get("/api/studies/load/front", headers=headers).json()
    assert front and len(front) == status["front_size"]
    trials = client.get("/api/studies/load/trials", headers=headers).json()
    assert [t["trial"] for t in trials] == list(range(24))
    # three requests, one load of the study; the listing reads it from memory too
    assert [s["name"] for s in client.get("/api/studies", headers=headers).json()] == ["load"]
    assert app.state.service.views.loads == 1


def test_cache_reloads_after_every_kind_of_write(seeded) -> None:
    from autopeft.exceptions import StudyError
    from autopeft.results.view_cache import ViewCache
    from autopeft.results.views import view_of
    from autopeft.storage.marker import study_marker
    from autopeft.storage.store import Store

    store, cache = Store(seeded.url), ViewCache()

    def fresh(loads: int):
        view = cache.view(store, "load")
        assert cache.loads == loads
        assert view == view_of(store, "load")
        return view

    first = fresh(1)
    assert cache.view(store, "load") is first and cache.loads == 1  # nothing changed
    made: list[int] = []
    for _ in range(2):  # made once per version of the study
        assert cache.derived(first, "body", lambda: made.append(1) or len(made)) == 1
    done = first.complete()[0]
    trial = store.optuna.get_trial(
        store.optuna.get_trial_id_from_study_id_trial_number(
            store.optuna.get_study_id_from_name("load"), done.number
        )
    )
    compiled = CompiledConfig(
        done.method,
        done.peft_config,
        done.placement,
        done.module_sizes,
        int(done.values["trainable_params"]),
    )
    number = store.start_trial("load", done.params, trial.distributions, compiled)
    second = fresh(2)
    assert second.records[-1].state == TrialState.RUNNING
    assert cache.derived(second, "body", lambda: made.append(1) or len(made)) == 2
    assert cache.derived(first, "body", lambda: -1) == -1  # a replaced view: not kept
    marker = study_marker(store, "load")
    store.heartbeat("load", number)  # changes nothing a view holds: no reload
    assert study_marker(store, "load") == marker and fresh(2)
    values = [done.values[o.name] for o in first.objectives]
    store.complete_trial("load", number, values, {"train_seconds": 1.0, **done.values})
    assert fresh(3).records[-1].state == TrialState.COMPLETE
    store.set_hypervolumes("load", {number: 0.5})
    assert fresh(4).records[-1].hypervolume == 0.5
    store.set_hypervolumes("load", {number: 0.25})  # a rewrite of a stored hypervolume
    assert fresh(5).records[-1].hypervolume == 0.25
    store.set_driver_error("load", "boom")
    assert fresh(6).driver_error == "boom"
    failing = store.start_trial("load", done.params, trial.distributions, compiled)
    store.fail_trial("load", failing, "interrupted: its driver x stopped", interrupted=True)
    assert fresh(7).records[-1].interrupted  # one load: both writes came before it
    store.mark_retried("load", failing, number)
    assert fresh(8)
    with pytest.raises(StudyError, match="no study named 'nope'"):
        cache.view(store, "nope")
    assert cache.loads == 8


def test_version_names_the_state_and_derived_values_are_made_once(served, tmp_path) -> None:
    """A view's version is the same until the study changes; callers asking for a derived
    value at once wait for one computation."""
    import shutil
    import threading
    import time

    from autopeft.results.view_cache import ViewCache
    from autopeft.storage.store import Store

    shutil.copy(served.root / "studies.db", tmp_path / "studies.db")  # written to below
    store, cache = Store(f"sqlite:///{tmp_path / 'studies.db'}"), ViewCache()
    view = cache.view(store, "tiny")
    version = cache.version(view)
    assert version and cache.version(cache.view(store, "tiny")) == version
    assert ViewCache().version(view) is None  # a view another cache loaded
    made: list[int] = []

    def slow() -> int:
        made.append(1)
        time.sleep(0.3)
        return len(made)

    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.derived(view, "slow", slow)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [1, 1, 1, 1] and made == [1]
    study_id = store.optuna.get_study_id_from_name("tiny")
    store.optuna.set_study_user_attr(study_id, "note", "moved")  # any write moves the marker
    moved = cache.view(store, "tiny")
    assert moved is not view and cache.version(moved) not in (None, version)
    assert cache.version(view) is None  # replaced


def test_the_marker_reads_index_entries_and_a_schema_8_database_gains_them(tmp_path) -> None:
    """Schema 9's indexes cover the marker's aggregates (SQLite reads index entries, not the
    trials' wide rows), and a schema 8 database gains them when opened."""
    import sqlite3

    from autopeft.storage.marker import _queries
    from autopeft.storage.store import Store
    from autopeft.storage.tables import SCHEMA_VERSION
    from autopeft.testing.load_study import seed_study

    path = tmp_path / "old.db"
    seed_study(f"sqlite:///{path}", 12, name="load")
    names = {"ix_autopeft_trials_marker", "ix_autopeft_trials_states"}
    with sqlite3.connect(path) as db:  # make it look like schema 8
        for name in names:
            db.execute(f"DROP INDEX {name}")
        db.execute("UPDATE autopeft_schema SET version = 8")
    store = Store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert names <= indexes
        assert db.execute("SELECT version FROM autopeft_schema").fetchall() == [(SCHEMA_VERSION,)]
    reader = _queries()
    for query, params in ((reader.trials, {"study_id": 1}), (reader.ours, {"name": "load"})):
        compiled = query.compile(store.engine)
        sql, values = str(compiled), compiled.construct_params(params)
        ordered = [values[k] for k in compiled.positiontup or ()]
        with sqlite3.connect(path) as db:
            plan = " ".join(str(r[-1]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", ordered))
        assert "COVERING INDEX ix_autopeft_trials_" in plan, plan
