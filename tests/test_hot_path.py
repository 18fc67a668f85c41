"""The hot path's shortcuts keep every guarantee: revocation, account isolation, throttling of
failed authentications, byte-identical replays, and what a 402 says (over HTTP, ASGI)."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import event, update

from support import Caller, make_caller
from test_http_edge import assert_error, assert_success
from vidgate.db.models import VideoTask
from vidgate.db.types import utcnow
from vidgate.gateway import Gateway
from vidgate.keys import service as keys

GENERATE = "/api/v1/videos/generate"
BODY = {"model": "sora2", "prompt": "a lighthouse", "n_frames": "10"}


async def create(client: httpx.AsyncClient, caller: Caller) -> str:
    data = assert_success(await client.post(GENERATE, json=BODY, headers=caller.headers))
    task_id: str = data["task_id"]
    return task_id


async def complete(gateway: Gateway, task_id: str) -> None:
    async with gateway.db.write() as session:
        await session.execute(
            update(VideoTask)
            .where(VideoTask.id == task_id)
            .values(
                status="completed", progress=100, file_key=f"{task_id}.mp4", completed_at=utcnow()
            )
        )


async def test_a_key_revoked_through_the_api_stops_working_at_once(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    async with gateway.db.write() as session:
        second, plaintext = await keys.create_key(
            session, account_id=caller.account_id, title="second"
        )
    other = {"Authorization": f"Bearer {plaintext}"}
    assert_success(await client.get("/api/v1/account/balances", headers=other))  # now cached
    revoked = await client.delete(f"/api/v1/keys/{second.id}", headers=caller.headers)
    assert assert_success(revoked)["status"] == "revoked"
    assert_error(await client.get("/api/v1/account/balances", headers=other), 401, "unauthorized")


async def test_a_key_revoked_elsewhere_stops_working_within_the_cache_bound(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    assert gateway.principals.ttl_s <= 1.0
    assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))
    # As `vidgate keys revoke` in another process does: straight in the database.
    async with gateway.db.write() as session:
        await keys.revoke_key(session, key_id=caller.key_id)
    await asyncio.sleep(gateway.principals.ttl_s + 0.05)
    response = await client.get("/api/v1/account/balances", headers=caller.headers)
    assert_error(response, 401, "unauthorized")


async def test_failed_authentications_are_throttled_per_address_without_lookups(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    # A key used before the flood is in the principal cache; one first seen during it is not.
    assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))
    lookups: list[str] = []

    def count_key_lookups(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "FROM api_keys" in statement:
            lookups.append(statement)

    engine = gateway.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count_key_lookups)
    bad = {"Authorization": "Bearer sk-" + "0" * 48}
    statuses = [
        (await client.get("/api/v1/account/balances", headers=bad)).status_code for _ in range(60)
    ]
    event.remove(engine, "before_cursor_execute", count_key_lookups)
    assert statuses[:20] == [401] * 20
    assert set(statuses[25:]) == {429}
    assert len(lookups) <= 25  # the flood past the burst costs no database read
    throttled = await client.get("/api/v1/account/balances", headers=bad)
    assert_error(throttled, 429, "rate_limited")
    assert int(throttled.headers["retry-after"]) >= 1
    # A known (cached) key from the same address still works while the address is throttled.
    assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))


async def test_a_replay_is_byte_identical_to_the_first_answer(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    headers = {**caller.headers, "Idempotency-Key": "exactly-once"}
    first = await client.post(GENERATE, json=BODY, headers=headers)
    await create(client, caller)  # the balance moves on meanwhile
    replay = await client.post(GENERATE, json=BODY, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    # The same request in the wrapped shape is the same request.
    wrapped = {"model": "sora2", "input": {"prompt": "a lighthouse", "n_frames": "10"}}
    again = await client.post(GENERATE, json=wrapped, headers=headers)
    assert again.content == first.content


async def test_an_ended_tasks_cached_answer_is_the_database_answer_and_stays_private(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    task_id = await create(client, caller)
    pending = await client.get(f"/api/v1/videos/{task_id}", headers=caller.headers)
    assert assert_success(pending)["status"] == "pending"
    assert pending.headers["x-poll-after-ms"] == "2000"
    await complete(gateway, task_id)
    first = await client.get(f"/api/v1/videos/{task_id}", headers=caller.headers)
    cached = await client.get(f"/api/v1/videos/{task_id}", headers=caller.headers)
    assert assert_success(first) == assert_success(cached)
    assert assert_success(cached)["status"] == "completed"
    assert assert_success(cached)["video_url"].startswith("http://")
    assert "x-poll-after-ms" not in cached.headers
    assert "ratelimit" in cached.headers
    stranger = await make_caller(gateway.db, credits=10, title="stranger")
    response = await client.get(f"/api/v1/videos/{task_id}", headers=stranger.headers)
    assert_error(response, 404, "not_found")


async def test_a_402_says_the_price_and_the_balance(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    poor = await make_caller(gateway.db, credits=29, title="poor")
    message = assert_error(
        await client.post(GENERATE, json=BODY, headers=poor.headers), 402, "insufficient_credits"
    )
    assert "costs 30 credits" in message
    assert "balance is 29" in message
