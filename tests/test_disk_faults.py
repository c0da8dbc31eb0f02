"""Disk faults (issue 15, item 3): a full or read-only export/plot directory, a file in the way,
a read-only SQLite file for `run` → one ``error:`` line naming the path, exit 2, and nothing
half-written (old files intact, no temporary file left).

What each test does for real and what it simulates is in its name:

- ``really_read_only``: ``chmod`` when not root; as root (where ``chmod`` stops nothing)
  ``chattr +i``; the test skips where neither stops a write (root without
  CAP_LINUX_IMMUTABLE, or a file system without the attribute).
- ``simulated_read_only``: ``os.open`` of a new file in the directory raises
  ``PermissionError(EACCES)``, as it does for a non-root user in a read-only directory.
- ``simulated_full_disk``: the write puts half the bytes in the temporary file, then raises
  ``OSError(ENOSPC)``, as a full disk does.
- ``query_only_sqlite``: every SQLite connection gets ``PRAGMA query_only``, so each write
  fails with the "attempt to write a readonly database" of a read-only file.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.core import files
from autopeft.core.files import write_atomic
from autopeft.core.objectives import Objective
from autopeft.exceptions import OutputError
from autopeft.results import plot_front
from autopeft.storage.records import TrialRecord
from tests.conftest import SPACE, assert_user_error, write_study, write_tiny_csv

OBJECTIVES = (Objective("accuracy", "maximize"), Objective("trainable_params", "minimize"))
RECORDS = [
    TrialRecord(number=n, state="COMPLETE", values={"accuracy": a, "trainable_params": p})
    for n, (a, p) in enumerate([(0.9, 1000.0), (0.8, 100.0), (0.7, 500.0)])
]


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


# -- ways to make a path unwritable -----------------------------------------------------------
def _blocks_writes(path: Path) -> bool:
    probe = path / ".write-probe" if path.is_dir() else path
    try:
        fd = os.open(probe, os.O_WRONLY | (os.O_CREAT if path.is_dir() else 0))
    except OSError:
        return True
    os.close(fd)
    if path.is_dir():
        probe.unlink()
    return False


def _chattr(flag: str, path: Path) -> bool:
    try:
        done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return done.returncode == 0


@contextmanager
def really_read_only(path: Path) -> Iterator[None]:
    """``path`` made read-only for real (chmod, or chattr +i as root), restored afterwards."""
    mode = path.stat().st_mode
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
    else:
        _chattr("+i", path)
    try:
        if not _blocks_writes(path):
            pytest.skip("cannot make a path read-only here (root without chattr +i)")
        yield
    finally:
        if os.geteuid() == 0:
            _chattr("-i", path)
        path.chmod(mode)


def simulated_read_only(monkeypatch: pytest.MonkeyPatch, directory: Path) -> None:
    """Creating a file in ``directory`` raises PermissionError(EACCES)."""
    real_open = os.open
    directory = directory.resolve()

    def guarded(path: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT and Path(str(path)).resolve().parent == directory:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", guarded)


def simulated_full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes get half their bytes out, then ENOSPC."""

    def half_then_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", half_then_full)


def _only(directory: Path, *names: str) -> None:
    """``directory`` holds exactly ``names``: no temporary file left behind."""
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


# -- write_atomic and plots, without a study (fast) -------------------------------------------
def test_write_atomic_on_a_simulated_full_disk_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    simulated_full_disk(monkeypatch)
    with pytest.raises(
        OutputError, match=re.escape(f"cannot write config {target}: no space left")
    ):
        write_atomic(target, b"new content", "config")
    assert target.read_text() == "old"
    _only(tmp_path, "out.json")


def test_write_atomic_replaces_whole_files_with_the_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    write_atomic(target, b"one", "config")
    write_atomic(target, b"two", "config")
    assert target.read_bytes() == b"two"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    _only(target.parent, "out.json")


