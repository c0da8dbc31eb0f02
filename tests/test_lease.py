"""One driver per study: the lease on SQLite and PostgreSQL, in the driver and on the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autopeft.exceptions import StudyError
from autopeft.run.progress import Reporter
from autopeft.storage.lease import StudyLease
from autopeft.storage.store import OWNER, Store
from autopeft.storage.tables import LeaseRow


def _lease(store: Store, owner: str, notes: list[str] | None = None) -> StudyLease:
    note = notes.append if notes is not None else None
    return StudyLease(store, "s", stale_after=60, heartbeat_every=0.2, owner=owner, note=note)


def _age(store: Store, seconds: float) -> None:
    """Make the lease of study "s" look ``seconds`` without a heartbeat."""
    with store.session() as s:
        row = s.get(LeaseRow, "s")
        assert row is not None
        row.heartbeat_at = time.time() - seconds


def test_a_live_lease_refuses_a_second_driver_until_released(storage_url: str) -> None:
    store = Store(storage_url)
    first, second = _lease(store, "host-a:1"), _lease(store, "host-b:2")
    first.acquire()
    with pytest.raises(StudyError) as info:
        second.acquire()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("study 's' is being run by host-a:1 since 20")
    assert "UTC (heartbeat 0 s ago); stop it first, or wait 60 s for the lease to go stale" in (
        message
    )
    assert first.beat() and not first.lost
    first.release()
    assert first.holder() is None
    second.acquire()
    assert second.holder().owner == "host-b:2"  # type: ignore[union-attr]


def test_a_stale_lease_is_taken_over_with_a_note(storage_url: str) -> None:
    store = Store(storage_url)
    first, notes = _lease(store, "host-a:1"), []
    first.acquire()
    _age(store, 100)
    second = _lease(store, "host-b:2", notes)
    second.acquire()
    assert notes == [
        "note: study 's' was run by host-a:1, which sent no heartbeat for 100 s: taking over "
        "its lease"
    ]
    assert not first.beat() and first.lost  # the old holder finds out at its next heartbeat
    with pytest.raises(StudyError, match="lease was taken over by host-b:2"):
        first.check()
    first.release()  # deletes nothing of the new holder's
    assert second.holder().owner == "host-b:2"  # type: ignore[union-attr]


def test_the_quick_check_refuses_a_live_lease_and_creates_nothing(
    storage_url: str, tmp_path: Path
) -> None:
    from autopeft.storage.lease import refuse_if_running

    missing = tmp_path / "none.db"
    refuse_if_running(f"sqlite:///{missing}", "s", 60)
    assert not missing.exists()
    refuse_if_running(storage_url, "s", 60)  # an empty database: no tables yet
    store = Store(storage_url)
    refuse_if_running(storage_url, "s", 60)  # tables, no lease
    _lease(store, "host-a:1").acquire()
    with pytest.raises(StudyError, match="'s' is being run by host-a:1 since"):
        refuse_if_running(storage_url, "s", 60)
    _age(store, 100)
    refuse_if_running(storage_url, "s", 60)  # stale: the run may take it over


def test_a_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lease(store, f"{socket.gethostname()}:{dead.pid}").acquire()
    notes: list[str] = []
    _lease(store, "host-b:2", notes).acquire()
    assert notes and "whose process is gone" in notes[0]


def test_the_heartbeat_thread_keeps_the_lease_fresh(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with _lease(store, "host-a:1") as lease:
        _age(store, 30)
        time.sleep(0.6)
        assert time.time() - lease.holder().heartbeat_at < 1  # type: ignore[union-attr]
    assert lease.holder() is None


@pytest.mark.parametrize("stale", [False, True], ids=["empty", "stale"])
def test_racing_drivers_exactly_one_wins(storage_url: str, stale: bool) -> None:
    """Drivers with their own connections race for a free (or a stale) lease."""
    if stale:
        store = Store(storage_url)
        _lease(store, "host-old:9").acquire()
        _age(store, 100)
    n = 4
    stores = [Store(storage_url) for _ in range(n)]
    barrier, won, refused = threading.Barrier(n), [], []

    def race(i: int) -> None:
        lease = _lease(stores[i], f"host-{i}:{i}")
        barrier.wait()
        try:
            lease.acquire()
            won.append(i)
        except StudyError:
            refused.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == n - 1
    holder = _lease(stores[0], "me:0").holder()
    assert holder is not None and holder.owner == f"host-{won[0]}:{won[0]}"


class _Probe(Reporter):
    """In trial 0: checks the driver holds the lease and refuses a rival, then maybe stops it
    as Ctrl-C would."""

    def __init__(self, url: str, interrupt: bool = False) -> None:
        self.url, self.interrupt, self.seen = url, interrupt, ""

    def step(self, number: int, step: int, total: int) -> None:
        if step != 1 or self.seen:
            return
        store = Store(self.url)
        rival = StudyLease(store, "tiny", stale_after=60, heartbeat_every=1, owner="rival:1")
        holder = rival.holder()
        self.seen = holder.owner if holder else "nobody"
        with pytest.raises(StudyError, match=f"being run by {OWNER} since"):
            rival.acquire()
        if self.interrupt:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_run_study_holds_the_lease_and_releases_it_however_it_stops(
    study_dir: Path, storage_url: str
) -> None:
    from autopeft.run.driver import run_study

    spec = study_dir / "study.yaml"
    lease = StudyLease(Store(storage_url), "tiny", stale_after=60, heartbeat_every=1)
    probe = _Probe(storage_url, interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, trials=1, storage=storage_url, reporter=probe)
    assert probe.seen == OWNER
    assert lease.holder() is None  # released on Ctrl-C (an exception like any other)

    probe = _Probe(storage_url)
    outcome = run_study(spec, trials=1, storage=storage_url, reporter=probe)
    assert probe.seen == OWNER and [r.state for r in outcome.records][-1] == "COMPLETE"
    assert lease.holder() is None  # released at the end


class _WaitFor(Reporter):
    """Holds each trial at its first step until ``go`` exists."""

    def __init__(self, go: Path) -> None:
        self.go = go

    def step(self, number: int, step: int, total: int) -> None:
        deadline = time.monotonic() + 120
        while not self.go.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.mark.slow
def test_a_second_autopeft_run_of_a_live_study_is_refused(study_dir: Path) -> None:
    """The first driver runs in this process (a thread); the second is a real ``autopeft run``
    subprocess, refused before it loads the model."""
    import os

    from autopeft.run.driver import run_study

    spec, go = study_dir / "study.yaml", study_dir / "go"
    outcome: list = []
    first = threading.Thread(
        target=lambda: outcome.append(run_study(spec, trials=1, reporter=_WaitFor(go)))
    )
    first.start()
    try:
        deadline = time.monotonic() + 60
        while not _trials(study_dir / "studies.db") and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        args = [sys.executable, "-m", "autopeft.cli", "run", str(spec), "-q"]
        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    finally:
        go.touch()
        first.join(timeout=120)
    assert second.returncode == 2, second.stderr
    err = second.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"error: study 'tiny' is being run by {OWNER} since "), err
    assert "for the lease to go stale" in err, err
    assert [r.state for r in outcome[0].records] == ["COMPLETE"]  # the first went on


def _trials(db: Path) -> int:
    """How many trials the SQLite study database holds (0 while it is being created)."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return int(con.execute("select count(*) from trials").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_a_stop_request_reaches_the_live_holder_only(storage_url: str) -> None:
    from autopeft.storage.lease import live_lease, request_stop

    store = Store(storage_url)
    assert request_stop(store, "s", 60) is None and live_lease(store, "s", 60) is None
    first = _lease(store, "host-a:1")
    first.acquire()
    assert live_lease(store, "s", 60).owner == "host-a:1"  # type: ignore[union-attr]
    assert not first.stop_requested(every=0)
    asked = request_stop(store, "s", 60)
    assert asked is not None and asked.owner == "host-a:1"
    assert first.stop_requested(every=0)
    _age(store, 100)  # gone stale: no live holder, no request; a new holder starts clean
    assert live_lease(store, "s", 60) is None and request_stop(store, "s", 60) is None
    second = _lease(store, "host-b:2")
    second.acquire()
    assert not second.stop_requested(every=0)
    assert second.holder().stop_requested_at is None  # type: ignore[union-attr]


