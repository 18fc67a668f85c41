"""The SQLite file itself never contains a plaintext key (not even in the WAL)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support import Caller, make_caller
from vidgate.db import migrate
from vidgate.db.engine import open_database


def test_sqlite_files_hold_no_plaintext_key(tmp_path: Path) -> None:
    # SQLite by name, in both test passes: the scale pass's default fixtures are PostgreSQL.
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)

    async def make_key() -> Caller:
        db = open_database(url)
        try:
            return await make_caller(db)
        finally:
            await db.dispose()

    caller = asyncio.run(make_key())
    files = list(tmp_path.glob("vidgate.db*"))
    assert files
    for path in files:
        assert caller.api_key.encode() not in path.read_bytes(), path
