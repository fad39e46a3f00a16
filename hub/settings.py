"""One settings object, read once from ``HUB_*`` environment variables.

With nothing set, the hub needs no server: everything lives under ``HUB_HOME``
(``./.hub``): a SQLite database and Celery's filesystem transport.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The hub's configuration. Build it once (``Settings()``) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="HUB_", extra="ignore")

    home: Path = Field(Path(".hub"), description="Folder for the embedded database and broker.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite at HOME/hub.db."
    )
    database_pool_size: int = Field(
        15,
        ge=1,
        description="Database connections one process keeps open for reuse (PostgreSQL), "
        "plus up to 5 more under load. The web app's request threads share them; a worker "
        "process uses one or two.",
    )
    broker_url: str | None = Field(
        None, description="Celery broker URL; default: the filesystem transport under HOME."
    )
    flows: str = Field("flows", description="Comma-separated flow modules or packages to load.")
    lease_seconds: float = Field(60.0, gt=0, description="How long a step lease lasts unrenewed.")
    redeliver_after: float = Field(
        30.0, gt=0, description="Re-publish a ready step whose message has not been taken by then."
    )
    tick_seconds: float = Field(1.0, gt=0, description="How often the scheduler ticks.")
    countdown_max: float = Field(
        30.0, ge=0, description="Retries due sooner than this are published with a countdown."
    )
    visibility_timeout: float = Field(3600.0, gt=0, description="Redis broker visibility timeout.")
    inline_steps: int = Field(
        100, ge=0, description="Consecutive steps one worker may run without a broker round trip."
    )
    broker_poll_seconds: float = Field(0.01, gt=0, description="Filesystem transport polling.")
    max_losses: int = Field(3, ge=1, description="Worker losses before a step goes to review.")
    cookie_secure: bool = Field(
        False, description="Send the session cookie over HTTPS only (set it behind TLS)."
    )
    session_idle_minutes: float = Field(
        60.0, gt=0, description="A web session unused this long is dead."
    )
    session_max_hours: float = Field(
        12.0, gt=0, description="A web session is dead this long after login, used or not."
    )
    login_failures: int = Field(
        5,
        ge=1,
        description="Failed logins for one user name within the login window before that "
        "name is refused for the rest of it.",
    )
    login_failures_per_address: int = Field(
        50,
        ge=1,
        description="Failed logins from one client address within the login window before "
        "that address is refused for the rest of it.",
    )
    login_window_minutes: float = Field(
        15.0, gt=0, description="The window in which failed logins are counted."
    )
    base_url: str | None = Field(
        None,
        description="The web app's address as people reach it (https://hub.example.com), "
        "for the links in escalation notices; unset: notices carry no link.",
    )
    escalation_secret: SecretStr | None = Field(
        None,
        description="Key that signs escalation webhooks (HMAC-SHA256 of the body in "
        "X-Hub-Signature-256); unset: webhooks go unsigned.",
    )
    escalation_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds one escalation webhook or SMTP exchange may take."
    )
    smtp_host: str | None = Field(
        None, description="SMTP server for escalation emails; unset: mailto: targets are skipped."
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_user: str | None = Field(None, description="SMTP login; unset: no login.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_from: str = Field("hub@localhost", description="Sender address of escalation emails.")
    smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS before logging in."
    )
    browser_max_steps: int = Field(
        200,
        ge=1,
        description="Steps one browser worker process serves with its warm Chromium before "
        "it launches a fresh one.",
    )
    browser_timeout_ms: int = Field(
        10_000,
        ge=100,
        description="How long a web bot waits for an element, in milliseconds; navigations "
        "wait three times as long.",
    )

    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token GET /metrics asks of clients not on this machine; unset: "
        "/metrics answers only loopback clients (404 to others).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="How hub web, worker and scheduler write their logs: text, or json "
        "(one JSON object a line, with the run and step ids of lines written in a step).",
    )

    connections_file: Path | None = Field(
        None, description="TOML or JSON file of connections (see hub.connections)."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s) that encrypt stored connection secrets, comma-separated: "
        "the first encrypts, all decrypt. Make one with `hub connections key`.",
    )
    desktop_display: str = Field(
        "auto",
        description="The X display desktop bots drive: auto (DISPLAY when set, else an Xvfb "
        "the worker starts for itself), xvfb (always its own), or :N.",
    )
    desktop_size: str | None = Field(
        None,
        description="Screen size desktop bots are made for, like 1024x768: the size of the "
        "worker's own Xvfb (default 1024x768), and checked before each desktop step.",
    )
    desktop_lease_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds a desktop step waits for its display while another step holds "
        "it, before it is retried later.",
    )
    desktop_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a desktop bot waits for a window or an image by default.",
    )

    @field_validator("desktop_size")
    @classmethod
    def _screen_size(cls, value: str | None) -> str | None:
        if not value:
            return None
        match = re.fullmatch(r"\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*", value)
        if match is None:
            raise ValueError(f"a screen size is WIDTHxHEIGHT, like 1024x768, not {value!r}")
        return f"{match.group(1)}x{match.group(2)}"

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url", "broker_url", "smtp_host", "smtp_user")
    @classmethod
    def _blank_is_default(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("base_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or value.endswith("://"):
            raise ValueError(
                f"HUB_BASE_URL={value!r} must be the web app's address, "
                "e.g. https://hub.example.com"
            )
        return value.rstrip("/")

    @property
    def database(self) -> str:
        """The database URL in force."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'hub.db').resolve()}"

    @property
    def broker(self) -> str:
        """The broker URL in force."""
        return self.broker_url or "filesystem://"

    @property
    def embedded_broker(self) -> bool:
        return self.broker.startswith("filesystem://")

    @property
    def broker_folder(self) -> Path:
        return (self.home / "broker").resolve()

    @property
    def flow_modules(self) -> list[str]:
        return [m.strip() for m in self.flows.split(",") if m.strip()]
