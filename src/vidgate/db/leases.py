"""Claiming due rows with a lease, for every table worked off by workers (tasks, webhook
deliveries): one conditional UPDATE of the rows nobody holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, or_, select, update
from sqlalchemy.sql.elements import ColumnElement


def claim_leased(
    conn: Connection,
    table: Table,
    *,
    due: Sequence[ColumnElement[bool]],
    order_by: ColumnElement[Any],
    owner: str,
    now: datetime,
    limit: int,
    lease_s: float,
) -> list[Any]:
    """Stamp `owner`'s lease on up to `limit` rows matching `due` whose lease is free or
    expired; their ids. PostgreSQL skips rows another worker is claiming (FOR UPDATE SKIP
    LOCKED); SQLite's compiler leaves that out, and its single write lock makes the statement
    atomic. The table needs `id`, `lease_owner` and `lease_expires_at` columns."""
    free = or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < now)
    chosen = (
        select(table.c.id)
        .where(*due, free)
        .order_by(order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = conn.scalars(
        update(table)
        .where(table.c.id.in_(chosen.scalar_subquery()))
        .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(table.c.id)
    )
    return list(claimed)
