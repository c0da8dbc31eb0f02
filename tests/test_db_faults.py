"""Database faults: lost connections and locks are retried, nothing is lost or doubled, and a
database that stays down is one error line, recovered by the next run."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from autopeft.core.objectives import Objective
from autopeft.run.progress import Reporter
from autopeft.storage import retry
from autopeft.storage.store import Store
from tests.conftest import assert_user_error


def _lost_connection() -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))


def _study(url: str) -> Store:
    store = Store(url)
    row = dict.fromkeys(
        ("spec_yaml", "space_yaml", "spec_json", "fingerprint", "layout_json", "model_path"), ""
    )
    objectives = [Objective("accuracy", "maximize")]
    store.create_study("s", objectives, {**row, "objectives_json": '[{"name": "accuracy", '
                                          '"direction": "maximize"}]'})  # fmt: skip
    return store


def _commit_then_fail(monkeypatch: pytest.MonkeyPatch, target: Any, method: str) -> list[int]:
    """Make ``target.method`` commit, then raise a lost connection, the first time only."""
    real, calls = getattr(target, method), []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise _lost_connection()
        return result

    monkeypatch.setattr(target, method, flaky)
    return calls


def test_writes_whose_answer_was_lost_are_not_doubled(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    store = _study(storage_url)
    compiled = SimpleNamespace(method="lora", trainable_params=10)
    dists = {"x": optuna.distributions.FloatDistribution(0, 1)}
    created = _commit_then_fail(monkeypatch, store.optuna, "create_new_trial")
    number = store.start_trial("s", {"x": 0.5}, dists, compiled)  # type: ignore[arg-type]
    assert len(created) == 1  # the retry found the trial its first try made
    finished = _commit_then_fail(monkeypatch, store.optuna, "set_trial_state_values")
    store.complete_trial("s", number, [0.75], {"accuracy": 0.75})
    assert len(finished) == 1
    records = store.records("s")
    assert [(r.number, r.state, r.values) for r in records] == [(0, "COMPLETE", {"accuracy": 0.75})]
    assert len(store.optuna_study("s").trials) == 1


def test_a_fault_that_lasts_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from autopeft.exceptions import StorageError

    monkeypatch.setenv(retry.RETRY_ENV, "0.3")
    tries: list[int] = []

    def down() -> None:
        tries.append(1)
        raise _lost_connection()

    with pytest.raises(StorageError) as info:
        retry.call_with_retry(down, "record a trial's result", "postgresql://u:secret@h/db")
    message = str(info.value)
    assert message.startswith("cannot record a trial's result: the database at ")
    assert "stayed unreachable for 0 s" in message and "secret" not in message
    assert "\n" not in message and len(tries) > 1


def test_mistakes_are_not_retried() -> None:
    from sqlalchemy.exc import OperationalError

    mistake = OperationalError("SELECT", {}, Exception("no such table: nothing"))
    assert not retry.is_transient(mistake)
    assert retry.is_transient(OperationalError("x", {}, Exception("database is locked")))


class _Hook(Reporter):
    """Calls ``action`` once, at step 1 of trial 0."""

    def __init__(self, action: Any) -> None:
        self.action, self.done = action, False

    def step(self, number: int, step: int, total: int) -> None:
        if number == 0 and step == 1 and not self.done:
            self.done = True
            self.action()


def _spy_transient(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    real, seen = retry.is_transient, []

    def spy(exc: BaseException) -> bool:
        result = real(exc)
        if result:
            seen.append(str(exc))
        return result

    monkeypatch.setattr(retry, "is_transient", spy)
    return seen


@pytest.mark.slow
def test_a_sqlite_reader_holding_the_database_never_fails_a_trial(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autopeft.run.driver import run_study

    monkeypatch.setenv(retry.SQLITE_BUSY_ENV, "0.1")  # give up on the lock fast: retry instead
    seen = _spy_transient(monkeypatch)
    db, held = study_dir / "studies.db", threading.Event()

    def read_for_3_seconds() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM trials").fetchall()  # holds a shared lock
        held.set()
        time.sleep(3)
        con.execute("COMMIT")
        con.close()

    reader = threading.Thread(target=read_for_3_seconds)
    hook = _Hook(lambda: (reader.start(), held.wait()))
    outcome = run_study(study_dir / "study.yaml", trials=1, reporter=hook)
    reader.join()
    assert [r.state for r in outcome.records] == ["COMPLETE"]
    assert any("database is locked" in s for s in seen)  # the driver did wait for the reader


def _admin(url: str) -> tuple[Any, str]:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    db = make_url(url)
    engine = create_engine(db.set(database="postgres"), isolation_level="AUTOCOMMIT")
    return engine, str(db.database)


def _terminate(engine: Any, database: str) -> int:
    from sqlalchemy import text

    query = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = :db AND pid <> pg_backend_pid() AND usename = current_user"
    )
    with engine.connect() as c:
        return int(c.execute(query, {"db": database}).scalar() or 0)


@pytest.mark.slow
def test_postgres_backends_terminated_mid_study_lose_and_double_nothing(
    study_dir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backends terminated every second (idle connections: the pool's ping replaces them) and
    inside the driver's first result write (a transaction that dies: the call is retried)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from autopeft.run.driver import run_study

    engine, database = _admin(postgres_url)
    stop, killed, seen = threading.Event(), [], _spy_transient(monkeypatch)

    def terminate_every_second() -> None:  # a server restart, again and again
        while not stop.wait(1.0):
            killed.append(_terminate(engine, database))

    def kill_mid_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE autopeft_trials SET metrics_json") and not killed:
            killed.append(_terminate(engine, database))

    terminator = threading.Thread(target=terminate_every_second)
    event.listen(Engine, "before_cursor_execute", kill_mid_write)
    try:
        hook = _Hook(terminator.start)
        outcome = run_study(study_dir / "study.yaml", trials=2, storage=postgres_url, reporter=hook)
    finally:
        event.remove(Engine, "before_cursor_execute", kill_mid_write)
        stop.set()
        terminator.join()
        engine.dispose()
    assert sum(killed) > 0 and seen  # connections died, and a call was retried
    assert [(r.number, r.state) for r in outcome.records] == [(0, "COMPLETE"), (1, "COMPLETE")]
    store = Store(postgres_url)
    assert len(store.optuna_study("tiny").trials) == 2
    assert all(r.values and r.metrics for r in store.records("tiny"))


@pytest.mark.slow
def test_postgres_that_stays_down_is_one_error_and_the_next_run_recovers(
    study_dir: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sqlalchemy import text
    from typer.testing import CliRunner

    from autopeft.cli import app
    from autopeft.run.driver import run_study

    monkeypatch.setenv(retry.RETRY_ENV, "2")
    engine, database = _admin(postgres_url)

    def take_down() -> None:
        with engine.connect() as c:
            c.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
        _terminate(engine, database)

    monkeypatch.setattr("autopeft.run.progress.Reporter", lambda: _Hook(take_down))
    spec = str(study_dir / "study.yaml")
    try:
        result = CliRunner().invoke(app, ["run", spec, "-q", "--storage", postgres_url])
    finally:
        with engine.connect() as c:
            c.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        engine.dispose()
    assert_user_error(result, "stayed unreachable for 2 s", "run the same command again")
    monkeypatch.undo()
    done = run_study(spec, trials=2, storage=postgres_url)
    assert "run in this process has ended: taking over" in capsys.readouterr().err
    states = [(r.number, r.state, r.interrupted) for r in done.records]
    assert states == [(0, "FAIL", True), (1, "COMPLETE", False), (2, "COMPLETE", False)]
    assert done.records[1].params == done.records[0].params  # the lost trial's point re-ran


def test_processes_opening_a_fresh_database_at_once_all_succeed(storage_url: str) -> None:
    """Regression (bench/reliability.py): a driver creating a new database while a reader
    (``autopeft show``, the service) opened it too failed with ``UNIQUE constraint failed:
    alembic_version.version_num``: both created the schema, one lost the race."""
    n = 4
    barrier, errors = threading.Barrier(n), []

    def open_store() -> None:
        barrier.wait()
        try:
            Store(storage_url)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert Store(storage_url).study_names() == []
