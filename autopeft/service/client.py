"""A client of ``autopeft serve`` that needs only the standard library (and ``peft`` for
:meth:`Client.load_peft_config`), so a training job can pull its config over HTTP::

    import autopeft
    client = autopeft.Client("http://search-host:8000", token="apt_...")
    config = client.load_peft_config("demo", pick="knee")   # a peft LoraConfig (or other)
"""

from __future__ import annotations

import json
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopeft.exceptions import AutoPeftError, UserInputError

if TYPE_CHECKING:
    from peft import PeftConfig


class ServiceError(AutoPeftError):
    """The server answered with an error; ``status`` is the HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Client:
    """The HTTP API of an autopeft server.

    Args:
        url: The server's base URL, e.g. ``http://127.0.0.1:8000``.
        token: A token from ``autopeft token create`` (``read`` to watch and export, ``write``
            to submit); None for a ``--public-read`` server's reads.
        timeout: Seconds to wait for each response.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def submit(
        self,
        spec: str | Path,
        search_space: str | Path,
        *,
        name: str | None = None,
        n_trials: int | None = None,
    ) -> str:
        """Submit a study (spec and space as YAML text, or paths of YAML files: a ``Path``, or
        a one-line string naming an existing file); returns its name.

        The server validates it first: a bad spec raises :class:`ServiceError` (status 400) with
        the message ``autopeft validate`` would print."""
        body = {
            "spec": _text(spec),
            "search_space": _text(search_space),
            "name": name,
            "n_trials": n_trials,
        }
        return str(self._json("POST", "/api/studies", body)["name"])

    def studies(self) -> list[dict[str, Any]]:
        """Every study on the server, summarised."""
        return list(self._json("GET", "/api/studies"))

    def status(self, study: str) -> dict[str, Any]:
        """``state`` (running, complete, stopped, failed), ``counts``, ``hypervolume``,
        ``best``, ``eta_seconds`` of a study."""
        return dict(self._json("GET", f"/api/studies/{_q(study)}"))

    def front(self, study: str) -> list[dict[str, Any]]:
        """The Pareto front, one flat row per trial (as ``autopeft front --format json``)."""
        return list(self._json("GET", f"/api/studies/{_q(study)}/front"))

    def stop(self, study: str) -> None:
        """Interrupt a running study (it can be resumed)."""
        self._json("POST", f"/api/studies/{_q(study)}/stop")

    def resume(self, study: str) -> None:
        """Start a stopped study's driver again."""
        self._json("POST", f"/api/studies/{_q(study)}/resume")

    def export(self, study: str, *, pick: str | None = "knee", trial: int | None = None) -> bytes:
        """The chosen trial's ``adapter_config.json`` as the server's ``autopeft export``
        writes it (``trial`` wins over ``pick``)."""
        query = {"trial": trial} if trial is not None else {"pick": pick}
        path = f"/api/studies/{_q(study)}/export?{urllib.parse.urlencode(query)}"
        return self._request("GET", path)

    def export_files(
        self,
        study: str,
        *,
        pick: str | None = "knee",
        trial: int | None = None,
        format: str = "peft",
    ) -> dict[str, bytes]:
        """Every file ``autopeft export --format FORMAT`` writes for the chosen trial, by
        name (``adapter_config.json``, ``training.json``, ``README.md``, and the format's
        own), fetched as one zip."""
        import io
        import zipfile

        query: dict[str, Any] = {"trial": trial} if trial is not None else {"pick": pick}
        query.update(format=format, bundle="zip")
        body = self._request(
            "GET", f"/api/studies/{_q(study)}/export?{urllib.parse.urlencode(query)}"
        )
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def load_trial(
        self, study: str, *, pick: str | None = "knee", trial: int | None = None
    ) -> tuple[PeftConfig, dict[str, Any]]:
        """The chosen trial's ``peft`` config and its training arguments (``trl.SFTConfig``
        keywords), as :func:`autopeft.results.export.load_trial` returns them locally."""
        from peft import PeftConfig

        files = self.export_files(study, pick=pick, trial=trial, format="trl")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "adapter_config.json").write_bytes(files["adapter_config.json"])
            config = PeftConfig.from_pretrained(tmp)
        return config, dict(json.loads(files["sft_config.json"]))

    def load_peft_config(
        self, study: str, *, pick: str | None = "knee", trial: int | None = None
    ) -> PeftConfig:
        """The chosen trial's config as a ``peft`` config object, ready for
        ``peft.get_peft_model(base_model, config)``; needs ``peft`` installed."""
        from peft import PeftConfig  # importing autopeft made peft know autopeft's own types

        body = self.export(study, pick=pick, trial=trial)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "adapter_config.json").write_bytes(body)
            return PeftConfig.from_pretrained(tmp)

    # -- transport -------------------------------------------------------------------------------
    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return json.loads(self._request(method, path, body) or b"null")

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None or method == "POST":
            data = json.dumps(body or {}).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"{method} {path}: {exc.code} {_detail(exc)}", exc.code) from None
        except urllib.error.URLError as exc:
            raise ServiceError(f"cannot reach {self.url}: {exc.reason}", 0) from None


def _text(value: str | Path) -> str:
    """YAML text: a Path, or a one-line string naming an existing file, is read."""
    if isinstance(value, str) and "\n" not in value and _is_file(value):
        value = Path(value)
    if isinstance(value, Path):
        try:
            return value.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserInputError(f"cannot read {value}: {exc.strerror}") from None
    return value


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a file name
        return False


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _detail(exc: urllib.error.HTTPError) -> str:
    raw = exc.read()
    try:
        return str(json.loads(raw)["detail"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace")[:500] or str(exc.reason)
