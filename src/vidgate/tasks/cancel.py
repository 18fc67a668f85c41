"""The cancel rules: end a task its owner no longer wants, refund it as its channel's policy
says, and stop its job where this process can reach the provider that runs it.

The task is ended first and its provider told afterwards. The other order races the worker: a
provider that stops a job reports it failed, and a worker polling at that moment would end the
task as `failed` before the cancel is written. Once the task is cancelled every worker write is
refused (a moving task's progress, its completion), so a local render stops at its next
progress report even in a process this one cannot reach.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy import Connection

from vidgate import metrics
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.errors import NotFound, ServiceUnavailable, TaskAlreadyEnded
from vidgate.providers.base import Provider
from vidgate.providers.catalogue import Catalogue
from vidgate.tasks import repository, transitions
from vidgate.tasks.repository import TaskRecord

logger = logging.getLogger("vidgate.tasks")

# A task that moves between the read and the update (PostgreSQL) is decided again; a handful
# of tries is plenty, as each retry follows a move the task can make only once.
MAX_DECISIONS = 3


class Providers(Protocol):
    def provider(self, name: str) -> Provider | None: ...


class _MovedMeanwhile(Exception):
    """The task changed between our read and our update: roll back and decide again."""


def refunds_on_cancel(task: TaskRecord, catalogue: Catalogue) -> bool:
    """A task no upstream has accepted yet costs nobody anything: full refund. Once one has,
    its channel's `refund_on_cancel` decides (a channel of a model no longer in the catalogue
    refunds, the catalogue's default)."""
    if task.upstream_id is None or task.channel is None:
        return True
    model = catalogue.models.get(task.model)
    channels = model.channels if model is not None else ()
    channel = next((c for c in channels if c.provider == task.channel), None)
    return channel.refund_on_cancel if channel is not None else True


def _end(conn: Connection, *, account_id: int, task_id: str, catalogue: Catalogue) -> TaskRecord:
    task = repository.get(conn, task_id)
    # Another account's task is "not found" too: never confirm that an id exists.
    if task is None or task.account_id != account_id:
        raise NotFound(f"task {task_id} not found")
    if task.is_terminal:
        raise TaskAlreadyEnded(f"task {task_id} has already ended ({task.status})")
    refund = refunds_on_cancel(task, catalogue)
    if not transitions.cancelled(conn, task_id, at=utcnow(), refund=refund):
        raise TaskAlreadyEnded(f"task {task_id} ended while it was being cancelled")
    # Read again under the row lock our update holds: what was really ended. On PostgreSQL a
    # worker's submit may have landed between the first read and the update.
    ended = repository.get(conn, task_id)
    assert ended is not None
    if refunds_on_cancel(ended, catalogue) != refund:
        raise _MovedMeanwhile
    return ended


async def cancel_task(
    db: Database,
    *,
    account_id: int,
    task_id: str,
    catalogue: Catalogue,
    providers: Providers,
) -> TaskRecord:
    """End a pending or processing task as cancelled; the task as it is now. Raises NotFound
    (also for another account's task) and TaskAlreadyEnded (409)."""

    def end(conn: Connection) -> TaskRecord:
        return _end(conn, account_id=account_id, task_id=task_id, catalogue=catalogue)

    for _ in range(MAX_DECISIONS):
        try:
            ended = await db.backend.run_write(end)
        except _MovedMeanwhile:
            continue
        logger.info(
            "task %s: cancelled by its owner; %s",
            task_id,
            "refunded"
            if refunds_on_cancel(ended, catalogue)
            else "not refunded (its channel's policy)",
        )
        refund = ended.status if ended.credits_refunded else None
        metrics.task_ended(ended, ended.status, at=ended.completed_at or utcnow(), refund=refund)
        await _stop_upstream(ended, providers)
        return ended
    raise ServiceUnavailable(
        f"task {task_id} kept changing while it was being cancelled; retry",
        headers={"Retry-After": "1"},
    )


async def _stop_upstream(task: TaskRecord, providers: Providers) -> None:
    """Best effort: the task is cancelled whatever the provider answers."""
    if task.upstream_id is None or task.channel is None:
        return  # nothing was submitted: no provider to tell
    provider = providers.provider(task.channel)
    if provider is None:
        # An API process without this provider: the worker running a local job stops it at
        # its next progress report; a remote job runs on upstream.
        logger.info(
            "task %s: provider %s is not configured in this process; its job %s is not "
            "cancelled upstream",
            task.id,
            task.channel,
            task.upstream_id,
        )
        return
    try:
        await provider.cancel(task.upstream_id)
    except Exception:
        logger.warning(
            "task %s: could not cancel job %s on %s",
            task.id,
            task.upstream_id,
            task.channel,
            exc_info=True,
        )
