"""Account states and key expiry at the door: a key of a pending or suspended account is refused
on every keyed route of both surfaces, in the surface's error shape, with nothing created or
charged; approving lets it in within the principal cache's bound; an expired key is 401 like a
revoked one."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select, update

from support import GatewayProcess, make_caller
from vidgate.api.errors import _route_list
from vidgate.db.engine import Database, open_database
from vidgate.db.models import Account, ApiKey, LedgerEntry, VideoTask, WebhookEndpoint
from vidgate.db.types import utcnow
from vidgate.gateway import Gateway

T = TypeVar("T")

# Routes that take no API key, by design; every other route must answer 401 without one.
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/models"),
    ("GET", "/files/{key}"),
    ("GET", "/files/{key:path}"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
PATH_VALUES = {"task_id": "vid_01JDZ7Q1T3X6V2W8Y9Z0A1B2C3", "video_id": "video_x"}
BODY = {
    "model": "sample",
    "prompt": "a cat",
    "title": "new key",
    "url": "https://hooks.example.com/x",
}
# Routes that read their body before the key (the key is checked in the endpoint): a body they
# accept, so the request reaches the key check.
BODY_OF = {"/v1/videos/{video_id}/remix": {"prompt": "a dog"}}


def route_requests(app: Any) -> list[tuple[str, str, str]]:
    """(method, route path, concrete URL) of every route of the app, HEAD aside."""
    found = []
    for route in _route_list(app):
        if not getattr(route, "methods", None):
            continue
        url = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES.get(m.group(1), "1"), route.path)
        for method in sorted(route.methods - {"HEAD"}):
            found.append((method, route.path, url))
    return found


async def send(
    http: httpx.AsyncClient, method: str, path: str, url: str, key: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = BODY_OF.get(path, BODY) if method in ("POST", "PUT", "PATCH") else None
    return await http.request(method, url, headers=headers, json=body)


async def set_account_status(db: Database, account_id: int, status: str) -> None:
    async with db.write() as session:
        await session.execute(update(Account).where(Account.id == account_id).values(status=status))


async def traces_of(db: Database, account_id: int) -> dict[str, int]:
    """What a request could have left behind for the account."""
    async with db.read() as session:

        async def count(model: Any) -> int:
            found = await session.scalar(
                select(func.count()).select_from(model).where(model.account_id == account_id)
            )
            return int(found or 0)

        return {
            "credits": int(
                await session.scalar(select(Account.credits).where(Account.id == account_id)) or 0
            ),
            "ledger": await count(LedgerEntry),
            "tasks": await count(VideoTask),
            "keys": await count(ApiKey),
            "webhooks": await count(WebhookEndpoint),
        }


def assert_refused(response: httpx.Response, path: str, message: str) -> None:
    assert response.status_code == 403, (path, response.status_code, response.text)
    body = response.json()
    if path.startswith("/v1/"):  # the OpenAI-style surface's shape
        assert body["error"]["type"] == "permission_error", body
        assert body["error"]["code"] == "forbidden", body
        assert body["error"]["message"] == message, body
    else:
        assert body["success"] is False, body
        assert body["error"] == {"code": "forbidden", "message": message}, body


@pytest.mark.parametrize(
    ("status", "message"),
    [("pending", "API access not approved"), ("suspended", "account suspended")],
)
async def test_every_keyed_route_refuses_an_inactive_account(
    client: httpx.AsyncClient, gateway: Gateway, status: str, message: str
) -> None:
    caller = await make_caller(gateway.db, credits=50)
    await set_account_status(gateway.db, caller.account_id, status)
    before = await traces_of(gateway.db, caller.account_id)
    app = client._transport.app  # type: ignore[attr-defined]
    keyed = []
    for method, path, url in route_requests(app):
        anonymous = await send(client, method, path, url, None)
        if (method, path) in PUBLIC_ROUTES:
            continue
        # A route that is not public must want a key: a new route cannot slip past the check.
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        keyed.append((method, path))
        assert_refused(await send(client, method, path, url, caller.api_key), path, message)
    assert ("POST", "/api/v1/videos/generate") in keyed
    assert ("POST", "/v1/videos") in keyed
    assert len(keyed) >= 20, keyed
    assert await traces_of(gateway.db, caller.account_id) == before  # nothing created or charged


async def test_an_admin_key_of_a_pending_account_is_let_in_but_not_when_suspended(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    caller = await make_caller(gateway.db, credits=5)
    async with gateway.db.write() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == caller.key_id).values(role="admin"))
    await set_account_status(gateway.db, caller.account_id, "pending")
    assert (await client.get("/api/v1/account/balances", headers=caller.headers)).status_code == 200
    await set_account_status(gateway.db, caller.account_id, "suspended")
    gateway.principals.invalidate_account(caller.account_id)
    refused = await client.get("/api/v1/account/balances", headers=caller.headers)
    assert_refused(refused, "/api/v1/account/balances", "account suspended")


async def expire(db: Database, key_id: int, *, at: Any) -> None:
    async with db.write() as session:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=at))


async def test_an_expired_key_is_refused_like_a_revoked_one(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    expired = await make_caller(gateway.db, credits=5)
    await expire(gateway.db, expired.key_id, at=utcnow() - timedelta(seconds=1))
    revoked = await make_caller(gateway.db, credits=5)
    async with gateway.db.write() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == revoked.key_id).values(status="revoked")
        )
    for path in ("/api/v1/account/balances", "/v1/videos"):
        answers = [await client.get(path, headers=c.headers) for c in (expired, revoked)]
        assert [a.status_code for a in answers] == [401, 401], [a.text for a in answers]
        bodies = [a.json()["error"] for a in answers]
        assert bodies[0] == bodies[1], bodies
        assert bodies[0]["message"] == "Invalid API key"


async def test_a_key_expiring_while_cached_is_refused_from_its_expiry(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    caller = await make_caller(gateway.db, credits=5)
    await expire(gateway.db, caller.key_id, at=utcnow() + timedelta(seconds=0.6))
    assert (await client.get("/api/v1/account/balances", headers=caller.headers)).status_code == 200
    await asyncio.sleep(0.7)  # still within the cache's second, past the expiry
    answer = await client.get("/api/v1/account/balances", headers=caller.headers)
    assert answer.status_code == 401, answer.text


# -- over real HTTP: approval and suspension reach a running server within the cache bound -----

CACHE_BOUND_S = 1.0  # the principal cache's TTL (keys/cache.py)
SLACK_S = 0.5  # a poll's own time and the scheduler's


def in_database(server: GatewayProcess, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on the running server's own database, as an operator's tool would."""
    url = server.env.get("VIDGATE_DATABASE_URL") or (
        f"sqlite+aiosqlite:///{server.data_dir / 'vidgate.db'}"
    )

    async def run() -> T:
        db = open_database(url)
        try:
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def seconds_until(server: GatewayProcess, key: str, status_code: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 10:
        answer = httpx.get(
            f"{server.base_url}/api/v1/account/balances",
            headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        )
        if answer.status_code == status_code:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"still not {status_code} after 10 s: {answer.text}")


def test_approving_and_suspending_reach_a_running_server_within_the_cache_bound(
    live_gateway: GatewayProcess,
) -> None:
    caller = in_database(live_gateway, lambda db: make_caller(db, credits=5, title="customer"))

    def set_status(status: str) -> None:
        in_database(live_gateway, lambda db: set_account_status(db, caller.account_id, status))

    set_status("pending")
    refused = httpx.get(f"{live_gateway.base_url}/api/v1/account/balances", headers=caller.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "API access not approved"

    set_status("active")  # approved by an operator
    assert seconds_until(live_gateway, caller.api_key, 200) < CACHE_BOUND_S + SLACK_S

    set_status("suspended")
    assert seconds_until(live_gateway, caller.api_key, 403) < CACHE_BOUND_S + SLACK_S
    answer = httpx.post(
        f"{live_gateway.base_url}/api/v1/videos/generate",
        headers=caller.headers,
        json={"model": "sample", "prompt": "a cat"},
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["message"] == "account suspended"
    traces = in_database(live_gateway, lambda db: traces_of(db, caller.account_id))
    assert traces["tasks"] == 0
    assert traces["credits"] == 5
