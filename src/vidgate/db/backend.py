"""The one place where SQLite and PostgreSQL differ.

The task core's queries are synchronous SQLAlchemy Core functions of a `Connection`
(tasks/repository.py); a backend decides where they run:

- SQLite: on a plain pysqlite engine, behind the process's fair write lock, with BEGIN
  IMMEDIATE. A write transaction runs on the event loop thread when the database's write lock is
  free at once (the usual case: our own writers queue on the asyncio lock first), and on one
  writer thread, which may wait, when another process holds it. A read runs on the loop thread
  (a WAL read of a few indexed rows takes microseconds and never waits on a writer). Measured:
  aiosqlite's thread hop per statement, not SQL, was most of a status poll's cost, and one
  thread hop (~110 µs of CPU here) costs more than a whole create transaction's SQL.
- PostgreSQL: on the async psycopg engine through `run_sync`, one connection per transaction.

It also owns what differs in SQL: the lock timeout a create waits on an Idempotency-Key
held by a concurrent request, recognising a lock timeout, and a timestamp's UTC day (`utc_day`,
for reports grouped by day).

The hot statements (the status poll's read, the create transaction) skip SQLAlchemy's statement
layer: measured, building, caching and adapting one 31-column Core SELECT cost ~350 µs of CPU
against ~15 µs for the same SQL on the DBAPI cursor. They are `Sql` texts written once with
`:name` parameters (identical SQL on both databases), run by `execute`; the backend converts
datetimes and JSON to and from each driver's representation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import psycopg
from sqlalchemy import Connection, String, create_engine, event, pool
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from vidgate.db.listen import Listener, NoListener, PgListener

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
_NAMED_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


@dataclass(frozen=True)
class Sql:
    """One statement's text with `:name` parameters, the same on SQLite and PostgreSQL."""

    text: str
    pyformat: str = field(init=False)  # psycopg's spelling, %(name)s

    def __post_init__(self) -> None:
        escaped = self.text.replace("%", "%%")
        object.__setattr__(self, "pyformat", _NAMED_PARAMETER.sub(r"%(\1)s", escaped))


Row = tuple[Any, ...]


