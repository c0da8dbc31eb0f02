"""Commands of the HTTP service: ``token create|list|revoke`` and ``serve``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from autopeft.cli.common import StorageOpt, app, friendly

token_app = typer.Typer(help="API tokens of `autopeft serve` (only their hashes are stored).")
app.add_typer(token_app, name="token")


class Scope(StrEnum):
    read = "read"
    write = "write"


def _token_store(storage: str | None) -> Any:
    from autopeft.storage.store import Store
    from autopeft.storage.urls import resolve_storage

    return Store(resolve_storage(storage))


@token_app.command("create")
@friendly
def token_create(
    scope: Annotated[Scope, typer.Option(help="read: GET endpoints; write: everything.")],
    storage: StorageOpt = None,
) -> None:
    """Create a token; it is printed once, as the last line, and only its hash is stored."""
    from autopeft.storage.tokens import create_token

    token_id, token = create_token(_token_store(storage), scope.value)
    typer.echo(f"created {scope.value} token {token_id} (shown once; store it now):")
    typer.echo(token)


@token_app.command("list")
@friendly
def token_list(storage: StorageOpt = None) -> None:
    """List tokens: id, scope, created, revoked."""
    from autopeft.storage.tokens import list_tokens

    for t in list_tokens(_token_store(storage)):
        revoked = f"revoked {t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "active"
        typer.echo(f"{t.id}\t{t.scope}\tcreated {t.created_at:%Y-%m-%d %H:%M:%S}\t{revoked}")


@token_app.command("revoke")
@friendly
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The id `token list` shows.")],
    storage: StorageOpt = None,
) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    from autopeft.storage.tokens import revoke_token

    info = revoke_token(_token_store(storage), token_id)
    typer.echo(f"revoked token {info.id} ({info.scope})")


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    storage: StorageOpt = None,
    public_read: Annotated[
        bool, typer.Option("--public-read", help="Serve reads without a token.")
    ] = False,
    service_dir: Annotated[
        Path,
        typer.Option(
            help="The server's own directory: submitted specs, driver logs and uploaded "
            "datasets are kept here."
        ),
    ] = Path("autopeft-service"),
    data_dir: Annotated[
        Path | None,
        typer.Option(hidden=True, help="Old spelling of --service-dir (still accepted)."),
    ] = None,
    root: Annotated[
        list[Path] | None,
        typer.Option(
            "--root",
            help="A directory submitted specs may take models and datasets from (repeatable); "
            "the service dir's `datasets/` always is one.",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Run every submitted study's driver (a detached Ray actor) and its trials on "
            "this Ray cluster; without it, drivers are local processes."
        ),
    ] = None,
) -> None:
    """Serve the HTTP API and the web UI (needs the `service` extra)."""
    try:
        import uvicorn

        from autopeft.service import create_app
    except ImportError as exc:
        from autopeft.exceptions import UnsupportedError

        raise UnsupportedError(
            f"`autopeft serve` needs the service extra: pip install 'autopeft[service]' ({exc})"
        ) from None
    from autopeft.storage.urls import resolve_storage

    application = create_app(
        resolve_storage(storage),
        public_read=public_read,
        roots=root or (),
        data_dir=data_dir or service_dir,
        address=address,
    )
    uvicorn.run(application, host=host, port=port, log_level="info")
