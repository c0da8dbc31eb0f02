"""Profiles in the database: measured once per key, then read back by every study that asks.

A profile is keyed by (kind, model, dataset, split, number of batches, seed) plus the batch
size and sequence length of its calibration batches, since those change the gradients too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from autopeft.allocation.profiles import Profile
from autopeft.storage.store import Store
from autopeft.storage.tables import ProfileRow, StudyProfileRow


@dataclass(frozen=True)
class ProfileKey:
    """What a profile depends on.

    Attributes:
        model: Model directory (and layer count when truncated).
        dataset: Dataset source with its text/label columns.
        split: Which split and how it was cut (the training split of a seeded split).
        n_batches: Number of calibration batches.
        seed: Seed of the batch draw and of the classification head.
        batch_size: Examples per calibration batch.
        seq_len: Tokens per example.
    """

    model: str
    dataset: str
    split: str
    n_batches: int
    seed: int
    batch_size: int
    seq_len: int


def load_profile(store: Store, kind: str, key: ProfileKey) -> tuple[int, Profile] | None:
    """The stored profile ``kind`` for ``key`` as (row id, profile); None if not measured."""
    with store.session() as s:
        row = s.query(ProfileRow).filter_by(kind=kind, **asdict(key)).one_or_none()
        return None if row is None else (row.id, Profile.from_json(json.loads(row.profile_json)))


def save_profile(store: Store, key: ProfileKey, profile: Profile) -> int:
    """Store ``profile`` under ``key`` (its kind included); returns the row id."""
    with store.session() as s:
        row = ProfileRow(
            kind=profile.kind,
            **asdict(key),
            profile_json=json.dumps(profile.to_json()),
            seconds=profile.seconds,
            created_at=datetime.now(UTC),
        )
        s.add(row)
        s.flush()
        return row.id


def get_or_compute(
    store: Store,
    key: ProfileKey,
    kinds: Iterable[str],
    compute: Callable[[list[str]], dict[str, Profile]],
) -> dict[str, tuple[int, Profile]]:
    """Every profile of ``kinds`` for ``key``: read from the database, and the missing ones
    measured by one call ``compute(missing_kinds)`` and stored. Returns kind -> (id, profile)."""
    found: dict[str, tuple[int, Profile]] = {}
    missing = []
    for kind in kinds:
        hit = load_profile(store, kind, key)
        if hit is None:
            missing.append(kind)
        else:
            found[kind] = hit
    if missing:
        for kind, profile in compute(missing).items():
            found[kind] = (save_profile(store, key, profile), profile)
    return found


def link_study(store: Store, study: str, profile_ids: Iterable[int]) -> None:
    """Record that ``study`` allocates with these profiles (idempotent)."""
    with store.session() as s:
        for pid in profile_ids:
            if s.get(StudyProfileRow, (study, pid)) is None:
                s.add(StudyProfileRow(study_name=study, profile_id=pid))


def study_profiles(store: Store, study: str) -> dict[str, tuple[ProfileKey, Profile]]:
    """The profiles linked to ``study``: kind -> (key, profile)."""
    with store.session() as s:
        rows = (
            s.query(ProfileRow)
            .join(StudyProfileRow, StudyProfileRow.profile_id == ProfileRow.id)
            .filter(StudyProfileRow.study_name == study)
        )
        return {
            r.kind: (
                ProfileKey(
                    r.model, r.dataset, r.split, r.n_batches, r.seed, r.batch_size, r.seq_len
                ),
                Profile.from_json(json.loads(r.profile_json)),
            )
            for r in rows
        }
