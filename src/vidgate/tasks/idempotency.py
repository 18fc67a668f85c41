"""Idempotency-Key handling for task creation (API-CONTRACT.md section 4).

The key row is written in the same transaction as the task and the debit, so a request either
leaves all three or none. A concurrent retry of the same key waits on that row (PostgreSQL: the
unique index; SQLite: the write lock) and then replays the stored answer; if the wait passes the
lock timeout it gets 409 idempotency_key_in_use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.db.models import IdempotencyRecord
from vidgate.db.types import utcnow
from vidgate.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest

RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Replay:
    status_code: int
    data: dict[str, Any]


def fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable characters")
    return key


async def claim(
    session: AsyncSession, *, account_id: int, key: str, body_fingerprint: str
) -> Replay | None:
    """Reserve the key in this transaction, or return the answer stored for it.

    Returns None when this request owns the key and must go on to create the task.
    """
    now = utcnow()
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.account_id == account_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at < now,
        )
    )
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(IdempotencyRecord)
        .values(
            account_id=account_id,
            key=key,
            fingerprint=body_fingerprint,
            created_at=now,
            expires_at=now + RETENTION,
        )
        .on_conflict_do_nothing(index_elements=["account_id", "key"])
        .returning(IdempotencyRecord.key)
    )
    if await session.scalar(statement) is not None:
        return None
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
        )
    )
    assert record is not None  # the conflicting row is committed, hence visible
    if record.fingerprint != body_fingerprint:
        raise IdempotencyKeyReused()
    if record.status_code is None or record.response_body is None:
        raise IdempotencyKeyInUse(headers={"Retry-After": "1"})
    return Replay(status_code=record.status_code, data=record.response_body)


async def store_response(
    session: AsyncSession,
    *,
    account_id: int,
    key: str,
    task_id: str,
    status_code: int,
    data: dict[str, Any],
) -> None:
    record = await session.get(IdempotencyRecord, (account_id, key))
    assert record is not None
    record.task_id = task_id
    record.status_code = status_code
    record.response_body = data
    await session.flush()


async def purge_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
