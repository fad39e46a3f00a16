"""Connections: where each system is, how to log in to it, and how hard to push it.

A connection is configured once and used by name from any step::

    crm = ctx.connector("crm")              # a ready client, bound to this step
    crm.post("/orders", json=order)         # Idempotency-Key: the step's key

It comes from one of three places; a name defined in two is an error:

- the connections file (``HUB_CONNECTIONS_FILE``, TOML or JSON), a table per
  connection::

      [crm]
      kind = "rest"
      url = "https://crm.example.com/api"
      rate_limit = "10/s"
      auth = { kind = "bearer", token = "env:CRM_TOKEN" }

- the environment: ``HUB_CONNECTION_CRM='{"kind": "rest", "url": ...}'``;
- the database, written by ``hub connections set`` or the web app's
  connections page, where secret values are encrypted with Fernet under
  ``HUB_SECRET_KEY`` (several keys, comma-separated: the first encrypts, all
  decrypt, so keys can be rotated).

In the file and the environment a secret field (``password``, ``token``,
``key``, ``client_secret``, ``private_key``, ``security_token``) must be a
reference, ``env:VARIABLE``: a secret written into a file is refused.

Secret values are resolved in the worker when a client is built, never put in
task arguments, and masked in the step's evidence and log lines
(:meth:`hub.evidence.Evidence.mask`) as soon as a step binds the client.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hub.errors import ConnectionConfigError

if TYPE_CHECKING:
    from hub.context import StepContext
    from hub.settings import Settings
    from hub.store import Store

log = logging.getLogger("hub.connections")

KINDS = ("rest", "salesforce", "soap", "wordpress", "fake")
#: Where the client of each kind lives: ``module:Class``, imported on first use.
CONNECTORS = {
    "rest": "connectors.rest:RestConnector",
    "salesforce": "connectors.salesforce:SalesforceConnector",
    "soap": "connectors.soap:SoapConnector",
    "wordpress": "connectors.wordpress:WordPressConnector",
    "fake": "connectors.fake:FakeConnector",
}
SECRET_FIELDS = ("key", "password", "token", "client_secret", "private_key", "security_token")
AuthKind = Literal[
    "none",
    "api_key",
    "basic",
    "bearer",
    "oauth2",
    "salesforce_password",
    "salesforce_jwt",
    "salesforce_client_credentials",
    "wsse",
]
#: The fields each kind of auth needs.
NEEDS: dict[str, tuple[str, ...]] = {
    "none": (),
    "api_key": ("key",),
    "basic": ("username", "password"),
    "bearer": ("token",),
    "oauth2": ("token_url", "client_id", "client_secret"),
    "salesforce_password": ("client_id", "client_secret", "username", "password"),
    "salesforce_jwt": ("client_id", "username", "private_key"),
    "salesforce_client_credentials": ("client_id", "client_secret"),
    "wsse": ("username", "password"),
}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")


class Auth(BaseModel):
    """How a connector logs in. Secret fields hold ``env:VARIABLE`` or, in the
    database only, the value itself (stored encrypted)."""

    model_config = ConfigDict(extra="forbid")

    kind: AuthKind = "none"
    header: str = Field("X-API-Key", description="api_key: the header that carries the key.")
    key: str | None = None
    username: str | None = None
    password: str | None = None
    token: str | None = None
    token_url: str | None = Field(None, description="oauth2: the token endpoint.")
    login_url: str | None = Field(
        None, description="salesforce_*: the login host (default: the connection's url)."
    )
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    private_key: str | None = Field(None, description="salesforce_jwt: the PEM key.")
    security_token: str | None = None
    digest: bool = Field(False, description="wsse: send a PasswordDigest, not the text.")

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        missing = [name for name in NEEDS[self.kind] if not getattr(self, name)]
        if missing:
            raise ValueError(f"auth kind {self.kind!r} needs {', '.join(missing)}")
        return self

    def secrets(self) -> dict[str, str]:
        """The secret fields that are set, as written (``env:...`` or values)."""
        return {f: getattr(self, f) for f in SECRET_FIELDS if getattr(self, f)}


class ConnectionConfig(BaseModel):
    """One connection. ``url`` is the base URL (REST, WordPress), the instance or
    login URL (Salesforce) or the WSDL, a URL or a file (SOAP)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["rest", "salesforce", "soap", "wordpress", "fake"]
    url: str
    auth: Auth = Field(default_factory=Auth)
    timeout: float = Field(30.0, gt=0, description="Seconds to wait for an answer.")
    connect_timeout: float = Field(10.0, gt=0, description="Seconds to wait to connect.")
    retries: int = Field(3, ge=0, le=10, description="Retries within one call (429, 5xx).")
    backoff: float = Field(0.5, ge=0, description="First wait between retries; doubles.")
    max_wait: float = Field(
        30.0,
        ge=0,
        description="Longest wait inside a call; a longer Retry-After hands the step back to "
        "the engine to retry later, freeing the worker.",
    )
    rate_limit: str | None = Field(None, description='Calls allowed, like "10/s" or "600/min".')
    allow: list[str] = Field(
        default_factory=list, description="More host:port targets; the url's own is allowed."
    )
    verify: bool | str = Field(True, description="TLS: verify (True), or a CA bundle path.")
    options: dict[str, Any] = Field(default_factory=dict, description="Kind-specific options.")
    source: str = Field("", exclude=True, description="Where it is defined (for messages).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(
                f"connection name {value!r}: lower-case letters, digits, - and _, "
                "starting with a letter"
            )
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            rate_per_second(value)
        return value

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[str]) -> list[str]:
        from hub.egress import Allow

        Allow(value)  # a malformed entry raises ValueError naming it
        return value

    @property
    def rate(self) -> float | None:
        """Calls a second, or None for no limit."""
        return rate_per_second(self.rate_limit) if self.rate_limit else None

    def public(self) -> dict[str, Any]:
        """The configuration with secret values hidden (references shown), for pages and CLI."""
        data = self.model_dump(mode="json")
        for field in SECRET_FIELDS:
            value = data["auth"].get(field)
            if value and not str(value).startswith("env:"):
                data["auth"][field] = "[encrypted]"
        data["auth"] = {k: v for k, v in data["auth"].items() if v not in (None, False)}
        return data


