"""Claiming due tasks with a lease.

The claim is one statement: pick due tasks whose lease is free or expired and stamp them with our
lease. On PostgreSQL the inner SELECT carries FOR UPDATE SKIP LOCKED, so many workers claim
disjoint tasks without waiting on each other; SQLite has no row locks (the clause compiles away)
and its single writer lock makes the statement atomic on its own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from sqlalchemy import or_, select, update

from vidgate.db.engine import Database
from vidgate.db.models import VideoTask
from vidgate.db.types import utcnow
from vidgate.tasks.states import IN_FLIGHT


class Claimer(Protocol):
    async def claim(self, *, owner: str, limit: int, lease_s: float) -> list[str]: ...


class SqlClaimer:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, *, owner: str, limit: int, lease_s: float) -> list[str]:
        if limit <= 0:
            return []
        now = utcnow()
        due = (
            select(VideoTask.id)
            .where(
                VideoTask.status.in_(IN_FLIGHT),
                VideoTask.run_after <= now,
                or_(VideoTask.lease_expires_at.is_(None), VideoTask.lease_expires_at < now),
            )
            .order_by(VideoTask.run_after)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self.db.write() as session:
            claimed = await session.scalars(
                update(VideoTask)
                .where(VideoTask.id.in_(due.scalar_subquery()))
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=lease_s))
                .returning(VideoTask.id)
                .execution_options(synchronize_session=False)
            )
            return list(claimed)