def test_a_schema_5_database_gains_the_stop_column(tmp_path: Path) -> None:
    import sqlite3

    from autopeft.storage.tables import SCHEMA_VERSION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store(url)
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("ALTER TABLE autopeft_leases DROP COLUMN stop_requested_at")
        db.execute("UPDATE autopeft_schema SET version = 5")
    store = Store(url)
    Store(url)
    _lease(store, "host-a:1").acquire()
    with sqlite3.connect(tmp_path / "old.db") as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(autopeft_leases)")]
        assert columns.count("stop_requested_at") == 1
        assert db.execute("SELECT version FROM autopeft_schema").fetchall() == [(SCHEMA_VERSION,)]


class _AskStop(Reporter):
    """Asks the study's driver to stop through the database when trial 0 reaches a step."""

    def __init__(self, url: str) -> None:
        self.url = url

    def step(self, number: int, step: int, total: int) -> None:
        from autopeft.storage.lease import request_stop

        if number == 0 and step == 1:
            assert request_stop(Store(self.url), "tiny", 60) is not None


@pytest.mark.slow
def test_a_stop_request_ends_the_run_after_its_running_trial(study_dir: Path) -> None:
    from autopeft.run.driver import run_study

    url = f"sqlite:///{study_dir / 'studies.db'}"
    outcome = run_study(study_dir / "study.yaml", trials=3, reporter=_AskStop(url))
    assert [r.state for r in outcome.records] == ["COMPLETE"]  # finished, nothing new started
    assert StudyLease(Store(url), "tiny", stale_after=60, heartbeat_every=1).holder() is None


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_the_liveness_rule_of_an_owner() -> None:
    """One rule for leases and trials: another host is unknown (the heartbeat decides), another
    pid of this host is gone when no such process exists, and our own pid is alive exactly when
    this process holds the work (it may be a predecessor's row that reused the pid)."""
    import os

    from autopeft.storage.liveness import OWNER, is_this_process, owner_gone

    host = socket.gethostname()
    assert f"{host}:{os.getpid()}" == OWNER and is_this_process(OWNER)
    assert not owner_gone(OWNER, held_here=True)  # a driver reading its own row
    assert owner_gone(OWNER, held_here=False)  # a run of this pid that has ended
    dead = _dead_pid()
    for held in (False, True):  # held_here says nothing about another process
        assert owner_gone(f"{host}:{dead}", held_here=held)
        assert not owner_gone(f"{host}:{os.getppid()}", held_here=held)  # alive
        assert not owner_gone(f"elsewhere-{host}:{dead}", held_here=held)  # another host
        assert not owner_gone(f"elsewhere-{host}:{os.getpid()}", held_here=held)
        assert not owner_gone("", held_here=held) and not owner_gone(f"{host}:x", held_here=held)
    assert not is_this_process(f"elsewhere-{host}:{os.getpid()}")


