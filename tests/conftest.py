"""Shared fixtures: real PostgreSQL and Redis when present.

A test that needs a service skips when it is absent, and fails under CI
(``CI=true``), where .ci/run has started both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub.models import Base
from hub.testing import LocalHub

CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get(
    "HUB_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """Passwords hashed in this process use argon2's cheapest parameters.

    At its defaults (64 MiB, three passes) a hash or a check takes about 0.2 s
    on two cores, and the web tests make and log in users by the hundred. The
    hashes stay argon2id, and verifying one made with the defaults (by a
    subprocess under test) still works; only the cost differs.
    """
    from argon2 import PasswordHasher, profiles

    from hub import auth

    kept = auth._hasher, auth._DUMMY_HASH
    auth._hasher = PasswordHasher.from_parameters(profiles.CHEAPEST)
    auth._DUMMY_HASH = auth._hasher.hash("not a password of anyone")
    yield
    auth._hasher, auth._DUMMY_HASH = kept


def need(service: str, why: str) -> None:
    """Skip the test locally, fail it under CI, when a service is missing."""
    message = f"{service} is not reachable ({why})"
    if CI:
        pytest.fail(message + "; CI must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hub_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        need("PostgreSQL", f"{PG_ADMIN_URL}: {type(exc).__name__}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's PostgreSQL database, emptied for this test."""
    engine = create_engine(pg_database)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return pg_database


@pytest.fixture
def redis_url() -> str:
    """A Redis database (number 9) emptied for this test."""
    import redis

    url = f"{REDIS_URL}/9"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.flushdb()
        client.close()
    except Exception as exc:
        need("Redis", f"{url}: {type(exc).__name__}")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def local_hub(db_url: str) -> Iterator[Callable[..., LocalHub]]:
    """Factory: ``local_hub([flow, ...])`` gives an in-process hub on ``db_url``."""
    made: list[LocalHub] = []

    def make(flows: Any, **kw: Any) -> LocalHub:
        hub = LocalHub(flows, database_url=db_url, **kw)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.close()


# The real-browser fixtures, defined once for the whole session (one Playwright per thread).
from tests.web.browser import chromium, live, page  # noqa: E402, F401
