"""The Ray connection of a study: an embedded local instance, or an existing cluster.

* No address: a local Ray instance starts with the study and stops with it. It is started with
  ``ray.init(address="local")``: a bare ``ray.init()`` would attach to any cluster already
  running on the host (someone else's, on a shared machine).
* ``address`` (``auto``, ``host:port``, ``ray://host:port``): join a running cluster
  (``ray start --head``); leaving only disconnects. Ray 2.60 clusters use token auth by default;
  :mod:`autopeft.executors.ray_auth` checks the address and switches this process to token mode
  with the token Ray finds (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``)
  when the cluster asks for one, so the user need not set ``RAY_AUTH_MODE``.
* If this process is already connected (``ray.init`` called by the caller, e.g. a notebook or
  a test), that connection is used and left open.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from autopeft.exceptions import StudyError, UnsupportedError
from autopeft.executors.ray_auth import FIX, JoinState, prepare_join, restore

NICENESS = "RAY_worker_niceness"  # Ray's system config, read from the environment


def start_local(num_cpus: int | None = None) -> None:
    """Start an embedded Ray instance for this process (never attaching to another one).

    Ray starts worker processes at ``nice 15`` by default; trials are the work here, so the
    raylet is started with ``RAY_worker_niceness=0`` (on a shared machine, niced workers ran
    ~4x slower than the same trials in process).
    """
    import ray

    saved = os.environ.get(NICENESS)
    os.environ[NICENESS] = "0"  # read by the raylet when it starts, below
    try:
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    finally:
        if saved is None:
            os.environ.pop(NICENESS, None)
        else:
            os.environ[NICENESS] = saved


@dataclass
class RaySession:
    """Where the workers run and what each one reserves.

    Args:
        address: Cluster address, or None for the embedded local instance.
        cpus_per_trial: ``num_cpus`` of each worker actor.
        gpus_per_trial: ``num_gpus`` of each worker actor (a fraction shares a GPU).
    """

    address: str | None = None
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    owned: bool = field(default=False, init=False)
    joined: JoinState | None = field(default=None, init=False)

    def describe(self) -> str:
        where = self.address or "embedded local instance"
        return f"{self.cpus_per_trial} CPU, {self.gpus_per_trial:g} GPU each, on {where}"

    def actor_options(self) -> dict[str, Any]:
        """``ray.remote(...).options`` for a worker actor."""
        return {
            "num_cpus": self.cpus_per_trial,
            "num_gpus": self.gpus_per_trial,
            "max_restarts": 0,  # the executor replaces dead workers itself (see ray_pool)
            "max_task_retries": 0,
            "max_concurrency": 2,  # run() in one thread, progress() in another
        }

    def start(self, workers: int) -> None:
        """Connect (or start the local instance) and check that one worker fits."""
        import ray

        if not ray.is_initialized():
            if self.address is None:
                self._check_local(workers)
                start_local()
            else:
                self._join()
            self.owned = True
        self._check_fits(workers)

    def _check_local(self, workers: int) -> None:
        cpus = os.cpu_count() or 1
        if workers * self.cpus_per_trial > cpus:
            raise UnsupportedError(
                f"executor.workers x executor.cpus_per_trial = {workers} x {self.cpus_per_trial}"
                f" CPUs, but this machine has {cpus}; lower them, or join a cluster with "
                "--address (see the README's Ray section)"
            )
        if self.gpus_per_trial > 0:
            import torch

            gpus = torch.cuda.device_count()
            if workers * self.gpus_per_trial > gpus:
                raise UnsupportedError(
                    f"executor.workers x executor.gpus_per_trial = {workers} x "
                    f"{self.gpus_per_trial:g} GPUs, but torch sees {gpus} GPU(s) here"
                )

    def _join(self) -> None:
        assert self.address is not None
        self.joined = join_cluster(
            self.address,
            f"executor.address={self.address!r}",
            "Start one with `ray start --head`; a token-auth cluster needs its token",
        )

    def _check_fits(self, workers: int) -> None:
        import ray

        total = ray.cluster_resources()
        need = {"CPU": float(self.cpus_per_trial), "GPU": float(self.gpus_per_trial)}
        for key, amount in need.items():
            if amount > 0 and total.get(key, 0.0) < amount:
                raise UnsupportedError(
                    f"one trial needs {amount:g} {key} but the Ray cluster has "
                    f"{total.get(key, 0.0):g} in total"
                )

    def stop(self) -> None:
        """Stop the embedded instance, or disconnect from the cluster, if we opened it."""
        leave_cluster(self.owned, self.joined)
        self.owned, self.joined = False, None


def join_cluster(address: str, where: str, advice: str, **init: Any) -> JoinState:
    """Join the running Ray cluster at ``address``: check it and its token
    (:func:`~autopeft.executors.ray_auth.prepare_join`), then ``ray.init``.

    Args:
        address: The cluster address.
        where: How the user gave it, for the error line (``executor.address='...'``).
        advice: The error line's closing sentence, which ends in the token fix.
        init: More ``ray.init`` arguments (``namespace``, ...).

    Returns:
        What the join changed in this process, for :func:`leave_cluster`.

    Raises:
        StudyError: one line, when the cluster cannot be reached or joined.
    """
    import ray

    joined = prepare_join(address)  # reachable? token? (one clear line if not)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **init)
    except Exception as exc:  # ConnectionError, auth errors, bad address formats, ...
        restore(joined)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudyError(
            f"cannot join the Ray cluster at {where}: {first}. {advice}: {FIX}"
        ) from None
    return joined


def leave_cluster(owned: bool, joined: JoinState | None) -> None:
    """Undo :func:`join_cluster` or :func:`start_local`: shut Ray down if this process
    ``owned`` the connection, and restore the token mode the join switched on."""
    import ray

    if owned and ray.is_initialized():
        ray.shutdown()
    restore(joined)
