"""The HTTP API through FastAPI's TestClient: reads, exports, auth, limits, bad submissions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from autopeft.cli import app as cli_app
from autopeft.results.views import load_view
from tests.service_support import Served, tiny_submission


@pytest.fixture(scope="module")
def client(served: Served) -> TestClient:
    return TestClient(served.app)


def _get(client: TestClient, served: Served, path: str, token: str | None = "read"):
    return client.get(path, headers=served.auth(getattr(served, token) if token else None))


def _left_nothing(served: Served) -> None:
    assert load_view("tiny", served.url)  # still there, and nothing else:
    from autopeft.results.views import list_studies

    assert [v.name for v in list_studies(served.url)] == ["tiny"]
    assert not list((served.data_dir / "staging").iterdir())
    assert not list((served.data_dir / "studies").iterdir())


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_study_summary_trials_and_front(client: TestClient, served: Served) -> None:
    view = load_view("tiny", served.url)
    listed = _get(client, served, "/api/studies").json()
    assert [s["name"] for s in listed] == ["tiny"]
    s = _get(client, served, "/api/studies/tiny").json()
    assert s["state"] == "complete" and s["target"] == 3
    assert s["counts"]["complete"] == 3 and s["counts"]["fail"] == 0
    assert s["hypervolume"] == pytest.approx(view.hypervolume()[-1])
    assert s["best"] == pytest.approx(view.best_values())
    assert s["front_size"] == len(view.front()) and s["eta_seconds"] is None
    trials = _get(client, served, "/api/studies/tiny/trials").json()
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert {t["trial"] for t in trials if t["on_front"]} == {r.number for r in view.front()}
    front = _get(client, served, "/api/studies/tiny/front").json()
    cli = CliRunner().invoke(cli_app, ["front", "tiny", "--storage", served.url, "-f", "json"])
    assert front == json.loads(cli.stdout)
    csv = _get(client, served, "/api/studies/tiny/front?format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith(
        "trial,reference,over_budget,accuracy,trainable_params"
    )
    detail = _get(client, served, "/api/studies/tiny/trials/0").json()
    assert detail["peft_config"]["peft_type"] == "LORA" and detail["state"] == "COMPLETE"
    assert _get(client, served, "/api/studies/tiny/trials/99").status_code == 404
    missing = _get(client, served, "/api/studies/nope")
    assert missing.status_code == 404 and "no study named 'nope'" in missing.json()["detail"]


@pytest.mark.slow
def test_sample_is_the_front_and_a_bounded_share_of_the_rest(
    client: TestClient, served: Served
) -> None:
    """``/sample``: the front always, at most ``limit`` others, the total, the same rows as
    ``/trials``, the summary's version (the page refetches only when it moved)."""
    view = load_view("tiny", served.url)
    front = {r.number for r in view.front()}
    rows = {t["trial"]: t for t in _get(client, served, "/api/studies/tiny/trials").json()}
    version = _get(client, served, "/api/studies/tiny").json()["version"]
    assert isinstance(version, str) and version
    assert _get(client, served, "/api/studies/tiny").json()["version"] == version  # unchanged
    for limit in (0, 1, 500):
        body = _get(client, served, f"/api/studies/tiny/sample?limit={limit}").json()
        shown = [t["trial"] for t in body["trials"]]
        assert front <= set(shown) and shown == sorted(shown)
        assert body["total"] == 3 and body["others"] == 3 - len(front)
        assert body["shown"] == len(shown) == len(front) + min(limit, 3 - len(front))
        assert body["limit"] == limit and body["version"] == version
        assert all(t == rows[t["trial"]] for t in body["trials"])
        assert body == _get(client, served, f"/api/studies/tiny/sample?limit={limit}").json()
    hv = [[r.number, r.hypervolume] for r in view.complete() if r.hypervolume is not None]
    assert body["hypervolume"][-1] == hv[-1] and body["hypervolume"][0] == hv[0]
    assert _get(client, served, "/api/studies/tiny/sample").json() == body  # default 500
    # a poll of a page that has this version: told so, with no trials
    unchanged = _get(client, served, f"/api/studies/tiny/sample?unless={version}").json()
    assert unchanged == {"version": version, "unchanged": True}
    assert _get(client, served, "/api/studies/tiny/sample?unless=older").json() == body
    assert _get(client, served, "/api/studies/tiny/sample?limit=-1").status_code == 422
    assert _get(client, served, "/api/studies/nope/sample").status_code == 404
    assert _get(client, served, "/api/studies/tiny/sample", token=None).status_code == 401


