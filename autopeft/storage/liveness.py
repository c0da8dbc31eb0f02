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

The heartbeat policy lives here too (as Optuna's ``RDBStorage(heartbeat_interval,
grace_period)`` keeps it in the storage): how often a driver beats, and after how long without a
beat its lease may be taken over and its running trials re-queued.
"""

from __future__ import annotations

import os
import socket

HEARTBEAT_SECONDS = 10.0
"""Seconds between heartbeats of running trials and of the study's lease."""
STALE_AFTER_SECONDS = 120.0
"""Seconds without a heartbeat after which a running trial is re-queued and a study's lease may
be taken over by another driver."""

OWNER = f"{socket.gethostname()}:{os.getpid()}"
"""This process, as rows written by it name their owner (``host:pid``)."""


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
