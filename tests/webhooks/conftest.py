"""A database of the test's own: the delivery loop claims every due delivery it finds, so it
must not find those other tests left in the session's shared PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vidgate.db import migrate
from vidgate.db.engine import Database, open_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def own_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("private_postgres_url")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
        migrate.upgrade(url)
    database = open_database(url)
    yield database
    await database.dispose()