def rate_per_second(text: str) -> float:
    """``"10/s"`` -> 10.0, ``"600/min"`` -> 10.0; a ValueError naming the form."""
    match = _RATE.fullmatch(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f'rate_limit {text!r}: write calls per time, like "10/s" or "600/min"')
    per = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
    return float(match.group(1)) / per.get(match.group(2), 3600)


# ------------------------------------------------------------------ secrets
def resolve(config: ConnectionConfig, field: str) -> str | None:
    """The value of secret or plain auth ``field``; ``env:VAR`` read from the environment."""
    value = getattr(config.auth, field)
    if not isinstance(value, str) or not value.startswith("env:"):
        return value
    variable = value[4:]
    found = os.environ.get(variable)
    if not found:
        raise ConnectionConfigError(
            f"connection {config.name!r}: auth.{field} comes from the environment variable "
            f"{variable}, which is not set on this worker; set it where the workers run"
        )
    return found


def fernet(settings: Settings) -> Any:
    """A MultiFernet over ``HUB_SECRET_KEY`` (comma-separated keys; the first encrypts)."""
    from cryptography.fernet import Fernet, MultiFernet

    raw = settings.secret_key.get_secret_value() if settings.secret_key else ""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        raise ConnectionConfigError(
            "HUB_SECRET_KEY is not set, so connection secrets cannot be stored or read: "
            "make one with `hub connections key` and set it on the web app and every worker"
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ConnectionConfigError(
            "HUB_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes): make "
            "one with `hub connections key`"
        ) from exc


# ------------------------------------------------------------------ sources
def _parse(name: str, data: Any, source: str, *, stored: bool) -> ConnectionConfig:
    if not isinstance(data, dict):
        raise ConnectionConfigError(f"connection {name!r} ({source}): expected a table of settings")
    try:
        config = ConnectionConfig.model_validate({**data, "name": name, "source": source})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise ConnectionConfigError(f"connection {name!r} ({source}): {problems}") from None
    if not stored:
        for field, value in config.auth.secrets().items():
            if not value.startswith("env:"):
                raise ConnectionConfigError(
                    f"connection {name!r} ({source}): auth.{field} is written out; write "
                    f'"env:VARIABLE" and set VARIABLE on the workers, or store the connection '
                    "with `hub connections set`, which encrypts it"
                )
    return config


def from_file(path: Path) -> list[ConnectionConfig]:
    """The connections of a TOML or JSON file (a table per connection)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConnectionConfigError(
            f"HUB_CONNECTIONS_FILE={path}: cannot read it ({exc.strerror})"
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConnectionConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    return [_parse(name, body, str(path), stored=False) for name, body in data.items()]


def from_environment(environ: dict[str, str] | None = None) -> list[ConnectionConfig]:
    """Connections from ``HUB_CONNECTION_<NAME>`` variables holding JSON."""
    found = []
    for variable, text in sorted((environ if environ is not None else os.environ).items()):
        if not variable.startswith("HUB_CONNECTION_") or variable == "HUB_CONNECTIONS_FILE":
            continue
        name = variable[len("HUB_CONNECTION_") :].lower().replace("_", "-")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConnectionConfigError(f"{variable}: not valid JSON: {exc}") from None
        found.append(_parse(name, data, variable, stored=False))
    return found


def from_database(store: Store, settings: Settings) -> list[ConnectionConfig]:
    """Connections stored by ``hub connections set`` or the web app, secrets decrypted."""
    from sqlalchemy import select

    from hub import models as m

    with store.read() as s:
        rows = s.execute(select(m.Connection)).scalars().all()
    if not rows:
        return []
    found = []
    box = None
    for row in rows:
        data = dict(row.config)
        if row.secrets:
            box = box or fernet(settings)
            try:
                secrets = json.loads(box.decrypt(row.secrets.encode()))
            except Exception as exc:  # InvalidToken: another key
                raise ConnectionConfigError(
                    f"connection {row.name!r} (database): its secrets cannot be decrypted "
                    "with HUB_SECRET_KEY; set the key they were stored with (keep the old "
                    "one after a comma while rotating)"
                ) from exc
            data["auth"] = {**data.get("auth", {}), **secrets}
        found.append(_parse(row.name, data, "database", stored=True))
    return found


def load(settings: Settings, store: Store | None = None) -> dict[str, ConnectionConfig]:
    """Every configured connection by name; a name defined twice is an error."""
    found: dict[str, ConnectionConfig] = {}
    sources: list[Iterable[ConnectionConfig]] = []
    if settings.connections_file:
        sources.append(from_file(Path(settings.connections_file)))
    sources.append(from_environment())
    if store is not None:
        sources.append(from_database(store, settings))
    for configs in sources:
        for config in configs:
            if config.name in found:
                raise ConnectionConfigError(
                    f"connection {config.name!r} is defined twice: in {found[config.name].source} "
                    f"and in {config.source}; keep one"
                )
            found[config.name] = config
    return found


def save(store: Store, settings: Settings, config: ConnectionConfig, *, by: str = "cli") -> None:
    """Store ``config`` in the database, its literal secrets encrypted (insert or replace)."""
    from hub import models as m

    data = config.model_dump(mode="json", exclude={"name", "source"})
    literal = {k: v for k, v in config.auth.secrets().items() if not v.startswith("env:")}
    for field in literal:
        data["auth"].pop(field, None)
    data["auth"] = {k: v for k, v in data["auth"].items() if v is not None}
    token = fernet(settings).encrypt(json.dumps(literal).encode()).decode() if literal else None

    def write(s: Any) -> None:
        row = s.get(m.Connection, config.name)
        if row is None:
            row = m.Connection(name=config.name)
            s.add(row)
        row.kind, row.config, row.secrets = config.kind, data, token
        row.updated_at, row.updated_by = datetime.now(UTC), by

    store.run(write)


def delete(store: Store, name: str) -> bool:
    """Remove a stored connection; False when the database has none of that name."""
    from hub import models as m

    def remove(s: Any) -> bool:
        row = s.get(m.Connection, name)
        if row is None:
            return False
        s.delete(row)
        return True

    return bool(store.run(remove))


# ---------------------------------------------------------------- the service
class Connectors:
    """The connectors of one process, by connection name, built on first use and kept
    (with their HTTP connection pools) until :meth:`shutdown`. Configuration is read
    again when a name is unknown, at most every ``refresh`` seconds."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        refresh: float = 30.0,
        configs: dict[str, ConnectionConfig] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.refresh = refresh
        self._configs = configs
        self._fixed = configs is not None
        self._loaded_at = 0.0
        self._built: dict[str, Any] = {}
        self._lock = threading.Lock()

    def configs(self, *, fresh: bool = False) -> dict[str, ConnectionConfig]:
        if not self._fixed and (
            self._configs is None or (fresh and time.monotonic() - self._loaded_at >= self.refresh)
        ):
            self._configs = load(self.settings, self.store)
            self._loaded_at = time.monotonic()
        assert self._configs is not None
        return self._configs

    def config(self, name: str) -> ConnectionConfig:
        configs = self.configs()
        if name not in configs:
            configs = self.configs(fresh=True)
        if name not in configs:
            import difflib

            known = sorted(configs)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConnectionConfigError(
                f"no connection {name!r}{hint} (known: {', '.join(known) or 'none'}); "
                "configure it in HUB_CONNECTIONS_FILE, HUB_CONNECTION_"
                f"{name.upper().replace('-', '_')} or with `hub connections set`"
            )
        return configs[name]

    def connector(self, name: str) -> Any:
        """The process's connector for ``name`` (built on first use)."""
        config = self.config(name)
        with self._lock:
            built = self._built.get(name)
            if built is not None and built.config == config:
                return built
            if built is not None:  # the configuration changed: build anew
                built.close()
            built = connector_class(config.kind)(config, self.settings)
            self._built[name] = built
            return built

    def shutdown(self) -> None:
        with self._lock:
            for built in self._built.values():
                try:
                    built.close()
                except Exception:
                    log.exception("closing connector %s failed", built.config.name)
            self._built.clear()

    # ------------------------------------------------------- Service protocol
    def open(self, ctx: StepContext) -> Callable[[str], Any]:
        bound: dict[str, Any] = {}

        def get(name: str) -> Any:
            if name not in bound:
                bound[name] = self.connector(name).bind(ctx)
            return bound[name]

        return get

    def close(self, ctx: StepContext, resource: Any, error: BaseException | None) -> None:
        return None


def connector_class(kind: str) -> Any:
    """The connector class of ``kind`` (imported on first use)."""
    import importlib

    module, _, name = CONNECTORS[kind].partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        extra = {"salesforce": "salesforce", "soap": "soap"}.get(kind)
        fix = f": pip install 'hub[{extra}]'" if extra else ""
        raise ConnectionConfigError(f"{kind} connections need {exc.name}{fix}") from exc
