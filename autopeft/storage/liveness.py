"""Whether the driver that wrote a row is still alive: the one rule for leases and trials.

A lease row (:mod:`autopeft.storage.lease`) and a RUNNING trial row (:class:`~autopeft.storage.
store.Store`) both carry their driver's ``owner`` (``host:pid``) and a heartbeat time. What the
heartbeat cannot say at once, the owner sometimes can, and :func:`owner_gone` is the rule:

- **another host** (or an owner that names no pid): nothing can be known from here; only the
  heartbeat decides (:data:`STALE_AFTER_SECONDS` without one);
- **another pid of this host**: gone when no process has that pid;
- **our own pid**: the pid proves nothing. It is ours now whether this process wrote the row or
  a process before it did (a restarted container reuses low pids), so a row with our pid is
  alive exactly when this process still holds the work it names (``held_here``: the lease
  token is one this process holds, the trial is one it runs). That keeps a driver that reads
  its own lease from taking it over, and lets a restarted process reclaim at once what its
  predecessor of the same pid left behind.

:func:`lease_gone` applies it to a lease (with the tokens this process holds, recorded by
:func:`hold_lease`) for every reader: a driver taking a lease, the quick check before a run,
the service, and a migration that waits for the live drivers of the old schema.

The heartbeat policy lives here too (as Optuna's ``RDBStorage(heartbeat_interval,
grace_period)`` keeps it in the storage): how often a driver beats, and after how long without a
beat its lease may be taken over and its running trials re-queued.
"""

from __future__ import annotations

import os
import socket
import time

HEARTBEAT_SECONDS = 10.0
"""Seconds between heartbeats of running trials and of the study's lease."""
STALE_AFTER_SECONDS = 120.0
"""Seconds without a heartbeat after which a running trial is re-queued and a study's lease may
be taken over by another driver."""

OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""This process, as rows written by it name their owner (``host:pid``)."""

_LEASES_HELD: set[str] = set()  # tokens of the leases this process holds now


def hold_lease(token: str, held: bool = True) -> None:
    """Record that this process has taken (``held``) or given back the lease ``token``."""
    if held:
        _LEASES_HELD.add(token)
    else:
        _LEASES_HELD.discard(token)


def lease_gone(owner: str, token: str, heartbeat_at: float, stale_after: float) -> str | None:
    """Why a lease (its ``owner``, ``token`` and last heartbeat) may be taken over, or None
    while it is live: no heartbeat for ``stale_after`` seconds, or its owner gone
    (:func:`owner_gone`; a lease with this process's pid lives while this process holds its
    token), whoever asks."""
    quiet = time.time() - heartbeat_at
    if quiet >= stale_after:
        return f"which sent no heartbeat for {quiet:.0f} s"
    if owner_gone(owner, held_here=token in _LEASES_HELD):
        if is_this_process(owner):
            return "whose run in this process has ended"
        return "whose process is gone"
    return None


def owner_gone(owner: str, *, held_here: bool) -> bool:
    """Whether the driver ``owner`` (``host:pid``) can no longer be doing the work of a row.

    Args:
        owner: The row's owner.
        held_here: Whether this process holds the row's work now (consulted only when
            ``owner`` has this process's pid; see the module docstring).

    Returns:
        True when it is known to be gone; False while it may be alive (always on another host).
    """
    pid = local_pid(owner)
    if pid is None:
        return False
    if pid == os.getpid():
        return not held_here
    return pid_gone(pid)


def is_this_process(owner: str) -> bool:
    """Whether ``owner`` has this process's host and pid (this process, or a predecessor)."""
    return local_pid(owner) == os.getpid()


def local_pid(owner: str) -> int | None:
    """The pid of ``owner`` (``host:pid``) if it names a process of this host, else None."""
    host, _, pid = owner.rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (one we may not signal exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
