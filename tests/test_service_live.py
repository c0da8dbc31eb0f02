"""A study submitted over HTTP runs as its own driver process: watched, stopped, resumed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service_support import Served, tiny_submission


def _wait(client: TestClient, headers: dict, until: Callable[[dict], bool], limit: float) -> dict:
    deadline = time.monotonic() + limit
    while True:
        status: dict[str, Any] = client.get("/api/studies/live", headers=headers).json()
        if until(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


@pytest.mark.slow
def test_submit_watch_stop_resume_export(served: Served, tmp_path: Path) -> None:
    from autopeft.service import create_app
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token

    url = f"sqlite:///{tmp_path / 'live.db'}"
    app = create_app(url, roots=[served.root, served.model.parent], data_dir=tmp_path / "svc")
    headers = served.auth(create_token(Store(url), "write")[1])
    client = TestClient(app)
    body = tiny_submission(served, "live", n_trials=3)
    created = client.post("/api/studies", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "live"}
    # registered before the answer: readable at once, and running
    assert client.get("/api/studies/live", headers=headers).json()["state"] == "running"
    again = client.post("/api/studies", json=body, headers=headers)
    assert again.status_code == 409
    status = _wait(client, headers, lambda s: s["counts"]["complete"] >= 1, 90)
    assert status["counts"]["complete"] >= 1, status
    # a restarted server (a new app on the same data dir) finds the driver and stops it
    restarted = TestClient(
        create_app(url, roots=[served.root, served.model.parent], data_dir=tmp_path / "svc")
    )
    assert restarted.get("/api/studies/live", headers=headers).json()["state"] == "running"
    assert restarted.post("/api/studies/live/stop", headers=headers).status_code == 202
    status = _wait(client, headers, lambda s: s["state"] != "running", 30)
    assert status["state"] in ("stopped", "complete"), status
    if status["state"] == "stopped":
        assert client.post("/api/studies/live/stop", headers=headers).status_code == 409
        assert client.post("/api/studies/live/resume", headers=headers).status_code == 202
        status = _wait(client, headers, lambda s: s["state"] != "running", 90)
    assert status["state"] == "complete" and status["counts"]["complete"] == 3, status
    log = (tmp_path / "svc" / "studies" / "live" / "driver.log").read_text()
    assert "Traceback" not in log, log
    export = client.get("/api/studies/live/export?pick=knee", headers=headers)
    assert export.status_code == 200 and export.json()["peft_type"] == "LORA"
