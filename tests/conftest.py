"""Shared fixtures: real SQLite and PostgreSQL databases, a gateway, an HTTP client.

PostgreSQL tests skip with a reason when the service is not running, except under CI=true,
where a missing service is a failure (support.service_missing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from support import Caller, GatewayProcess, fresh_postgres_database, make_caller
from vidgate.app import create_app
from vidgate.db import migrate
from vidgate.db.engine import Database, open_database
from vidgate.gateway import Gateway
from vidgate.settings import Settings


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database shared by the session's tests."""
    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def private_postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for one test that changes the schema or needs it alone."""
    with fresh_postgres_database() as url:
        migrate.upgrade(url)
        yield url


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'vidgate.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
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
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults in a temporary data dir (SQLite)."""
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
