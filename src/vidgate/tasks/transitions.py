"""Every move of a task, each one conditional UPDATE plus its event row, in the caller's
transaction.

A move applies only from the statuses the state machine allows (tasks/states.py ALLOWED), so a
task ends exactly once; worker moves are also fenced by the lease (`lease_owner = me`), so a
worker that lost its lease cannot overwrite its successor. A refused move changes nothing and
writes no event. A move that ends a task gives its key's in-flight slot back, queues its webhook
deliveries (webhooks/outbox.py) and a failure refunds (to the account and to the key's
budget), all in the same transaction; the ledger's unique (task_id, 'refund') makes a second
refund impossible even if those checks were bypassed.
Lease housekeeping (extend, release, retry later) is not a move and writes no event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from vidgate.billing import service as billing
from vidgate.db.backend import notify_queue
from vidgate.keys import budget
from vidgate.tasks import repository
from vidgate.tasks.repository import tasks
from vidgate.tasks.states import (
    IN_FLIGHT,
    PROGRESS_EVENT_STEP,
    TERMINAL,
    EventKind,
    TaskErrorCode,
    TaskStatus,
    TaskStep,
    sources_of,
)
from vidgate.webhooks import outbox

_NO_LEASE = {"lease_owner": None, "lease_expires_at": None}


def _move(
    conn: Connection,
    task_id: str,
    *,
    target: TaskStatus,
    at: datetime,
    owner: str | None,
    values: dict[str, Any],
    event: EventKind | None,
    data: dict[str, Any] | None = None,
) -> Any | None:
    row = repository.update_task(
        conn,
        task_id,
        owner=owner,
        sources=sources_of(target),
        values={"status": target.value, "updated_at": at, **values},
        returning=(
            "account_id",
            "api_key_id",
            "credits_used",
            "channel",
            "callback_url",
            "budget_period_start",
        ),
    )
    if row is not None and target.value in TERMINAL:
        repository.free_job_slot(conn, api_key_id=row.api_key_id)
        if row.channel is not None:
            repository.free_channel_slot(conn, channel=row.channel)
        outbox.enqueue_ending(
            conn,
            task_id=task_id,
            account_id=row.account_id,
            api_key_id=row.api_key_id,
            callback_url=row.callback_url,
            status=target.value,
            at=at,
        )
    if row is not None and event is not None:
        repository.insert_event(
            conn,
            task_id=task_id,
            account_id=row.account_id,
            kind=event.value,
            status=target.value,
            at=at,
            data=data,
        )
    return row


def created(conn: Connection, *, task_id: str, account_id: int, at: datetime) -> None:
    """The event of a task just inserted (pending) by the create transaction."""
    repository.insert_event(
        conn,
        task_id=task_id,
        account_id=account_id,
        kind=EventKind.CREATED.value,
        status=TaskStatus.PENDING.value,
        at=at,
    )


def submitted(
    conn: Connection,
    task_id: str,
    owner: str,
    *,
    at: datetime,
    upstream_id: str,
    channel: str,
    run_after: datetime,
    keep_lease: bool = False,
) -> bool:
    """The provider accepted the job: persist its id at once, so it is never submitted twice."""
    values: dict[str, Any] = {
        "step": TaskStep.POLL.value,
        "upstream_id": upstream_id,
        "channel": channel,
        "started_at": at,
        "run_after": run_after,
    }
    if not keep_lease:
        values.update(_NO_LEASE)
    row = _move(
        conn,
        task_id,
        target=TaskStatus.PROCESSING,
        at=at,
        owner=owner,
        values=values,
        event=EventKind.SUBMITTED,
        data={"channel": channel, "upstream_id": upstream_id},
    )
    return row is not None


def progressed(
    conn: Connection,
    task_id: str,
    owner: str,
    *,
    at: datetime,
    previous: int,
    progress: int,
    run_after: datetime,
    keep_lease: bool = False,
) -> bool:
    """A running job's progress; an event only when it passes a new PROGRESS_EVENT_STEP mark."""
    progress = max(0, min(99, progress))
    values: dict[str, Any] = {"progress": progress, "run_after": run_after}
    if not keep_lease:
        values.update(_NO_LEASE)
    worth_an_event = progress // PROGRESS_EVENT_STEP > previous // PROGRESS_EVENT_STEP
    row = _move(
        conn,
        task_id,
        target=TaskStatus.PROCESSING,
        at=at,
        owner=owner,
        values=values,
        event=EventKind.PROGRESS if worth_an_event else None,
        data={"progress": progress},
    )
    return row is not None


def completed(
    conn: Connection,
    task_id: str,
    owner: str,
    *,
    at: datetime,
    file_key: str,
    channel_cost: int | None = None,
) -> bool:
    row = _move(
        conn,
        task_id,
        target=TaskStatus.COMPLETED,
        at=at,
        owner=owner,
        values={
            "step": TaskStep.DONE.value,
            "progress": 100,
            "file_key": file_key,
            "completed_at": at,
            "channel_cost": channel_cost,
            **_NO_LEASE,
        },
        event=EventKind.COMPLETED,
    )
    return row is not None


