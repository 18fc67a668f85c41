"""API keys are stored only as SHA-256 hashes, on both backends."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from support import make_caller
from vidgate.db.engine import Database
from vidgate.errors import Unauthorized
from vidgate.keys import service as keys


async def _all_rows_as_text(db: Database) -> str:
    dump = []
    async with db.read() as session:
        for table in ("accounts", "api_keys", "credit_ledger"):
            rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()
            dump.extend(repr(tuple(row)) for row in rows)
    return "\n".join(dump)


async def test_database_never_holds_a_plaintext_key(db: Database) -> None:
    caller = await make_caller(db)
    dump = await _all_rows_as_text(db)
    assert caller.api_key not in dump
    assert caller.api_key[3:] not in dump
    assert hashlib.sha256(caller.api_key.encode()).hexdigest() in dump


async def test_revoked_key_is_refused_at_once(db: Database) -> None:
    caller = await make_caller(db)
    key_hash = keys.hash_key(keys.bearer_token(f"Bearer {caller.api_key}"))
    principal = await keys.lookup(db, key_hash)
    assert principal.account_id == caller.account_id
    async with db.write() as session:
        await keys.revoke_key(session, key_id=caller.key_id)
    with pytest.raises(Unauthorized, match=r"^Invalid API key$"):
        await keys.lookup(db, key_hash)
