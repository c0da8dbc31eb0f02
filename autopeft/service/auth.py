"""Bearer-token checks: every write needs a ``write`` token; reads need a ``read`` (or
``write``) token unless the server runs with ``public_read``. ``/health`` is open."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False, description="A token from `autopeft token create`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _scope(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    from autopeft.storage.tokens import token_scope

    if credentials is None:
        return None
    service = request.app.state.service
    with service.lock:
        scope = token_scope(service.store, credentials.credentials)
    if scope is None:
        raise _unauthorized("invalid or revoked token")
    return scope


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def require_read(request: Request, credentials: Credentials) -> None:
    """Dependency of every GET endpoint but ``/health``."""
    scope = _scope(request, credentials)
    if scope is None and not request.app.state.service.public_read:
        raise _unauthorized("this endpoint needs a read or write token (Authorization: Bearer)")


def require_write(request: Request, credentials: Credentials) -> None:
    """Dependency of every endpoint that changes something."""
    scope = _scope(request, credentials)
    if scope is None:
        raise _unauthorized("this endpoint needs a write token (Authorization: Bearer)")
    if scope != "write":
        raise HTTPException(403, "this endpoint needs a write token; the token given is read-only")


Read = Depends(require_read)
Write = Depends(require_write)