def failed(
    conn: Connection,
    task_id: str,
    *,
    at: datetime,
    code: TaskErrorCode,
    message: str,
    channel_cost: int | None = None,
) -> bool:
    """End a task as failed and give its credits back. Not fenced by the lease: a timeout or an
    operator may end a task another worker holds; the status fence keeps it exactly once.
    `channel_cost`: what the upstream still charged us for it, when it says."""
    return _end_unleased(
        conn,
        task_id,
        target=TaskStatus.FAILED,
        at=at,
        code=code,
        message=message,
        refund=True,
        data={"error_code": code.value, "error_message": message},
        extra={} if channel_cost is None else {"channel_cost": channel_cost},
    )


def cancelled(conn: Connection, task_id: str, *, at: datetime, refund: bool) -> bool:
    """The user cancelled it (the cancel endpoint); refunded when the channel's policy says."""
    return _end_unleased(
        conn,
        task_id,
        target=TaskStatus.CANCELLED,
        at=at,
        code=TaskErrorCode.CANCELLED,
        message="cancelled by the user",
        refund=refund,
        data={"refunded": refund},
    )


def _end_unleased(
    conn: Connection,
    task_id: str,
    *,
    target: TaskStatus,
    at: datetime,
    code: TaskErrorCode,
    message: str,
    refund: bool,
    data: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> bool:
    row = _move(
        conn,
        task_id,
        target=target,
        at=at,
        owner=None,
        values={
            "step": TaskStep.DONE.value,
            "error_code": code.value,
            "error_message": message,
            "credits_refunded": tasks.c.credits_used if refund else 0,
            "completed_at": at,
            **(extra or {}),
            **_NO_LEASE,
        },
        event=EventKind(target.value),
        data=data,
    )
    if row is None:
        return False
    if refund and row.credits_used:
        billing.refund_task(
            conn, account_id=row.account_id, amount=row.credits_used, task_id=task_id
        )
        if row.budget_period_start is not None:  # back to the key budget's period it came from
            budget.give_back(
                conn,
                api_key_id=row.api_key_id,
                period_start=row.budget_period_start,
                amount=row.credits_used,
            )
    return True


# -- lease housekeeping (no status change, no event) -----------------------------------------


def _housekeep(
    conn: Connection, task_id: str, owner: str, values: dict[str, Any], *, due_now: bool = False
) -> bool:
    """`due_now`: the task is due again at once, so its queue's idle workers (in any process)
    are woken when this commits (db/backend.py notify_queue)."""
    row = repository.update_task(
        conn, task_id, owner=owner, sources=IN_FLIGHT, values=values, returning=("queue",)
    )
    if row is not None and due_now:
        notify_queue(conn, row.queue)
    return row is not None


def extend_lease(conn: Connection, task_id: str, owner: str, *, until: datetime) -> bool:
    return _housekeep(conn, task_id, owner, {"lease_expires_at": until})


def release(conn: Connection, task_id: str, owner: str) -> bool:
    """Give the lease back untouched (shutdown, or a task this worker cannot serve); another
    worker of its queue may take it at once."""
    return _housekeep(conn, task_id, owner, dict(_NO_LEASE), due_now=True)


def routed(conn: Connection, task_id: str, owner: str, *, channel: str, cap: int | None) -> bool:
    """Route a task about to be submitted to `channel`, taking one of its slots; False when the
    channel is full (`cap` jobs in flight) or we lost the lease. From here until the task ends or
    fails over, a retried submit goes to this channel only: it may hold the job already."""
    if not repository.take_channel_slot(conn, channel=channel, cap=cap):
        return False
    row = repository.update_task(
        conn,
        task_id,
        owner=owner,
        sources=(TaskStatus.PENDING.value,),
        values={"channel": channel},
    )
    if row is None:  # not ours any more: give the slot straight back, in this same transaction
        repository.free_channel_slot(conn, channel=channel)
    return row is not None


def unrouted(conn: Connection, task_id: str, owner: str, *, channel: str) -> bool:
    """The channel refused the task outright (nothing accepted upstream): free its slot so the
    task can fail over to the next channel."""
    row = repository.update_task(
        conn,
        task_id,
        owner=owner,
        sources=(TaskStatus.PENDING.value,),
        values={"channel": None},
    )
    if row is not None:
        repository.free_channel_slot(conn, channel=channel)
    return row is not None


def retry_later(
    conn: Connection,
    task_id: str,
    owner: str,
    *,
    at: datetime,
    run_after: datetime,
    step: TaskStep | None = None,
    clear_upstream: bool = False,
    count_attempt: bool = True,
) -> bool:
    """Hand the task back until `run_after`. `count_attempt=False`: it is waiting its turn (a
    full or open channel), which is not a failed try."""
    values: dict[str, Any] = {
        "attempts": tasks.c.attempts + (1 if count_attempt else 0),
        "run_after": run_after,
        "updated_at": at,
        **_NO_LEASE,
    }
    if step is not None:
        values["step"] = step.value
    if clear_upstream:
        values["upstream_id"] = None
    # Later than now: the worker's own timer and the poll find it; nothing to notify then.
    return _housekeep(conn, task_id, owner, values, due_now=run_after <= at)


def lease_until(at: datetime, lease_s: float) -> datetime:
    return at + timedelta(seconds=lease_s)
