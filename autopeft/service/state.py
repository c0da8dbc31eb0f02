"""What the request handlers of the service share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from autopeft.results.view_cache import ViewCache
from autopeft.service.launcher import Launcher
from autopeft.storage.store import Store

MAX_SPEC_BYTES = 64 * 1024
"""Default limit of a submitted spec or search space (each)."""
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
"""Default limit of an uploaded dataset."""


@dataclass
class ServiceState:
    """What the request handlers share; :attr:`lock` serialises use of :attr:`store`;
    :attr:`views` keeps the studies read, reloaded when their change marker moves."""

    store: Store
    launcher: Launcher
    public_read: bool
    max_spec_bytes: int = MAX_SPEC_BYTES
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    lock: threading.RLock = field(default_factory=threading.RLock)
    submit_lock: threading.Lock = field(default_factory=threading.Lock)
    views: ViewCache = field(default_factory=ViewCache)
