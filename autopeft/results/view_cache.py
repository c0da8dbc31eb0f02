"""Studies kept in memory between reads, reloaded only when their change marker moves.

A server answers many reads of the same studies; loading a study reads every trial
(:func:`~autopeft.results.views.view_of`: seconds for thousands of trials). A
:class:`ViewCache` keeps the last view of each study with the
:func:`~autopeft.storage.marker.study_marker` read just before it was loaded, and serves it as
long as the marker is unchanged, so the database stays the source of truth: any write to the
study, by any driver anywhere, makes the next read load it again. Like Optuna's
``_CachedStorage`` it adds no rules of its own: a cached view equals a fresh one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

from autopeft.results.views import StudyView, view_of
from autopeft.storage.marker import Marker, study_marker
from autopeft.storage.store import Store

T = TypeVar("T")

DEFAULT_STUDIES = 32
"""Studies kept by default (the least recently read one goes first)."""


class ViewCache:
    """The views of up to ``studies`` studies of one database, each with its marker.

    Thread-safe; loads of different studies are not serialised by the cache itself (a caller
    sharing one :class:`Store` between threads must serialise its use, as the service does).
    """

    def __init__(self, studies: int = DEFAULT_STUDIES) -> None:
        if studies < 1:
            raise ValueError(f"studies must be >= 1, got {studies}")
        self.studies = studies
        self.loads = 0  # views loaded from the database (a miss), for tests and benchmarks
        self._views: OrderedDict[str, tuple[Marker, StudyView, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple[int, str], threading.Lock] = {}

    def view(self, store: Store, name: str) -> StudyView:
        """Study ``name`` as :func:`view_of` reads it now; from memory when nothing changed."""
        marker = study_marker(store, name)
        with self._lock:
            kept = self._views.get(name)
            if kept is not None and kept[0] == marker:
                self._views.move_to_end(name)
                return kept[1]
        view = view_of(store, name)  # a missing study raises here, and nothing is kept
        with self._lock:
            self.loads += 1
            self._views[name] = (marker, view, {})
            self._views.move_to_end(name)
            while len(self._views) > self.studies:
                self._views.popitem(last=False)
        return view

    def version(self, view: StudyView) -> str | None:
        """A short text naming the state of the study ``view`` was loaded at (a digest of its
        change marker: the same on every server reading the same database, and different
        whenever the study changed); None for a view this cache no longer holds."""
        with self._lock:
            kept = self._views.get(view.name)
        if kept is None or kept[1] is not view:
            return None
        return hashlib.sha256(repr(kept[0]).encode()).hexdigest()[:16]

    def derived(self, view: StudyView, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` (something made from ``view`` alone: a response body, a digest) once
        per cached view under ``key``, kept until the view is replaced; computed afresh and
        not kept for a view this cache no longer holds. Callers asking for the same key of
        the same view meanwhile wait for the one computation instead of repeating it. Callers
        must not change what it returns."""
        kept = self._held(view)
        if kept is None:
            return compute()
        if key in kept[2]:
            return cast(T, kept[2][key])
        with self._lock:
            computing = self._computing.setdefault((id(kept[2]), key), threading.Lock())
        with computing:
            if key in kept[2]:  # made by the caller this one waited for
                return cast(T, kept[2][key])
            try:
                value = compute()
                with self._lock:
                    kept[2][key] = value
            finally:
                with self._lock:
                    self._computing.pop((id(kept[2]), key), None)
        return value

    def _held(self, view: StudyView) -> tuple[Marker, StudyView, dict[str, Any]] | None:
        with self._lock:
            kept = self._views.get(view.name)
            return kept if kept is not None and kept[1] is view else None
