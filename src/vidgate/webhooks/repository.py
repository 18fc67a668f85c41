"""Every webhook query: endpoints, deliveries, their claim and the fenced updates of a try.

Synchronous SQLAlchemy Core functions of a `Connection`, run a whole transaction at a time by
the backend (db/backend.py), like the task core's. A delivery's updates are fenced by its
status and, for the delivery loop's, by its lease (`lease_owner = me`), as tasks' are: a loop
that lost its lease, or a delivery stopped meanwhile (its endpoint deleted), changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, func, insert, select, update

from vidgate.db.backend import notify_webhooks
from vidgate.db.leases import claim_leased
from vidgate.db.models import Account, WebhookDelivery, WebhookEndpoint
from vidgate.webhooks.events import DeliveryStatus, EndpointStatus

endpoints = cast(Table, WebhookEndpoint.__table__)
deliveries = cast(Table, WebhookDelivery.__table__)
accounts = cast(Table, Account.__table__)

NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRecord:
    id: int
    account_id: int
    api_key_id: int | None
    url: str
    events: list[str]
    secret: str
    status: str
    total_sent: int
    total_failed: int
    last_sent_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    id: int
    message_id: str
    account_id: int
    endpoint_id: int | None
    task_id: str
    event_type: str
    url: str
    payload: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedDelivery:
    """A claimed delivery with what sending it needs from its endpoint and account."""

    delivery: DeliveryRecord
    endpoint_status: str | None  # None: a task's callBackUrl
    endpoint_secret: str | None
    account_secret: str | None


_ENDPOINT_COLUMNS = [endpoints.c[f.name] for f in fields(EndpointRecord)]
_DELIVERY_COLUMNS = [deliveries.c[f.name] for f in fields(DeliveryRecord)]


def _endpoint(row: Any) -> EndpointRecord:
    return EndpointRecord(**row._mapping)


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(**{f.name: row._mapping[f.name] for f in fields(DeliveryRecord)})


# -- endpoints --------------------------------------------------------------------------------


def insert_endpoint(conn: Connection, values: dict[str, Any]) -> EndpointRecord:
    row = conn.execute(insert(endpoints).values(**values).returning(*_ENDPOINT_COLUMNS)).one()
    return _endpoint(row)


def endpoint_of(conn: Connection, *, endpoint_id: int, account_id: int) -> EndpointRecord | None:
    """The account's endpoint, unless deleted (another account's is None too)."""
    row = conn.execute(
        select(*_ENDPOINT_COLUMNS).where(
            endpoints.c.id == endpoint_id,
            endpoints.c.account_id == account_id,
            endpoints.c.status != EndpointStatus.DELETED.value,
        )
    ).first()
    return _endpoint(row) if row is not None else None


def endpoints_of(conn: Connection, *, account_id: int) -> list[EndpointRecord]:
    rows = conn.execute(
        select(*_ENDPOINT_COLUMNS)
        .where(
            endpoints.c.account_id == account_id,
            endpoints.c.status != EndpointStatus.DELETED.value,
        )
        .order_by(endpoints.c.id)
    )
    return [_endpoint(row) for row in rows]


def count_active(conn: Connection, *, account_id: int) -> int:
    return int(
        conn.scalar(
            select(func.count())
            .select_from(endpoints)
            .where(
                endpoints.c.account_id == account_id,
                endpoints.c.status == EndpointStatus.ACTIVE.value,
            )
        )
        or 0
    )


def end_endpoint(
    conn: Connection,
    *,
    endpoint_id: int,
    status: EndpointStatus,
    at: datetime,
    sources: Sequence[EndpointStatus],
    account_id: int | None = None,
) -> bool:
    """Move an endpoint to `status` (deleted, disabled) from one of `sources`; False if it was
    not there (or not the account's)."""
    condition = (endpoints.c.id == endpoint_id) & endpoints.c.status.in_([s.value for s in sources])
    if account_id is not None:
        condition = condition & (endpoints.c.account_id == account_id)
    row = conn.execute(
        update(endpoints)
        .where(condition)
        .values(status=status.value, updated_at=at)
        .returning(endpoints.c.id)
    ).first()
    return row is not None


def stop_pending(conn: Connection, *, endpoint_id: int, reason: str) -> int:
    """Its pending deliveries end as failed: its account deleted it, or its URL is gone."""
    result = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
        )
        .values(status=DeliveryStatus.FAILED.value, last_error=reason, **NO_LEASE)
    )
    return int(result.rowcount or 0)


