"""Run Alembic migrations from code (`vidgate migrate`, and `serve` in embedded mode)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def sync_url(url: str) -> str:
    """Alembic runs synchronously: same database, blocking driver."""
    return url.replace("sqlite+aiosqlite", "sqlite", 1)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sync_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class SchemaState:
    """Where the database's schema stands against this code's migrations."""

    behind: bool  # not migrated, or migrated by an older release: `vidgate migrate` applies
    newer: tuple[str, ...]  # revisions this code does not know: a newer release migrated it


def schema_state(database_url: str) -> SchemaState:
    config = alembic_config(database_url)
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    engine = create_engine(sync_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
    newer = tuple(sorted(current - known))
    return SchemaState(behind=not newer and current != set(script.get_heads()), newer=newer)
