"""Deliveries are made by the transaction that ends a task: once per ending, one per subscribed
endpoint of the account (and of the task's key, for a key-bound endpoint), plus the task's own
callBackUrl. On SQLite and PostgreSQL."""

from __future__ import annotations

from support import make_caller
from vidgate.db.engine import Database
from vidgate.keys import service as keys
from vidgate.webhooks import service
from vidgate.webhooks.events import WebhookEvent
from vidgate.webhooks.repository import DeliveryRecord
from webhooks.builders import (
    add_endpoint,
    cancel,
    complete,
    deliveries_of_task,
    fail,
    new_task,
)

COMPLETED, FAILED, CANCELLED = WebhookEvent


async def test_an_ending_queues_one_delivery_per_subscribed_endpoint(db: Database) -> None:
    caller = await make_caller(db, credits=100)
    other_key = await make_caller(db, credits=100, title="other account")
    everything = await add_endpoint(db, caller, "https://hooks.example.com/all")
    only_completed = await add_endpoint(
        db, caller, "https://hooks.example.com/done", events=[COMPLETED]
    )
    only_failures = await add_endpoint(
        db, caller, "https://hooks.example.com/failed", events=[FAILED, CANCELLED]
    )
    await add_endpoint(db, other_key, "https://elsewhere.example.com/all")
    deleted = await add_endpoint(db, caller, "https://hooks.example.com/deleted")
    await service.delete_endpoint(db, account_id=caller.account_id, endpoint_id=deleted.id)

    done, failed, cancelled = [await new_task(db, caller) for _ in range(3)]
    assert await complete(db, done)
    assert await fail(db, failed)
    assert await cancel(db, cancelled)

    def targets(found: list[DeliveryRecord]) -> list[tuple[int | None, str]]:
        return [(d.endpoint_id, d.event_type) for d in found]

    assert targets(await deliveries_of_task(db, done)) == [
        (everything.id, "job.completed"),
        (only_completed.id, "job.completed"),
    ]
    assert targets(await deliveries_of_task(db, failed)) == [
        (everything.id, "job.failed"),
        (only_failures.id, "job.failed"),
    ]
    assert targets(await deliveries_of_task(db, cancelled)) == [
        (everything.id, "job.cancelled"),
        (only_failures.id, "job.cancelled"),
    ]
    for found in [*await deliveries_of_task(db, done), *await deliveries_of_task(db, failed)]:
        assert found.status == "pending"
        assert found.attempts == 0
        assert found.payload is None  # rendered at the first try
        assert found.message_id.startswith("msg_")


async def test_a_second_ending_of_the_same_task_queues_nothing(db: Database) -> None:
    caller = await make_caller(db, credits=100)
    await add_endpoint(db, caller, "https://hooks.example.com/all")
    task_id = await new_task(db, caller, callback_url="https://app.example.com/callback")
    assert await fail(db, task_id)
    first = await deliveries_of_task(db, task_id)
    assert len(first) == 2

    # Every later ending is refused by the task's status fence, and so makes no delivery.
    assert not await fail(db, task_id, "again")
    assert not await cancel(db, task_id)
    assert not await complete(db, task_id)
    assert await deliveries_of_task(db, task_id) == first


async def test_a_key_bound_endpoint_hears_only_its_keys_tasks(db: Database) -> None:
    caller = await make_caller(db, credits=100)
    async with db.write() as session:
        second_key, _plaintext = await keys.create_key(
            session, account_id=caller.account_id, title="second"
        )
    bound = await add_endpoint(
        db, caller, "https://hooks.example.com/second", api_key_id=second_key.id
    )
    unbound = await add_endpoint(db, caller, "https://hooks.example.com/any")
    task_id = await new_task(db, caller)  # created with the first key
    assert await fail(db, task_id)
    assert [d.endpoint_id for d in await deliveries_of_task(db, task_id)] == [unbound.id]
    assert bound.api_key_id == second_key.id


async def test_the_callback_url_gets_its_own_delivery(db: Database) -> None:
    caller = await make_caller(db, credits=100)
    task_id = await new_task(db, caller, callback_url="https://app.example.com/callback?t=1")
    assert await complete(db, task_id)
    [callback] = await deliveries_of_task(db, task_id)
    assert callback.endpoint_id is None
    assert callback.url == "https://app.example.com/callback?t=1"
    assert callback.event_type == "job.completed"
    assert callback.account_id == caller.account_id


async def test_no_ending_no_delivery(db: Database) -> None:
    caller = await make_caller(db, credits=100)
    await add_endpoint(db, caller, "https://hooks.example.com/all")
    task_id = await new_task(db, caller, callback_url="https://app.example.com/callback")
    assert await deliveries_of_task(db, task_id) == []
