"""Joining a token-auth Ray cluster started by `ray start --head`, as a user would.

The cluster gets its own HOME with a token in ``~/.ray/auth_token`` (so ``ray start`` turns
token auth on by itself, as on a machine where Ray ran before), its own temp dir and a free
port, and runs in its own process group, which the fixture kills: ``ray stop`` would stop every
Ray instance of this user on the host. One cluster serves every test of the module.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopeft.exceptions import StudyError
from autopeft.executors import ray_auth
from tests.conftest import SPACE, write_study, write_tiny_csv

AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    """This process's environment with ``home`` as HOME and no Ray auth settings."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    return {**env, "HOME": str(home), "OMP_NUM_THREADS": "1"}


class Cluster:
    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        (self.home / ".ray").mkdir(parents=True)
        self.token = secrets.token_hex(32)
        (self.home / ".ray" / "auth_token").write_text(self.token)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = root / "head.log"
        command = [
            RAY, "start", "--head", "--block", "--port", str(self.port),
            "--temp-dir", str(root / "ray"), "--num-cpus", "1", "--include-dashboard=false",
            "--disable-usage-stats",
        ]  # fmt: skip
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                command, env=_env(self.home), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_started(self, timeout: float = 60.0) -> None:
        """Wait for the head (tests call it first, so it starts while other fixtures build)."""
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`ray start --head` failed:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the head's process group: gcs, raylet, agents, workers (`ray start --block`
        did not stop on SIGTERM within seconds here, and nothing of it needs to be kept)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # a short root: Ray's unix socket paths under --temp-dir must stay under 108 bytes
    root = Path(tempfile.mkdtemp(prefix="aprt"))
    head = Cluster(root)
    try:
        yield head
    finally:
        head.kill()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _auth_env(home: Path, resync: bool = True) -> Iterator[None]:
    """HOME and Ray's auth variables as a user with ``home`` would have them, restored after;
    ``resync``: refresh Ray's cached config (it reads them) on the way in and out."""
    saved = {k: os.environ.get(k) for k in (*AUTH_VARS, "HOME")}
    for k in AUTH_VARS:
        os.environ.pop(k, None)
    os.environ["HOME"] = str(home)
    if resync:
        ray_auth._set_mode(None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if resync:
            ray_auth._set_mode(os.environ.get(ray_auth.MODE_VAR))


def _tiny_spec(d: Path, model: Path) -> Path:
    write_tiny_csv(d / "data.csv")
    (d / "space.yaml").write_text(SPACE.format(budget=4000))
    spec = write_study(d, model=str(model), n_trials=1)
    text = spec.read_text().replace(
        "executor: {threads: 1, device: cpu}",
        "executor: {name: ray, workers: 1, cpus_per_trial: 1, device: cpu}",
    )
    spec.write_text(text.replace("max_steps: 4", "max_steps: 2"))
    return spec


def _autopeft(args: list[str], cluster: Cluster):
    """``autopeft <args>`` in this process, as a user on the head's machine: its HOME, no
    RAY_AUTH_* variables. ``result.mode_after`` is ``RAY_AUTH_MODE`` as the command left it
    (read before the test's own environment, which an earlier local Ray may have set, comes
    back)."""
    import ray
    from typer.testing import CliRunner

    from autopeft.cli import app

    assert not ray.is_initialized(), "a Ray connection leaked from another test"
    cluster.wait_started()
    with _auth_env(cluster.home):
        result = CliRunner().invoke(app, args)
        result.mode_after = os.environ.get(ray_auth.MODE_VAR)  # type: ignore[attr-defined]
        return result


@pytest.mark.ray
@pytest.mark.slow
def test_the_token_ray_left_on_the_machine_is_used(cluster, tmp_path, tiny_bert_dir) -> None:
    """No RAY_AUTH_MODE, no flag: the token in ~/.ray/auth_token joins the cluster."""
    import ray

    from autopeft.results.views import load_view

    spec = _tiny_spec(tmp_path, tiny_bert_dir)
    out = _autopeft(["run", str(spec), "-q", "--address", cluster.address], cluster)
    assert out.exit_code == 0, out.output[-3000:]
    assert not ray.is_initialized() and out.mode_after is None  # all undone
    records = load_view("tiny", f"sqlite:///{tmp_path / 'studies.db'}").records
    assert [r.state for r in records] == ["COMPLETE"]
    assert records[0].metrics["worker"].split(":")[0] == os.uname().nodename


@pytest.mark.ray
@pytest.mark.slow
def test_a_wrong_token_is_one_error_line(cluster, tmp_path, tiny_bert_dir, monkeypatch) -> None:
    from tests.conftest import assert_user_error

    monkeypatch.setattr(ray_auth, "_flag_file", None)
    spec = _tiny_spec(tmp_path, tiny_bert_dir)
    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    args = ["run", str(spec), "-q", "--address", cluster.address, "--ray-token-file", str(wrong)]
    out = _autopeft(args, cluster)
    assert_user_error(
        out, f"rejected the token from --ray-token-file {wrong}", "--ray-token-file FILE",
        "RAY_AUTH_TOKEN",
    )  # fmt: skip


@pytest.mark.ray
@pytest.mark.slow
def test_token_sources_in_process(cluster, tmp_path) -> None:
    """prepare_join directly: missing token, Ray's env variables, explicit RAY_AUTH_MODE."""
    cluster.wait_started()
    empty = tmp_path / "empty-home"
    empty.mkdir()
    with _auth_env(empty), pytest.raises(StudyError, match="requires a token and none was found"):
        ray_auth.prepare_join(cluster.address)
    with _auth_env(empty):
        os.environ["RAY_AUTH_TOKEN"] = cluster.token
        state = ray_auth.prepare_join(cluster.address)
        assert state.switched and state.token_source == "$RAY_AUTH_TOKEN"
        assert os.environ["RAY_AUTH_MODE"] == "token"
        ray_auth.restore(state)
        assert "RAY_AUTH_MODE" not in os.environ
    with _auth_env(cluster.home):
        os.environ["RAY_AUTH_MODE"] = "disabled"
        with pytest.raises(StudyError, match="RAY_AUTH_MODE=disabled; unset RAY_AUTH_MODE"):
            ray_auth.prepare_join(cluster.address)
    with _auth_env(cluster.home):
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "missing")
        with pytest.raises(StudyError, match=r"RAY_AUTH_TOKEN_PATH=.*missing: no token there"):
            ray_auth.prepare_join(cluster.address)


