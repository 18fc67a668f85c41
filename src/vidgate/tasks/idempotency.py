"""Idempotency-Key handling for task creation (API-CONTRACT.md section 4).

The key row is written in the same transaction as the task and the debit, so a request either
leaves all three or none. It keeps the task id, the surface and the body's fingerprint, not the
answer: a replay re-renders the answer from the task, byte for byte the first one. A concurrent
retry of the same key waits on that row (PostgreSQL: the unique index; SQLite: the write lock)
and then replays; if the wait passes the lock timeout it gets 409 idempotency_key_in_use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, select, update

from vidgate.db.backend import Backend
from vidgate.db.models import IdempotencyRecord
from vidgate.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest

RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255

records = cast(Table, IdempotencyRecord.__table__)


@dataclass(frozen=True)
class Answered:
    task_id: str
    request_id: str  # of the first answer


def fingerprint(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable characters")
    return key


def claim(
    conn: Connection,
    backend: Backend,
    *,
    account_id: int,
    key: str,
    surface: str,
    body_fingerprint: str,
    now: datetime,
) -> Answered | None:
    """Reserve the key in this transaction, or return the answer it gave (task, request id).

    Returns None when this request owns the key and must go on to create the task. The key
    belongs to one surface: the same key sent to the other surface is a different request.
    """
    conn.execute(
        delete(records).where(
            records.c.account_id == account_id,
            records.c.key == key,
            records.c.expires_at < now,
        )
    )
    reserve = backend.insert_ignoring_conflict(
        records,
        {
            "account_id": account_id,
            "key": key,
            "surface": surface,
            "fingerprint": body_fingerprint,
            "created_at": now,
            "expires_at": now + RETENTION,
        },
        index_elements=["account_id", "key"],
    ).returning(records.c.key)
    if conn.scalar(reserve) is not None:
        return None
    record = conn.execute(
        select(
            records.c.fingerprint, records.c.surface, records.c.status_code, records.c.task_id
        ).where(records.c.account_id == account_id, records.c.key == key)
    ).one()  # the conflicting row is committed, hence visible
    if record.fingerprint != body_fingerprint or record.surface != surface:
        raise IdempotencyKeyReused()
    if record.status_code is None or record.task_id is None:
        raise IdempotencyKeyInUse(headers={"Retry-After": "1"})
    return Answered(task_id=record.task_id, request_id=record.request_id or "")


def answered(
    conn: Connection,
    *,
    account_id: int,
    key: str,
    task_id: str,
    request_id: str,
    status_code: int,
) -> None:
    """The request that owns the key has its answer: later replays re-render it from the task."""
    conn.execute(
        update(records)
        .where(records.c.account_id == account_id, records.c.key == key)
        .values(task_id=task_id, request_id=request_id, status_code=status_code)
    )


def purge_expired(conn: Connection, *, now: datetime) -> int:
    result = conn.execute(delete(records).where(records.c.expires_at < now))
    return int(result.rowcount or 0)
