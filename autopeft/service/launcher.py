"""Submitted studies on disk and their driver processes.

A submitted study gets a directory ``DATA_DIR/studies/NAME/`` holding the spec as the server
rewrote it (``study.yaml``: its search space is ``space.yaml`` beside it, its model and dataset
references resolved to absolute paths under the configured roots), the driver's log and pid.

Where drivers run:

- no cluster address: each driver is ``autopeft run`` in a local process of its own session, so
  it outlives a restarted server; the pid file lets this machine's servers signal it (SIGINT);
- ``address``: each driver is a detached Ray actor on that cluster
  (:mod:`autopeft.service.ray_driver`), found again by its name.

Whether a study runs is the database's answer (its lease, read by the routes); what the
launcher knows only covers the start of a driver, before it takes the lease.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autopeft.exceptions import StudySpecError, UserInputError

if TYPE_CHECKING:
    from autopeft.service.ray_driver import RayDrivers

NAME_RULE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""Study and upload names: no path separators, no leading dot (so never ``..``)."""

_NAME = re.compile(NAME_RULE)


def check_name(name: str, what: str = "study name") -> str:
    """``name`` if it is a safe file name; :class:`UserInputError` with the rule otherwise."""
    if not _NAME.fullmatch(name):
        raise UserInputError(
            f"{what} must match {NAME_RULE} (letters, digits, '_', '.', '-'; at most 128), "
            f"got {name!r}"
        )
    return name


