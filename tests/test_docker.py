"""The Docker image and compose stack, checked statically: no Docker engine runs here.

What an engine would catch first, caught without one: a ``COPY`` source that is missing or
excluded by ``.dockerignore`` (matched as Docker matches it), a build argument used but not
declared (or passed by compose but not declared), install steps that drift from the Makefile, a
compose service without an image or with a build context that does not exist, a container
command that the real ``ray`` or ``autopeft`` CLI would reject, an undeclared named volume, a
variable that ``env.example`` does not set, and database URLs or paths that disagree between the
image, compose and ``docker/README.md``.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml"]
README = DOCKER / "README.md"


# ---------------------------------------------------------------- .dockerignore, as Docker reads it
class DockerIgnore:
    """Docker's ``.dockerignore`` rules (moby ``patternmatcher``): patterns are relative to the
    context root and cleaned; ``*`` and ``?`` stay within one path segment, ``**`` spans any
    number; a path is excluded when it or a parent matches; ``!`` re-includes; the last
    matching pattern decides."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:].strip() if negate else line
            pattern = re.sub(r"/+", "/", pattern).strip("/")
            pattern = "/".join(p for p in pattern.split("/") if p not in ("", "."))
            if pattern:
                self.rules.append((negate, re.compile(_glob_regex(pattern))))

    def excluded(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, regex in self.rules:
            if any(regex.match(c) for c in candidates):
                result = not negate
        return result


def _glob_regex(pattern: str) -> str:
    out, i = "^", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1 : i + 2] == "*":
            i += 2
            if pattern[i : i + 1] == "/":
                i += 1
            out += ".*" if i >= len(pattern) else "(.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out += re.escape(ch)
            else:
                out += "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]"
                i = end
        else:
            out += re.escape(ch)
        i += 1
    return out + "$"


@pytest.mark.parametrize(
    ("rules", "path", "excluded"),
    [
        ("runs", "runs/demo.db", True),  # a directory excludes what is under it
        ("runs", "studies/runs", False),  # patterns are anchored at the context root
        ("*.db", "autopeft.db", True),
        ("*.db", "runs/autopeft.db", False),  # `*` does not cross `/`
        ("**/*.pyc", "autopeft/run/x.pyc", True),
        ("**/__pycache__", "__pycache__/x.pyc", True),  # `**/` also matches no directory
        ("docs/**", "docs/a/b.md", True),
        (".venv*", ".venv-deps/bin/python", True),
        ("bench\n!bench/keep.py", "bench/keep.py", False),  # the last match decides
        ("bench\n!bench/keep.py", "bench/other.py", True),
        ("!x\nx", "x", True),
        ("/build/", "build/lib/a.py", True),  # leading and trailing slashes are cleaned
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[ab].txt", "b.txt", True),
        ("# comment\n", "# comment", False),
    ],
)
def test_dockerignore_matching(rules: str, path: str, excluded: bool) -> None:
    assert DockerIgnore(rules).excluded(path) is excluded


# ------------------------------------------------------------------------------- the Dockerfile
def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _args(rest: str) -> list[str]:
    return yaml.safe_load(rest) if rest.startswith("[") else shlex.split(rest)