class Backend(Protocol):
    name: str

    lean: Lean  # how this database's driver runs lean statements

    async def read_rows(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        """The hot read: a lean statement outside any transaction."""
        ...

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction: committed when it returns, rolled back if it
        raises."""
        ...

    async def run_read(self, work: Callable[[Connection], T]) -> T: ...

    def begin_create(self, conn: Connection, *, lock_timeout_ms: int) -> None:
        """Bound how long a create waits on a lock (a concurrent request with its key)."""
        ...

    def is_lock_timeout(self, error: OperationalError) -> bool: ...

    def listener(self, wakes: Mapping[str, Callable[[], None]]) -> Listener:
        """What calls each channel's wake when another process notifies it (notify_queue)."""
        ...

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
            # On the DBAPI cursor: through exec_driver_sql this BEGIN cost more than the rest
            # of a create's statements together.
            cursor = connection.connection.dbapi_connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            cursor.close()


WRITE_OPTION = "vidgate_write"


def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA busy_timeout=0")


class Lean(Protocol):
    def execute(self, conn: Connection, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        """Run a lean statement in `conn`'s transaction; its rows (RETURNING included)."""
        ...

    def dump(self, value: Any) -> Any: ...

    def load_datetime(self, value: Any) -> datetime | None: ...

    def load_json(self, value: Any) -> Any: ...

    def notify(self, conn: Connection, channel: str) -> None:
        """Wake the listeners of `channel` when `conn`'s transaction commits."""
        ...


class _SqliteLean:
    def execute(self, conn: Connection, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        return _run_cursor(conn, sql.text, {k: self.dump(v) for k, v in params.items()})

    def dump(self, value: Any) -> Any:
        kind = type(value)
        if kind is datetime:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        if kind is dict or kind is list:
            return json.dumps(value)
        return value

    def load_datetime(self, value: Any) -> datetime | None:
        # SQLAlchemy's SQLite DATETIME format, naive UTC: "2026-12-01 09:04:22.123456".
        if value is None:
            return None
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    def load_json(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def notify(self, conn: Connection, channel: str) -> None:
        return None  # one process works off the file: its wakes are in-process (wake())


class _PostgresLean:
    def execute(self, conn: Connection, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        return _run_cursor(conn, sql.pyformat, {k: self.dump(v) for k, v in params.items()})

    def dump(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict or kind is list:
            return json.dumps(value)  # sent untyped: the server casts it to the json column
        return value

    def load_datetime(self, value: Any) -> datetime | None:
        return None if value is None else value.astimezone(UTC)

    def load_json(self, value: Any) -> Any:
        return value  # psycopg parses json columns itself

    def notify(self, conn: Connection, channel: str) -> None:
        # Transactional: delivered at commit, dropped on rollback; repeats within one
        # transaction are folded into one by the server.
        _run_cursor(conn, "SELECT pg_notify(%(channel)s, '')", {"channel": channel})


def _run_cursor(conn: Connection, text: str, params: dict[str, Any]) -> list[Row]:
    # The DBAPI cursor of the connection's own transaction (pysqlite, aiosqlite's or psycopg's
    # adapted cursor alike). Driver errors become SQLAlchemy's, as Core would raise them, so
    # callers and the API's handlers see one error model (IntegrityError, OperationalError).
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(text, params)
        return list(cursor.fetchall()) if cursor.description else []
    except conn.dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(text, params, error, conn.dialect.loaded_dbapi.Error) from error
    finally:
        cursor.close()


SQLITE: Lean = _SqliteLean()
POSTGRES: Lean = _PostgresLean()


def lean(conn: Connection) -> Lean:
    """How `conn`'s database runs lean statements."""
    return SQLITE if conn.dialect.name == "sqlite" else POSTGRES


# -- wake-ups across processes: PostgreSQL's LISTEN/NOTIFY (db/listen.py) -----------------

WEBHOOKS_CHANNEL = "vidgate_webhooks"
_CHANNEL_MAX = 63  # PostgreSQL's identifier limit, in bytes


def queue_channel(queue: str) -> str:
    """The NOTIFY channel of a task queue: a lowercase identifier PostgreSQL keeps whole. A
    queue name it had to change gets a hash of the original, so two queues never share one."""
    safe = re.sub(r"[^a-z0-9_]", "_", queue.lower())
    name = f"vidgate_queue_{safe}"
    if safe != queue or len(name) > _CHANNEL_MAX:
        digest = hashlib.sha256(queue.encode()).hexdigest()[:8]
        name = f"{name[: _CHANNEL_MAX - 9]}_{digest}"
    return name


def notify_queue(conn: Connection, queue: str) -> None:
    """A task of `queue` is due now: wake that queue's idle workers in every process once this
    transaction commits (a no-op on SQLite)."""
    lean(conn).notify(conn, queue_channel(queue))


def notify_webhooks(conn: Connection) -> None:
    """Deliveries were queued: wake the delivery loops once this transaction commits."""
    lean(conn).notify(conn, WEBHOOKS_CHANNEL)


class SqliteBackend:
    name = "sqlite"
    lean = SQLITE

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
        # The loop thread's writer: it must never wait for the lock, so no busy timeout.
        inline = create_engine(sync_url, poolclass=pool.StaticPool)
        install_sqlite_pragmas(inline)
        event.listen(inline, "connect", _no_busy_wait)
        self._inline_engine = inline.execution_options(**{WRITE_OPTION: True})
        self._write_lock = write_lock
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidgate-sqlite-write")
        self._path = str(self.engine.url.database)
        self._hot: sqlite3.Connection | None = None

    def _write_sync(self, work: Callable[[Connection], T]) -> T:
        with self._write_engine.begin() as conn:
            return work(conn)

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        async with self._write_lock:
            try:
                with self._inline_engine.begin() as conn:
                    return work(conn)
            except OperationalError as error:
                if not self.is_lock_timeout(error):
                    raise
            # Another process holds the write lock: wait for it off the loop. Nothing of the
            # inline attempt was committed, so running `work` again is safe.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writer, self._write_sync, work)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            return work(conn)

    async def read_rows(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        # On the loop thread, on a connection of its own: a WAL read never waits on a writer.
        if self._hot is None:
            self._hot = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._hot.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        bound = {k: SQLITE.dump(v) for k, v in params.items()}
        try:
            return list(self._hot.execute(sql.text, bound).fetchall())
        except sqlite3.Error as error:
            raise DBAPIError.instance(sql.text, bound, error, sqlite3.Error) from error

    def begin_create(self, conn: Connection, *, lock_timeout_ms: int) -> None:
        # BEGIN IMMEDIATE already holds the database's only write lock.
        return None

    def is_lock_timeout(self, error: OperationalError) -> bool:
        return "database is locked" in str(error).lower()

    def listener(self, wakes: Mapping[str, Callable[[], None]]) -> Listener:
        return NoListener()

    async def dispose(self) -> None:
        self._writer.shutdown(wait=True)
        self._inline_engine.engine.dispose()
        if self._hot is not None:
            self._hot.close()
            self._hot = None
        self.engine.dispose()


class PostgresBackend:
    name = "postgresql"
    lean = POSTGRES

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Reads in autocommit: no BEGIN and ROLLBACK round trips around a single SELECT.
        self._reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        # The status poll's pool: autocommit from the start and no ping per checkout (measured:
        # the ping and the isolation switches were 4 of its 5 statements). A connection the
        # server dropped is thrown away and the read tried once more on a fresh one.
        self._hot = create_async_engine(
            engine.url,
            isolation_level="AUTOCOMMIT",
            pool_size=10,
            max_overflow=20,
            pool_reset_on_return=None,
        )

    async def run_write(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def run_read(self, work: Callable[[Connection], T]) -> T:
        async with self._reads.connect() as conn:
            return await conn.run_sync(work)

    async def read_rows(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        # Straight on psycopg's async cursor: no greenlet around one statement.
        bound = {k: POSTGRES.dump(v) for k, v in params.items()}
        for attempt in (1, 2):
            async with self._hot.connect() as conn:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                try:
                    async with driver.cursor() as cursor:
                        await cursor.execute(sql.pyformat, bound)
                        return list(await cursor.fetchall())
                except psycopg.OperationalError as error:
                    if driver.closed and attempt == 1:
                        raw.invalidate()
                        continue
                    raise DBAPIError.instance(sql.pyformat, bound, error, psycopg.Error) from error
                except psycopg.Error as error:
                    raise DBAPIError.instance(sql.pyformat, bound, error, psycopg.Error) from error
        raise AssertionError("unreachable")

    def begin_create(self, conn: Connection, *, lock_timeout_ms: int) -> None:
        # A concurrent request with the same Idempotency-Key waits on its unique index entry;
        # past this it answers 409 idempotency_key_in_use instead of hanging.
        _run_cursor(conn, f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}", {})

    def is_lock_timeout(self, error: OperationalError) -> bool:
        return "lock timeout" in str(error).lower()

    def listener(self, wakes: Mapping[str, Callable[[], None]]) -> Listener:
        # libpq's spelling of the same URL: psycopg connects without SQLAlchemy.
        dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PgListener(dsn, wakes)

    async def dispose(self) -> None:
        await self._hot.dispose()


def convert_row(
    row: Row, *, datetimes: Sequence[int], jsons: Sequence[int], via: Lean
) -> list[Any]:
    """A lean row with its datetime and JSON columns in Python form."""
    values = list(row)
    for index in datetimes:
        values[index] = via.load_datetime(values[index])
    for index in jsons:
        values[index] = via.load_json(values[index])
    return values


class utc_day(FunctionElement[str]):  # lower case, like the func.* it sits beside
    """The UTC calendar day of a timestamp column as text, `YYYY-MM-DD`, on either database."""

    type = String()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # Stored as naive UTC text ("2026-12-01 09:04:22.123456"): its date is already UTC.
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # A timestamptz's date follows the session's TimeZone; the report's days are UTC's.
    column = compiler.process(element.clauses, **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def backend_for(engine: AsyncEngine, write_lock: asyncio.Lock) -> Backend:
    if engine.dialect.name == "sqlite":
        return SqliteBackend(str(engine.url.render_as_string(hide_password=False)), write_lock)
    return PostgresBackend(engine)
