"""A small completed study served by the service app, shared by the tests/test_service*.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import SPACE, write_study, write_tiny_csv


@dataclass
class Served:
    """A served tiny study: its directory, database URL, tokens and the app's data dir."""

    root: Path
    url: str
    model: Path
    read: str
    write: str
    revoked: str
    data_dir: Path
    app: Any

    def auth(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}


def make_served(directory: Path, model: Path, **options: Any) -> Served:
    """Run a 3-trial tiny study in process, make tokens and build the app over its database."""
    from autopeft.run.driver import run_study
    from autopeft.service import create_app
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token, revoke_token

    write_tiny_csv(directory / "data.csv")
    (directory / "space.yaml").write_text(SPACE.format(budget=4000))
    run_study(write_study(directory, model=str(model), n_trials=3))
    url = f"sqlite:///{directory / 'studies.db'}"
    store = Store(url)
    tokens = {scope: create_token(store, scope)[1] for scope in ("read", "write")}
    revoked_id, revoked = create_token(store, "write")
    revoke_token(store, revoked_id)
    data_dir = directory / "service"
    app = create_app(url, roots=[directory, model.parent], data_dir=data_dir, **options)
    return Served(directory, url, model, tokens["read"], tokens["write"], revoked, data_dir, app)


def tiny_submission(served: Served, name: str, n_trials: int = 1) -> dict[str, Any]:
    """A POST /api/studies body for the tiny study, referring to the model and data by roots."""
    spec = (served.root / "study.yaml").read_text().replace("name: tiny", f"name: {name}")
    spec = spec.replace(str(served.model), served.model.name)  # relative to a root
    return {
        "spec": spec,
        "search_space": (served.root / "space.yaml").read_text(),
        "n_trials": n_trials,
    }
