"""Shared fixtures: real SQLite and PostgreSQL databases, a gateway, an HTTP client.

PostgreSQL tests skip with a reason when the service is not running, except under CI=true,
where a missing service is a failure (support.service_missing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from support import (
    SCALE_REDIS_URL,
    SCALE_STACK,
    Caller,
    GatewayProcess,
    drop_migrated_template,
    drop_postgres_database,
    drop_process_databases,
    make_caller,
    migrated_postgres_copy,
    service_missing,
)
from vidgate.app import create_app
from vidgate.db import migrate
from vidgate.db.engine import Database, open_database
from vidgate.gateway import Gateway
from vidgate.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    drop_process_databases()
    drop_migrated_template()


@pytest.fixture(autouse=SCALE_STACK)
def _empty_scale_redis() -> None:
    """The scale pass: each test starts with an empty Redis database."""
    import redis

    try:
        redis.Redis.from_url(SCALE_REDIS_URL, socket_timeout=3).flushdb()
    except redis.RedisError as exc:
        service_missing(f"Redis is not reachable at {SCALE_REDIS_URL}: {exc}")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database shared by the session's tests."""
    url = migrated_postgres_copy()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def private_postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for one test that changes the schema or needs it alone."""
    url = migrated_postgres_copy()
    yield url
    drop_postgres_database(url)


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'vidgate.db'}"


# The scale pass runs on PostgreSQL only; the embedded pass runs these tests on both backends.
BACKENDS = ["postgresql"] if SCALE_STACK else ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on each backend (PostgreSQL: the session's shared database)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    return url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = open_database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Embedded defaults in a temporary data dir (SQLite); the scale pass: a fresh PostgreSQL
    database and Redis."""
    if SCALE_STACK:
        url: str = request.getfixturevalue("private_postgres_url")
        return Settings(
            data_dir=tmp_path, database_url=url, redis_url=SCALE_REDIS_URL, worker_enabled=False
        )
    url = sqlite_url(tmp_path)
    migrate.upgrade(url)
    return Settings(data_dir=tmp_path, database_url=url, worker_enabled=False)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    built = Gateway.build(settings)
    yield built
    await built.close()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(gateway=gateway)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def caller(gateway: Gateway) -> Caller:
    return await make_caller(gateway.db, credits=120)


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    """A real `vidgate serve` process on loopback with embedded defaults (SQLite)."""
    server = GatewayProcess(tmp_path / "gateway").start()
    yield server
    server.stop()
