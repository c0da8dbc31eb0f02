"""Models named by Hugging Face Hub ID, resolved offline from a Hub cache built on disk.

The cache has the layout users' caches have (``$HF_HOME/hub/models--ORG--NAME/snapshots/REV``
plus ``refs/main``), holding tiny random-weight models, and every test runs with
``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.exceptions import UserInputError
from autopeft.models.hub import hub_id_of, looks_like_hub_id
from autopeft.models.resolve import resolve_model
from tests.conftest import assert_user_error, write_study, write_tiny_csv

REVISION = "0123456789abcdef0123456789abcdef01234567"
BERT_ID = "tiny-org/tiny-bert"


def add_to_hub_cache(home: Path, repo_id: str, model_dir: Path, revision: str = REVISION) -> Path:
    """Copy ``model_dir`` into ``home``'s Hub cache as ``repo_id`` at ``revision`` (= main)."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    add_to_hub_cache(home, BERT_ID, tiny_bert_dir)
    return home


@pytest.fixture()
def offline_hub(hub_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(hub_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_home


def test_a_hub_id_resolves_to_its_snapshot_in_the_cache(offline_hub: Path) -> None:
    snapshot = offline_hub / "hub" / "models--tiny-org--tiny-bert" / "snapshots" / REVISION
    assert resolve_model(BERT_ID) == snapshot
    assert resolve_model(BERT_ID, revision=REVISION) == snapshot  # a commit hash
    assert hub_id_of(snapshot) == BERT_ID
    assert hub_id_of(offline_hub) is None


def test_hub_ids_and_paths_are_told_apart() -> None:
    assert looks_like_hub_id("Qwen/Qwen2.5-0.5B-Instruct") and looks_like_hub_id("gpt2")
    for name in ("../model", "a/b/c", "model.gguf", "/abs/path", "./x"):
        assert not looks_like_hub_id(name), name


def test_a_hub_id_missing_offline_names_the_id_and_the_cache(offline_hub: Path) -> None:
    with pytest.raises(UserInputError) as info:
        resolve_model("tiny-org/not-there")
    message = str(info.value)
    assert "'tiny-org/not-there'" in message and str(offline_hub / "hub") in message
    assert "HF_HUB_OFFLINE" in message
    with pytest.raises(UserInputError, match="revision 'v2'"):
        resolve_model(BERT_ID, revision="v2")


def test_a_revision_on_a_local_model_is_refused(tiny_bert_dir: Path) -> None:
    with pytest.raises(UserInputError, match="applies to Hugging Face Hub IDs"):
        resolve_model(str(tiny_bert_dir), revision="main")


def _hub_study(d: Path, model: str, n_trials: int = 2) -> Path:
    from tests.conftest import SPACE

    write_tiny_csv(d / "data.csv")
    (d / "space.yaml").write_text(SPACE.format(budget=4000))
    return write_study(d, model=model, n_trials=n_trials)


@pytest.mark.slow
def test_a_study_on_a_hub_id_runs_offline_and_exports_the_id(
    offline_hub: Path, tmp_path: Path
) -> None:
    """`run` with `model: ORG/NAME` from the cache; the export names the Hub ID, not the
    cache path, and plain peft rebuilds the adapter from it (offline, from the cache)."""
    runner = CliRunner()
    spec = _hub_study(tmp_path, BERT_ID)
    result = runner.invoke(app, ["run", str(spec), "-q"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "export"
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    args = ["export", "tiny", "--storage", url, "--trial", "0", "--out", str(out)]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0, exported.output

    from peft import PeftConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    config = PeftConfig.from_pretrained(str(out))
    assert config.base_model_name_or_path == BERT_ID
    # huggingface_hub read HF_HOME / HF_HUB_OFFLINE at import: name the cache explicitly
    base = AutoModelForSequenceClassification.from_pretrained(
        config.base_model_name_or_path, cache_dir=offline_hub / "hub", local_files_only=True
    )
    assert get_peft_model(base, config).get_nb_trainable_parameters()[0] > 0


def test_a_study_on_a_missing_hub_id_is_one_error_and_writes_nothing(
    offline_hub: Path, tmp_path: Path
) -> None:
    spec = _hub_study(tmp_path, "tiny-org/absent")
    result = CliRunner().invoke(app, ["run", str(spec), "-q"])
    assert_user_error(result, "'tiny-org/absent'", str(offline_hub / "hub"))
    assert not (tmp_path / "studies.db").exists()


def test_the_service_takes_a_hub_model_id(offline_hub: Path, tmp_path: Path) -> None:
    """A submitted spec may name its model by Hub ID (the server resolves it through its own
    Hub cache); a missing ID is one 400 naming it, and nothing is left staged or stored."""
    from fastapi.testclient import TestClient

    from autopeft.run.prepare import prepare_study
    from autopeft.service import create_app
    from autopeft.service.launcher import Launcher
    from autopeft.storage.store import Store
    from autopeft.storage.tokens import create_token

    spec = _hub_study(tmp_path, BERT_ID)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    launcher = Launcher(tmp_path / "svc", url, roots=[tmp_path])
    text, space = spec.read_text(), (tmp_path / "space.yaml").read_text()
    _, staged = launcher.stage(text, space, name=None, n_trials=None)
    snapshot = offline_hub / "hub" / "models--tiny-org--tiny-bert" / "snapshots" / REVISION
    assert prepare_study(staged).model_path == snapshot
    assert f"model: {BERT_ID}\n" in staged.read_text()  # kept as written

    app = create_app(url, roots=[tmp_path], data_dir=tmp_path / "svc2")
    headers = {"Authorization": f"Bearer {create_token(Store(url), 'write')[1]}"}
    body = {"spec": text.replace(BERT_ID, "tiny-org/absent"), "search_space": space}
    response = TestClient(app).post("/api/studies", json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert "'tiny-org/absent'" in response.json()["detail"]
    assert not any((tmp_path / "svc2" / "staging").iterdir())
    assert Store(url).study_names() == []


@pytest.mark.slow
@pytest.mark.ray
def test_ray_workers_resolve_the_hub_id_themselves(offline_hub: Path, tmp_path: Path) -> None:
    """Each Ray worker gets the ID (not the driver's cache path) and resolves it offline."""
    import ray

    from autopeft.run.driver import run_study
    from autopeft.run.prepare import prepare_study, worker_setup

    spec = _hub_study(tmp_path, BERT_ID, n_trials=2)
    text = spec.read_text().replace(
        "executor: {threads: 1, device: cpu}",
        "executor: {name: ray, workers: 1, cpus_per_trial: 1, device: cpu}",
    )
    spec.write_text(text)
    prepared = prepare_study(spec)
    assert worker_setup(prepared, prepared.files.spec.executor).model == BERT_ID
    try:
        outcome = run_study(spec)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert [r.state for r in outcome.records] == ["COMPLETE", "COMPLETE"]
    assert all(r.metrics["worker"] for r in outcome.records)


def test_init_writes_the_hub_id_into_the_spec(
    offline_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    monkeypatch.chdir(tmp_path)
    write_tiny_csv(tmp_path / "reviews.csv")
    made = CliRunner().invoke(app, ["init", "--model", BERT_ID, "--data", "reviews.csv"])
    assert made.exit_code == 0, made.output
    spec = yaml.safe_load((tmp_path / "study.yaml").read_text())
    assert spec["model"] == BERT_ID and spec["task"] == "seq_cls"