def test_every_copy_source_exists_and_is_in_the_context() -> None:
    ignore = DockerIgnore((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    copies = [_args(rest) for word, rest in instructions() if word in ("COPY", "ADD")]
    assert copies
    for args in copies:
        sources = [a for a in args[:-1] if not a.startswith("--")]
        assert not any(a.startswith("--from") for a in args), "multi-stage copies: extend me"
        for source in sources:
            matches = list(ROOT.glob(source))
            assert matches, f"COPY {source}: not in the repository"
            for match in matches:
                rel = match.relative_to(ROOT).as_posix()
                assert not ignore.excluded(rel), f"COPY {source}: excluded by .dockerignore"
                if match.is_dir():
                    files = [
                        f.relative_to(ROOT).as_posix()
                        for f in match.rglob("*")
                        if f.is_file() and "__pycache__" not in f.parts
                    ]
                    assert files, f"COPY {source}: an empty directory"
                    kept = [f for f in files if f.endswith((".py", ".yaml"))]
                    dropped = [f for f in kept if ignore.excluded(f)]
                    assert not dropped, f"COPY {source}: .dockerignore drops {dropped}"


def test_build_arguments_are_declared_where_used() -> None:
    """An ARG before FROM exists only for FROM lines; after FROM it must be declared again."""
    before_from: set[str] = set()
    stage: set[str] | None = None
    for word, rest in instructions():
        if word == "FROM":
            for name in _used(rest):
                assert name in before_from, f"FROM uses ${name}, not declared before FROM"
            stage = set()
            continue
        if word == "ARG":
            (before_from if stage is None else stage).add(rest.split("=", 1)[0])
            continue
        assert stage is not None, f"{word} before FROM"
        if word == "ENV":
            stage.update(re.findall(r"(\w+)=", rest))
        assigned = set(re.findall(r"\b(\w+)=", rest)) if word == "RUN" else set()
        for name in _used(rest) - assigned:
            assert name in stage, f"{word} uses ${name}, which no ARG or ENV of this stage sets"
    declared = before_from | (stage or set())
    for compose in _compose_files().values():
        for service in compose["services"].values():
            passed = set((service.get("build") or {}).get("args") or {})
            assert passed <= declared, f"compose passes undeclared build args {passed - declared}"


def _used(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)", text)) | set(re.findall(r"\$(\w+)", text))


def test_install_steps_are_the_makefiles() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assets = re.search(r"^ASSETS := (.+)$", makefile, re.M)
    assert assets is not None
    runs = [rest for word, rest in instructions() if word == "RUN"]
    pip_runs = " ".join(runs)
    no_deps = [r for r in runs if "--no-deps" in r]
    assert len(no_deps) == 1
    assert set(no_deps[0].split()) >= set(assets.group(1).split()), "assets differ from Makefile"
    # everything else installs under the lock, and the lock is checked
    for command in re.split(r"&&|;", pip_runs):
        if "pip install" in command and "--no-deps" not in command:
            assert "-c requirements.lock" in command, command
    assert "tools/lock.py check" in pip_runs
    variants = re.search(r"case \"\$\{TORCH_VARIANT\}\" in(.+?)esac", pip_runs)
    assert variants is not None
    assert set(re.findall(r"(\w+)\)", variants.group(1))) == {"cpu", "cuda"}


# ----------------------------------------------------------------------------- compose files
def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (DOCKER / "env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution (``$$`` is a literal ``$``)."""
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in env and (env[name] or m.group(2) != ":-"):
            return env[name]
        if m.group(2) in (":-", "-"):
            return m.group(3)
        raise AssertionError(f"${{{name}}} is required and env.example does not set it")

    return _VAR.sub(sub, value)


def _compose_files(env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    env = _env_example() if env is None else env
    return {
        p.name: _interpolate(yaml.safe_load(p.read_text(encoding="utf-8")), env)
        for p in COMPOSE_FILES
    }


def _services() -> dict[str, dict[str, Any]]:
    return _compose_files()["compose.yaml"]["services"]


def test_every_service_has_an_image_or_an_existing_build() -> None:
    files = _compose_files()
    services = files["compose.yaml"]["services"]
    assert {"postgres", "ray-head", "ray-worker", "api"} <= set(services)
    built = {}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            context = (DOCKER / service["build"]["context"]).resolve()
            assert context == ROOT, f"{name}: build context {context}"
            assert (context / service["build"]["dockerfile"]).is_file(), name
            built[service["image"]] = name
    for name, service in services.items():
        if service["image"].startswith("autopeft"):
            assert service["image"] in built, f"{name}: nothing builds {service['image']}"
    for override in ("compose.gpu.yaml",):
        assert set(files[override]["services"]) <= set(services), override


def test_named_volumes_are_declared_and_shared_paths_mounted() -> None:
    compose = _compose_files()["compose.yaml"]
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                used.add(source)
                assert source in declared, f"{name}: volume {source} is not declared"
    assert used == declared, f"declared but unused: {declared - used}"


def test_compose_variables_are_the_ones_env_example_sets() -> None:
    referenced = set()
    for path in COMPOSE_FILES:
        body = "\n".join(
            line for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")
        )  # fmt: skip
        referenced |= {m.group(1) or m.group(4) for m in _VAR.finditer(body) if m.group(0) != "$$"}
    assert referenced == set(_env_example())


# ------------------------------------------------------------------- commands against the CLIs
def _click_check(program: str, args: list[str]) -> None:
    """Parse ``args`` with the real click command of ``program``; raises on a bad invocation."""
    import click

    if program == "ray":
        from ray.scripts.scripts import cli as command
    else:
        import typer

        from autopeft.cli import app

        command = typer.main.get_command(app)
    while hasattr(command, "list_commands"):  # a group (typer's is not a click.Group)
        assert args, f"{program}: no subcommand"
        sub = command.get_command(click.Context(command), args[0])
        assert sub is not None, f"{program} has no command {args[0]!r}"
        command, args = sub, args[1:]
    command.make_context(program, list(args))  # raises click.UsageError on unknown options


def _check_shell(script: str, env: dict[str, str]) -> list[list[str]]:
    """Check every ``ray``/``autopeft`` command of a ``sh -c`` script; return them."""
    seen = []
    for part in re.split(r"&&|;", script):
        words = shlex.split(part)
        if words[:1] == ["exec"]:
            words = words[1:]
        words = [_interpolate(w, env) for w in words]  # the shell expands the container's env
        assert words and words[0] in ("ray", "autopeft"), f"not a ray/autopeft command: {part}"
        _click_check(words[0], words[1:])
        seen.append(words)
    return seen


@pytest.mark.slow  # imports ray's CLI
def test_container_commands_are_real_cli_invocations() -> None:
    services = _services()
    commands = {}
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service["entrypoint"] == ["sh", "-c"], name
        (script,) = service["command"]
        commands[name] = _check_shell(script, service["environment"])
        for test in (service.get("healthcheck") or {}).get("test", [])[2:3]:
            compile(test, f"{name} healthcheck", "exec")  # `python -c CODE`
    assert commands["ray-head"][0][:3] == ["ray", "start", "--head"]
    head_port = commands["ray-head"][0][commands["ray-head"][0].index("--port") + 1]
    for name in ("ray-worker", "api"):
        assert commands[name][0][:4] == ["ray", "start", "--address", f"ray-head:{head_port}"]
    serve = commands["api"][-1]
    assert serve[:2] == ["autopeft", "serve"]
    assert serve[serve.index("--address") + 1] == f"ray-head:{head_port}"
    assert services["api"]["ports"] == [f"{serve[serve.index('--port') + 1]}:8000"]
    # the data dir and every root lie in the volume all Ray nodes mount at the same path
    mounts = {v.split(":", 1)[1] for v in services["api"]["volumes"]}
    for flag in ("--data-dir", "--root"):
        path = serve[serve.index(flag) + 1]
        assert any(path == m or path.startswith(m + "/") for m in mounts), (flag, path)
        for worker in ("ray-head", "ray-worker"):
            assert services[worker]["volumes"] == services["api"]["volumes"]


def _readme_commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [ln.split(" #", 1)[0] for ln in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(ln) for ln in lines if ln.strip()]


def test_readme_commands_parse_against_the_clis() -> None:
    env = {"AUTOPEFT_STORAGE": "sqlite:///x.db", "PWD": "/here"}
    checked = 0
    takes_value = {"-v", "-e", "--gpus", "--entrypoint", "-p", "--name"}
    for words in _readme_commands():
        if words[:2] == ["docker", "run"]:
            i, entrypoint = 2, "autopeft"
            while words[i].startswith("-"):
                if words[i] == "--entrypoint":
                    entrypoint = words[i + 1]
                i += 2 if words[i] in takes_value else 1
            assert words[i].startswith("autopeft"), words
            if entrypoint == "python":
                assert words[i + 1] == "-m" and importlib.util.find_spec(words[i + 2]), words
            else:
                _click_check("autopeft", [_interpolate(w, env) for w in words[i + 1 :]])
            checked += 1
        elif words[:2] == ["docker", "compose"] and "exec" in words:
            service = words[words.index("exec") + 1]
            assert service in _services()
            assert words[-3:-1] == ["sh", "-c"]
            _check_shell(words[-1], env)
            checked += 1
        elif words[:2] == ["docker", "compose"]:
            files = [words[i + 1] for i, w in enumerate(words) if w == "-f"]
            assert all((ROOT / f).is_file() for f in files), files
    assert checked >= 5


# --------------------------------------------------------------------- database URLs and paths
def test_database_urls_agree_between_image_compose_and_readme() -> None:
    from sqlalchemy.engine import make_url

    readme = README.read_text(encoding="utf-8")
    raw = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    services = _services()
    # compose: the storage URL names the postgres service's user, database and port
    pg = services["postgres"]["environment"]
    for name in ("ray-head", "ray-worker", "api"):
        url = make_url(services[name]["environment"]["AUTOPEFT_STORAGE"])
        assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
        assert (url.host, url.port, url.database) == ("postgres", 5432, pg["POSTGRES_DB"])
    templated = raw["x-autopeft"]["environment"]["AUTOPEFT_STORAGE"]
    assert re.sub(r"\$\{(\w+):\?[^}]*\}", r"${\1}", templated) in readme
    # the image: the default storage lies in the declared volume that the README mounts
    env = dict(
        pair.split("=", 1)
        for word, rest in instructions()
        if word == "ENV"
        for pair in shlex.split(rest)
    )
    url = env["AUTOPEFT_STORAGE"]
    assert url.startswith("sqlite:////")
    db = Path(url.removeprefix("sqlite:///"))
    volumes = [v for word, rest in instructions() if word == "VOLUME" for v in _args(rest)]
    assert str(db.parent) in volumes
    assert f":{db.parent}" in readme  # `docker run -v "$PWD/runs:/work/runs"`
    assert url in readme and f"runs/{db.name}" in readme
    # every SQLite URL the README names for the image is in that volume, none elsewhere
    for other in re.findall(r"sqlite:///+[\w./-]+", readme):
        assert other.startswith(f"sqlite:///{db.parent}/"), other
    # the demo spec sets no storage of its own, so the image's default is where it writes
    demo = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text(encoding="utf-8"))
    assert "storage" not in demo