def test_front_plot_png(client: TestClient, served: Served) -> None:
    png = _get(client, served, "/api/studies/tiny/plot.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "query, cli_args",
    [
        ("pick=knee", ["--pick", "knee"]),
        ("pick=max-accuracy", ["--pick", "max-accuracy"]),
        ("pick=min-params", ["--pick", "min-params"]),
        ("trial=1", ["--trial", "1"]),
    ],
)
def test_export_is_what_the_cli_writes(
    client: TestClient, served: Served, tmp_path: Path, query: str, cli_args: list[str]
) -> None:
    response = _get(client, served, f"/api/studies/tiny/export?{query}")
    assert response.status_code == 200, response.text
    args = ["export", "tiny", "--storage", served.url, "--out", str(tmp_path), *cli_args]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert response.content == (tmp_path / "adapter_config.json").read_bytes()
    modules = response.json()["target_modules"]  # the same bytes in every process: sorted
    assert modules == sorted(modules)
    assert f"exported trial {response.headers['x-autopeft-trial']} " in result.output


def test_export_errors_are_the_cli_messages(client: TestClient, served: Served) -> None:
    neither = _get(client, served, "/api/studies/tiny/export")
    assert neither.status_code == 400 and "give exactly one of" in neither.json()["detail"]
    both = _get(client, served, "/api/studies/tiny/export?pick=knee&trial=0")
    assert both.status_code == 400
    absent = _get(client, served, "/api/studies/tiny/export?trial=77")
    assert absent.status_code == 400 and "has no trial 77" in absent.json()["detail"]
    assert _get(client, served, "/api/studies/tiny/export?pick=best").status_code == 422


