"""Two studies submitted over HTTP run at once on PostgreSQL, each in its own driver."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service_support import Served, tiny_submission


@pytest.mark.slow
def test_two_studies_at_once_on_postgresql(
    served: Served, postgres_url: str, tmp_path: Path
) -> None:
    from autopeft.service import create_app
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token

    app = create_app(
        postgres_url, roots=[served.root, served.model.parent], data_dir=tmp_path / "svc"
    )
    headers = served.auth(create_token(Store(postgres_url), "write")[1])
    client = TestClient(app)
    for name in ("pg-a", "pg-b"):
        created = client.post(
            "/api/studies", json=tiny_submission(served, name, 2), headers=headers
        )
        assert created.status_code == 201, created.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = {s["name"]: s for s in client.get("/api/studies", headers=headers).json()}
        if all(s["state"] != "running" for s in states.values()):
            break
        time.sleep(0.5)
    assert set(states) == {"pg-a", "pg-b"}
    for name, s in states.items():
        assert s["state"] == "complete" and s["counts"]["complete"] == 2, (name, s)
        trials = client.get(f"/api/studies/{name}/trials", headers=headers).json()
        assert [t["trial"] for t in trials] == [0, 1]  # numbered per study, nothing mixed in
        export = client.get(f"/api/studies/{name}/export?pick=knee", headers=headers)
        assert export.status_code == 200 and export.json()["peft_type"] == "LORA"
        log = (tmp_path / "svc" / "studies" / name / "driver.log").read_text()
        assert "Traceback" not in log, log
