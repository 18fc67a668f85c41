"""Deliveries made in the transaction that ends a task (called by tasks/transitions.py).

One row per active endpoint of the account that subscribes to the event (and, for an endpoint
bound to a key, only for that key's tasks), plus one for the task's own callBackUrl. The task's
ending is a conditional UPDATE that succeeds once, so these rows are made once per ending, and
they commit or roll back with it. Lean statements: this runs in every ending transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from ulid import ULID

from vidgate.db.backend import Sql, lean, notify_webhooks
from vidgate.webhooks.events import EVENT_OF_ENDING, DeliveryStatus, EndpointStatus

SUBSCRIBERS = Sql(
    "SELECT id, url, events, api_key_id FROM webhook_endpoints "
    f"WHERE account_id = :account_id AND status = '{EndpointStatus.ACTIVE.value}'"
)
INSERT_DELIVERY = Sql(
    "INSERT INTO webhook_deliveries (message_id, account_id, endpoint_id, task_id, event_type, "
    "url, status, attempts, next_attempt_at, created_at) VALUES (:message_id, :account_id, "
    ":endpoint_id, :task_id, :event_type, :url, :status, 0, :created_at, :created_at)"
)


def new_message_id() -> str:
    return f"msg_{ULID()}"


def enqueue_ending(
    conn: Connection,
    *,
    task_id: str,
    account_id: int,
    api_key_id: int,
    callback_url: str | None,
    status: str,
    at: datetime,
) -> int:
    """Queue the ending's deliveries; how many. Each is due at `at`: the delivery loop applies
    the first retry delay when it first sees the row (it knows the settings; this does not)."""
    event = EVENT_OF_ENDING.get(status)
    if event is None:
        return 0
    via = lean(conn)
    targets: list[tuple[int | None, str]] = []
    for endpoint_id, url, events, key_id in via.execute(
        conn, SUBSCRIBERS, {"account_id": account_id}
    ):
        if event.value in (via.load_json(events) or ()) and key_id in (None, api_key_id):
            targets.append((endpoint_id, url))
    if callback_url:
        targets.append((None, callback_url))
    for endpoint_id, url in targets:
        via.execute(
            conn,
            INSERT_DELIVERY,
            {
                "message_id": new_message_id(),
                "account_id": account_id,
                "endpoint_id": endpoint_id,
                "task_id": task_id,
                "event_type": event.value,
                "url": url,
                "status": DeliveryStatus.PENDING.value,
                "created_at": at,
            },
        )
    if targets:  # the delivery loops of other processes look at once, not at their next tick
        notify_webhooks(conn)
    return len(targets)