def test_an_unreachable_address_is_one_clear_line() -> None:
    port = _free_port()  # closed again: nothing listens there
    with pytest.raises(StudyError, match=r"cannot reach a Ray cluster at .*Connection refused"):
        ray_auth.prepare_join(f"127.0.0.1:{port}")
    with pytest.raises(StudyError, match="is not auto, host:port or ray://host:port"):
        ray_auth.prepare_join("127.0.0.1")


def test_token_file_flag_sets_what_ray_reads(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(ray_auth, "_flag_file", None)
    token = tmp_path / "token"
    token.write_text("abc\n")
    with _auth_env(tmp_path, resync=False):
        os.environ["RAY_AUTH_TOKEN"] = "from-env"
        ray_auth.use_token_file(token)
        assert os.environ["RAY_AUTH_TOKEN_PATH"] == str(token.resolve())
        assert "RAY_AUTH_TOKEN" not in os.environ  # Ray would prefer it over the file
        assert ray_auth.find_token() == f"--ray-token-file {token.resolve()}"
    (tmp_path / "empty").write_text("")
    with pytest.raises(StudyError, match="the file is empty"):
        ray_auth.use_token_file(tmp_path / "empty")
    with pytest.raises(StudyError, match="cannot read it"):
        ray_auth.use_token_file(tmp_path / "nope")


def test_both_joins_share_one_helper_one_error_line_and_undo(monkeypatch) -> None:
    """A study's session and the server's driver connection join through one helper: a failed
    ``ray.init`` is one line naming where the address came from, and the token mode is undone."""
    import ray

    from autopeft.executors import ray_session
    from autopeft.executors.ray_session import RaySession
    from autopeft.service.ray_driver import RayDrivers

    state = ray_auth.JoinState("h:1", token_source="$RAY_AUTH_TOKEN", switched=True)
    restored: list = []
    monkeypatch.setattr(ray_session, "prepare_join", lambda address: state)
    monkeypatch.setattr(ray_session, "restore", restored.append)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def refuse(**kwargs) -> None:
        raise ConnectionError("Failed to connect to GCS\nretried 20 times")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(StudyError) as session:
        RaySession(address="h:1").start(1)
    assert str(session.value) == (
        "cannot join the Ray cluster at executor.address='h:1': Failed to connect to GCS. Start "
        f"one with `ray start --head`; a token-auth cluster needs its token: {ray_auth.FIX}"
    )
    with pytest.raises(StudyError) as drivers:
        RayDrivers("h:1").connect()
    assert str(drivers.value) == (
        "cannot join the Ray cluster at --address 'h:1': Failed to connect to GCS. A token-auth "
        f"cluster needs its token: {ray_auth.FIX}"
    )
    assert restored == [state, state]
