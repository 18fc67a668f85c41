"""Every task query: insert, get, history, claim, fenced updates and the events outbox.

Synchronous functions of a `Connection`: the backend (db/backend.py) runs a whole transaction
of them in one go, on a thread for SQLite or through `run_sync` for PostgreSQL. The statements
of the hot paths (the status poll's read, the create transaction) are lean `Sql` texts on the
DBAPI cursor; the rest is SQLAlchemy Core. Services hold the rules and call these; nothing else
writes SQL for tasks.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, Connection, Table, case, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from vidgate.db.backend import Backend, Lean, Row, Sql, convert_row, lean
from vidgate.db.leases import claim_leased
from vidgate.db.models import Account, ChannelSlots, TaskEvent, VideoTask
from vidgate.db.types import UTCDateTime
from vidgate.tasks.states import IN_FLIGHT, TERMINAL, TaskStatus

tasks = cast(Table, VideoTask.__table__)
events = cast(Table, TaskEvent.__table__)
slots = cast(Table, ChannelSlots.__table__)
accounts = cast(Table, Account.__table__)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    """One row of video_tasks, as the services and presenters see it."""

    id: str
    account_id: int
    api_key_id: int
    model: str
    type: str
    prompt: str | None
    params: dict[str, Any]
    callback_url: str | None
    provider_request_id: str
    surface: str
    queue: str
    status: str
    step: str
    attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    deadline_at: datetime
    channel: str | None
    upstream_id: str | None
    progress: int
    credits_used: int
    credits_refunded: int
    channel_cost: int | None
    error_code: str | None
    error_message: str | None
    result_urls: list[str]
    file_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deleted_at: datetime | None = None  # the OpenAI surface's delete: files gone, row kept
    remixed_from: str | None = None  # the task this one remixes
    files_expired_at: datetime | None = None  # retention: the reaper deleted its result files
    budget_period_start: datetime | None = None  # the key budget's period it was charged to

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


_TASK_COLUMNS = [tasks.c[f.name] for f in fields(TaskRecord)]
_TASK_NAMES = [column.name for column in _TASK_COLUMNS]
_DATETIMES = [i for i, c in enumerate(_TASK_COLUMNS) if isinstance(c.type, UTCDateTime)]
_JSONS = [i for i, c in enumerate(_TASK_COLUMNS) if isinstance(c.type, JSON)]

GET_TASK = Sql(f"SELECT {', '.join(_TASK_NAMES)} FROM video_tasks WHERE id = :id")
INSERT_TASK = Sql(
    f"INSERT INTO video_tasks ({', '.join(_TASK_NAMES)}) "
    f"VALUES ({', '.join(':' + name for name in _TASK_NAMES)})"
)
# A key's in-flight count is a column kept by the creates and the ending transitions, not a
# count(*) of its tasks: that scan grew with every task in flight (a reseller's key may have
# thousands), and the conditional UPDATE is also the lock that serialises a key's creates.
TAKE_JOB_SLOT = Sql(
    "UPDATE api_keys SET in_flight_jobs = in_flight_jobs + 1 "
    "WHERE id = :api_key_id AND in_flight_jobs < :max_jobs RETURNING in_flight_jobs"
)
IN_FLIGHT_JOBS = Sql("SELECT in_flight_jobs FROM api_keys WHERE id = :api_key_id")
FREE_JOB_SLOT = Sql(
    "UPDATE api_keys SET in_flight_jobs = in_flight_jobs - 1 WHERE id = :api_key_id"
)
# A provider's upstream jobs in flight (db/models.py ChannelSlots). The row is made on first use;
# `ON CONFLICT DO NOTHING` is spelled the same in SQLite and PostgreSQL.
ADD_CHANNEL_ROW = Sql(
    "INSERT INTO channel_slots (name, in_flight) VALUES (:name, 0) ON CONFLICT (name) DO NOTHING"
)
TAKE_CHANNEL_SLOT = Sql(
    "UPDATE channel_slots SET in_flight = in_flight + 1 "
    "WHERE name = :name AND in_flight < :cap RETURNING in_flight"
)
# Never below zero, even for a task routed before slots were counted: ending it must not fail.
FREE_CHANNEL_SLOT = Sql(
    "UPDATE channel_slots SET in_flight = in_flight - 1 WHERE name = :name AND in_flight > 0"
)
UNLIMITED_SLOTS = 2**31 - 1
INSERT_EVENT = Sql(
    "INSERT INTO task_events (task_id, account_id, kind, status, data, created_at) "
    "VALUES (:task_id, :account_id, :kind, :status, :data, :created_at)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRecord:
    id: int
    task_id: str
    account_id: int
    kind: str
    status: str
    data: dict[str, Any]
    created_at: datetime


def _record(row: Any) -> TaskRecord:
    return TaskRecord(**row._mapping)


def _lean_record(row: Row, via: Lean) -> TaskRecord:
    values = convert_row(row, datetimes=_DATETIMES, jsons=_JSONS, via=via)
    return TaskRecord(**dict(zip(_TASK_NAMES, values, strict=True)))


def insert_task(conn: Connection, values: dict[str, Any]) -> None:
    lean(conn).execute(conn, INSERT_TASK, values)


def get(conn: Connection, task_id: str) -> TaskRecord | None:
    via = lean(conn)
    rows = via.execute(conn, GET_TASK, {"id": task_id})
    return _lean_record(rows[0], via) if rows else None


async def read(backend: Backend, task_id: str) -> TaskRecord | None:
    """The status poll's read, outside any transaction (db/backend.py read_rows)."""
    rows = await backend.read_rows(GET_TASK, {"id": task_id})
    return _lean_record(rows[0], backend.lean) if rows else None


