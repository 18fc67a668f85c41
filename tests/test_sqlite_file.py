"""The SQLite file itself never contains a plaintext key (not even in the WAL)."""

from __future__ import annotations

from support import make_caller
from vidgate.gateway import Gateway


async def test_sqlite_files_hold_no_plaintext_key(gateway: Gateway) -> None:
    caller = await make_caller(gateway.db)
    await gateway.db.dispose()
    files = list(gateway.settings.data_dir.glob("vidgate.db*"))
    assert files
    for path in files:
        assert caller.api_key.encode() not in path.read_bytes(), path
