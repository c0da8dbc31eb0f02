"""Schema versions across autopeft versions: a driver that finds the database migrated past
what it knows stops with one line, and a migration waits for the drivers of the old schema."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.exceptions import StorageError
from autopeft.storage.lease import StudyLease
from autopeft.storage.store import Store
from autopeft.storage.tables import SCHEMA_VERSION, LeaseRow
from tests.conftest import assert_user_error


def _set_version(db: Path | str, version: int) -> None:
    """Set the schema version of ``db`` (a SQLite file or a database URL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    with engine.begin() as c:
        c.execute(text("UPDATE autopeft_schema SET version = :v"), {"v": version})
    engine.dispose()


def _version(db: Path | str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    with engine.connect() as c:
        found = int(c.execute(text("SELECT version FROM autopeft_schema")).scalar_one())
    engine.dispose()
    return found


def test_a_newer_schema_is_one_line_naming_both_versions(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    Store(f"sqlite:///{db}")
    _set_version(db, SCHEMA_VERSION + 1)
    result = CliRunner().invoke(app, ["studies", "--storage", f"sqlite:///{db}"])
    assert_user_error(
        result,
        f"database schema {SCHEMA_VERSION + 1}",
        f"newer than the schema {SCHEMA_VERSION} this autopeft knows",
        "upgrade autopeft",
    )
    assert _version(db) == SCHEMA_VERSION + 1  # left as it was


def test_a_running_driver_stops_when_the_schema_moves_past_it(tmp_path: Path) -> None:
    """A heartbeat reads the schema version; the driver's next check stops it (the driver
    calls :meth:`StudyLease.check` on every poll of its loop)."""
    db = tmp_path / "s.db"
    store = Store(f"sqlite:///{db}")
    lease = StudyLease(store, "s", stale_after=60, heartbeat_every=60)
    lease.acquire()
    assert lease.beat()
    lease.check()  # the schema it knows: nothing to say
    _set_version(db, SCHEMA_VERSION + 1)
    lease.beat()
    with pytest.raises(StorageError) as info:
        lease.check()
    message = str(info.value)
    assert "\n" not in message and f"database schema {SCHEMA_VERSION + 1}" in message
    assert "upgrade autopeft" in message
    lease.release()


def _old_database_driven_by(url: str, owner: str, quiet: float) -> None:
    """A database at the previous schema whose study 's' has a lease of ``owner`` that last
    beat ``quiet`` seconds ago."""
    store = Store(url)
    now = time.time()
    with store.session() as s:
        s.add(LeaseRow(study_name="s", owner=owner, token="t", acquired_at=now - quiet,
                       heartbeat_at=now - quiet))  # fmt: skip
    store.engine.dispose()
    _set_version(url, SCHEMA_VERSION - 1)


def test_a_migration_waits_for_a_live_driver_of_the_old_schema(storage_url: str) -> None:
    _old_database_driven_by(storage_url, "other-host:4242", quiet=5)
    with pytest.raises(StorageError) as info:
        Store(storage_url)
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot migrate {storage_url!r} from schema {SCHEMA_VERSION - 1} to " in message
    assert "study 's' is run by other-host:4242" in message and "let it finish" in message
    assert _version(storage_url) == SCHEMA_VERSION - 1  # nothing migrated
    result = CliRunner().invoke(app, ["studies", "--storage", storage_url])
    assert_user_error(result, "cannot migrate", "other-host:4242")


@pytest.mark.parametrize(
    ("owner", "quiet"),
    [("other-host:4242", 10_000.0), ("this-host-dead", 5.0)],
    ids=["stale heartbeat", "process gone"],
)
def test_a_migration_goes_ahead_once_the_old_driver_is_gone(
    tmp_path: Path, owner: str, quiet: float
) -> None:
    import socket
    import subprocess
    import sys

    if owner == "this-host-dead":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        owner = f"{socket.gethostname()}:{gone.pid}"
    url = f"sqlite:///{tmp_path / 's.db'}"
    _old_database_driven_by(url, owner, quiet)
    Store(url)
    assert _version(url) == SCHEMA_VERSION


@pytest.mark.slow
def test_a_driver_stops_with_one_line_when_a_newer_autopeft_migrates_under_it(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import autopeft.run.driver as driver
    from autopeft.run.progress import Reporter

    db = study_dir / "studies.db"

    class Migrate(Reporter):
        """Plays the newer autopeft: moves the schema on while trial 0 trains."""

        def step(self, number: int, step: int, total: int) -> None:
            if number == 0 and step == 1:
                _set_version(db, SCHEMA_VERSION + 1)
                time.sleep(0.3)  # a heartbeat or two

    monkeypatch.setattr(driver, "HEARTBEAT_SECONDS", 0.05)
    with pytest.raises(StorageError) as info:
        driver.run_study(study_dir / "study.yaml", trials=3, reporter=Migrate())
    assert "\n" not in str(info.value)
    assert f"database schema {SCHEMA_VERSION + 1}, newer than the schema" in str(info.value)
    with sqlite3.connect(db) as con:
        started = con.execute("SELECT COUNT(*) FROM autopeft_trials").fetchone()[0]
        leases = con.execute("SELECT COUNT(*) FROM autopeft_leases").fetchone()[0]
    assert started < 3 and leases == 0  # stopped early, and gave its lease back
