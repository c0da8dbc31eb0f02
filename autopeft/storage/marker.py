"""A study's change marker: a few aggregates that change whenever what
:meth:`~autopeft.storage.store.Store.records` or
:meth:`~autopeft.storage.store.Store.driver_error` returns for the study changes.

Read in three small queries (aggregates over index entries of one study's trials: the indexes
of schema 9 cover them, so the wide rows are not read), it lets a reader that keeps a study in
memory (the service) tell "nothing changed" from "read it again" without loading every trial.
What the writers of :class:`~autopeft.storage.store.Store` change, and what covers it:

* a new trial (Optuna's and ours): the trial counts and the largest trial id;
* a trial finishing (our row's measurements, failure reason and flags, then Optuna's values
  and user attributes, then its state, last): the counts per state (and, for good measure, the
  interrupted flags counted);
* hypervolumes stored after a trial (earlier ones rewritten while the frame is set): their
  count and sum;
* an interrupted trial re-run (``retried_by``): its count;
* the driver's error and any other study attribute: the study's attributes themselves;
* a study deleted and made again under the same name: its Optuna study id.

Heartbeats change nothing a record holds and are left out. A marker read *before* the study is
loaded is the one to keep with it: a write between the two only costs one more load.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from autopeft.storage.retry import retried
from autopeft.storage.tables import TrialRow

if TYPE_CHECKING:
    from autopeft.storage.store import Store

Marker = tuple[Any, ...]


class _Queries:
    """The marker's queries (built once: :func:`_queries`)."""

    def __init__(self) -> None:
        from optuna.storages._rdb import models
        from sqlalchemy import case, func, select

        trials = models.TrialModel.__table__
        ours = TrialRow.__table__
        attrs = models.StudyUserAttributeModel.__table__
        studies = models.StudyModel.__table__
        self.study_id = select(studies.c.study_id).where(studies.c.study_name == _param("name"))
        self.trials = (
            select(trials.c.state, func.count(), func.max(trials.c.trial_id))
            .where(trials.c.study_id == _param("study_id"))
            .group_by(trials.c.state)
            .order_by(trials.c.state)
        )
        self.ours = select(
            func.count(),
            func.count(ours.c.hypervolume),
            func.sum(ours.c.hypervolume),
            func.count(ours.c.retried_by),
            func.count(case((ours.c.interrupted, 1))),
            func.max(ours.c.trial_id),
        ).where(ours.c.study_name == _param("name"))
        self.attrs = (
            select(attrs.c.key, attrs.c.value_json)
            .where(attrs.c.study_id == _param("study_id"))
            .order_by(attrs.c.key)
        )


def _param(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name)


@cache
def _queries() -> _Queries:
    return _Queries()


@retried("read a study's change marker")
def study_marker(store: Store, name: str) -> Marker:
    """The change marker of study ``name`` (a tuple to compare with ``==``); the study id is
    None when no such study exists."""
    reader = _queries()
    with store.session() as s:
        study_id = s.execute(reader.study_id, {"name": name}).scalar()
        if study_id is None:
            return (None,)
        per_state = tuple(map(tuple, s.execute(reader.trials, {"study_id": study_id})))
        ours = tuple(s.execute(reader.ours, {"name": name}).one())
        attrs = tuple(map(tuple, s.execute(reader.attrs, {"study_id": study_id})))
    return (study_id, per_state, ours, attrs)
