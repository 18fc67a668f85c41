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

from sqlalchemy import Connection, Table, delete, select, tuple_

from vidgate.db.backend import Backend, Sql, lean
from vidgate.db.models import IdempotencyRecord
from vidgate.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest

RETENTION = timedelta(hours=24)
MAX_KEY_LENGTH = 255

records = cast(Table, IdempotencyRecord.__table__)

# Lean statements (db/backend.py): they are on the create path. A concurrent request with the
# same key waits on RESERVE's unique index entry until the first one commits.
_KEY = "account_id = :account_id AND key = :key"
FORGET_EXPIRED = Sql(f"DELETE FROM idempotency_keys WHERE {_KEY} AND expires_at < :now")
RESERVE = Sql(
    "INSERT INTO idempotency_keys (account_id, key, surface, fingerprint, created_at, "
    "expires_at) VALUES (:account_id, :key, :surface, :fingerprint, :created_at, :expires_at) "
    "ON CONFLICT (account_id, key) DO NOTHING RETURNING key"
)
LOOK_UP = Sql(
    "SELECT fingerprint, surface, status_code, task_id, request_id FROM idempotency_keys "
    f"WHERE {_KEY}"
)
ANSWERED_BEFORE = Sql(
    f"SELECT task_id FROM idempotency_keys WHERE {_KEY} AND fingerprint = :fingerprint "
    "AND surface = :surface AND task_id IS NOT NULL AND expires_at >= :now"
)
ANSWER = Sql(
    "UPDATE idempotency_keys SET task_id = :task_id, request_id = :request_id, "
    f"status_code = :status_code WHERE {_KEY}"
)


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
    *,
    account_id: int,
    key: str,
    surface: str,
    body_fingerprint: str,
    now: datetime,
    retention: timedelta = RETENTION,
) -> Answered | None:
    """Reserve the key in this transaction, or return the answer it gave (task, request id).

    Returns None when this request owns the key and must go on to create the task. The key
    belongs to one surface: the same key sent to the other surface is a different request.
    `retention`: how long the key is remembered (VIDGATE_IDEMPOTENCY_RETENTION_HOURS).
    """
    via = lean(conn)
    where = {"account_id": account_id, "key": key}
    via.execute(conn, FORGET_EXPIRED, {**where, "now": now})
    reserved = via.execute(
        conn,
        RESERVE,
        {
            **where,
            "surface": surface,
            "fingerprint": body_fingerprint,
            "created_at": now,
            "expires_at": now + retention,
        },
    )
    if reserved:
        return None
    # The conflicting row is committed, hence visible.
    fingerprint_, surface_, status_code, task_id, request_id = via.execute(conn, LOOK_UP, where)[0]
    if fingerprint_ != body_fingerprint or surface_ != surface:
        raise IdempotencyKeyReused()
    if status_code is None or task_id is None:
        raise IdempotencyKeyInUse(headers={"Retry-After": "1"})
    return Answered(task_id=task_id, request_id=request_id or "")


async def answered_before(
    backend: Backend,
    *,
    account_id: int,
    key: str,
    surface: str,
    body_fingerprint: str,
    now: datetime,
) -> bool:
    """Whether this very request (same key, body and surface) was answered already: its replay
    needs no second look by moderation (a policy changed since, or an endpoint down, must not
    turn the first answer into another). A read outside the create's transaction: the
    transaction's claim() still decides."""
    rows = await backend.read_rows(
        ANSWERED_BEFORE,
        {
            "account_id": account_id,
            "key": key,
            "fingerprint": body_fingerprint,
            "surface": surface,
            "now": now,
        },
    )
    return bool(rows)


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
    lean(conn).execute(
        conn,
        ANSWER,
        {
            "account_id": account_id,
            "key": key,
            "task_id": task_id,
            "request_id": request_id,
            "status_code": status_code,
        },
    )


def purge_expired(conn: Connection, *, now: datetime, limit: int) -> int:
    """Delete up to `limit` keys past their expiry (oldest first); how many. Bounded, so one
    call never holds a long transaction, and harmless when two reapers run it at once."""
    oldest = (
        select(records.c.account_id, records.c.key)
        .where(records.c.expires_at < now)
        .order_by(records.c.expires_at)
        .limit(limit)
    )
    result = conn.execute(
        delete(records).where(tuple_(records.c.account_id, records.c.key).in_(oldest))
    )
    return int(result.rowcount or 0)
