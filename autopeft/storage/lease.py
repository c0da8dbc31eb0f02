"""One driver per study: a lease row in the database, taken atomically, kept by a heartbeat.

A driver takes the lease of its study before it proposes anything and gives it back when it
stops. While the holder's heartbeat is fresh every other driver is refused; a lease whose
holder sent no heartbeat for ``stale_after`` seconds (or whose process on this host is gone)
is taken over. Every decision is one conditional statement whose row count says who won, so
two drivers racing for the same study never both win, on SQLite or PostgreSQL:

- no row yet: ``INSERT`` — the primary key lets exactly one insert through;
- a stale row: ``UPDATE ... WHERE study_name = :s AND token = :seen AND heartbeat_at = :seen_at``
  (compare-and-swap on what was read; a holder that beat meanwhile, or a faster rival, makes
  it match nothing);
- heartbeat and release: ``UPDATE``/``DELETE ... WHERE token = :mine``; a heartbeat that
  matches nothing means the lease was taken over, and the driver stops.

Stopping a driver from anywhere (:func:`request_stop`): ``UPDATE ... SET stop_requested_at``
on the live lease row. The holder polls it between trials (:meth:`StudyLease.stop_requested`),
starts nothing new, lets its running trials finish and releases the lease. A new acquisition
clears the request, so it never outlives the driver it was meant for.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from autopeft.exceptions import StudyError
from autopeft.storage.liveness import OWNER, hold_lease, lease_gone
from autopeft.storage.retry import call_with_retry
from autopeft.storage.tables import SCHEMA_VERSION, LeaseRow, SchemaRow

if TYPE_CHECKING:
    from autopeft.storage.store import Store

_T = TypeVar("_T")


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a study's lease, and since when (Unix seconds)."""

    owner: str
    token: str
    acquired_at: float
    heartbeat_at: float
    stop_requested_at: float | None = None


