"""``autopeft serve --address``: each submitted study's driver is a detached actor on the Ray
cluster (its trials too), and the service sees it run through the study's lease."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_support import Served, tiny_submission
from tests.test_ray_auth import Cluster, _auth_env, cluster  # noqa: F401  (the fixture)


@pytest.mark.ray
@pytest.mark.slow
def test_a_submitted_study_runs_as_a_detached_actor(
    cluster: Cluster,  # noqa: F811
    served: Served,
    tmp_path: Path,
) -> None:
    import ray

    from autopeft.results.views import load_view
    from autopeft.service import create_app
    from autopeft.storage.lease import live_lease
    from autopeft.storage.liveness import STALE_AFTER_SECONDS
    from autopeft.storage.store import OWNER, Store
    from autopeft.storage.tokens import create_token

    cluster.wait_started()
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    store = Store(url)
    headers = served.auth(create_token(store, "write")[1])
    roots = [served.root, served.model.parent]
    with _auth_env(cluster.home):  # the server's user: the token Ray left in ~/.ray
        app = create_app(url, roots=roots, data_dir=tmp_path / "svc", address=cluster.address)
        try:
            client = TestClient(app)
            body = tiny_submission(served, "onray", n_trials=1)
            body["spec"] = body["spec"].replace("max_steps: 4", "max_steps: 2")
            created = client.post("/api/studies", json=body, headers=headers)
            assert created.status_code == 201, created.text
            owners, states = set(), []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                lease = live_lease(store, "onray", STALE_AFTER_SECONDS)
                state = client.get("/api/studies/onray", headers=headers).json()["state"]
                states.append(state)
                if lease is not None:
                    owners.add(lease.owner)
                    assert state == "running"
                elif state != "running":
                    break
                time.sleep(0.3)
        finally:
            app.state.service.launcher.close()
    assert not ray.is_initialized()
    assert states[0] == "running" and states[-1] == "complete", states
    assert owners and OWNER not in owners  # the lease was held by the actor's process
    records = load_view("onray", url).records
    assert [r.state for r in records] == ["COMPLETE"]
    assert records[0].metrics["worker"].split(":")[0] == os.uname().nodename  # a Ray worker
    assert not (tmp_path / "svc" / "studies" / "onray" / "driver.pid").exists()
