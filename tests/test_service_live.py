"""Studies submitted over HTTP run as driver processes, two at once: watched, stopped from a
second server that shares only the database, resumed, exported.

On PostgreSQL when ``AUTOPEFT_TEST_POSTGRES`` is set (CI: the "two studies at once on
PostgreSQL" check), else on SQLite; one scenario, so the driver start-ups are paid once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service_support import Served, tiny_submission


def _wait(
    client: TestClient, headers: dict, name: str, until: Callable[[dict], bool], limit: float
) -> dict:
    deadline = time.monotonic() + limit
    while True:
        status: dict[str, Any] = client.get(f"/api/studies/{name}", headers=headers).json()
        if until(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def _submission(served: Served, name: str, n_trials: int) -> dict[str, Any]:
    body = tiny_submission(served, name, n_trials)
    body["spec"] = body["spec"].replace("max_steps: 4", "max_steps: 2")
    return body


@pytest.mark.slow
def test_two_studies_watched_stopped_elsewhere_resumed_exported(
    served: Served, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from autopeft.service import create_app
    from autopeft.storage.lease import live_lease
    from autopeft.storage.liveness import STALE_AFTER_SECONDS
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token

    if os.environ.get("AUTOPEFT_TEST_POSTGRES"):
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'live.db'}"
    roots = [served.root, served.model.parent]
    app = create_app(url, roots=roots, data_dir=tmp_path / "svc")
    store = Store(url)
    headers = served.auth(create_token(store, "write")[1])
    client = TestClient(app)
    for name, n in (("live", 3), ("other", 1)):
        created = client.post("/api/studies", json=_submission(served, name, n), headers=headers)
        assert created.status_code == 201, created.text
        assert created.json() == {"name": name}
    # registered before the answer: readable at once, and running (its process, no lease yet)
    assert client.get("/api/studies/live", headers=headers).json()["state"] == "running"
    again = client.post("/api/studies", json=_submission(served, "live", 3), headers=headers)
    assert again.status_code == 409
    # a second server (another machine: its own data dir, the same database) sees the driver
    # through its lease only, and stops it through the database
    elsewhere = TestClient(create_app(url, roots=roots, data_dir=tmp_path / "svc-b"))
    deadline = time.monotonic() + 90
    while live_lease(store, "live", STALE_AFTER_SECONDS) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert elsewhere.get("/api/studies/live", headers=headers).json()["state"] == "running"
    assert elsewhere.post("/api/studies/live/stop", headers=headers).status_code == 202
    live = _wait(client, headers, "live", lambda s: s["state"] != "running", 90)
    other = _wait(client, headers, "other", lambda s: s["state"] != "running", 90)
    assert other["state"] == "complete" and other["counts"]["complete"] == 1, other
    # asked before trial 2 of 3 started (the lease is taken before trial 0): the driver let
    # the running trial finish, started no other, and exited
    assert live["state"] == "stopped" and live["counts"]["complete"] < 3, live
    assert live["counts"]["interrupted"] == 0 and live["counts"]["running"] == 0, live
    assert client.post("/api/studies/live/stop", headers=headers).status_code == 409
    refused = elsewhere.post("/api/studies/live/resume", headers=headers)
    assert refused.status_code == 409 and "not submitted to this server" in refused.text
    assert client.post("/api/studies/live/resume", headers=headers).status_code == 202
    live = _wait(client, headers, "live", lambda s: s["state"] != "running", 90)
    assert live["state"] == "complete" and live["counts"]["complete"] == 3, live
    for name, numbers in (("live", [0, 1, 2]), ("other", [0])):
        trials = client.get(f"/api/studies/{name}/trials", headers=headers).json()
        assert [t["trial"] for t in trials] == numbers  # numbered per study, nothing mixed in
        export = client.get(f"/api/studies/{name}/export?pick=knee", headers=headers)
        assert export.status_code == 200 and export.json()["peft_type"] == "LORA"
        log = (tmp_path / "svc" / "studies" / name / "driver.log").read_text()
        assert "Traceback" not in log, log
