"""The audit log: one row per admin action (API or CLI), written in the action's own
transaction, so an action and its record commit or roll back together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.db.models import AuditEntry
from vidgate.db.types import utcnow


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acts: an admin key (by id) or the operator at the CLI."""

    name: str
    key_id: int | None = None

    @classmethod
    def admin_key(cls, key_id: int) -> Actor:
        return cls(name=f"key:{key_id}", key_id=key_id)


CLI = Actor(name="cli")


async def record(session: AsyncSession, **entry: Any) -> None:
    """record_on (same keywords) in an AsyncSession's transaction."""
    await session.run_sync(lambda sync: record_on(sync.connection(), **entry))


def record_on(
    conn: Connection,
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: int | str,
    account_id: int | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None = None,
) -> None:
    """Append one entry in the caller's transaction."""
    conn.execute(
        insert(AuditEntry).values(
            actor_key_id=actor.key_id,
            actor=actor.name,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            account_id=account_id,
            before=before,
            after=after,
            reason=reason,
            at=utcnow(),
        )
    )


async def list_entries(
    session: AsyncSession, *, account_id: int | None = None, offset: int = 0, limit: int = 20
) -> tuple[int, list[AuditEntry]]:
    """A page of the log, newest first; with `account_id`, only actions on that account."""
    condition = [AuditEntry.account_id == account_id] if account_id is not None else []
    total = await session.scalar(select(func.count()).select_from(AuditEntry).where(*condition))
    found = await session.scalars(
        select(AuditEntry)
        .where(*condition)
        .order_by(AuditEntry.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), list(found)
