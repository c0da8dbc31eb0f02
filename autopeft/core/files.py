"""Writing output files whole or not at all (exports, plots).

:func:`write_atomic` writes to a temporary file in the target's own directory and renames it
onto the target with :func:`os.replace`, so a full disk, a read-only directory or a crash
never leaves a half-written file behind: the target holds either its old content or the new.
Every failure becomes one :class:`~autopeft.exceptions.OutputError` naming the path and what
went wrong.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from autopeft.exceptions import OutputError

__all__ = ["ensure_directory", "reason", "write_atomic"]

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (is it read-only?)",
    errno.EPERM: "operation not permitted (is it read-only or immutable?)",
    errno.EISDIR: "it is a directory",
}


def ensure_directory(directory: Path, what: str) -> Path:
    """Create ``directory`` (and its parents) unless it exists.

    Raises:
        OutputError: a parent is a file, ``directory`` is a file, or it cannot be created.
    """
    directory = Path(directory)
    blocker = _file_in_the_way(directory)
    if blocker is not None:
        raise OutputError(
            f"cannot create {what} {directory}: {blocker} exists and is not a directory"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {what} {directory}: {reason(exc)}") from None
    return directory


def write_atomic(path: Path, data: bytes, what: str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is removed when anything fails; ``path`` keeps its old content.

    Args:
        path: The file to write; its parent directories are created.
        data: The whole content.
        what: What the file is, for the error message (``"plot"``, ``"adapter config"``).

    Raises:
        OutputError: naming ``path`` and the reason (a full disk, a read-only directory, ...).
    """
    path = Path(path)
    ensure_directory(path.parent, f"the directory of {what}")
    if path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a directory")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write {what} {path}: {reason(exc)}") from None
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise OutputError(f"cannot write {what} {path}: {reason(exc)}") from None
    return path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def reason(exc: OSError) -> str:
    """Why an ``OSError`` happened, in words (the errno's meaning, else its own text)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or str(exc)).lower()


def _file_in_the_way(directory: Path) -> Path | None:
    """The first of ``directory`` and its ancestors that exists as a non-directory."""
    for candidate in (directory, *directory.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None