def take_job_slot(conn: Connection, *, api_key_id: int, max_jobs: int) -> int | None:
    """Count one more task in flight for the key, unless it has `max_jobs` already: the new
    count, or None (refused; its count is `in_flight_jobs`)."""
    via = lean(conn)
    rows = via.execute(conn, TAKE_JOB_SLOT, {"api_key_id": api_key_id, "max_jobs": max_jobs})
    return int(rows[0][0]) if rows else None


def in_flight_jobs(conn: Connection, *, api_key_id: int) -> int:
    rows = lean(conn).execute(conn, IN_FLIGHT_JOBS, {"api_key_id": api_key_id})
    return int(rows[0][0]) if rows else 0


def free_job_slot(conn: Connection, *, api_key_id: int) -> None:
    lean(conn).execute(conn, FREE_JOB_SLOT, {"api_key_id": api_key_id})


def take_channel_slot(conn: Connection, *, channel: str, cap: int | None) -> bool:
    """Count one more job in flight on the channel, unless it has `cap` already."""
    via = lean(conn)
    via.execute(conn, ADD_CHANNEL_ROW, {"name": channel})
    rows = via.execute(conn, TAKE_CHANNEL_SLOT, {"name": channel, "cap": cap or UNLIMITED_SLOTS})
    return bool(rows)


def free_channel_slot(conn: Connection, *, channel: str) -> None:
    lean(conn).execute(conn, FREE_CHANNEL_SLOT, {"name": channel})


