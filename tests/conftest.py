"""Shared fixtures: real SQLite and PostgreSQL databases, a gateway, an HTTP client.

PostgreSQL (and later Redis) tests skip with a reason when the service is not running, except
under CI=true, where a missing service is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from support import Caller, GatewayProcess, make_caller
from vidgate.app import create_app
from vidgate.db import migrate
from vidgate.db.engine import Database, open_database
from vidgate.gateway import Gateway
from vidgate.settings import Settings

PG_ADMIN_DSN = os.environ.get(
    "VIDGATE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"vidgate_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


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
