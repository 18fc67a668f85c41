"""Async engine and sessions.

SQLite runs in WAL mode with a busy timeout. Write transactions start with BEGIN IMMEDIATE so two
writers queue on the database lock instead of failing when a read transaction tries to upgrade;
within one process they also queue on an asyncio lock, which is fair (SQLite's busy handler is
not: under load some writers slept for seconds while others went ahead). Reads run in SQLite's
autocommit mode, with no BEGIN/ROLLBACK round trips: our reads are single statements or tolerate
a newer row between two statements, and WAL readers never block.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_WRITE_OPTION = "vidgate_write"


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own transaction start (pysqlite would
        # otherwise emit its own deferred BEGIN).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # Sessions always end their own transactions, so the pool's extra rollback on
        # return is a wasted round trip.
        engine = create_async_engine(url, pool_size=8, max_overflow=8, pool_reset_on_return=None)
        _install_sqlite_pragmas(engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@dataclass
class Database:
    """The engine plus two session factories: one for reads, one for write transactions."""

    engine: AsyncEngine

    def __post_init__(self) -> None:
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: commits when the block ends, rolls back on error."""
        if self._write_lock is None:
            async with self._write() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._write() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(url: str) -> Database:
    return Database(create_engine(url))