def test_a_lease_of_this_pid_lives_while_this_process_holds_it(storage_url: str) -> None:
    """A driver reading its own lease sees it live; a lease left with this pid by a run that
    has ended (or by a process before this one with the same pid) is taken over at once."""
    from autopeft.storage.lease import live_lease, refuse_if_running

    store = Store(storage_url)
    mine = _lease(store, OWNER)
    mine.acquire()
    assert live_lease(store, "s", 60).token == mine.token  # type: ignore[union-attr]
    with pytest.raises(StudyError, match=f"being run by {OWNER} since"):
        refuse_if_running(storage_url, "s", 60)
    with pytest.raises(StudyError, match=f"being run by {OWNER} since"):
        _lease(store, "host-b:2").acquire()
    from autopeft.storage.liveness import hold_lease

    mine.held = False  # as if it were written by a run of this pid that has ended
    hold_lease(mine.token, held=False)
    assert live_lease(store, "s", 60) is None
    refuse_if_running(storage_url, "s", 60)
    notes: list[str] = []
    _lease(store, "host-b:2", notes).acquire()
    assert notes == [
        f"note: study 's' was run by {OWNER}, whose run in this process has ended: taking over "
        "its lease"
    ]


def test_stale_recovery_applies_the_same_rule_to_running_trials(tmp_path: Path) -> None:
    """RUNNING trials of a gone driver are failed as interrupted at once; those of a driver
    that may be alive wait for their heartbeat to go stale."""
    from types import SimpleNamespace

    import optuna

    from autopeft.storage.tables import TrialRow
    from tests.test_db_faults import _study

    store = _study(f"sqlite:///{tmp_path / 'db.sqlite'}")
    compiled = SimpleNamespace(method="lora", trainable_params=10)
    dists = {"x": optuna.distributions.FloatDistribution(0, 1)}
    host, dead = socket.gethostname(), _dead_pid()
    owners = [OWNER, OWNER, f"{host}:{dead}", f"elsewhere-{host}:{dead}", f"elsewhere-{host}:1"]
    for number, owner in enumerate(owners):
        assert store.start_trial("s", {"x": 0.5}, dists, compiled) == number  # type: ignore[arg-type]
        with store.session() as s:
            s.get(TrialRow, ("s", number)).owner = owner  # type: ignore[union-attr]
    with store.session() as s:  # the last one's driver sent no heartbeat for a while
        s.get(TrialRow, ("s", 4)).heartbeat_at = time.time() - 100  # type: ignore[union-attr]
    assert store.recover_stale("s", 60, running_here={1}) == [0, 2, 4]
    interrupted = {r.number for r in store.records("s") if r.interrupted}
    assert interrupted == {0, 2, 4}
    assert store.recover_stale("s", 60) == [1]  # this process runs it no more
