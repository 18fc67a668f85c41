"""Migrations build exactly the models' schema, and go down and up again, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from vidgate.db import migrate
from vidgate.db.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A database of this test's own: it drops and rebuilds the schema."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("private_postgres_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)
    return url


def test_migrations_match_models_and_round_trip(database_url: str) -> None:
    engine = create_engine(migrate.sync_url(database_url))
    try:
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        migrate.downgrade(database_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(database_url)
        tables = set(inspect(engine).get_table_names())
        assert {"accounts", "api_keys", "credit_ledger", "video_tasks"} <= tables
    finally:
        engine.dispose()
