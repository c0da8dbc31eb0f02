"""Read a whole study's Optuna trials in four SQL queries, for :meth:`Store.records`.

``optuna.Study.get_trials`` builds every trial through the ORM with its distributions decoded
one parameter at a time: 14 s for a 5,000-trial study with 37 dimensions on SQLite, most of a
``show`` or of the service's first answer. Reading Optuna's tables (``trials``,
``trial_values``, ``trial_params``, ``trial_user_attributes``) with plain queries and decoding
each distinct distribution once gives the same trials in well under a second.

The tables are Optuna's (its RDB schema, stable across the Optuna releases the lock admits);
:func:`read_trials` raises :class:`sqlalchemy.exc.SQLAlchemyError` when they are not as
expected, and the caller then reads through Optuna's API instead.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["USER_ATTRS", "OptunaTrial", "read_distributions", "read_trials"]

USER_ATTRS = ("fail_reason", "rung", "promoted_from", "reference")
"""The trial user attributes :meth:`Store.records` reads (for trials without a row of ours)."""


@dataclass(frozen=True)
class _State:
    name: str


@dataclass
class OptunaTrial:
    """What :meth:`Store.records` reads of a ``FrozenTrial``, with the same attribute names."""

    number: int
    state: _State
    values: list[float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)


_INFINITE = {"INF_POS": math.inf, "INF_NEG": -math.inf}


def read_trials(engine: Engine, study: str) -> list[OptunaTrial]:
    """Every trial of Optuna study ``study``, by number, as ``study.get_trials`` has them
    (values in objective order, parameters in their external representation)."""
    from optuna.distributions import json_to_distribution
    from sqlalchemy import bindparam, text

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT study_id FROM studies WHERE study_name = :name"), {"name": study}
        ).first()
        if row is None:
            return []
        sid = {"sid": row[0]}
        trials: dict[int, OptunaTrial] = {}
        for trial_id, number, state in conn.execute(
            text("SELECT trial_id, number, state FROM trials WHERE study_id = :sid"), sid
        ):
            trials[trial_id] = OptunaTrial(number, _State(str(state)))
        values: dict[int, dict[int, float]] = defaultdict(dict)
        for trial_id, objective, value, kind in conn.execute(
            text(
                "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
                "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = :sid"
            ),
            sid,
        ):
            values[trial_id][objective] = _INFINITE.get(str(kind), value)
        decoded: dict[str, Any] = {}
        for trial_id, name, value, dist in conn.execute(
            text(
                "SELECT p.trial_id, p.param_name, p.param_value, p.distribution_json "
                "FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id "
                "WHERE t.study_id = :sid ORDER BY p.param_id"
            ),
            sid,
        ):
            if dist not in decoded:
                decoded[dist] = json_to_distribution(dist)
            trials[trial_id].params[name] = decoded[dist].to_external_repr(value)
        attrs = text(
            "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a "
            "JOIN trials t ON t.trial_id = a.trial_id "
            "WHERE t.study_id = :sid AND a.key IN :keys"
        ).bindparams(bindparam("keys", expanding=True))
        for trial_id, key, value in conn.execute(attrs, {**sid, "keys": list(USER_ATTRS)}):
            trials[trial_id].user_attrs[key] = json.loads(value)
    for trial_id, by_objective in values.items():
        trials[trial_id].values = [by_objective[k] for k in sorted(by_objective)]
    return sorted(trials.values(), key=lambda t: t.number)


def read_distributions(engine: Engine, study: str) -> dict[str, Any]:
    """Each parameter of Optuna study ``study`` -> its distribution (the first one stored,
    as a walk over ``study.get_trials`` finds it), decoded once."""
    from optuna.distributions import json_to_distribution
    from sqlalchemy import text

    out: dict[str, Any] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT p.param_name, p.distribution_json FROM trial_params p "
                "JOIN trials t ON t.trial_id = p.trial_id "
                "JOIN studies s ON s.study_id = t.study_id "
                "WHERE s.study_name = :name ORDER BY t.number, p.param_id"
            ),
            {"name": study},
        )
        seen: dict[str, str] = {}
        for name, dist in rows:
            seen.setdefault(name, dist)
    for name, dist in seen.items():
        out[name] = json_to_distribution(dist)
    return out