@pytest.mark.parametrize("fmt", ["peft", "trl", "axolotl", "llamafactory"])
def test_export_bundles_are_the_cli_files(
    client: TestClient, served: Served, tmp_path: Path, fmt: str
) -> None:
    import io
    import zipfile

    query = f"pick=knee&format={fmt}"
    zipped = _get(client, served, f"/api/studies/tiny/export?{query}&bundle=zip")
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    args = ["export", "tiny", "--storage", served.url, "--pick", "knee", "--format", fmt]
    result = CliRunner().invoke(cli_app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert {n: archive.read(n) for n in archive.namelist()} == written
    body = _get(client, served, f"/api/studies/tiny/export?{query}&bundle=json").json()
    assert {k: v.encode() for k, v in body["files"].items()} == written
    assert body["trial"] == int(zipped.headers["x-autopeft-trial"])
    assert ("lost (" in result.output) == bool(body["lost"])


def test_export_of_an_unknown_format_is_a_400(client: TestClient, served: Served) -> None:
    bad = _get(client, served, "/api/studies/tiny/export?pick=knee&format=keras")
    assert bad.status_code == 400 and "unknown export format 'keras'" in bad.json()["detail"]


READS = [
    "/api/studies",
    "/api/studies/tiny",
    "/api/studies/tiny/trials",
    "/api/studies/tiny/front",
    "/api/studies/tiny/export?pick=knee",
]
WRITES = ["/api/studies/tiny/stop", "/api/studies/tiny/resume", "/api/studies"]
# token -> (status of a read, status of a write: None means "passes auth")
MATRIX = {
    None: (401, 401),
    "wrong": (401, 401),
    "read": (200, 403),
    "write": (200, None),
    "revoked": (401, 401),
}


@pytest.mark.parametrize("token", list(MATRIX))
def test_auth_matrix(client: TestClient, served: Served, token: str | None) -> None:
    value = token if token in (None, "wrong") else getattr(served, str(token))
    headers = served.auth("apt_not-a-token" if value == "wrong" else value)
    read_status, write_status = MATRIX[token]
    for path in READS:
        assert client.get(path, headers=headers).status_code == read_status, path
    for path in WRITES:
        status = client.post(path, headers=headers, json={}).status_code
        if write_status is None:
            assert status not in (401, 403) and status < 500, (path, status)
        else:
            assert status == write_status, (path, status)
    assert client.get("/health", headers=headers).status_code == 200


def test_public_read_opens_reads_only(served: Served, tmp_path: Path) -> None:
    from autopeft.service import create_app

    public = TestClient(create_app(served.url, public_read=True, data_dir=tmp_path))
    assert all(public.get(path).status_code == 200 for path in READS)
    assert public.post("/api/studies/tiny/stop").status_code == 401
    assert public.get("/api/studies", headers=served.auth("apt_wrong")).status_code == 401


def test_write_endpoints_on_a_study_not_submitted_here(client: TestClient, served: Served) -> None:
    headers = served.auth(served.write)
    stop = client.post("/api/studies/tiny/stop", headers=headers)
    assert stop.status_code == 409 and "no driver running" in stop.json()["detail"]
    resume = client.post("/api/studies/tiny/resume", headers=headers)
    assert resume.status_code == 409 and "not submitted to this server" in resume.json()["detail"]
    assert client.post("/api/studies/nope/stop", headers=headers).status_code == 404


@pytest.mark.parametrize(
    "change, status, message",
    [
        (lambda b: b.update(spec="name: [unclosed"), 400, "malformed YAML"),
        (lambda b: b.update(spec="- a list"), 400, "expected a mapping"),
        (lambda b: b.update(name="../escape"), 400, "study name must match"),
        (lambda b: b.update(name="tiny"), 409, "exists already"),
        (lambda b: b.update(spec=b["spec"] + "bogus_key: 1\n"), 400, "spec.yaml:12: bogus_key"),
        (lambda b: b.update(search_space="version: 1\n"), 400, "space.yaml"),
        (
            lambda b: b.update(
                spec=b["spec"].replace("source: data.csv", "source: ../../etc/passwd")
            ),
            400,
            "neither a built-in",
        ),
        (
            lambda b: b.update(spec=b["spec"].replace("source: data.csv", "source: /etc/passwd")),
            400,
            "neither a built-in",
        ),
        (lambda b: b.update(spec=_model(b["spec"], "/usr/lib")), 400, "model.path: '/usr/lib'"),
        (lambda b: b.update(spec=_model(b["spec"], "../../../../..")), 400, "neither a built-in"),
        (lambda b: b.update(spec="x: '" + "a" * 70_000 + "'"), 413, "over the limit"),
        (lambda b: b.update(n_trials=0), 422, ""),
        (lambda b: b.pop("spec"), 422, ""),
    ],
)
def test_bad_submissions_are_4xx_and_leave_nothing(
    client: TestClient, served: Served, change, status: int, message: str
) -> None:
    body = tiny_submission(served, "fresh")
    change(body)
    response = client.post("/api/studies", json=body, headers=served.auth(served.write))
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if message:
        assert message in detail and "\n" not in detail, detail
        assert not detail.startswith("/"), detail  # the file as submitted, not a server path
        assert str(served.data_dir) not in detail  # no server paths
    _left_nothing(served)


def _model(spec: str, path: str) -> str:
    lines = [f"model: {path}" if line.startswith("model:") else line for line in spec.splitlines()]
    return "\n".join(lines) + "\n"


def test_bodies_over_the_limit_or_of_unknown_length_are_refused_unread(
    client: TestClient, served: Served
) -> None:
    headers = {**served.auth(served.write), "Content-Type": "application/json"}
    response = client.post("/api/studies", content=b"{" + b" " * 200_000 + b"}", headers=headers)
    assert response.status_code == 413

    def chunks():
        yield b'{"spec": "'
        yield b'"}'

    chunked = client.post("/api/studies", content=chunks(), headers=headers)
    assert chunked.status_code == 411


def test_dataset_uploads_are_named_safely_and_size_limited(served: Served, tmp_path: Path) -> None:
    from autopeft.service import create_app

    small = TestClient(create_app(served.url, data_dir=tmp_path, max_upload_bytes=1000))
    headers = served.auth(served.write)

    def upload(name: str, data: bytes) -> int:
        files = {"file": (name, data, "text/csv")}
        return small.post("/api/datasets", files=files, headers=headers).status_code

    assert upload("ok.csv", b"text,label\nhi,a\n") == 201
    assert (tmp_path / "datasets" / "ok.csv").read_bytes() == b"text,label\nhi,a\n"
    assert upload("ok.csv", b"text,label\n") == 409
    assert upload("big.csv", b"x" * 5000) == 413
    assert upload("../up.csv", b"a") == 400
    assert upload("data.exe", b"a") == 400
    assert not (tmp_path / "up.csv").exists() and not (tmp_path / "datasets" / "big.csv").exists()
    headers = served.auth(served.read)
    files = {"file": ("r.csv", b"a", "text/csv")}
    assert small.post("/api/datasets", files=files, headers=headers).status_code == 403


def test_token_cli_create_list_revoke(served: Served) -> None:
    runner = CliRunner()
    made = runner.invoke(cli_app, ["token", "create", "--scope", "read", "--storage", served.url])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    client = TestClient(served.app)
    assert client.get("/api/studies", headers=served.auth(token)).status_code == 200
    listed = runner.invoke(cli_app, ["token", "list", "--storage", served.url]).stdout
    token_id = listed.strip().splitlines()[-1].split("\t")[0]
    assert token not in listed and "read" in listed
    revoked = runner.invoke(cli_app, ["token", "revoke", token_id, "--storage", served.url])
    assert revoked.exit_code == 0 and f"revoked token {token_id}" in revoked.stdout
    assert client.get("/api/studies", headers=served.auth(token)).status_code == 401
    bad = runner.invoke(cli_app, ["token", "revoke", "999", "--storage", served.url])
    assert bad.exit_code == 2 and "no token with id 999" in bad.stderr


def test_only_token_hashes_are_stored(served: Served) -> None:
    import sqlite3

    with sqlite3.connect(served.url.removeprefix("sqlite:///")) as db:
        stored = " ".join(str(row) for row in db.execute("SELECT * FROM autopeft_tokens"))
    assert served.read not in stored and served.write not in stored


def test_a_cluster_address_makes_drivers_ray_actors_with_ray_trials(
    served: Served, tmp_path: Path
) -> None:
    from autopeft.service.launcher import Launcher, _as_options

    launcher = Launcher(tmp_path, served.url, address="ray://head:10001")  # connects lazily
    assert _as_options(launcher.executor_overrides()) == {
        "name": "ray",
        "address": "ray://head:10001",
    }
    command = Launcher(tmp_path, served.url).command("demo")  # no address: a local process
    assert command[command.index("--storage") + 1] == served.url and command[-1] == "--quiet"


def test_a_local_driver_is_found_and_signalled_through_its_pid_file(
    served: Served, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import time

    from autopeft.service.launcher import Launcher

    directory = Launcher(tmp_path, served.url).study_dir("fake")
    directory.mkdir()
    (directory / "study.yaml").write_text("name: fake\n")
    # like autopeft.cli's main: interruptible even if this test runs with SIGINT ignored (a
    # background job's); it says when its handler is in place
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, sys, time; "
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        "pathlib.Path(sys.argv[-1]).touch(); time.sleep(60)"
    )
    # its arguments look like a driver's: `-m autopeft run` and the study name
    fake = [sys.executable, "-c", code, "-m", "autopeft", "run", "fake", str(ready)]
    proc = subprocess.Popen(fake, start_new_session=True)
    try:
        (directory / "driver.pid").write_text(f"{proc.pid}\n")
        while not ready.exists():  # until the child has exec'd and can be interrupted
            time.sleep(0.01)
        restarted = Launcher(tmp_path, served.url)  # knows the driver only by its pid file
        assert restarted.running("fake") and restarted.exit_code("fake") is None
        assert restarted.stop("fake")  # SIGINT to its session
        proc.wait(timeout=30)
        assert not restarted.running("fake") and not restarted.stop("fake")
    finally:
        proc.kill()
        proc.wait()


def test_insight_placement_and_report_endpoints(client: TestClient, served: Served) -> None:
    insight = _get(client, served, "/api/studies/tiny/insight")
    assert insight.status_code == 200, insight.text
    body = insight.json()
    assert {"health", "importance", "front_usage"} <= set(body)
    assert body["front_usage"]["share"]["unit"] == "% of members"
    assert [i["objective"] for i in body["importance"]] == [
        "accuracy",
        "trainable_params",
        "peak_memory_mb",
    ]
    assert all(i["note"] == "needs 4 complete trials" for i in body["importance"])  # 3 trials
    grid = _get(client, served, "/api/studies/tiny/placement?trial=0").json()
    assert grid["title"].startswith("trial 0") and len(grid["cells"]) == len(grid["layers"])
    assert any(any(row) for row in grid["cells"])
    assert _get(client, served, "/api/studies/tiny/placement?trial=99").status_code == 404
    report = _get(client, served, "/api/studies/tiny/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "Where the capacity went" in report.text
    assert _get(client, served, "/api/studies/tiny/insight", token=None).status_code == 401


def test_the_curves_endpoint_returns_the_fronts_and_a_trials_loss_curves(
    client: TestClient, served: Served
) -> None:
    front = _get(client, served, "/api/studies/tiny/curves").json()
    numbers = [row["trial"] for row in _get(client, served, "/api/studies/tiny/front").json()]
    assert front["metric"] == "accuracy"
    assert [c["trial"] for c in front["curves"]] == [n for n in numbers if n is not None]
    one = _get(client, served, "/api/studies/tiny/curves?trial=1").json()["curves"]
    assert len(one) == 1 and one[0]["trial"] == 1 and one[0]["rungs"] == []  # single fidelity
    assert [s for s, _ in one[0]["loss"]] == [1, 2, 3, 4]  # 4 steps: every step is a point
    assert all(isinstance(loss, float) and loss > 0 for _, loss in one[0]["loss"])
    assert _get(client, served, "/api/studies/tiny/curves?trial=99").status_code == 404
    assert _get(client, served, "/api/studies/tiny/curves", token=None).status_code == 401
    # the list payloads stay lean: no curve in the trials list or the front
    listed = _get(client, served, "/api/studies/tiny/trials").json()
    assert listed and all("loss_curve" not in row for row in listed)
