"""The Alembic migrations build exactly the tables of ``hub.models``, on SQLite and PostgreSQL.

If a model changes without a migration, ``compare_metadata`` lists the
difference here; generate one with ``alembic revision --autogenerate``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from hub.models import Base
from hub.store import Store, alembic_config, head_revision
from tests.conftest import PG_ADMIN_URL, need


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hub_migr_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        need("PostgreSQL", f"{PG_ADMIN_URL}: {type(exc).__name__}")
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_there_is_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [head_revision()]


def test_upgrade_head_builds_exactly_the_models_schema(empty_url: str) -> None:
    command.upgrade(alembic_config(empty_url), "head")
    assert differences(empty_url) == []
    assert tables(empty_url) == {*Base.metadata.tables, "alembic_version"}
    store = Store(empty_url)
    assert store.revision() == head_revision()
    store.engine.dispose()


def test_downgrade_to_base_removes_every_table(empty_url: str) -> None:
    command.upgrade(alembic_config(empty_url), "head")
    command.downgrade(alembic_config(empty_url), "base")
    assert tables(empty_url) == {"alembic_version"}
    command.upgrade(alembic_config(empty_url), "head")  # and back up again
    assert differences(empty_url) == []


def test_the_comparison_does_see_a_missing_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_steps_status_not_before"))
    engine.dispose()
    assert [d[0] for d in differences(url)] == ["add_index"]


def test_store_migrate_is_safe_to_run_twice(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    assert store.revision() is None
    store.migrate()
    store.migrate()
    assert store.revision() == head_revision()
    store.engine.dispose()
