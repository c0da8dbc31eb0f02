"""Joining a running Ray cluster: is it reachable, and does it want a token we have?

Why this exists: since Ray 2.5x, ``ray start --head`` turns token authentication on whenever a
token is already on the machine (``~/.ray/auth_token``, which every ``ray.init()`` of a local
instance writes). A client, however, enables token mode on its own only for ``address="auto"``
or no address: with an explicit ``host:port`` it stays in mode ``disabled``, sends no token,
and the head answers ``InvalidAuthToken``. ``ray.init`` then retries for ~20 s, prints a C++
warning per second and ends with ``ConnectionError: Failed to connect``, which names neither
the cause nor the fix. Setting ``RAY_AUTH_MODE=token`` by hand was the workaround.

So before ``ray.init(address=...)``, :func:`prepare_join`:

1. checks with a TCP connect that something listens at the GCS address (one clear line, at
   once, instead of ~13-40 s of retries);
2. asks the cluster its id with a standalone GCS client in the mode the user set (Ray's
   ``InnerGcsClient.standalone`` fails in milliseconds with ``AuthenticationError``);
3. if the cluster wants a token and ``RAY_AUTH_MODE`` is unset, finds the token Ray would use
   (``RAY_AUTH_TOKEN``, then the file in ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``;
   ``--ray-token-file`` sets ``RAY_AUTH_TOKEN_PATH``), switches this process to token mode the
   way Ray itself does (``RAY_AUTH_MODE=token`` and a refreshed ``RayConfig``), and asks again;
4. turns a missing or rejected token into one :class:`~autopeft.exceptions.StudyError` line
   that names the flag, the variables and the file.

``ray://`` (Ray Client) addresses are left to Ray. :func:`restore` undoes step 3 after the
session disconnects, so a later embedded instance in the same process starts as before.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autopeft.exceptions import StudyError

MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
TOKEN_FLAG = "--ray-token-file"
CONNECT_SECONDS = 5.0
PROBE_MS = 5000

FIX = (
    f"pass the cluster's token with {TOKEN_FLAG} FILE (print it on the head node with "
    f"`ray get-auth-token`), or set {TOKEN_VAR} (the token) or {TOKEN_PATH_VAR} (a file)"
)

_flag_file: Path | None = None


@dataclass(frozen=True)
class JoinState:
    """What :func:`prepare_join` changed in this process, for :func:`restore`."""

    address: str
    token_source: str | None = None  # where the token came from, when token mode was switched on
    saved_mode: str | None = None
    switched: bool = False


def use_token_file(path: Path) -> None:
    """Use the token in ``path`` for clusters joined by this process (``--ray-token-file``).

    Sets ``RAY_AUTH_TOKEN_PATH`` (and drops ``RAY_AUTH_TOKEN``, which Ray would prefer).
    """
    global _flag_file
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise StudyError(f"{TOKEN_FLAG} {path}: cannot read it ({exc.strerror})") from None
    if not text:
        raise StudyError(f"{TOKEN_FLAG} {path}: the file is empty; it must hold the token")
    os.environ[TOKEN_PATH_VAR] = str(path.resolve())
    os.environ.pop(TOKEN_VAR, None)
    _flag_file = path.resolve()


def find_token() -> str | None:
    """Where Ray would read a token from, in its own order, or None if there is none.

    Raises:
        StudyError: ``RAY_AUTH_TOKEN_PATH`` names a file that is missing or empty.
    """
    if os.environ.get(TOKEN_VAR, "").strip():
        return f"${TOKEN_VAR}"
    path = os.environ.get(TOKEN_PATH_VAR)
    if path:
        label = (
            f"{TOKEN_FLAG} {path}"
            if _flag_file is not None and str(_flag_file) == path
            else f"{TOKEN_PATH_VAR}={path}"
        )
        try:
            ok = bool(Path(path).read_text().strip())
        except OSError:
            ok = False
        if not ok:
            raise StudyError(f"{label}: no token there (missing, unreadable or empty); {FIX}")
        return label
    default = Path.home() / ".ray" / "auth_token"
    with contextlib.suppress(OSError):
        if default.read_text().strip():
            return str(default).replace(str(Path.home()), "~", 1)
    return None


def gcs_address(address: str) -> str | None:
    """``host:port`` of the cluster's GCS, or None where Ray resolves it alone (``ray://``)."""
    if address.startswith("ray://"):
        return None
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            return canonicalize_bootstrap_address(address)
        except Exception:  # no cluster found: ray.init says so itself
            return None
    return address


