"""Database access: one SQLAlchemy engine per process, SQLite or PostgreSQL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts
with ``BEGIN IMMEDIATE`` so that two writers queue for the lock instead of
failing with "database is locked" when a reader upgrades to a writer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.models import Base

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"


class Store:
    """Owns the engine and hands out transactions.

    ``transaction()`` yields a session whose work commits on exit, or rolls
    back if the block raises. Build one per process; call ``dispose()`` in a
    forked child before first use.
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 15) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _make_engine(url, echo=echo, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(hub_read=True), expire_on_commit=False
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A transaction for reads only: on SQLite it takes no write lock.

        Pages, the CLI and status polling use it, so they never queue behind
        (or hold up) a worker's write.
        """
        with self._readers() as session, session.begin():
            yield session

    def run(self, work: Callable[[Session], T], *, attempts: int = 8) -> T:
        """Run ``work`` in a transaction, retrying when the database is briefly away.

        Used for the engine's writes: a lost connection, a lock timeout or a
        deadlock is retried with a growing backoff (about 5 s in all, enough
        for a database restart); anything else propagates. ``work`` must be
        safe to run again: it is, since a failed transaction changed nothing.
        """
        for n in range(attempts):
            try:
                with self.transaction() as session:
                    return work(session)
            except (OperationalError, DBAPIError) as exc:
                if n == attempts - 1 or not _is_retryable(exc):
                    raise
                time.sleep(min(2.0, 0.05 * 2**n))
        raise AssertionError("unreachable")

    def create_all(self) -> None:
        """Create the tables directly (tests); production uses ``migrate()``."""
        Base.metadata.create_all(self.engine)

    def migrate(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision``."""
        from alembic import command

        command.upgrade(alembic_config(self.url), revision)

    def revision(self) -> str | None:
        """The schema revision the database is at (None: never migrated)."""
        from alembic.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose(close=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return head


def _is_retryable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(
        s in text
        for s in (
            "database is locked",
            "could not serialize",
            "deadlock detected",
            "server closed the connection",
            "connection refused",
            "terminating connection",
            "connection is closed",
            "the database system is",
        )
    )


#: connections a process may open over ``pool_size`` at a peak (closed on return)
OVERFLOW = 5


def _make_engine(url: str, *, echo: bool, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            read_only = conn.get_execution_options().get("hub_read")
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    # no pre-ping (a round trip per checkout): Store.run retries a connection that died,
    # and connections are recycled before a server or proxy would drop them idle. The
    # pool keeps as many as the web app's busy request threads hold at once: a connection
    # opened over pool_size is closed on return, and opening one costs PostgreSQL a
    # process (a webhook burst spent a tenth of its time there with 5)
    return create_engine(
        url, echo=echo, pool_recycle=1800, pool_size=pool_size, max_overflow=OVERFLOW
    )