def test_plot_on_a_simulated_full_disk_leaves_no_png(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulated_full_disk(monkeypatch)
    with pytest.raises(OutputError, match=r"front\.png: no space left on the device"):
        plot_front(RECORDS, OBJECTIVES, tmp_path / "front.png")
    _only(tmp_path)


def test_plot_into_a_really_read_only_directory(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    plots.mkdir()
    with really_read_only(plots), pytest.raises(OutputError, match=r"plots/front\.png: "):
        plot_front(RECORDS, OBJECTIVES, plots / "front.png")
    _only(plots)


def test_plot_into_a_simulated_read_only_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulated_read_only(monkeypatch, tmp_path)
    with pytest.raises(OutputError, match=r"front\.png: permission denied"):
        plot_front(RECORDS, OBJECTIVES, tmp_path / "front.png")
    _only(tmp_path)


def test_plot_onto_a_directory_or_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutputError, match="adir: it is a directory"):
        plot_front(RECORDS, OBJECTIVES, tmp_path / "adir")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="afile exists and is not a directory"):
        plot_front(RECORDS, OBJECTIVES, tmp_path / "afile" / "sub" / "front.png")
    _only(tmp_path, "adir", "afile")


# -- through the CLI, on a stored study (one 1-trial run shared by the module) ----------------
@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    """A study directory whose study 'tiny' has one complete trial in studies.db."""
    directory = tmp_path_factory.mktemp("stored")
    write_tiny_csv(directory / "data.csv")
    (directory / "space.yaml").write_text(SPACE.format(budget=4000))
    write_study(directory, model=str(tiny_bert_dir))
    result = cli("run", directory / "study.yaml", "-q", "--trials", "1")
    assert result.exit_code == 0, result.output
    return directory


def _url(directory: Path, name: str = "studies.db") -> str:
    return f"sqlite:///{directory / name}"


@pytest.mark.slow
def test_export_on_a_simulated_full_disk_keeps_the_old_config(
    stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    simulated_full_disk(monkeypatch)
    result = cli("export", "tiny", "--storage", _url(stored), "--trial", 0, "--out", tmp_path)
    assert_user_error(result, f"{tmp_path}/adapter_config.json", "no space left on the device")
    assert (tmp_path / "adapter_config.json").read_text() == "{}"
    _only(tmp_path, "adapter_config.json")


@pytest.mark.slow
def test_export_into_a_really_read_only_directory(stored: Path, tmp_path: Path) -> None:
    with really_read_only(tmp_path):
        result = cli("export", "tiny", "--storage", _url(stored), "--trial", 0, "-o", tmp_path)
    assert_user_error(result, f"{tmp_path}/adapter_config.json")
    _only(tmp_path)


@pytest.mark.slow
def test_export_into_a_simulated_read_only_directory(
    stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulated_read_only(monkeypatch, tmp_path)
    result = cli("export", "tiny", "--storage", _url(stored), "--trial", 0, "-o", tmp_path)
    assert_user_error(result, f"{tmp_path}/adapter_config.json", "permission denied")
    _only(tmp_path)


@pytest.mark.slow
def test_export_under_an_existing_file(stored: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "sub", tmp_path / "afile"):
        result = cli("export", "tiny", "--storage", _url(stored), "--trial", 0, "-o", out)
        assert_user_error(result, str(out), f"{tmp_path / 'afile'} exists and is not a directory")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.slow
def test_front_plot_into_a_simulated_full_disk(
    stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulated_full_disk(monkeypatch)
    result = cli("front", "tiny", "--storage", _url(stored), "--plot", tmp_path / "front.png")
    assert_user_error(result, f"{tmp_path}/front.png", "no space left on the device")
    _only(tmp_path)


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return list(con.iterdump())


@pytest.mark.slow
def test_run_on_a_really_read_only_sqlite_file(stored: Path, tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    shutil.copy(stored / "studies.db", db)
    before = _dump(db)
    with really_read_only(db):
        result = cli(
            "run",
            stored / "study.yaml",
            "-q",
            "--trials",
            "3",
            "--storage",
            _url(tmp_path, "ro.db"),
        )
    assert_user_error(result, "cannot write to storage", str(db), "readonly database")
    assert _dump(db) == before


@pytest.mark.slow
def test_run_on_a_query_only_sqlite_connection(
    stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    db = tmp_path / "ro.db"
    shutil.copy(stored / "studies.db", db)
    before = _dump(db)

    def query_only(connection: object, _record: object) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA query_only = ON")

    event.listen(Engine, "connect", query_only)
    try:
        result = cli(
            "run",
            stored / "study.yaml",
            "-q",
            "--trials",
            "3",
            "--storage",
            _url(tmp_path, "ro.db"),
        )
    finally:
        event.remove(Engine, "connect", query_only)
    assert_user_error(result, "cannot write to storage", str(db), "readonly database")
    assert _dump(db) == before
