"""Retrying the store's database calls through transient faults.

A PostgreSQL server that restarts (or whose backends are terminated) drops every open
connection; a SQLite file that another process holds a lock on answers ``database is locked``.
Both pass: :func:`retried` re-runs a whole store call with exponential backoff until it
succeeds or :func:`retry_seconds` have gone by, then raises one :class:`StorageError` line.

Only the outermost retried call of a thread retries (a store method calling another one does
not multiply the waits). Every retried call must be idempotent: running it twice, the first
time possibly committed without the answer reaching us, leaves what running it once does.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from autopeft.exceptions import StorageError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

RETRY_ENV = "AUTOPEFT_DB_RETRY_SECONDS"
"""Environment variable: how long to keep retrying a database call (seconds, default 60)."""
SQLITE_BUSY_ENV = "AUTOPEFT_SQLITE_BUSY_SECONDS"
"""Environment variable: SQLite's busy timeout per statement (seconds, default 30)."""

_FIRST_WAIT, _MAX_WAIT = 0.1, 5.0
_TRANSIENT_TEXT = (
    "database is locked",
    "database table is locked",
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "could not connect",
    "connection is closed",
    "connection already closed",
    "connection timed out",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "ssl connection has been closed",
    "eof detected",
    "connection to server",
    "not currently accepting connections",
)
_DRIVER_ERRORS = ("OperationalError", "InterfaceError")
_local = threading.local()


def retry_seconds() -> float:
    """The total time a call is retried for: ``$AUTOPEFT_DB_RETRY_SECONDS``, default 60."""
    return _env_seconds(RETRY_ENV, 60.0)


def sqlite_busy_seconds() -> float:
    """SQLite's busy timeout: ``$AUTOPEFT_SQLITE_BUSY_SECONDS``, default 30."""
    return _env_seconds(SQLITE_BUSY_ENV, 30.0)


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StorageError(f"${name} must be a number of seconds, but got {raw!r}") from None
    if value < 0:
        raise StorageError(f"${name} must be >= 0, but got {raw!r}")
    return value


def engine_kwargs(url: str) -> dict[str, Any]:
    """``create_engine`` arguments for our engine and Optuna's: a connection is pinged before
    use (a dropped one is replaced, not handed out), and SQLite waits for a lock."""
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": sqlite_busy_seconds()}
    return kwargs


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a lost connection, a server
    that is not there (yet), or a locked SQLite database. Other database errors (a missing
    table, a bad value) are not: no retry fixes them."""
    from sqlalchemy.exc import DBAPIError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, DBAPIError) or type(current).__name__ in _DRIVER_ERRORS:
            text = str(current).lower()
            if any(t in text for t in _TRANSIENT_TEXT):
                return True
        current = current.__cause__ or current.__context__
    return False


def retried(what: str) -> Callable[[F], F]:
    """Decorate a store method: :func:`call_with_retry` of the whole call.

    Args:
        what: What the call does, for the error once the retries are spent ("record a result").
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            url = getattr(self, "url", "")
            return call_with_retry(lambda: fn(self, *args, **kwargs), what, url)

        return wrapper  # type: ignore[return-value]

    return decorate


def call_with_retry(fn: Callable[[], T], what: str, url: str) -> T:
    """``fn()``, re-run after transient faults with exponential backoff (0.1 s doubling up to
    5 s, jittered) for at most :func:`retry_seconds`; then one :class:`StorageError` line.

    Inside another call of this thread it just runs ``fn()``: the outer call retries.
    """
    if getattr(_local, "depth", 0):
        return fn()
    deadline = time.monotonic() + retry_seconds()
    wait, attempts = _FIRST_WAIT, 0
    while True:
        _local.depth = 1
        try:
            return fn()
        except Exception as exc:
            attempts += 1
            if not is_transient(exc):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageError(
                    f"cannot {what}: the database at {_safe(url)} stayed unreachable for "
                    f"{retry_seconds():.0f} s ({attempts} tries; last: {_last_line(exc)}); run the "
                    "same command again once it is back: interrupted trials are re-run"
                ) from None
        finally:
            _local.depth = 0
        time.sleep(min(left, wait * random.uniform(0.5, 1.0)))
        wait = min(wait * 2, _MAX_WAIT)


def _safe(url: str) -> str:
    """``url`` without its password."""
    try:
        from sqlalchemy.engine import make_url

        return repr(make_url(url).render_as_string(hide_password=True))
    except Exception:
        return repr(url)


def _last_line(exc: BaseException) -> str:
    inner: BaseException = exc
    while inner.__cause__ is not None:
        inner = inner.__cause__
    inner = getattr(inner, "orig", None) or inner
    lines = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {lines[0] if lines else ''}"
