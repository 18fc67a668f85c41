"""The management routes through the real app in process (no worker): shapes, the refusals
that name their field, secrets shown once, and another account seeing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Caller, make_caller
from test_http_edge import assert_error, assert_success
from vidgate.app import create_app
from vidgate.db import migrate
from vidgate.gateway import Gateway
from vidgate.settings import Settings
from webhooks.builders import complete, fail, new_task

HOOKS = "/api/v1/webhooks"
CALLBACK_SECRET = "/api/v1/account/webhook-secret"
GIVEN_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        worker_enabled=False,
        fetch_allowed_private_networks=["127.0.0.0/8"],
    )
    built = Gateway.build(settings)
    yield built
    await built.close()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway=gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def caller(gateway: Gateway) -> Caller:
    return await make_caller(gateway.db, credits=100, title="owner")


@pytest.fixture
async def stranger(gateway: Gateway) -> Caller:
    return await make_caller(gateway.db, credits=100, title="stranger")


async def create(client: httpx.AsyncClient, caller: Caller, **body: Any) -> httpx.Response:
    body.setdefault("events", ["job.completed", "job.failed"])
    return await client.post(HOOKS, json=body, headers=caller.headers)


async def test_create_shows_the_secret_once_and_the_list_never(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    made = assert_success(await create(client, caller, url="https://hooks.example.com/in"))
    assert set(made) == {
        "id", "url", "events", "status", "api_key_id", "created_at", "updated_at", "secret_key",
    }  # fmt: skip
    assert made["secret_key"].startswith("whsec_")
    assert (made["status"], made["api_key_id"]) == ("active", None)
    assert made["events"] == ["job.completed", "job.failed"]
    assert made["created_at"].endswith("Z")
    given = assert_success(
        await create(
            client,
            caller,
            url="http://127.0.0.1:9/in",  # plain http inside the allowed networks
            events=["job.cancelled", "job.cancelled"],
            secret_key=GIVEN_SECRET,
            api_key_id=caller.key_id,
        )
    )
    assert given["secret_key"] == GIVEN_SECRET
    assert given["events"] == ["job.cancelled"]
    assert given["api_key_id"] == caller.key_id

    listed = assert_success(await client.get(HOOKS, headers=caller.headers))
    assert [hook["id"] for hook in listed] == [made["id"], given["id"]]
    for hook in listed:
        assert "secret_key" not in hook
        assert GIVEN_SECRET not in str(hook)
        assert (hook["total_sent"], hook["total_failed"]) == (0, 0)
        assert (hook["last_sent_at"], hook["last_error"]) == (None, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "http://93.184.215.14/in"}, "url: must be https"),
        ({"url": "https://169.254.169.254/latest"}, "url: 169.254.169.254 is not a public"),
        ({"url": "https://10.0.0.1/in"}, "url: 10.0.0.1 is not a public address"),
        ({"url": "https://user:pw@hooks.example.com/"}, "url: URLs with credentials"),
        ({"url": "ftp://hooks.example.com/"}, "url: must be an https URL"),
        ({"url": "https://hooks.example.com/", "events": []}, "events: List should have"),
        ({"url": "https://hooks.example.com/", "events": ["job.started"]}, "events[0]: Input"),
        ({"url": "https://hooks.example.com/", "secret_key": "hunter2"}, "secret_key: must be"),
        ({"events": ["job.failed"]}, "url: field required"),
    ],
)
async def test_bad_creates_are_refused_naming_the_field(
    client: httpx.AsyncClient, caller: Caller, body: dict[str, Any], message: str
) -> None:
    refused = await client.post(
        HOOKS, json={"events": ["job.failed"], **body}, headers=caller.headers
    )
    text = assert_error(refused, 400, "invalid_request")
    assert text.startswith(message), text
    assert assert_success(await client.get(HOOKS, headers=caller.headers)) == []


async def test_another_accounts_webhook_is_not_found(
    client: httpx.AsyncClient, caller: Caller, stranger: Caller
) -> None:
    made = assert_success(await create(client, caller, url="https://hooks.example.com/in"))
    hook = f"{HOOKS}/{made['id']}"
    assert assert_success(await client.get(HOOKS, headers=stranger.headers)) == []
    for method, path in [
        ("DELETE", hook),
        ("GET", f"{hook}/deliveries"),
        ("POST", f"{hook}/deliveries/1/redeliver"),
    ]:
        answer = await client.request(method, path, headers=stranger.headers)
        assert_error(answer, 404, "not_found")
    # Nor may it bind a webhook to the owner's key.
    bound = await create(
        client, stranger, url="https://hooks.example.com/x", api_key_id=caller.key_id
    )
    assert_error(bound, 404, "not_found")
    assert len(assert_success(await client.get(HOOKS, headers=caller.headers))) == 1


async def test_delete_hides_the_webhook_for_good(client: httpx.AsyncClient, caller: Caller) -> None:
    made = assert_success(await create(client, caller, url="https://hooks.example.com/in"))
    hook = f"{HOOKS}/{made['id']}"
    assert assert_success(await client.delete(hook, headers=caller.headers)) == {"id": made["id"]}
    assert assert_success(await client.get(HOOKS, headers=caller.headers)) == []
    assert_error(await client.delete(hook, headers=caller.headers), 404, "not_found")
    assert_error(await client.get(f"{hook}/deliveries", headers=caller.headers), 404, "not_found")


async def test_deliveries_are_listed_newest_first_and_can_be_redelivered(
    client: httpx.AsyncClient, caller: Caller, gateway: Gateway
) -> None:
    made = assert_success(await create(client, caller, url="https://hooks.example.com/in"))
    hook = f"{HOOKS}/{made['id']}"
    failed, completed = await new_task(gateway.db, caller), await new_task(gateway.db, caller)
    assert await fail(gateway.db, failed)
    assert await complete(gateway.db, completed)

    page = assert_success(await client.get(f"{hook}/deliveries", headers=caller.headers))
    assert (page["page"], page["limit"], page["total"]) == (1, 20, 2)
    newest, oldest = page["items"]
    assert (newest["task_id"], newest["event"]) == (completed, "job.completed")
    assert (oldest["task_id"], oldest["event"]) == (failed, "job.failed")
    assert set(newest) == {
        "id", "message_id", "event", "task_id", "status", "attempts", "last_status_code",
        "last_error", "next_attempt_at", "created_at", "delivered_at",
    }  # fmt: skip
    assert (newest["status"], newest["attempts"], newest["delivered_at"]) == ("pending", 0, None)
    assert newest["next_attempt_at"] is not None
    second = assert_success(
        await client.get(f"{hook}/deliveries?page=2&limit=1", headers=caller.headers)
    )
    assert [item["id"] for item in second["items"]] == [oldest["id"]]

    again = assert_success(
        await client.post(f"{hook}/deliveries/{oldest['id']}/redeliver", headers=caller.headers)
    )
    assert (again["message_id"], again["status"]) == (oldest["message_id"], "pending")
    missing = await client.post(f"{hook}/deliveries/999999/redeliver", headers=caller.headers)
    assert_error(missing, 404, "not_found")


async def test_the_callback_secret_is_made_once_and_kept(
    client: httpx.AsyncClient, caller: Caller, stranger: Caller
) -> None:
    first = assert_success(await client.get(CALLBACK_SECRET, headers=caller.headers))
    again = assert_success(await client.get(CALLBACK_SECRET, headers=caller.headers))
    other = assert_success(await client.get(CALLBACK_SECRET, headers=stranger.headers))
    assert first == again
    assert first["secret_key"].startswith("whsec_")
    assert other["secret_key"] != first["secret_key"]


async def test_the_routes_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert set(paths[HOOKS]) == {"get", "post"}
    assert set(paths[f"{HOOKS}/{{webhook_id}}"]) == {"delete"}
    assert "409" in paths[HOOKS]["post"]["responses"]
    assert f"{HOOKS}/{{webhook_id}}/deliveries/{{delivery_id}}/redeliver" in paths
