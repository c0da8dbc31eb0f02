"""Study drivers as detached Ray actors, for ``autopeft serve --address RAY``.

Why a detached actor and not a Ray job: Ray Jobs are submitted through the dashboard's job
server, which needs ``ray[default]`` (the dashboard and its agent); autopeft installs only
``ray[tune]``, and its clusters run with ``--include-dashboard=false``. A detached actor needs
nothing more than the core Ray that the trials already use, and it outlives the server that
created it: it lives until it exits by itself, here when its driver thread ends.

Each submitted study gets one actor, named ``autopeft-driver-NAME`` in the ``autopeft``
namespace (so any server connected to the cluster finds it), reserving no CPU (it mostly waits
on its trials; a reserved CPU would keep a trial off a small cluster). :meth:`StudyDriver.start`
writes the spec and search-space YAML it is sent into a temporary directory of its own, so
they need not be on a disk the actor's node shares; the model and dataset paths inside the
spec are the server's resolved paths, so on a cluster of several machines they must be on
storage every node mounts at the same path (the data dir, the roots), or built-ins. The driver
itself is :func:`autopeft.run.driver.run_study` in a thread of the actor, its trials run as Ray
actors of the same cluster, and the database (its lease) says whether it runs; a stop is asked
through the database (:func:`autopeft.storage.lease.request_stop`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from autopeft.executors.ray_auth import JoinState
from autopeft.executors.ray_session import join_cluster, leave_cluster

NAMESPACE = "autopeft"
"""The Ray namespace of the driver actors."""
DRIVER_CPUS = 0.0
"""CPUs a driver actor reserves: none; it spends its time waiting on its trials."""


def actor_name(study: str) -> str:
    """The driver actor's name of ``study`` (a study name is already a safe file name)."""
    return f"autopeft-driver-{study}"


class StudyDriver:
    """The body of a driver actor: :meth:`start` runs one study in a thread, then the actor
    exits. ``max_concurrency`` > 1 so :meth:`alive` and the self-call to :meth:`exit` are
    answered while the driver runs."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(
        self,
        study: str,
        spec_yaml: str,
        space_yaml: str,
        storage: str,
        executor_options: dict[str, Any],
        log: str | None = None,
    ) -> str:
        """Write the spec and its space (``space.yaml``, as the spec names it) to a temporary
        directory and start the driver thread; returns the actor's ``host:pid``."""
        from autopeft.storage.liveness import OWNER

        directory = Path(tempfile.mkdtemp(prefix=f"autopeft-{study}-"))
        (directory / "study.yaml").write_text(spec_yaml, encoding="utf-8")
        (directory / "space.yaml").write_text(space_yaml, encoding="utf-8")
        args = (directory, study, storage, executor_options, log)
        self._thread = threading.Thread(target=self._run, args=args, name="driver", daemon=True)
        self._thread.start()
        return OWNER

    def _run(
        self,
        directory: Path,
        study: str,
        storage: str,
        executor_options: dict[str, Any],
        log: str | None,
    ) -> None:
        from autopeft.run.driver import run_study

        try:
            run_study(
                directory / "study.yaml",
                storage=storage,
                name=study,
                executor_options=executor_options,
            )
        except BaseException as exc:
            self.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _append(log, traceback.format_exc())
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            self._leave()

    def _leave(self) -> None:
        """End this actor (a detached actor lives until it is killed or exits)."""
        import ray

        with contextlib.suppress(Exception):  # not in an actor: a test calling the class
            ray.get_runtime_context().current_actor.exit.remote()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def exit(self) -> None:
        import ray

        ray.actor.exit_actor()


def _append(log: str | None, text: str) -> None:
    """Best effort: the server's driver.log of the study, when this node sees it."""
    if log is None:
        return
    try:
        with open(log, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError:
        pass


class RayDrivers:
    """The server's side: connect to the cluster once, start driver actors, find them.

    Not thread-safe: the :class:`~autopeft.service.launcher.Launcher` serialises calls.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._joined: JoinState | None = None
        self._owned = False

    def connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        self._joined = join_cluster(
            self.address,
            f"--address {self.address!r}",
            "A token-auth cluster needs its token",
            namespace=NAMESPACE,
        )
        self._owned = True

    def start(
        self,
        study: str,
        spec_yaml: str,
        space_yaml: str,
        storage: str,
        executor_options: dict[str, Any],
        log: str | None,
    ) -> str:
        """Create the study's detached driver actor and start it; returns its ``host:pid``."""
        import ray

        self.connect()
        actor_class: Any = ray.remote(StudyDriver)
        actor = actor_class.options(
            name=actor_name(study),
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=DRIVER_CPUS,
            max_restarts=0,
            max_concurrency=4,
        ).remote()
        ref = actor.start.remote(study, spec_yaml, space_yaml, storage, executor_options, log)
        owner: str = ray.get(ref, timeout=120)
        return owner

    def alive(self, study: str) -> bool:
        """Whether the study's driver actor exists (starting, running or just ending)."""
        import ray

        self.connect()
        try:
            ray.get_actor(actor_name(study), namespace=NAMESPACE)
        except ValueError:
            return False
        return True

    def close(self) -> None:
        """Disconnect if this object connected (the driver actors keep running)."""
        leave_cluster(self._owned, self._joined)
        self._owned, self._joined = False, None
