"""Every write the worker makes to a task, each a conditional UPDATE.

Worker writes are fenced by the lease (`lease_owner = me`), so a worker that lost its lease cannot
overwrite its successor. Completion and failure also require a non-terminal status, so a task
ends exactly once; failure refunds in the same transaction, and the ledger's unique
(task_id, 'refund') makes a second refund impossible even if that check were bypassed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.db.models import VideoTask
from vidgate.db.types import utcnow
from vidgate.tasks.states import TERMINAL, TaskStatus, TaskStep


def _owned(task_id: str, owner: str) -> Any:
    return (
        (VideoTask.id == task_id)
        & (VideoTask.lease_owner == owner)
        & (VideoTask.status.not_in(TERMINAL))
    )


async def _update_owned(
    db: Database, task_id: str, owner: str, *, release_lease: bool = True, **values: Any
) -> bool:
    """Apply `values` if we still hold the lease; by default also give the lease back."""
    values.setdefault("updated_at", utcnow())
    if release_lease:
        values.update(lease_owner=None, lease_expires_at=None)
    async with db.write() as session:
        result = await session.execute(
            update(VideoTask).where(_owned(task_id, owner)).values(**values)
        )
    return bool(getattr(result, "rowcount", 0))


async def extend_lease(db: Database, task_id: str, owner: str, *, lease_s: float) -> bool:
    return await _update_owned(
        db,
        task_id,
        owner,
        release_lease=False,
        lease_expires_at=utcnow() + timedelta(seconds=lease_s),
        updated_at=VideoTask.updated_at,
    )


async def record_submission(
    db: Database, task_id: str, owner: str, *, upstream_id: str, channel: str, run_after: datetime
) -> bool:
    """The provider accepted the job: persist its id at once, so it is never submitted twice."""
    now = utcnow()
    return await _update_owned(
        db,
        task_id,
        owner,
        status=TaskStatus.PROCESSING.value,
        step=TaskStep.POLL.value,
        upstream_id=upstream_id,
        channel=channel,
        started_at=now,
        run_after=run_after,
    )


async def record_progress(
    db: Database, task_id: str, owner: str, *, progress: int, run_after: datetime
) -> bool:
    return await _update_owned(
        db,
        task_id,
        owner,
        status=TaskStatus.PROCESSING.value,
        progress=max(0, min(99, progress)),
        run_after=run_after,
    )


async def schedule_retry(
    db: Database,
    task_id: str,
    owner: str,
    *,
    run_after: datetime,
    step: TaskStep | None = None,
    clear_upstream: bool = False,
) -> bool:
    values: dict[str, Any] = {
        "attempts": VideoTask.attempts + 1,
        "run_after": run_after,
    }
    if step is not None:
        values["step"] = step.value
    if clear_upstream:
        values["upstream_id"] = None
    return await _update_owned(db, task_id, owner, **values)


async def release(db: Database, task_id: str, owner: str) -> bool:
    """Give the lease back without other changes (graceful shutdown)."""
    return await _update_owned(db, task_id, owner, updated_at=VideoTask.updated_at)


async def complete(db: Database, task_id: str, owner: str, *, file_key: str) -> bool:
    now = utcnow()
    return await _update_owned(
        db,
        task_id,
        owner,
        status=TaskStatus.COMPLETED.value,
        step=TaskStep.DONE.value,
        progress=100,
        file_key=file_key,
        completed_at=now,
        updated_at=now,
    )


async def fail_and_refund(
    session: AsyncSession, task_id: str, *, error_code: str, error_message: str
) -> bool:
    """End a task as failed and give its credits back, in the caller's transaction."""
    now = utcnow()
    row = (
        await session.execute(
            update(VideoTask)
            .where(VideoTask.id == task_id, VideoTask.status.not_in(TERMINAL))
            .values(
                status=TaskStatus.FAILED.value,
                step=TaskStep.DONE.value,
                error_code=error_code,
                error_message=error_message,
                credits_refunded=VideoTask.credits_used,
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(VideoTask.account_id, VideoTask.credits_used)
        )
    ).first()
    if row is None:
        return False
    account_id, credits_used = row
    if credits_used:
        await billing.refund(session, account_id=account_id, amount=credits_used, task_id=task_id)
    return True


async def fail(db: Database, task_id: str, *, error_code: str, error_message: str) -> bool:
    async with db.write() as session:
        return await fail_and_refund(
            session, task_id, error_code=error_code, error_message=error_message
        )
