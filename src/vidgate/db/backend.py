"""The one place where SQLite and PostgreSQL differ.

The task core's queries are synchronous SQLAlchemy Core functions of a `Connection`
(tasks/repository.py); a backend decides where they run:

- SQLite: on a plain pysqlite engine. A write transaction runs whole on one writer thread, behind
  the process's fair write lock, with BEGIN IMMEDIATE; a read runs on the event loop thread itself
  (a WAL read of a few indexed rows takes microseconds and never waits on a writer). Measured:
  aiosqlite's thread hop per statement, not SQL, was most of a status poll's cost, so a
  transaction costs one hop here instead of one per statement.
- PostgreSQL: on the async psycopg engine through `run_sync`, one connection per transaction.

It also owns the SQL that differs: upserts, the lock timeout a create waits on an Idempotency-Key
held by a concurrent request, serialising a key's creates, and recognising a lock timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Table, create_engine, event, pool, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Backend(Protocol):
    name: str

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction: committed when it returns, rolled back if it
        raises."""
        ...

    async def run_read(self, work: Callable[[Connection], T]) -> T: ...

    def insert_ignoring_conflict(
        self, table: Table, values: dict[str, Any], *, index_elements: list[str]
    ) -> Insert:
        """INSERT ... ON CONFLICT DO NOTHING (RETURNING added by the caller)."""
        ...

    def serialise_creates(self, conn: Connection, *, key_id: int, lock_timeout_ms: int) -> None:
        """Make this key's concurrent creates queue up, so an in-flight count cannot race."""
        ...

    def is_lock_timeout(self, error: OperationalError) -> bool: ...

    async def dispose(self) -> None: ...


def install_sqlite_pragmas(sync_engine: Any) -> None:
    """WAL, a busy timeout, foreign keys; writes start with BEGIN IMMEDIATE.

    pysqlite's own implicit BEGIN is switched off (isolation_level None) so that a read is plain
    autocommit and a write transaction's BEGIN is ours.
    """

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


WRITE_OPTION = "vidgate_write"


class SqliteBackend:
    name = "sqlite"

    def __init__(self, url: str, write_lock: asyncio.Lock) -> None:
        sync_url = url.replace("sqlite+aiosqlite", "sqlite", 1)
        # Connections move between the loop thread and the writer thread, one user at a time.
        self.engine = create_engine(
            sync_url,
            poolclass=pool.QueuePool,
            pool_size=4,
            max_overflow=4,
            pool_reset_on_return=None,
            connect_args={"check_same_thread": False},
        )
        install_sqlite_pragmas(self.engine)
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self._write_lock = write_lock
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidgate-sqlite-write")

    def _write_sync(self, work: Callable[[Connection], T]) -> T:
        with self._write_engine.begin() as conn:
            return work(conn)

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        async with self._write_lock:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writer, self._write_sync, work)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return work(conn)

    def insert_ignoring_conflict(
        self, table: Table, values: dict[str, Any], *, index_elements: list[str]
    ) -> Insert:
        return (
            sqlite_insert(table)
            .values(**values)
            .on_conflict_do_nothing(index_elements=index_elements)
        )

    def serialise_creates(self, conn: Connection, *, key_id: int, lock_timeout_ms: int) -> None:
        # BEGIN IMMEDIATE already holds the database's only write lock.
        return None

    def is_lock_timeout(self, error: OperationalError) -> bool:
        return "database is locked" in str(error).lower()

    async def dispose(self) -> None:
        self._writer.shutdown(wait=True)
        self.engine.dispose()


class PostgresBackend:
    name = "postgresql"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(work)

    def insert_ignoring_conflict(
        self, table: Table, values: dict[str, Any], *, index_elements: list[str]
    ) -> Insert:
        return (
            pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=index_elements)
        )

    def serialise_creates(self, conn: Connection, *, key_id: int, lock_timeout_ms: int) -> None:
        from vidgate.db.models import ApiKey

        # A concurrent request with the same Idempotency-Key waits on its unique index entry;
        # past this it answers 409 idempotency_key_in_use instead of hanging.
        conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
        conn.execute(select(ApiKey.id).where(ApiKey.id == key_id).with_for_update())

    def is_lock_timeout(self, error: OperationalError) -> bool:
        return "lock timeout" in str(error).lower()

    async def dispose(self) -> None:
        return None


def backend_for(engine: AsyncEngine, write_lock: asyncio.Lock) -> Backend:
    if engine.dialect.name == "sqlite":
        return SqliteBackend(str(engine.url.render_as_string(hide_password=False)), write_lock)
    return PostgresBackend(engine)
