"""The delivery loop on SQLite and PostgreSQL, sending to a real loopback receiver that verifies
every delivery with the standardwebhooks package: signing and body, the retry schedule, 410,
claim exclusivity and leases, deletion and redelivery, callBackUrl."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from support import Caller, free_port, make_caller
from vidgate.db.engine import Database
from vidgate.db.types import iso_ms, utcnow
from vidgate.webhooks import repository, service
from vidgate.webhooks.events import EndpointStatus
from webhooks.builders import (
    add_endpoint,
    complete,
    deliveries_of_task,
    delivery,
    delivery_loop,
    endpoint,
    fail,
    new_task,
    render,
    task,
)
from webhooks.receiver import running_receiver


async def ended_task(db: Database, caller: Caller, **create: str) -> str:
    task_id = await new_task(db, caller, **create)
    assert await fail(db, task_id, "no luck [fail]")
    return task_id


async def test_a_delivery_is_signed_and_carries_the_task_as_its_status_shows_it(
    own_db: Database,
) -> None:
    caller = await make_caller(own_db)
    with running_receiver() as receiver:
        hook = await add_endpoint(own_db, caller, receiver.url)
        receiver.secret = hook.secret
        task_id = await new_task(own_db, caller)
        assert await complete(own_db, task_id)

        [result] = await delivery_loop(own_db).deliver_due()
        assert result.delivered
        assert result.status_code == 200
        [got] = receiver.wait_for(1)

    assert receiver.unverified == []
    [row] = await deliveries_of_task(own_db, task_id)
    assert got.message_id == row.message_id
    assert got.headers["content-type"] == "application/json"
    ended = await task(own_db, task_id)
    assert got.payload == {
        "type": "job.completed",
        "timestamp": iso_ms(ended.completed_at),
        "data": json.loads(render(ended)),
    }
    assert got.payload["data"]["video_url"].startswith("https://files.test/")
    assert got.body.decode() == row.payload  # the stored body is the one sent
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert row.delivered_at is not None
    stats = await endpoint(own_db, caller, hook.id)
    assert (stats.total_sent, stats.total_failed, stats.last_error) == (1, 0, None)
    assert stats.last_sent_at == row.delivered_at


async def test_failed_tries_follow_the_schedule_with_the_same_id_and_bytes(
    own_db: Database,
) -> None:
    caller = await make_caller(own_db)
    loop = delivery_loop(own_db, delays=(0, 0.4, 0.4))
    with running_receiver(answers=(500, 500)) as receiver:
        hook = await add_endpoint(own_db, caller, receiver.url)
        receiver.secret = hook.secret
        task_id = await ended_task(own_db, caller)

        before = utcnow()
        [first] = await loop.deliver_due()
        after = utcnow()
        assert (first.status_code, first.error) == (500, "HTTP 500")
        [row] = await deliveries_of_task(own_db, task_id)
        assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 500")
        # The second delay, jittered by at most 10 %.
        assert before + timedelta(seconds=0.36) <= row.next_attempt_at
        assert row.next_attempt_at <= after + timedelta(seconds=0.44)
        assert await loop.deliver_due() == []  # not due yet

        results = []
        while len(results) < 2:
            await asyncio.sleep(0.1)
            results += await loop.deliver_due()
        assert [r.status_code for r in results] == [500, 200]
        got = receiver.wait_for(3)

    assert receiver.unverified == []
    assert len({g.message_id for g in got}) == 1
    assert len({g.body for g in got}) == 1
    [row] = await deliveries_of_task(own_db, task_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 200)
    stats = await endpoint(own_db, caller, hook.id)
    assert (stats.total_sent, stats.total_failed, stats.last_error) == (1, 2, "HTTP 500")


async def test_after_the_last_delay_a_delivery_fails(own_db: Database) -> None:
    caller = await make_caller(own_db)
    loop = delivery_loop(own_db, delays=(0, 0.1))
    with running_receiver(answers=(503,) * 5) as receiver:
        hook = await add_endpoint(own_db, caller, receiver.url)
        receiver.secret = hook.secret
        task_id = await ended_task(own_db, caller)
        tries = await loop.deliver_due()
        while len(tries) < 2:
            await asyncio.sleep(0.05)
            tries += await loop.deliver_due()
        await asyncio.sleep(0.2)
        assert await loop.deliver_due() == []
    [row] = await deliveries_of_task(own_db, task_id)
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "HTTP 503")
    assert receiver.requests == 2


async def test_the_first_delay_applies_to_the_first_try(own_db: Database) -> None:
    caller = await make_caller(own_db)
    await add_endpoint(own_db, caller, "https://hooks.example.com/x")
    task_id = await ended_task(own_db, caller)
    [made] = await deliveries_of_task(own_db, task_id)

    claimed = await delivery_loop(own_db, delays=(30, 5)).claim()
    assert claimed.outgoing == []
    [row] = await deliveries_of_task(own_db, task_id)
    assert made.created_at + timedelta(seconds=27) <= row.next_attempt_at
    assert row.next_attempt_at <= made.created_at + timedelta(seconds=33)
    assert claimed.first_tries == [row.next_attempt_at]
    assert (row.payload, row.lease_owner, row.attempts) == (None, None, 0)
    assert (await delivery_loop(own_db, delays=(30, 5)).claim()).outgoing == []


async def test_a_410_disables_the_endpoint_and_stops_its_deliveries(own_db: Database) -> None:
    caller = await make_caller(own_db)
    loop = delivery_loop(own_db)
    with running_receiver(answers=(410,)) as receiver:
        hook = await add_endpoint(own_db, caller, receiver.url)
        receiver.secret = hook.secret
        first, second = [await ended_task(own_db, caller) for _ in range(2)]
        claimed = await loop.claim(limit=1)
        [result] = [await loop.deliver(item) for item in claimed.outgoing]
        assert result.status_code == 410
        # The second one was claimed by nobody; the 410 stopped it.
        assert await loop.deliver_due() == []
        later = await ended_task(own_db, caller)
    assert receiver.requests == 1

    rows = [*await deliveries_of_task(own_db, first), *await deliveries_of_task(own_db, second)]
    assert sorted((r.status, r.attempts, r.last_error) for r in rows) == [
        ("failed", 0, "webhook disabled: its URL answered 410"),
        ("failed", 1, "HTTP 410"),
    ]
    assert await deliveries_of_task(own_db, later) == []  # disabled: hears nothing more
    [listed] = await service.list_endpoints(own_db, account_id=caller.account_id)
    assert listed.status == "disabled"
    assert listed.total_failed == 1
    assert listed.last_error == "HTTP 410 (webhook disabled)"


async def test_two_loops_never_claim_the_same_delivery(own_db: Database) -> None:
    caller = await make_caller(own_db, credits=1000)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: a try fails at once
    await add_endpoint(own_db, caller, f"{closed}/a")
    await add_endpoint(own_db, caller, f"{closed}/b")
    for _ in range(10):
        await ended_task(own_db, caller)
    a = delivery_loop(own_db, owner="loop-a", lease_s=0.5)
    b = delivery_loop(own_db, owner="loop-b", lease_s=0.5)

    claims = await asyncio.gather(*(loop.claim(limit=8) for loop in (a, b, a, b, a)))
    ids = [item.id for claimed in claims for item in claimed.outgoing]
    assert len(ids) == 20
    assert len(set(ids)) == 20  # each one once

    # Held while the leases last; a lapsed lease is anyone's, and its old holder is fenced off.
    assert (await delivery_loop(own_db, owner="loop-c").claim(limit=100)).outgoing == []
    await asyncio.sleep(0.6)
    stale = claims[0].outgoing[0]
    c = delivery_loop(own_db, owner="loop-c")
    assert len((await c.claim(limit=100)).outgoing) == 20
    await a.deliver(stale)  # its try fails, and its record of it is refused
    row = await delivery(own_db, stale.id)
    assert (row.lease_owner, row.attempts, row.status) == ("loop-c", 0, "pending")


async def test_deleting_an_endpoint_stops_its_pending_deliveries(own_db: Database) -> None:
    caller = await make_caller(own_db)
    hook = await add_endpoint(own_db, caller, "https://hooks.example.com/a")
    task_id = await ended_task(own_db, caller)
    await service.delete_endpoint(own_db, account_id=caller.account_id, endpoint_id=hook.id)
    [row] = await deliveries_of_task(own_db, task_id)
    assert (row.status, row.last_error) == ("failed", "webhook deleted")
    assert await delivery_loop(own_db).deliver_due() == []


async def test_a_delivery_of_an_endpoint_deleted_meanwhile_is_not_sent(own_db: Database) -> None:
    # The race: the ending read the endpoint as active while its deletion committed.
    caller = await make_caller(own_db)
    hook = await add_endpoint(own_db, caller, "https://hooks.example.com/a")
    task_id = await ended_task(own_db, caller)
    now = utcnow()
    await own_db.backend.run_write(
        lambda conn: repository.end_endpoint(
            conn,
            endpoint_id=hook.id,
            status=EndpointStatus.DELETED,
            at=now,
            sources=(EndpointStatus.ACTIVE,),
        )
    )
    assert (await delivery_loop(own_db).claim()).outgoing == []
    [row] = await deliveries_of_task(own_db, task_id)
    assert (row.status, row.last_error, row.attempts) == ("failed", "webhook deleted", 0)


async def test_a_redelivery_sends_the_same_message_again(own_db: Database) -> None:
    caller = await make_caller(own_db)
    loop = delivery_loop(own_db)
    with running_receiver() as receiver:
        hook = await add_endpoint(own_db, caller, receiver.url)
        receiver.secret = hook.secret
        task_id = await ended_task(own_db, caller)
        await loop.deliver_due()
        [row] = await deliveries_of_task(own_db, task_id)
        queued = await service.redeliver(
            own_db, account_id=caller.account_id, endpoint_id=hook.id, delivery_id=row.id
        )
        assert (queued.status, queued.message_id) == ("pending", row.message_id)
        [again] = await loop.deliver_due()
        assert again.delivered
        first, second = receiver.wait_for(2)
    assert first.message_id == second.message_id
    assert first.body == second.body
    assert (await delivery(own_db, row.id)).attempts == 2


async def test_a_callback_url_is_signed_with_the_accounts_secret(own_db: Database) -> None:
    caller = await make_caller(own_db)
    assert (
        await own_db.backend.run_read(
            lambda conn: repository.account_secret(conn, account_id=caller.account_id)
        )
        is None
    )
    with running_receiver() as receiver:
        task_id = await ended_task(own_db, caller, callback_url=f"{receiver.url}?task=1")
        claimed = await delivery_loop(own_db).claim()  # the account's first use of its secret
        receiver.secret = await service.callback_secret(own_db, account_id=caller.account_id)
        [result] = [await delivery_loop(own_db).deliver(item) for item in claimed.outgoing]
        assert result.delivered
        [got] = receiver.wait_for(1)
    assert got.path == "/hooks?task=1"
    assert got.payload["type"] == "job.failed"
    assert got.payload["data"]["task_id"] == task_id
    assert got.payload["data"]["error_message"] == "no luck [fail]"
    assert receiver.secret.startswith("whsec_")


async def test_an_unreachable_target_is_a_failed_try(own_db: Database) -> None:
    caller = await make_caller(own_db)
    hook = await add_endpoint(own_db, caller, f"http://127.0.0.1:{free_port()}/hooks")
    task_id = await ended_task(own_db, caller)
    [result] = await delivery_loop(own_db, delays=(0, 60)).deliver_due()
    assert (result.status_code, result.error) == (None, "connection refused")
    [row] = await deliveries_of_task(own_db, task_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "connection refused")
    assert (await endpoint(own_db, caller, hook.id)).last_error == "connection refused"