def count_attempt(conn: Connection, *, endpoint_id: int, at: datetime, error: str | None) -> None:
    """An endpoint's stats after one try: delivered (error None) or failed."""
    values: dict[str, Any]
    if error is None:
        values = {"total_sent": endpoints.c.total_sent + 1, "last_sent_at": at}
    else:
        values = {"total_failed": endpoints.c.total_failed + 1, "last_error": error}
    conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(**values))


# -- the account's callBackUrl secret ---------------------------------------------------------


def account_secret(conn: Connection, *, account_id: int) -> str | None:
    value = conn.scalar(select(accounts.c.webhook_secret).where(accounts.c.id == account_id))
    return str(value) if value is not None else None


def set_account_secret_once(conn: Connection, *, account_id: int, secret: str) -> None:
    """Only where none is set: of two concurrent first uses, the first to commit wins."""
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id, accounts.c.webhook_secret.is_(None))
        .values(webhook_secret=secret)
    )


# -- deliveries -------------------------------------------------------------------------------


def claim_due(
    conn: Connection, *, owner: str, now: datetime, limit: int, lease_s: float
) -> list[int]:
    """Stamp our lease on up to `limit` due pending deliveries (db/leases.py, as tasks are)."""
    return claim_leased(
        conn,
        deliveries,
        due=[
            deliveries.c.status == DeliveryStatus.PENDING.value,
            deliveries.c.next_attempt_at <= now,
        ],
        order_by=deliveries.c.next_attempt_at,
        owner=owner,
        now=now,
        limit=limit,
        lease_s=lease_s,
    )


def claimed(conn: Connection, ids: Sequence[int]) -> list[ClaimedDelivery]:
    rows = conn.execute(
        select(
            *_DELIVERY_COLUMNS,
            endpoints.c.status.label("endpoint_status"),
            endpoints.c.secret.label("endpoint_secret"),
            accounts.c.webhook_secret.label("account_secret"),
        )
        .select_from(
            deliveries.outerjoin(endpoints, endpoints.c.id == deliveries.c.endpoint_id).join(
                accounts, accounts.c.id == deliveries.c.account_id
            )
        )
        .where(deliveries.c.id.in_(list(ids)))
        .order_by(deliveries.c.next_attempt_at)
    )
    return [
        ClaimedDelivery(
            delivery=_delivery(row),
            endpoint_status=row.endpoint_status,
            endpoint_secret=row.endpoint_secret,
            account_secret=row.account_secret,
        )
        for row in rows
    ]


def update_claimed(
    conn: Connection, delivery_id: int, *, owner: str, values: dict[str, Any]
) -> bool:
    """A fenced update of a delivery we hold: only while pending and leased to `owner`."""
    row = conn.execute(
        update(deliveries)
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
            deliveries.c.lease_owner == owner,
        )
        .values(**values)
        .returning(deliveries.c.id)
    ).first()
    return row is not None


def delivery_of(conn: Connection, *, delivery_id: int, endpoint_id: int) -> DeliveryRecord | None:
    row = conn.execute(
        select(*_DELIVERY_COLUMNS).where(
            deliveries.c.id == delivery_id, deliveries.c.endpoint_id == endpoint_id
        )
    ).first()
    return _delivery(row) if row is not None else None


def deliveries_of(
    conn: Connection, *, endpoint_id: int, offset: int, limit: int
) -> tuple[int, list[DeliveryRecord]]:
    """An endpoint's deliveries, newest first."""
    total = conn.scalar(
        select(func.count()).select_from(deliveries).where(deliveries.c.endpoint_id == endpoint_id)
    )
    rows = conn.execute(
        select(*_DELIVERY_COLUMNS)
        .where(deliveries.c.endpoint_id == endpoint_id)
        .order_by(deliveries.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return int(total or 0), [_delivery(row) for row in rows]


def requeue(conn: Connection, *, delivery_id: int, endpoint_id: int, at: datetime) -> bool:
    """Due again at once, same message id and body. One a loop is sending right now keeps its
    lease (never two sends at once), and that send's outcome is what stays."""
    row = conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.endpoint_id == endpoint_id)
        .values(status=DeliveryStatus.PENDING.value, next_attempt_at=at)
        .returning(deliveries.c.id)
    ).first()
    if row is not None:
        notify_webhooks(conn)
    return row is not None
