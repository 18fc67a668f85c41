"""What the webhook tests build on a real database: callers, tasks ended each way, endpoints,
and a delivery loop sending to loopback."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from support import AcceptAll, Caller
from vidgate.api.apimall import presenters
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.keys.service import Principal
from vidgate.providers.catalogue import Catalogue
from vidgate.tasks import repository as task_repository
from vidgate.tasks import service as tasks
from vidgate.tasks import transitions
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskErrorCode
from vidgate.webhooks import repository, service
from vidgate.webhooks.delivery import DeliveryWorker
from vidgate.webhooks.events import WebhookEvent
from vidgate.webhooks.repository import DeliveryRecord, EndpointRecord, deliveries
from vidgate.webhooks.sender import WebhookSender
from vidgate.worker.claim import SqlClaimer

CATALOGUE = Catalogue.from_dict(
    {"models": {"cloud": {"price": {"base": 5}, "channels": [{"provider": "remote"}]}}}
)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
ALL_EVENTS = tuple(WebhookEvent)


def principal_of(caller: Caller) -> Principal:
    return Principal(
        key_id=caller.key_id,
        account_id=caller.account_id,
        rate_limit_per_second=None,
        max_concurrent_jobs=None,
    )


async def new_task(db: Database, caller: Caller, *, callback_url: str | None = None) -> str:
    outcome = await tasks.create_task(
        db,
        principal=principal_of(caller),
        command=CreateTask(
            surface="apimall", model="cloud", prompt="a heron", callback_url=callback_url
        ),
        request_id="req_test",
        idempotency_key=None,
        catalogue=CATALOGUE,
        routing=AcceptAll(),
        default_max_concurrent_jobs=1000,
        allowed_networks=LOOPBACK,  # callbacks to the test's loopback receiver
    )
    return outcome.task.id


TEST_WORKER = "test-worker"


async def complete(db: Database, task_id: str) -> bool:
    """Submitted, then completed, as a worker holding the task's lease does it."""
    await SqlClaimer(db).claim(owner=TEST_WORKER, limit=1000, lease_s=60)
    now = utcnow()

    def run(conn: Connection) -> bool:
        transitions.submitted(
            conn,
            task_id,
            TEST_WORKER,
            at=now,
            upstream_id="up_1",
            channel="remote",
            run_after=now,
            keep_lease=True,
        )
        return transitions.completed(conn, task_id, TEST_WORKER, at=now, file_key=f"{task_id}.mp4")

    return await db.backend.run_write(run)


async def fail(db: Database, task_id: str, message: str = "the model refused") -> bool:
    now = utcnow()
    return await db.backend.run_write(
        lambda conn: transitions.failed(
            conn, task_id, at=now, code=TaskErrorCode.GENERATION_FAILED, message=message
        )
    )


async def cancel(db: Database, task_id: str) -> bool:
    now = utcnow()
    return await db.backend.run_write(
        lambda conn: transitions.cancelled(conn, task_id, at=now, refund=True)
    )


async def add_endpoint(
    db: Database,
    caller: Caller,
    url: str,
    *,
    events: Sequence[WebhookEvent] = ALL_EVENTS,
    api_key_id: int | None = None,
    secret: str | None = None,
) -> EndpointRecord:
    return await service.create_endpoint(
        db,
        account_id=caller.account_id,
        url=url,
        events=events,
        secret=secret,
        api_key_id=api_key_id,
        allowed_networks=LOOPBACK,
    )


def file_url(key: str) -> str:
    return f"https://files.test/{key}?signature=s"


def render(task: TaskRecord) -> str:
    return presenters.task_view(task, file_url).model_dump_json()


def delivery_loop(
    db: Database,
    *,
    delays: Sequence[float] = (0.0,),
    owner: str = "loop-a",
    lease_s: float = 30.0,
    timeout_s: float = 5.0,
) -> DeliveryWorker:
    return DeliveryWorker(
        db=db,
        sender=WebhookSender(allowed_networks=LOOPBACK, timeout_s=timeout_s),
        render_task=render,
        retry_delays=delays,
        owner=owner,
        lease_s=lease_s,
    )


async def deliveries_of_task(db: Database, task_id: str) -> list[DeliveryRecord]:
    def read(conn: Connection) -> list[DeliveryRecord]:
        rows = conn.execute(
            select(deliveries).where(deliveries.c.task_id == task_id).order_by(deliveries.c.id)
        )
        return [DeliveryRecord(**_fields(row._mapping)) for row in rows]

    return await db.backend.run_read(read)


async def delivery(db: Database, delivery_id: int) -> DeliveryRecord:
    def read(conn: Connection) -> DeliveryRecord:
        row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).one()
        return DeliveryRecord(**_fields(row._mapping))

    return await db.backend.run_read(read)


async def endpoint(db: Database, caller: Caller, endpoint_id: int) -> EndpointRecord:
    found = await db.backend.run_read(
        lambda conn: repository.endpoint_of(
            conn, endpoint_id=endpoint_id, account_id=caller.account_id
        )
    )
    assert found is not None
    return found


async def task(db: Database, task_id: str) -> TaskRecord:
    found = await db.backend.run_read(lambda conn: task_repository.get(conn, task_id))
    assert found is not None
    return found


def _fields(mapping: Any) -> dict[str, Any]:
    names = set(DeliveryRecord.__dataclass_fields__)
    return {name: mapping[name] for name in names}
