"""The SQL store: Optuna's RDB storage for studies and trials, our tables beside it.

The database is the source of truth. One process (the driver) writes; that is safe on SQLite
and on PostgreSQL. Thread-safety: a :class:`Store` may be used from one thread at a time.
Stored rows are never rewritten except to move a trial RUNNING -> COMPLETE/FAIL.

Database faults: connections are pinged before use, SQLite waits for locks, and every public
method is retried as a whole on a transient fault (:mod:`autopeft.storage.retry`), so each one
is idempotent: a write whose commit succeeded but whose answer was lost, run again, changes
nothing more (:meth:`Store.start_trial` finds the trial it made by a key of its own).
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Container, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.core.objectives import Objective
from autopeft.core.states import TrialState
from autopeft.exceptions import StorageError, StudyError
from autopeft.storage.liveness import (
    HEARTBEAT_SECONDS as HEARTBEAT_SECONDS,  # the lease policy, also named by the store
)
from autopeft.storage.liveness import OWNER, STALE_AFTER_SECONDS, lease_gone, owner_gone
from autopeft.storage.records import TrialRecord
from autopeft.storage.retry import call_with_retry, engine_kwargs, retried
from autopeft.storage.tables import (
    SCHEMA_VERSION,
    Base,
    LeaseRow,
    SchemaRow,
    StudyRow,
    TrialRow,
)

if TYPE_CHECKING:
    import optuna
    from sqlalchemy.orm import Session

    from autopeft.core.compiled import CompiledConfig

START_KEY = "autopeft_start"
"""Optuna user attribute: the key :meth:`Store.start_trial` finds its own trial by on a retry."""


DRIVER_ERROR = "autopeft_driver_error"
"""The Optuna study attribute holding the last driver error (:meth:`Store.set_driver_error`)."""

MAJORITY_SHARE = "autopeft_majority_share"
"""The Optuna study attribute holding the metric of always giving the most common answer
(:meth:`Store.set_majority_share`)."""


class Store:
    """Open ``url`` (any SQLAlchemy URL; ``sqlite:///file.db`` by default).

    Args:
        url: The database URL.
        create: Whether a missing SQLite file may be created (False for read-only commands,
            so a typo in a path says so instead of creating an empty database).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        import optuna
        from sqlalchemy import create_engine

        self.url = url
        _check_sqlite_path(url, create)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            for attempt in range(5):
                try:
                    self.optuna = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
                    self.engine = create_engine(url, **engine_kwargs(url))
                    Base.metadata.create_all(self.engine)
                    with self.session() as s:
                        self._migrate(s)
                    break
                except Exception as exc:
                    # another process created the same new schema at the same moment: the
                    # next pass finds it made
                    if attempt == 4 or not _schema_race(exc):
                        raise
                    time.sleep(0.1 * (attempt + 1))
        except StorageError:
            raise
        except ImportError as exc:
            hint = (
                " (for PostgreSQL: pip install 'autopeft[postgres]')" if "postgres" in url else ""
            )
            raise StorageError(
                f"cannot open storage {url!r}: missing database driver{hint}: {_reason(exc)}"
            ) from None
        except Exception as exc:
            raise StorageError(f"cannot open storage {url!r}: {_reason(exc)}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction on our tables: committed on success, rolled back on error (then a
        :class:`StorageError` raised from the database's error, which the retried public
        methods look through to tell a lost connection or a lock from a mistake)."""
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.orm import Session

        try:
            with Session(self.engine) as s, s.begin():
                yield s
        except SQLAlchemyError as exc:
            raise StorageError(f"database error on {self.url!r}: {_reason(exc)}") from exc

    def _migrate(self, s: Session) -> None:
        row = s.query(SchemaRow).one_or_none()
        if row is None:
            s.add(SchemaRow(version=SCHEMA_VERSION))
            _marker_indexes(s)
        elif row.version > SCHEMA_VERSION:
            raise newer_schema_error(self.url, row.version)
        elif row.version < SCHEMA_VERSION:
            from sqlalchemy import inspect, text

            self._refuse_while_driven(s, row.version)

            # 1 -> 2, 3 -> 4, 4 -> 5 and 5 -> 6 only added tables, which create_all has just made;
            # 2 -> 3, 6 -> 7 and 7 -> 8 add columns (works on SQLite and PostgreSQL alike);
            # 8 -> 9 adds indexes (below)
            for table, column, kind in (
                ("autopeft_trials", "hypervolume", "FLOAT"),
                ("autopeft_leases", "stop_requested_at", "FLOAT"),
                ("autopeft_trials", "rung", "INTEGER"),
                ("autopeft_trials", "promoted_from", "INTEGER"),
            ):
                columns = {c["name"] for c in inspect(s.connection()).get_columns(table)}
                if column not in columns:
                    s.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
            _marker_indexes(s)
            row.version = SCHEMA_VERSION

    def _refuse_while_driven(self, s: Session, found: int) -> None:
        """Refuse to migrate from schema ``found`` while a live driver holds a study's lease:
        it opened the database at schema ``found`` (one that knew the newer schema would have
        migrated it), so it is an older autopeft that would go on writing the old schema."""
        from sqlalchemy import inspect, select

        if found < 4 or not inspect(s.connection()).has_table(LeaseRow.__tablename__):
            return  # no leases before schema 4
        columns = (LeaseRow.study_name, LeaseRow.owner, LeaseRow.token, LeaseRow.heartbeat_at)
        for study, owner, token, beat in s.execute(select(*columns)):
            quiet = time.time() - beat
            if lease_gone(owner, token, beat, STALE_AFTER_SECONDS) is None:  # a live driver
                raise StorageError(
                    f"cannot migrate {self.url!r} from schema {found} to {SCHEMA_VERSION} while "
                    f"study {study!r} is run by {owner} (heartbeat {max(0.0, quiet):.0f} s ago), "
                    f"an autopeft that knows schema {found}: let it finish or stop it, then "
                    "run this command again"
                )

    # -- studies -----------------------------------------------------------------------------
    @retried("list the studies")
    def study_names(self) -> list[str]:
        """Names of autopeft studies in this database, oldest first."""
        with self.session() as s:
            return [r.name for r in s.query(StudyRow).order_by(StudyRow.created_at)]

    @retried("read a study")
    def study_row(self, name: str) -> StudyRow:
        """Our row of study ``name``; :class:`StudyError` listing the known names otherwise."""
        with self.session() as s:
            row = s.get(StudyRow, name)
            if row is None:
                known = ", ".join(self.study_names()) or "none"
                raise StudyError(f"no study named {name!r} in {self.url!r}; studies: {known}")
            s.expunge(row)
            return row

    def create_study(self, name: str, objectives: list[Objective], row: dict[str, str]) -> None:
        """Create the Optuna study and our row together; neither exists if either fails."""
        import optuna

        directions = [o.direction for o in objectives]
        study = optuna.create_study(study_name=name, storage=self.optuna, directions=directions)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.name for o in objectives])
        try:
            with self.session() as s:
                s.add(StudyRow(name=name, created_at=datetime.now(UTC), **row))
        except Exception:
            optuna.delete_study(study_name=name, storage=self.optuna)
            raise

    @retried("record a driver's error")
    def set_driver_error(self, name: str, message: str | None) -> None:
        """Record why the study's last driver stopped with an error (None: clear it, as a
        driver does when it starts). Kept as an attribute of the Optuna study, so any reader
        of the database, wherever the driver ran, sees it."""
        study_id = self.optuna.get_study_id_from_name(name)
        self.optuna.set_study_user_attr(study_id, DRIVER_ERROR, message)

    @retried("read a study")
    def driver_error(self, name: str) -> str | None:
        """Why the study's last driver failed; None if it did not (or it runs now)."""
        study_id = self.optuna.get_study_id_from_name(name)
        value = self.optuna.get_study_user_attrs(study_id).get(DRIVER_ERROR)
        return str(value) if value else None

    @retried("record the majority answer's share")
    def set_majority_share(self, name: str, share: float) -> None:
        """Record the study's metric when always giving the most common validation answer
        (measured from the data when the study is prepared)."""
        study_id = self.optuna.get_study_id_from_name(name)
        self.optuna.set_study_user_attr(study_id, MAJORITY_SHARE, float(share))

    @retried("read a study")
    def majority_share(self, name: str) -> float | None:
        """The study's majority-answer share; None if it was never recorded."""
        study_id = self.optuna.get_study_id_from_name(name)
        value = self.optuna.get_study_user_attrs(study_id).get(MAJORITY_SHARE)
        return None if value is None else float(value)

    @retried("read a study")
    def optuna_study(self, name: str) -> optuna.Study:
        """The Optuna study object of ``name``."""
        import optuna

        return optuna.load_study(study_name=name, storage=self.optuna)

    @retried("read a study")
    def objectives(self, name: str) -> list[Objective]:
        """The objectives of study ``name``, in Optuna's value order."""
        return [Objective(**o) for o in json.loads(self.study_row(name).objectives_json)]

    # -- trials ------------------------------------------------------------------------------
    def start_trial(
        self,
        name: str,
        point: dict[str, Any],
        distributions: dict[str, Any],
        compiled: CompiledConfig,
        *,
        rung: int | None = None,
        promoted_from: int | None = None,
        steps: int | None = None,
        reference: str | None = None,
        in_space: bool = False,
    ) -> int:
        """Record a RUNNING trial with its point and compiled config; returns its number.

        A ``reference`` (:mod:`autopeft.search.references`) is stored with its name, as an
        Optuna user attribute and beside the compiled config; ``in_space``: its point is one of
        the search space's (the sampler sees it), else the point is empty.

        In a multi-fidelity study a trial also has its ``rung``, its training ``steps`` and the
        trial it was ``promoted_from`` (None for a new configuration), stored in our row and as
        Optuna user attributes (written with the trial itself, so they survive a driver that
        dies between the two writes).

        Retried as a whole, it creates one trial: the Optuna trial carries a fresh key
        (user attribute ``autopeft_start``), and a retry first looks for a trial with that key.
        """
        import optuna

        key, tries = uuid.uuid4().hex, [0]
        attrs: dict[str, Any] = {
            "method": compiled.method,
            "trainable_params": compiled.trainable_params,
            START_KEY: key,
        }
        if rung is not None:
            attrs.update(rung=rung, steps=steps, promoted_from=promoted_from)
        stored = dict(compiled.__dict__)
        if reference is not None:
            attrs["reference"] = reference
            stored.update(reference=reference, reference_in_space=in_space)
        template = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            params=point,
            distributions=distributions,
            user_attrs=attrs,
        )

        def start() -> int:
            tries[0] += 1
            study_id = self.optuna.get_study_id_from_name(name)
            trial_id = self._trial_with_key(study_id, key) if tries[0] > 1 else None
            if trial_id is None:
                trial_id = self.optuna.create_new_trial(study_id, template_trial=template)
            number = self.optuna.get_trial_number_from_id(trial_id)
            with self.session() as s:
                if s.get(TrialRow, (name, number)) is None:
                    s.add(
                        TrialRow(
                            study_name=name,
                            number=number,
                            trial_id=trial_id,
                            point_json=json.dumps(point),
                            compiled_json=json.dumps(stored),
                            owner=OWNER,
                            heartbeat_at=time.time(),
                            rung=rung,
                            promoted_from=promoted_from,
                        )
                    )
            return number

        return call_with_retry(start, "record a new trial", self.url)

    def _trial_with_key(self, study_id: int, key: str) -> int | None:
        """The id of the trial of study ``study_id`` that :meth:`start_trial` made with ``key``."""
        from sqlalchemy import text

        query = text(
            "SELECT t.trial_id FROM trials t JOIN trial_user_attributes a "
            "ON a.trial_id = t.trial_id WHERE t.study_id = :study AND a.key = :attr "
            "AND a.value_json = :value"
        )
        with self.session() as s:
            params = {"study": study_id, "attr": START_KEY, "value": json.dumps(key)}
            found = s.execute(query, params).scalar()
        return None if found is None else int(found)

    @retried("record a heartbeat")
    def heartbeat(self, name: str, number: int) -> None:
        """Mark a running trial alive now."""
        with self.session() as s:
            row = s.get(TrialRow, (name, number))
            if row is not None:
                row.heartbeat_at = time.time()

    @retried("record a trial's result")
    def complete_trial(
        self,
        name: str,
        number: int,
        values: list[float],
        metrics: dict[str, Any],
        *,
        partial: bool = False,
    ) -> None:
        """Move a trial to COMPLETE with its objective values and measurements.

        ``partial``: a multi-fidelity trial below the top rung. It becomes Optuna's PRUNED
        (stopped at a lower fidelity) without values, so fronts, hypervolumes, exports and
        Optuna's own tools only ever see top-rung results; its values stay in our row's
        measurements, where :meth:`records` reads them for the rung logic and the sampler.
        """
        import optuna

        trial_id = self._finish(name, number, metrics, None, False)
        keys = (
            "peak_memory_mb",
            "predicted_peak_memory_mb",
            "accuracy",
            "head_params",
            "train_seconds",
        )
        attrs = {key: metrics[key] for key in keys if key in metrics}
        if partial:
            self._set_state(trial_id, optuna.trial.TrialState.PRUNED, attrs)
        else:
            self._set_state(trial_id, optuna.trial.TrialState.COMPLETE, attrs, values)

    @retried("record a failed trial")
    def fail_trial(
        self,
        name: str,
        number: int,
        reason: str,
        *,
        infeasible: bool = False,
        interrupted: bool = False,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        """Move a trial to FAIL with the reason; ``interrupted`` trials are re-run later and do
        not count against the budget; ``infeasible`` ones are fed back to the sampler."""
        import optuna

        trial_id = self._finish(name, number, metrics or {}, reason, infeasible, interrupted)
        self._set_state(trial_id, optuna.trial.TrialState.FAIL, {"fail_reason": reason})

    def _set_state(
        self,
        trial_id: int,
        state: optuna.trial.TrialState,
        attrs: dict[str, Any],
        values: list[float] | None = None,
    ) -> None:
        """Set user attributes of an Optuna trial, then finish it; a retry that finds it
        finished in ``state`` already (its first commit went through) does nothing."""
        import optuna

        try:
            for key, value in attrs.items():
                self.optuna.set_trial_user_attr(trial_id, key, value)
            self.optuna.set_trial_state_values(trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            if self.optuna.get_trial(trial_id).state != state:
                raise

    def _finish(
        self,
        name: str,
        number: int,
        metrics: dict[str, Any],
        reason: str | None,
        infeasible: bool,
        interrupted: bool = False,
    ) -> int:
        """Record the outcome in our row; returns the Optuna trial id."""
        with self.session() as s:
            row = s.get(TrialRow, (name, number))
            if row is None and interrupted:
                row = self._orphan_row(name, number)
                s.add(row)
            if row is None:
                raise StorageError(f"trial {number} of study {name!r} is not in {self.url!r}")
            row.metrics_json = json.dumps(metrics)
            row.fail_reason, row.infeasible, row.interrupted = reason, infeasible, interrupted
            return row.trial_id

    def _orphan_row(self, name: str, number: int) -> TrialRow:
        """Our row for an Optuna trial whose driver died between the two writes of
        :meth:`start_trial`: its point comes from Optuna's params, so it can be re-run."""
        study_id = self.optuna.get_study_id_from_name(name)
        trial_id = self.optuna.get_trial_id_from_study_id_trial_number(study_id, number)
        trial = self.optuna.get_trial(trial_id)
        return TrialRow(
            study_name=name,
            number=number,
            trial_id=trial_id,
            point_json=json.dumps(trial.params),
            compiled_json="{}",
            rung=trial.user_attrs.get("rung"),
            promoted_from=trial.user_attrs.get("promoted_from"),
        )

    @retried("recover the trials of a stopped driver")
    def recover_stale(
        self, name: str, grace_seconds: float, running_here: Container[int] = ()
    ) -> list[int]:
        """Fail RUNNING trials whose driver is gone (:func:`~autopeft.storage.liveness.
        owner_gone`, or no heartbeat for ``grace_seconds``) as *interrupted*; returns their
        numbers. ``running_here``: the trials this process runs now (none when a driver, holding
        the study's lease, recovers before it starts any)."""
        stale = []
        for record in self.records(name):
            if record.state != TrialState.RUNNING:
                continue
            with self.session() as s:
                row = s.get(TrialRow, (name, record.number))
                owner, beat = (row.owner, row.heartbeat_at) if row else ("", 0.0)
            gone = owner_gone(owner, held_here=record.number in running_here)
            if gone or time.time() - beat > grace_seconds:
                self.fail_trial(
                    name,
                    record.number,
                    f"interrupted: its driver {owner} stopped",
                    interrupted=True,
                )
                stale.append(record.number)
        return stale

    @retried("read the re-run queue")
    def next_retry(self, name: str) -> tuple[int, dict[str, Any]] | None:
        """The oldest interrupted trial not yet re-run, as (number, point); None if none."""
        with self.session() as s:
            row = (
                s.query(TrialRow)
                .filter_by(study_name=name, interrupted=True, retried_by=None)
                .order_by(TrialRow.number)
                .first()
            )
            return None if row is None else (row.number, dict(json.loads(row.point_json)))

    @retried("read the re-run queue")
    def retry_queue(self, name: str) -> list[int]:
        """Numbers of the interrupted trials not yet re-run, oldest first (what
        :meth:`next_retry` hands out, in order)."""
        with self.session() as s:
            rows = (
                s.query(TrialRow.number)
                .filter_by(study_name=name, interrupted=True, retried_by=None)
                .order_by(TrialRow.number)
            )
            return [number for (number,) in rows]

    @retried("record a re-run")
    def mark_retried(self, name: str, number: int, by: int) -> None:
        """Record that interrupted trial ``number`` is re-run as trial ``by``."""
        with self.session() as s:
            row = s.get(TrialRow, (name, number))
            if row is not None:
                row.retried_by = by

    @retried("record the hypervolume")
    def set_hypervolumes(self, name: str, values: dict[int, float]) -> None:
        """Store the study's hypervolume after each of these (complete) trials."""
        with self.session() as s:
            for number, value in values.items():
                row = s.get(TrialRow, (name, number))
                if row is not None:
                    row.hypervolume = value

    @retried("read a trial's re-runs")
    def retries_before(self, name: str, number: int) -> int:
        """How many earlier trials trial ``number`` re-runs (the ``retried_by`` chain into it)."""
        count = 0
        with self.session() as s:
            while True:
                row = s.query(TrialRow).filter_by(study_name=name, retried_by=number).one_or_none()
                if row is None:
                    return count
                count, number = count + 1, row.number

    @retried("read a study's trials")
    def records(self, name: str) -> list[TrialRecord]:
        """Every trial of study ``name`` joined with our details, by trial number."""
        from sqlalchemy.exc import SQLAlchemyError

        from autopeft.storage.optuna_rows import read_trials

        objectives = self.objectives(name)
        try:  # Optuna's tables read directly: a 5,000-trial study in well under a second
            trials: list[Any] = read_trials(self.engine, name)
        except SQLAlchemyError:  # not the schema it expects: Optuna's own (slower) reader
            trials = self.optuna_study(name).get_trials(deepcopy=False)
        with self.session() as s:
            rows = {r.number: r for r in s.query(TrialRow).filter_by(study_name=name)}
            return [_record(t, rows.get(t.number), objectives) for t in trials]

    @retried("read a trial")
    def record(
        self, name: str, number: int, objectives: list[Objective] | None = None
    ) -> TrialRecord:
        """Trial ``number`` of study ``name``, as :meth:`records` has it; reads that trial only."""
        objectives = objectives or self.objectives(name)
        with self.session() as s:
            row = s.get(TrialRow, (name, number))
            if row is None:
                study_id = self.optuna.get_study_id_from_name(name)
                trial_id = self.optuna.get_trial_id_from_study_id_trial_number(study_id, number)
            else:
                trial_id = row.trial_id
            return _record(self.optuna.get_trial(trial_id), row, objectives)


def newer_schema_error(url: str, found: int) -> StorageError:
    """The one-line error of an autopeft that finds the database at a schema newer than its
    own (a newer autopeft migrated it)."""
    return StorageError(
        f"{url!r} has database schema {found}, newer than the schema {SCHEMA_VERSION} this "
        "autopeft knows (a newer autopeft migrated it): upgrade autopeft "
        "(pip install -U autopeft) and run the command again"
    )


def _record(trial: Any, row: TrialRow | None, objectives: list[Objective]) -> TrialRecord:
    compiled = json.loads(row.compiled_json) if row else {}
    metrics = json.loads(row.metrics_json) if row else {}
    values = {}
    if trial.values is not None:
        values = {o.name: _value(o.name, v) for o, v in zip(objectives, trial.values, strict=True)}
    elif trial.state.name == "PRUNED" and all(o.name in metrics for o in objectives):
        values = {o.name: _value(o.name, float(metrics[o.name])) for o in objectives}
    placement = {int(k): v for k, v in compiled.get("placement", {}).items()}
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        values=values,
        params=dict(trial.params),
        method=compiled.get("method", ""),
        placement=placement,
        metrics=metrics,
        peft_config=compiled.get("peft_config", {}),
        fail_reason=row.fail_reason if row else trial.user_attrs.get("fail_reason"),
        infeasible=bool(row and row.infeasible),
        interrupted=bool(row and row.interrupted),
        module_sizes=compiled.get("module_sizes", {}),
        hypervolume=row.hypervolume if row else None,
        rung=row.rung if row else trial.user_attrs.get("rung"),
        promoted_from=row.promoted_from if row else trial.user_attrs.get("promoted_from"),
        reference=compiled.get("reference", trial.user_attrs.get("reference")),
        reference_in_space=bool(compiled.get("reference_in_space")),
    )


def _value(name: str, value: float) -> float:
    # parameter counts are integers; Optuna stores every value as a float
    return int(value) if name == "trainable_params" else float(value)


def _schema_race(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) says a table, type or row of a schema being
    created was just created by someone else."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if type(current).__name__ in (
            "IntegrityError",
            "ProgrammingError",
            "OperationalError",
        ) and ("already exists" in text or "unique constraint" in text or "duplicate key" in text):
            return True
        current = current.__cause__ or current.__context__
    return False


def _check_sqlite_path(url: str, create: bool) -> None:
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return
    path = Path(url.removeprefix("sqlite:///"))
    if not create and not path.is_file():
        raise StorageError(f"cannot open storage {url!r}: no database file at {path}")
    if create and not path.parent.exists():
        raise StorageError(f"cannot open storage {url!r}: directory {path.parent} does not exist")


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _marker_indexes(s: Session) -> None:
    """Indexes that let :func:`~autopeft.storage.marker.study_marker` read index entries
    instead of every trial's row (schema 9): ours, and one on Optuna's ``trials`` table, which
    Optuna does not index by state (named ``ix_autopeft_*``, so it cannot clash with Optuna's)."""
    from sqlalchemy import Table, text

    table = TrialRow.__table__
    assert isinstance(table, Table)
    for index in table.indexes:
        index.create(s.connection(), checkfirst=True)
    s.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_autopeft_trials_states "
            "ON trials (study_id, state, trial_id)"
        )
    )