def check_reachable(address: str, gcs: str) -> None:
    """One clear line when nothing listens at ``gcs`` (``host:port``)."""
    host, sep, port = gcs.rpartition(":")
    if not sep or not port.isdigit():
        raise StudyError(f"executor.address={address!r} is not auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__  # timeouts carry no strerror
        raise StudyError(
            f"cannot reach a Ray cluster at executor.address={address!r} ({reason}); start "
            "one with `ray start --head --port PORT` or check the host and port (the head "
            "prints its address)"
        ) from None


def prepare_join(address: str) -> JoinState:
    """Make ``ray.init(address=address)`` authenticate as the cluster requires (see the module).

    Raises:
        StudyError: unreachable address, or a token that is missing or rejected.
    """
    gcs = gcs_address(address)
    saved = os.environ.get(MODE_VAR)
    if gcs is None:
        return JoinState(address, saved_mode=saved)
    check_reachable(address, gcs)
    if _probe(gcs) != "auth":
        return JoinState(address, saved_mode=saved)  # answered, or left for ray.init to report
    where = f"the Ray cluster at executor.address={address!r}"
    if saved is not None and saved.lower() != "token":
        raise StudyError(
            f"{where} requires a token but {MODE_VAR}={saved}; unset {MODE_VAR} (autopeft then "
            f"uses the token Ray finds) and {FIX}"
        )
    source = find_token()
    if source is None:
        raise StudyError(
            f"{where} requires a token and none was found (${TOKEN_VAR}, ${TOKEN_PATH_VAR}, "
            f"~/.ray/auth_token); {FIX}"
        )
    if saved is not None:  # token mode set by hand: the token Ray found is the wrong one
        raise StudyError(f"{where} rejected the token from {source}; {FIX}")
    _set_mode("token")
    state = JoinState(address, token_source=source, saved_mode=saved, switched=True)
    if _probe(gcs) == "auth":
        restore(state)
        raise StudyError(f"{where} rejected the token from {source}; {FIX}")
    return state


def restore(state: JoinState | None) -> None:
    """Undo the token mode :func:`prepare_join` switched on (after ``ray.shutdown()``)."""
    if state is not None and state.switched:
        _set_mode(state.saved_mode)


def _set_mode(mode: str | None) -> None:
    """Set ``RAY_AUTH_MODE`` for this process and its children, as Ray itself does."""
    from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

    if mode is None:
        os.environ.pop(MODE_VAR, None)
    else:
        os.environ[MODE_VAR] = mode
    Config.initialize("")  # RayConfig caches the mode; refresh it before the token cache
    AuthenticationTokenLoader.instance().reset_cache()


def _probe(gcs: str) -> str:
    """``ok``, ``auth`` (the cluster rejected our credentials) or ``other`` (left to ray.init).

    Uses Ray's standalone GCS client (private API: any surprise falls back to ``other``). Its
    C++ warning line on stderr is swallowed: the caller reports the outcome in one line.
    """
    try:
        from ray._raylet import AuthenticationTokenLoader, InnerGcsClient  # type: ignore[attr-defined]
        from ray.exceptions import AuthenticationError
    except ImportError:
        return "other"
    AuthenticationTokenLoader.instance().reset_cache()
    with _quiet_stderr() as captured:
        try:
            InnerGcsClient.standalone(gcs, None, PROBE_MS)
        except AuthenticationError:
            return "auth"
        except Exception:
            return "other"
        captured.append(True)  # success: what was written to stderr is shown after all
    return "ok"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[list[bool]]:
    """Redirect file descriptor 2 (where Ray's C++ logs go); replay it if asked to keep it."""
    keep: list[bool] = []
    try:
        fd = os.dup(2)
    except OSError:  # no stderr to redirect
        yield keep
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield keep
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            if keep:
                sink.seek(0)
                os.write(2, sink.read())
