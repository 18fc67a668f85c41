"""The operator's remedies for one task (`vidgate tasks`), each one transaction.

- retry: an in-flight task that is stuck (its worker died holding a long lease, or it waits out
  a long backoff) has its lease cleared and is due now, exactly as if its lease had just expired:
  a worker resumes it from its persisted step, so an upstream job already accepted is polled,
  never submitted again, and nothing is charged. An ended task is refused: running a failed
  task again would either work for free or need a second debit, so the way to run it again is
  a new task, charged as any other.
- fail: ends an in-flight task as failed and refunds it through the same fenced transition a
  worker uses (tasks/transitions.py failed): only from an in-flight status, so a second `fail`,
  or a worker finishing meanwhile, changes nothing; the ledger's unique refund per task makes
  a second refund impossible anyway. A worker still running it loses its fence: its later
  writes are refused and a local render stops at its next progress report.

Each remedy that changes a task leaves one audit_log row (actor cli) in its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from vidgate.accounts import audit
from vidgate.billing import service as billing
from vidgate.billing.service import LedgerEntryRow
from vidgate.db.backend import notify_queue
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.errors import NotFound, TaskAlreadyEnded
from vidgate.tasks import repository, transitions
from vidgate.tasks.repository import EventRecord, TaskRecord
from vidgate.tasks.states import TaskErrorCode

OPERATOR_FAILURE = "failed by the operator"


@dataclass(frozen=True)
class TaskDetails:
    task: TaskRecord
    events: list[EventRecord]
    ledger: list[LedgerEntryRow]


@dataclass(frozen=True)
class Retried:
    task_id: str
    queue: str
    cleared_lease_of: str | None  # the worker whose lease was taken away, if any


def _existing(conn: Connection, task_id: str) -> TaskRecord:
    task = repository.get(conn, task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def _ended(task: TaskRecord, remedy: str) -> TaskAlreadyEnded:
    return TaskAlreadyEnded(f"task {task.id} has already ended ({task.status}); {remedy}")


def _state_of(task: TaskRecord) -> dict[str, object]:
    return {
        "status": task.status,
        "lease_owner": task.lease_owner,
        "credits_refunded": task.credits_refunded,
    }


def _audit(
    conn: Connection,
    action: str,
    task: TaskRecord,
    *,
    before: dict[str, object],
    after: dict[str, object],
    reason: str | None = None,
) -> None:
    # The remedies are operator actions: audited like the accounts CLI's, in their transaction.
    audit.record_on(
        conn,
        actor=audit.CLI,
        action=action,
        target_type="task",
        target_id=task.id,
        account_id=task.account_id,
        before=before,
        after=after,
        reason=reason,
    )


async def details(db: Database, task_id: str) -> TaskDetails:
    def work(conn: Connection) -> TaskDetails:
        task = _existing(conn, task_id)
        return TaskDetails(
            task=task,
            events=repository.events_of(conn, task_id),
            ledger=billing.entries_of_task(conn, task_id=task_id),
        )

    return await db.backend.run_read(work)


async def retry(db: Database, task_id: str) -> Retried:
    now = utcnow()

    def work(conn: Connection) -> Retried:
        task = _existing(conn, task_id)
        row = repository.make_due(conn, task_id, at=now)
        if row is None:
            raise _ended(_existing(conn, task_id), "create a new task to run it again")
        notify_queue(conn, row.queue)  # an idle worker of its queue takes it at once
        _audit(
            conn, "task.retry", task, before=_state_of(task), after={"run_after": now.isoformat()}
        )
        return Retried(task_id=task_id, queue=row.queue, cleared_lease_of=task.lease_owner)

    return await db.backend.run_write(work)


async def fail(db: Database, task_id: str, *, reason: str | None = None) -> TaskRecord:
    """End the task as failed with its credits refunded; the task as it ended."""
    now = utcnow()

    def work(conn: Connection) -> TaskRecord:
        before = _existing(conn, task_id)  # NotFound for an unknown id
        message = reason.strip() if reason and reason.strip() else OPERATOR_FAILURE
        code = TaskErrorCode.FAILED_BY_OPERATOR
        if not transitions.failed(conn, task_id, at=now, code=code, message=message):
            # Read again: a concurrent ending may have won since the first read.
            raise _ended(_existing(conn, task_id), "nothing was changed")
        after = _existing(conn, task_id)
        _audit(
            conn,
            "task.fail",
            before,
            before=_state_of(before),
            after=_state_of(after),
            reason=message,
        )
        return after

    return await db.backend.run_write(work)