class Launcher:
    """Stages submitted specs under ``data_dir`` and starts, finds and stops their drivers.

    Args:
        data_dir: The server's data directory (created if missing).
        storage: The database URL every driver writes to.
        roots: Directories that specs may take models and datasets from; ``data_dir/datasets``
            (where uploads go) is always one.
        address: A Ray cluster every driver runs on, as a detached actor, with its trials on
            the same cluster (``executor: ray``); None: local driver processes, each running
            its spec's own ``executor``.
    """

    def __init__(
        self,
        data_dir: Path,
        storage: str,
        roots: Sequence[Path] = (),
        address: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.storage, self.address = storage, address
        self.uploads = self.data_dir / "datasets"
        for sub in ("studies", "staging", "datasets"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self.roots = [self.uploads, *(Path(r).resolve() for r in roots)]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._ray: RayDrivers | None = None
        if address is not None:
            from autopeft.service.ray_driver import RayDrivers

            self._ray = RayDrivers(address)

    # -- files -----------------------------------------------------------------------------------
    def study_dir(self, name: str) -> Path:
        return self.data_dir / "studies" / check_name(name)

    def stage(
        self, spec_text: str, space_text: str, *, name: str | None, n_trials: int | None
    ) -> tuple[str, Path]:
        """Write a submitted spec and space into a fresh staging directory; returns the study
        name and the rewritten spec's path. Errors name the files as submitted (``spec.yaml``,
        ``space.yaml``), never the server's paths."""
        from autopeft.core.validation import load_model, read_yaml
        from autopeft.methods.binding import load_space
        from autopeft.spec import StudySpec

        staging = self.data_dir / "staging" / uuid.uuid4().hex
        staging.mkdir()
        try:
            (staging / "spec.yaml").write_text(spec_text, encoding="utf-8")
            (staging / "space.yaml").write_text(space_text, encoding="utf-8")
            # the files as submitted first, so messages carry the submitter's line numbers
            data, _ = read_yaml(staging / "spec.yaml", StudySpecError)
            if name is not None:
                data["name"] = check_name(name)
            load_model(staging / "spec.yaml", StudySpec, StudySpecError)
            load_space(staging / "space.yaml")
            name = check_name(str(data.get("name", "")))
            data.update(name=name, search_space="space.yaml")
            data.pop("storage", None)
            if n_trials is not None:
                data["n_trials"] = n_trials
            self._resolve(data, "model", "path", _builtin_models())
            self._resolve(data, "dataset", "source", _builtin_datasets())
            spec = staging / "study.yaml"
            spec.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            return name, spec
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def hide_paths(self, message: str) -> str:
        """``message`` with the server's staging directories cut out."""
        return re.sub(re.escape(str(self.data_dir)) + r"/staging/[0-9a-f]+/", "", message)

    def discard(self, spec: Path) -> None:
        shutil.rmtree(spec.parent, ignore_errors=True)

    def adopt(self, name: str, spec: Path) -> Path:
        """Move a staged, validated study into its own directory; returns its spec path."""
        target = self.study_dir(name)
        if target.exists():
            shutil.rmtree(target)
        spec.parent.rename(target)
        return target / spec.name

    def _resolve(self, data: dict[str, Any], key: str, field: str, builtins: set[str]) -> None:
        value = data.get(key)
        node = {field: value} if isinstance(value, str) else value
        if not isinstance(node, dict) or not isinstance(node.get(field), str):
            return  # the spec's own validation names what is wrong
        ref = node[field]
        if ref in builtins:
            return
        try:
            node[field] = str(self.under_roots(ref, f"{key}.{field}", builtins))
        except StudySpecError:
            from autopeft.models.hub import looks_like_hub_id

            if key != "model" or not looks_like_hub_id(ref):
                raise
            return  # a Hub ID: resolved through the server's Hub cache when prepared
        data[key] = node

    def under_roots(self, ref: str, what: str, builtins: set[str]) -> Path:
        """The existing path ``ref`` names under a root (relative: tried against each root)."""
        path = Path(ref)
        candidates = [path] if path.is_absolute() else [root / path for root in self.roots]
        for candidate in candidates:
            resolved = candidate.resolve()
            inside = any(resolved.is_relative_to(root) for root in self.roots)
            if inside and resolved.exists():
                return resolved
        names = ", ".join(sorted(builtins))
        raise StudySpecError(
            f"spec.yaml: {what}: {ref!r} is neither a built-in ({names}) nor an existing path "
            "under the server's data roots (relative paths resolve against them; uploads go "
            "to POST /api/datasets)" + (", nor a Hub model ID" if what == "model.path" else "")
        )

    # -- drivers ---------------------------------------------------------------------------------
    def start(self, name: str) -> str:
        """Start the study's driver: ``autopeft run`` on its spec in a new local session, or a
        detached actor on the Ray cluster; returns who runs it (a pid, an actor's host:pid)."""
        directory = self.study_dir(name)
        spec = directory / "study.yaml"
        if not spec.is_file():
            raise UserInputError(
                f"study {name!r} was not submitted to this server; resume it with `autopeft run`"
            )
        with self._lock:
            if self._alive(name):
                raise UserInputError(f"study {name!r} is already running")
            if self._ray is not None:
                return self._ray.start(
                    name,
                    spec.read_text(encoding="utf-8"),
                    (directory / "space.yaml").read_text(encoding="utf-8"),
                    self.storage,
                    _as_options(self.executor_overrides()),
                    str(directory / "driver.log"),
                )
            command = self.command(name)
            with (directory / "driver.log").open("ab") as log:
                proc = subprocess.Popen(
                    command,
                    cwd=directory,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._procs[name] = proc
            (directory / "driver.pid").write_text(f"{proc.pid}\n")
            return str(proc.pid)

    def command(self, name: str) -> list[str]:
        """The driver command of study ``name``."""
        spec = self.study_dir(name) / "study.yaml"
        command = [sys.executable, "-m", "autopeft", "run", str(spec)]
        command += ["--storage", self.storage, "--name", name, "--quiet"]
        for flag, value in self.executor_overrides().items():
            command += [f"--{flag}", value]
        return command

    def executor_overrides(self) -> dict[str, str]:
        """The ``executor`` fields the server sets on every driver."""
        return {} if self.address is None else {"executor": "ray", "address": self.address}

    def running(self, name: str) -> bool:
        """Whether a driver of ``name`` launched by this server or an earlier one on this
        machine (or, with a cluster, by any server) runs, even if it has not taken the study's
        lease yet."""
        with self._lock:
            return self._alive(name)

    def exit_code(self, name: str) -> int | None:
        """The exit code of this server's last driver of ``name`` (None: unknown or running)."""
        proc = self._procs.get(name)
        return None if proc is None else proc.poll()

    def submitted(self, name: str) -> bool:
        return _NAME.fullmatch(name) is not None and (self.study_dir(name) / "study.yaml").is_file()

    def close(self) -> None:
        """Disconnect from the Ray cluster (drivers keep running)."""
        with self._lock:
            if self._ray is not None:
                self._ray.close()

    def stop(self, name: str) -> bool:
        """Send SIGINT to a local driver's session (it marks its running trials interrupted and
        exits); returns whether a local driver was running. Other drivers are asked through
        the database (:func:`autopeft.storage.lease.request_stop`)."""
        with self._lock:
            pid = self._pid(name)
            if pid is None:
                return False
            try:
                os.killpg(pid, signal.SIGINT)
            except ProcessLookupError:
                return False
            return True

    def _alive(self, name: str) -> bool:
        if self._ray is not None:
            return self._ray.alive(name)
        return self._pid(name) is not None

    def _pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        if proc is not None:
            return proc.pid if proc.poll() is None else None
        if not self.submitted(name):
            return None
        try:
            pid = int((self.study_dir(name) / "driver.pid").read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if _is_driver(cmdline) and name.encode() in cmdline else None


def _is_driver(cmdline: bytes) -> bool:
    """Whether a ``/proc/PID/cmdline`` is an autopeft driver: ``python -m autopeft run`` (or, as
    drivers launched by earlier versions ran, ``-m autopeft.cli run``)."""
    args = cmdline.split(b"\0")
    return any(
        args[i : i + 3] in ([b"-m", b"autopeft", b"run"], [b"-m", b"autopeft.cli", b"run"])
        for i in range(len(args))
    )


def _as_options(overrides: dict[str, str]) -> dict[str, str]:
    """``executor_overrides`` as :func:`~autopeft.run.driver.run_study`'s ``executor_options``."""
    options = dict(overrides)
    if "executor" in options:
        options["name"] = options.pop("executor")
    return options


def _builtin_models() -> set[str]:
    from autopeft.models.resolve import BUILTIN_MODELS

    return set(BUILTIN_MODELS)


def _builtin_datasets() -> set[str]:
    from autopeft.data.builtin import BUILTIN_COMPLETIONS, BUILTIN_DATASETS

    return set(BUILTIN_DATASETS) | set(BUILTIN_COMPLETIONS)