def channel_in_flight(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(slots.c.name, slots.c.in_flight))
    return {name: int(count) for name, count in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSettlement:
    """One channel's ended tasks: what our users paid and what its upstream says it charged."""

    channel: str
    tasks: int
    charged: int  # credits_used - credits_refunded, in our credits
    upstream_cost: int  # the sum of channel_cost, in the upstream's credits
    tasks_with_cost: int  # how many tasks the upstream reported a cost for
    charged_with_cost: int  # what those tasks were charged: the margin is this minus the cost


def channel_settlement(
    conn: Connection, *, account_id: int | None = None
) -> list[ChannelSettlement]:
    conditions: list[ColumnElement[bool]] = [
        tasks.c.channel.is_not(None),
        tasks.c.status.in_(TERMINAL),
    ]
    if account_id is not None:
        conditions.append(tasks.c.account_id == account_id)
    net = tasks.c.credits_used - tasks.c.credits_refunded
    rows = conn.execute(
        select(
            tasks.c.channel,
            func.count(),
            func.coalesce(func.sum(net), 0),
            func.coalesce(func.sum(tasks.c.channel_cost), 0),
            func.count(tasks.c.channel_cost),
            func.coalesce(func.sum(case((tasks.c.channel_cost.is_not(None), net), else_=0)), 0),
        )
        .where(*conditions)
        .group_by(tasks.c.channel)
        .order_by(tasks.c.channel)
    )
    return [
        ChannelSettlement(
            channel=channel,
            tasks=int(count),
            charged=int(charged),
            upstream_cost=int(cost),
            tasks_with_cost=int(with_cost),
            charged_with_cost=int(charged_with_cost),
        )
        for channel, count, charged, cost, with_cost, charged_with_cost in rows
    ]


def history(
    conn: Connection, *, account_id: int, offset: int, limit: int
) -> tuple[int, list[TaskRecord]]:
    total = conn.scalar(
        select(func.count()).select_from(tasks).where(tasks.c.account_id == account_id)
    )
    rows = conn.execute(
        select(*_TASK_COLUMNS)
        .where(tasks.c.account_id == account_id)
        .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), [_record(row) for row in rows]


def search(
    conn: Connection,
    *,
    account_id: int | None,
    status: str | None,
    model: str | None,
    offset: int,
    limit: int,
) -> tuple[int, list[TaskRecord]]:
    """The admin's history: every account's tasks (or one's), optionally of one status and
    model, newest first."""
    conditions: list[ColumnElement[bool]] = []
    if account_id is not None:
        conditions.append(tasks.c.account_id == account_id)
    if status is not None:
        conditions.append(tasks.c.status == status)
    if model is not None:
        conditions.append(tasks.c.model == model)
    total = conn.scalar(select(func.count()).select_from(tasks).where(*conditions))
    rows = conn.execute(
        select(*_TASK_COLUMNS)
        .where(*conditions)
        .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), [_record(row) for row in rows]


def video_page(
    conn: Connection,
    *,
    account_id: int,
    limit: int,
    ascending: bool,
    after: TaskRecord | None = None,
) -> list[TaskRecord]:
    """A cursor page of the account's tasks that are not deleted, in creation order (or its
    reverse), strictly past `after`. The order is (created_at, id), the account's index."""
    conditions: list[ColumnElement[bool]] = [
        tasks.c.account_id == account_id,
        tasks.c.deleted_at.is_(None),
    ]
    if after is not None:
        past = (
            (tasks.c.created_at > after.created_at, tasks.c.id > after.id)
            if ascending
            else (tasks.c.created_at < after.created_at, tasks.c.id < after.id)
        )
        conditions.append(or_(past[0], (tasks.c.created_at == after.created_at) & past[1]))
    order = (
        (tasks.c.created_at.asc(), tasks.c.id.asc())
        if ascending
        else (tasks.c.created_at.desc(), tasks.c.id.desc())
    )
    rows = conn.execute(select(*_TASK_COLUMNS).where(*conditions).order_by(*order).limit(limit))
    return [_record(row) for row in rows]


def mark_deleted(conn: Connection, *, task_id: str, account_id: int, at: datetime) -> bool:
    """Stamp deleted_at on an ended, not yet deleted task of the account; False if refused."""
    deleted = conn.execute(
        update(tasks)
        .where(
            tasks.c.id == task_id,
            tasks.c.account_id == account_id,
            tasks.c.status.in_(TERMINAL),
            tasks.c.deleted_at.is_(None),
        )
        .values(deleted_at=at, updated_at=at)
        .returning(tasks.c.id)
    ).first()
    return deleted is not None


def claim_due(
    conn: Connection,
    *,
    owner: str,
    now: datetime,
    limit: int,
    lease_s: float,
    queues: Collection[str] | None = None,
    models: Collection[str] | None = None,
    channels: Collection[str] | None = None,
    skip_inactive_accounts: bool = False,
) -> list[str]:
    """Stamp our lease on up to `limit` due tasks of our queues that we can serve.

    `models` are the models this worker can submit and `channels` the providers it can poll,
    for tasks already submitted (None: any; empty: none). `skip_inactive_accounts`: leave the
    unsent tasks of accounts that are not active (VIDGATE_SUSPENDED_TASKS=wait) where they are.
    PostgreSQL skips rows other workers are claiming (FOR UPDATE SKIP LOCKED); SQLite's single
    write lock makes the statement atomic.
    """
    conditions: list[ColumnElement[bool]] = [
        tasks.c.status.in_(IN_FLIGHT),
        tasks.c.run_after <= now,
    ]
    if queues is not None:
        conditions.append(tasks.c.queue.in_(list(queues)))
    if models is not None:
        conditions.append(tasks.c.model.in_(list(models)))
    if channels is not None:
        conditions.append(or_(tasks.c.channel.is_(None), tasks.c.channel.in_(list(channels))))
    if skip_inactive_accounts:  # a task sent to a channel may be running there: not skipped
        active = select(accounts.c.id).where(accounts.c.status == "active")
        conditions.append(
            or_(
                tasks.c.status != TaskStatus.PENDING.value,
                tasks.c.channel.is_not(None),
                tasks.c.account_id.in_(active),
            )
        )
    return claim_leased(
        conn,
        tasks,
        due=conditions,
        order_by=tasks.c.run_after,
        owner=owner,
        now=now,
        limit=limit,
        lease_s=lease_s,
    )


ACCOUNT_STATUS = Sql("SELECT status FROM accounts WHERE id = :account_id")


def account_status(conn: Connection, *, account_id: int) -> str | None:
    """The status of a task's account (pending, active, suspended)."""
    rows = lean(conn).execute(conn, ACCOUNT_STATUS, {"account_id": account_id})
    return str(rows[0][0]) if rows else None


def update_task(
    conn: Connection,
    task_id: str,
    *,
    values: dict[str, Any],
    sources: Sequence[str],
    owner: str | None = None,
    returning: Sequence[str] = ("account_id",),
) -> Any | None:
    """A conditional UPDATE: applies only while the task is in one of `sources` (and, given an
    owner, while that worker holds its lease). Returns the RETURNING row, or None if refused."""
    condition = (tasks.c.id == task_id) & tasks.c.status.in_(list(sources))
    if owner is not None:
        condition = condition & (tasks.c.lease_owner == owner)
    return conn.execute(
        update(tasks)
        .where(condition)
        .values(**values)
        .returning(*(tasks.c[name] for name in returning))
    ).first()


def make_due(conn: Connection, task_id: str, *, at: datetime) -> Any | None:
    """An operator's retry of an in-flight task: its lease cleared (a dead or stuck worker's)
    and due at once, as if its lease had just expired. None if it has ended (or is unknown)."""
    return update_task(
        conn,
        task_id,
        sources=IN_FLIGHT,
        values={"lease_owner": None, "lease_expires_at": None, "run_after": at, "updated_at": at},
        returning=("queue",),
    )


def results_to_expire(conn: Connection, *, before: datetime, limit: int) -> list[tuple[str, str]]:
    """(id, file_key) of up to `limit` completed tasks, oldest first, that ended before `before`
    and still have their result files (the completed_at index)."""
    rows = conn.execute(
        select(tasks.c.id, tasks.c.file_key)
        .where(
            tasks.c.completed_at < before,
            tasks.c.status == TaskStatus.COMPLETED.value,
            tasks.c.file_key.is_not(None),
            tasks.c.files_expired_at.is_(None),
            tasks.c.deleted_at.is_(None),  # deleted: its files went with the delete
        )
        .order_by(tasks.c.completed_at)
        .limit(limit)
    )
    return [(task_id, file_key) for task_id, file_key in rows]


def mark_files_expired(conn: Connection, task_ids: Collection[str], *, at: datetime) -> int:
    """Stamp files_expired_at on those not stamped yet; how many this call stamped."""
    if not task_ids:
        return 0
    stamped = conn.execute(
        update(tasks)
        .where(tasks.c.id.in_(list(task_ids)), tasks.c.files_expired_at.is_(None))
        .values(files_expired_at=at)
        .returning(tasks.c.id)
    )
    return len(stamped.all())


def overdue(conn: Connection, *, now: datetime, limit: int) -> list[str]:
    """In-flight tasks past their deadline that no worker holds (e.g. nobody serves them)."""
    return list(
        conn.scalars(
            select(tasks.c.id)
            .where(
                tasks.c.status.in_(IN_FLIGHT),
                tasks.c.deadline_at < now,
                or_(tasks.c.lease_expires_at.is_(None), tasks.c.lease_expires_at < now),
            )
            .limit(limit)
        )
    )


def insert_event(
    conn: Connection,
    *,
    task_id: str,
    account_id: int,
    kind: str,
    status: str,
    at: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    lean(conn).execute(
        conn,
        INSERT_EVENT,
        {
            "task_id": task_id,
            "account_id": account_id,
            "kind": kind,
            "status": status,
            "data": data or {},
            "created_at": at,
        },
    )


def events_of(conn: Connection, task_id: str, *, after_id: int = 0) -> list[EventRecord]:
    rows = conn.execute(
        select(events)
        .where(events.c.task_id == task_id, events.c.id > after_id)
        .order_by(events.c.id)
    )
    return [EventRecord(**row._mapping) for row in rows]
