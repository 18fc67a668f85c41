"""Processes check the schema before they start: a shared database that an older release
left (not yet `vidgate migrate`d) or that a newer release migrated (an old process restarted
mid rolling upgrade) stops `serve`, `worker` and `migrate` with one line that says what to do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from vidgate.db import migrate

FUTURE_REVISION = "0999_from_a_newer_release"


def vidgate(*args: str, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidgate", *args, "--data-dir", str(data_dir)],
        env={"PATH": "/usr/bin:/bin", "VIDGATE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def set_revision(database_url: str, revision: str) -> None:
    engine = create_engine(migrate.sync_url(database_url))
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def test_an_older_schema_stops_serve_and_worker_until_migrated(
    private_postgres_url: str, tmp_path: Path
) -> None:
    migrate.downgrade(private_postgres_url, "0005")  # as the release before 0006 left it
    for command in (("serve", "--no-worker", "--port", "1"), ("worker",)):
        refused = vidgate(*command, database_url=private_postgres_url, data_dir=tmp_path)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "error: the database schema is not up to date: run `vidgate migrate` first"
        )
    migrated = vidgate("migrate", database_url=private_postgres_url, data_dir=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "database is up to date" in migrated.stdout
    listed = vidgate("keys", "list", database_url=private_postgres_url, data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr


def test_a_newer_schema_stops_every_process_and_migrate(
    private_postgres_url: str, tmp_path: Path
) -> None:
    set_revision(private_postgres_url, FUTURE_REVISION)
    for command in (("serve", "--no-worker", "--port", "1"), ("worker",), ("migrate",)):
        refused = vidgate(*command, database_url=private_postgres_url, data_dir=tmp_path)
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            f"error: the database schema (revision {FUTURE_REVISION}) is newer than this vidgate"
        ), refused.stderr
        assert "run the release that migrated it, or a later one" in refused.stderr


def test_embedded_sqlite_migrated_by_a_newer_release_is_refused_too(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)
    set_revision(url, FUTURE_REVISION)
    refused = vidgate("serve", "--port", "1", database_url=url, data_dir=tmp_path)
    assert refused.returncode == 1
    assert f"(revision {FUTURE_REVISION}) is newer than this vidgate" in refused.stderr
