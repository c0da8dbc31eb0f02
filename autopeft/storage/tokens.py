"""API tokens of ``autopeft serve``: created, listed, revoked and checked in the database.

A token is shown once, when it is created; the database keeps only its sha256, so reading the
database does not give anyone a usable token. Scopes: ``read`` (GET endpoints) and ``write``
(everything, reads included).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from autopeft.exceptions import UserInputError
from autopeft.storage.store import Store
from autopeft.storage.tables import TokenRow

SCOPES = ("read", "write")
_PREFIX = "apt_"


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without the token itself."""

    id: int
    scope: str
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> str:
    """The sha256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(store: Store, scope: str) -> tuple[int, str]:
    """Store a new token of ``scope``; returns (id, token). The token is not stored."""
    if scope not in SCOPES:
        raise UserInputError(f"unknown token scope {scope!r}; scopes: {', '.join(SCOPES)}")
    token = _PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        row = TokenRow(token_hash=token_hash(token), scope=scope, created_at=_now())
        s.add(row)
        s.flush()
        return row.id, token


def list_tokens(store: Store) -> list[TokenInfo]:
    """Every token, revoked ones included, by id."""
    with store.session() as s:
        rows = s.query(TokenRow).order_by(TokenRow.id)
        return [TokenInfo(r.id, r.scope, r.created_at, r.revoked_at) for r in rows]


def revoke_token(store: Store, token_id: int) -> TokenInfo:
    """Revoke token ``token_id`` (revoking twice keeps the first time)."""
    with store.session() as s:
        row = s.get(TokenRow, token_id)
        if row is None:
            known = [r.id for r in s.query(TokenRow).order_by(TokenRow.id)]
            raise UserInputError(f"no token with id {token_id}; token ids: {known or 'none'}")
        if row.revoked_at is None:
            row.revoked_at = _now()
        return TokenInfo(row.id, row.scope, row.created_at, row.revoked_at)


def token_scope(store: Store, token: str) -> str | None:
    """The scope of a valid, unrevoked ``token``; None for an unknown or revoked one."""
    if not token.startswith(_PREFIX) or len(token) > 256:
        return None
    with store.session() as s:
        row = s.query(TokenRow).filter_by(token_hash=token_hash(token)).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return row.scope


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