class StudyLease:
    """The lease of study ``study`` in ``store``, for one driver.

    Use it as a context manager (acquire, heartbeat in a background thread, release), or call
    :meth:`acquire`, :meth:`beat` and :meth:`release` yourself. Thread-safety: the heartbeat
    thread and the owning thread share only the ``lost`` flag; each statement runs in its own
    transaction.

    Args:
        store: The study's store.
        study: The study name.
        stale_after: Seconds without a heartbeat after which the lease may be taken over.
        heartbeat_every: Seconds between heartbeats (well below ``stale_after``).
        owner: Who holds it, as shown to others (default ``host:pid``).
        note: Called with a one-line note when a stale lease is taken over.
    """

    def __init__(
        self,
        store: Store,
        study: str,
        *,
        stale_after: float,
        heartbeat_every: float,
        owner: str | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.study = store, study
        self.stale_after, self.heartbeat_every = stale_after, heartbeat_every
        self.owner = owner or OWNER
        self.token = uuid.uuid4().hex
        self.note = note or (lambda _: None)
        self.held = False
        self.lost = False
        self.schema_found: int | None = None  # a newer schema seen by a heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_seen: tuple[float, bool] = (0.0, False)  # (monotonic time read, answer)

    def __enter__(self) -> StudyLease:
        if not self.held:
            self.acquire()
        self.start_heartbeat()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- acquire -----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lease, or raise :class:`StudyError` naming the live holder."""
        for _ in range(5):  # each pass either decides or saw a rival move first
            seen = self.holder()
            if seen is None:
                if self._run(self._insert, "take the study's lease"):
                    break
                continue
            why = takeover_reason(seen, self.stale_after)
            if why is None:
                raise StudyError(self._refusal(seen))
            if self._run(functools.partial(self._swap, seen), "take over the study's lease"):
                self.note(
                    f"note: study {self.study!r} was run by {seen.owner}, {why}: taking over "
                    "its lease"
                )
                break
        else:
            seen = self.holder()
            raise StudyError(self._refusal(seen) if seen else "could not take the study's lease")
        self.held, self.lost = True, False
        hold_lease(self.token)

    def holder(self) -> LeaseInfo | None:
        """The current lease of the study, if any."""

        def read() -> LeaseInfo | None:
            with self.store.session() as s:
                row = s.get(LeaseRow, self.study)
                if row is None:
                    return None
                return _info(row)

        return self._run(read, "read the study's lease")

    def _insert(self) -> bool:
        from sqlalchemy.exc import IntegrityError

        now = time.time()
        try:
            with self.store.session() as s:
                s.add(LeaseRow(study_name=self.study, owner=self.owner, token=self.token,
                               acquired_at=now, heartbeat_at=now))  # fmt: skip
        except Exception as exc:
            if isinstance(exc.__cause__, IntegrityError) or isinstance(exc, IntegrityError):
                return False  # a rival inserted first
            raise
        return True

    def _swap(self, seen: LeaseInfo) -> bool:
        from sqlalchemy import update

        now = time.time()
        statement = (
            update(LeaseRow)
            .where(
                LeaseRow.study_name == self.study,
                LeaseRow.token == seen.token,
                LeaseRow.heartbeat_at == seen.heartbeat_at,
            )
            .values(
                owner=self.owner,
                token=self.token,
                acquired_at=now,
                heartbeat_at=now,
                stop_requested_at=None,
            )
        )
        with self.store.session() as s:
            return s.execute(statement).rowcount == 1  # type: ignore[attr-defined]

    def _refusal(self, seen: LeaseInfo) -> str:
        return refusal(self.study, seen, self.stale_after)

    # -- keep and release ----------------------------------------------------------------------
    def beat(self) -> bool:
        """Refresh the heartbeat; False (and :attr:`lost` set) if another driver took over.

        Each beat also reads the database's schema version: one newer than this autopeft
        knows (a newer autopeft migrated it) is kept in :attr:`schema_found` for
        :meth:`check`."""
        from sqlalchemy import func, select, update

        statement = (
            update(LeaseRow)
            .where(LeaseRow.study_name == self.study, LeaseRow.token == self.token)
            .values(heartbeat_at=time.time())
        )

        def run() -> tuple[bool, int | None]:
            with self.store.session() as s:
                kept = s.execute(statement).rowcount == 1  # type: ignore[attr-defined]
                return kept, s.execute(select(func.max(SchemaRow.version))).scalar()

        kept, schema = self._run(run, "refresh the study's lease")
        if schema is not None and schema > SCHEMA_VERSION:
            self.schema_found = schema
        if not kept:
            self.lost = True
        return not self.lost

    def check(self) -> None:
        """Raise :class:`StudyError` if the lease was taken over by another driver, and
        :class:`~autopeft.exceptions.StorageError` if the database's schema is newer than
        this autopeft knows (seen by a heartbeat): the driver stops instead of writing it."""
        if self.schema_found is not None:
            from autopeft.storage.store import newer_schema_error

            raise newer_schema_error(self.store.url, self.schema_found)
        if self.lost:
            seen = self.holder()
            by = f" by {seen.owner}" if seen else ""
            raise StudyError(
                f"study {self.study!r}: this driver's lease was taken over{by} (no heartbeat "
                f"reached the database for {self.stale_after:.0f} s); stopping"
            )

    def stop_requested(self, every: float = 1.0) -> bool:
        """Whether someone asked this driver to stop (:func:`request_stop`); reads the
        database at most once per ``every`` seconds, and stays True once it was."""
        from sqlalchemy import select

        read_at, seen = self._stop_seen
        if seen or not self.held or time.monotonic() - read_at < every:
            return seen
        statement = select(LeaseRow.stop_requested_at).where(
            LeaseRow.study_name == self.study, LeaseRow.token == self.token
        )

        def read() -> bool:
            with self.store.session() as s:
                return s.execute(statement).scalar() is not None

        self._stop_seen = (time.monotonic(), self._run(read, "read the study's lease"))
        return self._stop_seen[1]

    def start_heartbeat(self) -> None:
        """Beat every ``heartbeat_every`` seconds in a daemon thread until :meth:`release`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_loop, name="lease", daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_every):
            try:
                if not self.beat():
                    return
            except Exception:  # the database is down: the owning thread will see it too
                continue

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if this driver still holds it. One try, no
        error: a lease left behind goes stale (or its process is seen gone) and is taken over."""
        from sqlalchemy import delete

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.held:
            return
        self.held = False
        hold_lease(self.token, held=False)
        statement = delete(LeaseRow).where(
            LeaseRow.study_name == self.study, LeaseRow.token == self.token
        )

        try:
            with self.store.session() as s:
                s.execute(statement)
        except Exception:  # the database is down: the lease goes stale
            pass

    def _run(self, fn: Callable[[], _T], what: str) -> _T:
        return call_with_retry(fn, what, self.store.url)


def _info(row: LeaseRow) -> LeaseInfo:
    return LeaseInfo(row.owner, row.token, row.acquired_at, row.heartbeat_at, row.stop_requested_at)


def live_lease(store: Store, study: str, stale_after: float) -> LeaseInfo | None:
    """The lease of ``study`` if a live driver holds it (anywhere), else None."""

    def read() -> LeaseInfo | None:
        with store.session() as s:
            row = s.get(LeaseRow, study)
            return None if row is None else _info(row)

    seen = call_with_retry(read, "read the study's lease", store.url)
    if seen is None or takeover_reason(seen, stale_after) is not None:
        return None
    return seen


def request_stop(store: Store, study: str, stale_after: float) -> LeaseInfo | None:
    """Ask the live driver of ``study`` to stop after its running trials; returns its lease
    (None: no live driver, nothing recorded). The driver polls the request between trials."""
    from sqlalchemy import update

    seen = live_lease(store, study, stale_after)
    if seen is None:
        return None
    statement = (
        update(LeaseRow)
        .where(LeaseRow.study_name == study, LeaseRow.token == seen.token)
        .values(stop_requested_at=time.time())
    )

    def run() -> bool:
        with store.session() as s:
            return s.execute(statement).rowcount == 1  # type: ignore[attr-defined]

    return seen if call_with_retry(run, "ask the study's driver to stop", store.url) else None


def refuse_if_running(url: str, study: str, stale_after: float) -> None:
    """Raise :class:`StudyError` if a live driver holds the lease of ``study`` at ``url``.

    Only reads, and creates nothing (no SQLite file, no tables): a quick check before the slow
    preparation of a run. The lease that the run takes afterwards is what decides.
    """
    from sqlalchemy import create_engine, inspect, select

    from autopeft.storage.retry import engine_kwargs

    if url.startswith("sqlite:///") and not os.path.isfile(url.removeprefix("sqlite:///")):
        return
    try:
        engine = create_engine(url, **engine_kwargs(url))
    except Exception:
        return  # a bad URL: the run reports it
    try:
        with engine.connect() as c:
            if not inspect(c).has_table(LeaseRow.__tablename__):
                return
            columns = (LeaseRow.owner, LeaseRow.token, LeaseRow.acquired_at, LeaseRow.heartbeat_at)
            row = c.execute(select(*columns).where(LeaseRow.study_name == study)).first()
    except Exception:
        return
    finally:
        engine.dispose()
    if row is None:
        return
    seen = LeaseInfo(row.owner, row.token, row.acquired_at, row.heartbeat_at)
    if takeover_reason(seen, stale_after) is None:
        raise StudyError(refusal(study, seen, stale_after))


def takeover_reason(seen: LeaseInfo, stale_after: float) -> str | None:
    """Why the lease ``seen`` may be taken over, or None while it is live
    (:func:`~autopeft.storage.liveness.lease_gone`)."""
    return lease_gone(seen.owner, seen.token, seen.heartbeat_at, stale_after)


def refusal(study: str, seen: LeaseInfo, stale_after: float) -> str:
    """The one-line refusal of a study whose lease ``seen`` is live."""
    since = datetime.fromtimestamp(seen.acquired_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    quiet = max(0.0, time.time() - seen.heartbeat_at)
    wait = max(1, math.ceil(stale_after - quiet))
    return (
        f"study {study!r} is being run by {seen.owner} since {since} (heartbeat "
        f"{quiet:.0f} s ago); stop it first, or wait {wait} s for the lease to go stale"
    )
