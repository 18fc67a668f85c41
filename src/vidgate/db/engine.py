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

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from vidgate.db.backend import WRITE_OPTION, Backend, backend_for, install_sqlite_pragmas


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        # Sessions always end their own transactions, so the pool's extra rollback on
        # return is a wasted round trip.
        engine = create_async_engine(url, pool_size=8, max_overflow=8, pool_reset_on_return=None)
        install_sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@dataclass
class Database:
    """The engine, two ORM session factories (reads, write transactions) for the cold paths
    (accounts, keys, admin), and the backend that runs the task core's transactions."""

    engine: AsyncEngine

    def __post_init__(self) -> None:
        # One fair write lock per process for SQLite, shared by ORM writes and the backend's.
        lock = asyncio.Lock()
        self.backend: Backend = backend_for(self.engine, lock)
        self._write_lock = lock if self.backend.name == "sqlite" else None
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.backend.name

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
        await self.backend.dispose()
        await self.engine.dispose()


def open_database(url: str) -> Database:
    return Database(create_engine(url))
