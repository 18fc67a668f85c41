"""POST /api/v1/videos/generate, GET /api/v1/videos/{id}, history and models, over HTTP (ASGI).

The worker is off here, so tasks stay pending; the worker is covered by test_worker.py and the
end-to-end tests with real server processes.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from support import Caller, make_caller
from test_http_edge import assert_error, assert_success
from vidgate.app import create_app
from vidgate.db.models import ApiKey, LedgerEntry, VideoTask
from vidgate.gateway import Gateway
from vidgate.settings import Settings

SEED_BODY = {
    "model": "sora2",
    "type": "text-to-video",
    "prompt": "A cinematic drone shot of a futuristic city at sunrise.",
    "aspect_ratio": "landscape",
    "n_frames": "10",
    "remove_watermark": False,
}
SEED_TASK_FIELDS = {
    "task_id",
    "model",
    "status",
    "output",
    "video_url",
    "error_message",
    "credits_used",
    "credits_refunded",
    "created_at",
    "updated_at",
    "completed_at",
}
GENERATE = "/api/v1/videos/generate"


async def balance(client: httpx.AsyncClient, caller: Caller) -> int:
    data = assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))
    credits: int = data["credits"]
    return credits


async def count_tasks(gateway: Gateway, account_id: int) -> int:
    async with gateway.db.read() as session:
        total = await session.scalar(
            select(func.count()).select_from(VideoTask).where(VideoTask.account_id == account_id)
        )
    return int(total or 0)


async def test_seed_request_creates_a_task_and_debits_thirty(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    data = assert_success(await client.post(GENERATE, json=SEED_BODY, headers=caller.headers))
    assert set(data) == {"task_id", "request_id", "credits_used", "remaining_credits", "model"}
    assert re.fullmatch(r"vid_[0-9A-Z]{26}", data["task_id"])
    assert re.fullmatch(r"provider_req_[0-9A-Z]{26}", data["request_id"])
    assert data["credits_used"] == 30
    assert data["remaining_credits"] == 90
    assert data["model"] == "sora2"
    assert await balance(client, caller) == 90
    async with gateway.db.read() as session:
        debit = await session.scalar(
            select(LedgerEntry).where(LedgerEntry.task_id == data["task_id"])
        )
    assert debit is not None
    assert (debit.kind, debit.amount, debit.balance_after) == ("debit", -30, 90)

    response = await client.get(f"/api/v1/videos/{data['task_id']}", headers=caller.headers)
    task = assert_success(response)
    assert set(task) >= SEED_TASK_FIELDS
    assert task["task_id"] == data["task_id"]
    assert task["status"] == "pending"
    assert task["output"] == {"resultUrls": []}
    assert task["video_url"] is None
    assert task["error_message"] is None
    assert task["credits_used"] == 30
    assert task["credits_refunded"] == 0
    assert task["completed_at"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", task["created_at"])
    assert response.headers["x-poll-after-ms"] == "2000"


async def test_wrapped_input_shape_with_callback(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    body = {
        "model": "sora2",
        "callBackUrl": "https://example.com/hook",
        "input": {k: v for k, v in SEED_BODY.items() if k != "model"},
    }
    data = assert_success(await client.post(GENERATE, json=body, headers=caller.headers))
    assert data["credits_used"] == 30
    async with gateway.db.read() as session:
        task = await session.get(VideoTask, data["task_id"])
    assert task is not None
    assert task.callback_url == "https://example.com/hook"
    assert task.prompt == SEED_BODY["prompt"]
    assert task.params["options"] == {
        "aspect_ratio": "landscape",
        "n_frames": "10",
        "remove_watermark": False,
    }


async def test_insufficient_credits_creates_nothing(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    poor = await make_caller(gateway.db, credits=29, title="poor")
    message = assert_error(
        await client.post(GENERATE, json=SEED_BODY, headers=poor.headers),
        402,
        "insufficient_credits",
    )
    assert message == (
        "Insufficient credits: this task costs 30 credits and the balance is 29; top up and retry"
    )
    assert await balance(client, poor) == 29
    assert await count_tasks(gateway, poor.account_id) == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": None}, "model: field required"),
        ({"model": "sora3"}, "model: unknown model 'sora3' (available: sample, sora-2, "),
        ({"n_frames": "12"}, 'n_frames: must be one of "10", "15"'),
        ({"aspect_ratio": "wide"}, 'aspect_ratio: must be one of "landscape", "portrait"'),
        ({"duration": "5"}, "duration: not an option of model sora2 (allowed: "),
        ({"type": "video-2-video"}, "type: Input should be"),
        ({"type": "image-to-video"}, "image_urls: image-to-video needs at least one image URL"),
        ({"prompt": None}, "prompt: text-to-video needs a prompt"),
        ({"prompt": "x" * 5001}, "prompt: String should have at most 5000 characters"),
        ({"image_urls": ["file:///etc/passwd"]}, "image_urls[0]: must be an http(s) URL"),
        ({"remove_watermark": "maybe"}, 'remove_watermark: must be true or false (got "maybe")'),
        ({"colour": "red"}, "colour: not an option of model sora2 (allowed: aspect_ratio, "),
    ],
)
async def test_invalid_requests_name_the_problem(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller, change: dict, expected: str
) -> None:
    body = {**SEED_BODY, **change}
    body = {k: v for k, v in body.items() if v is not None}
    message = assert_error(
        await client.post(GENERATE, json=body, headers=caller.headers), 400, "invalid_request"
    )
    assert message.startswith(expected), message
    assert await balance(client, caller) == 120
    assert await count_tasks(gateway, caller.account_id) == 0


async def test_idempotent_replay_returns_the_same_task_once_charged(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    headers = {**caller.headers, "Idempotency-Key": "order-42"}
    first = await client.post(GENERATE, json=SEED_BODY, headers=headers)
    second = await client.post(GENERATE, json=SEED_BODY, headers=headers)
    assert assert_success(first) == assert_success(second)
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert await balance(client, caller) == 90
    assert await count_tasks(gateway, caller.account_id) == 1

    other_body = {**SEED_BODY, "n_frames": "15"}
    message = assert_error(
        await client.post(GENERATE, json=other_body, headers=headers),
        409,
        "idempotency_key_reused",
    )
    assert "different request body" in message
    assert await balance(client, caller) == 90


async def test_concurrent_retries_of_one_key_make_one_task(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    headers = {**caller.headers, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post(GENERATE, json=SEED_BODY, headers=headers) for _ in range(10))
    )
    task_ids = {assert_success(response)["task_id"] for response in responses}
    assert len(task_ids) == 1
    assert sum("idempotent-replayed" in r.headers for r in responses) == 9
    assert await balance(client, caller) == 90
    assert await count_tasks(gateway, caller.account_id) == 1


async def test_idempotency_keys_are_scoped_to_the_account(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    other = await make_caller(gateway.db, credits=100, title="other")
    first = assert_success(
        await client.post(
            GENERATE, json=SEED_BODY, headers={**caller.headers, "Idempotency-Key": "same"}
        )
    )
    second = assert_success(
        await client.post(
            GENERATE, json=SEED_BODY, headers={**other.headers, "Idempotency-Key": "same"}
        )
    )
    assert first["task_id"] != second["task_id"]


async def test_failed_create_does_not_burn_the_idempotency_key(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    poor = await make_caller(gateway.db, credits=10, title="poor")
    headers = {**poor.headers, "Idempotency-Key": "retry-after-top-up"}
    assert_error(
        await client.post(GENERATE, json=SEED_BODY, headers=headers), 402, "insufficient_credits"
    )
    async with gateway.db.write() as session:
        from vidgate.billing import service as billing

        await billing.grant(session, account_id=poor.account_id, amount=50)
    data = assert_success(await client.post(GENERATE, json=SEED_BODY, headers=headers))
    assert data["remaining_credits"] == 30


async def test_too_many_concurrent_jobs(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    async with gateway.db.write() as session:
        await session.execute(
            update(ApiKey).where(ApiKey.id == caller.key_id).values(max_concurrent_jobs=2)
        )
    body = {"model": "sample", "prompt": "p", "duration": "1"}
    for _ in range(2):
        assert_success(await client.post(GENERATE, json=body, headers=caller.headers))
    response = await client.post(GENERATE, json=body, headers=caller.headers)
    message = assert_error(response, 429, "too_many_concurrent_jobs")
    assert "limit 2" in message
    assert response.headers["retry-after"] == "10"
    assert await balance(client, caller) == 118
    assert await count_tasks(gateway, caller.account_id) == 2


async def test_rate_limit_answers_429_with_headers(gateway: Gateway, caller: Caller) -> None:
    gateway.settings.rate_limit_per_second = 1
    gateway.settings.rate_limit_burst = 2
    transport = httpx.ASGITransport(app=create_app(gateway=gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        ok = [await http.get("/api/v1/account/balances", headers=caller.headers) for _ in range(2)]
        refused = await http.get("/api/v1/account/balances", headers=caller.headers)
    assert ok[0].headers["ratelimit-policy"] == '"per-key";q=2;w=2'
    assert ok[0].headers["ratelimit"].startswith('"per-key";r=1;')
    message = assert_error(refused, 429, "rate_limited")
    assert "1 requests/s" in message
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit"].startswith('"per-key";r=0;')


async def test_other_accounts_task_is_not_found(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    task_id = assert_success(await client.post(GENERATE, json=SEED_BODY, headers=caller.headers))[
        "task_id"
    ]
    other = await make_caller(gateway.db, title="other")
    for headers, path in [
        (other.headers, f"/api/v1/videos/{task_id}"),
        (caller.headers, "/api/v1/videos/vid_01HQ9MA3M6V6HC6S5R9V7N4Q4D"),
        (caller.headers, "/api/v1/videos/not-a-task"),
    ]:
        assert_error(await client.get(path, headers=headers), 404, "not_found")


async def test_history_pages_newest_first(client: httpx.AsyncClient, caller: Caller) -> None:
    created = []
    for seconds in ("1", "2", "3"):
        body = {"model": "sample", "prompt": f"clip {seconds}", "duration": seconds}
        created.append(
            assert_success(await client.post(GENERATE, json=body, headers=caller.headers))
        )
    first = assert_success(
        await client.get("/api/v1/videos/history?page=1&limit=2", headers=caller.headers)
    )
    assert (first["page"], first["limit"], first["total"]) == (1, 2, 3)
    assert [item["task_id"] for item in first["items"]] == [
        created[2]["task_id"],
        created[1]["task_id"],
    ]
    assert set(first["items"][0]) == {
        "task_id",
        "model",
        "created_at",
        "status",
        "video_url",
        "error_code",
        "credits_used",
        "credits_refunded",
        "completed_at",
    }
    second = assert_success(
        await client.get("/api/v1/videos/history?page=2&limit=2", headers=caller.headers)
    )
    assert [item["task_id"] for item in second["items"]] == [created[0]["task_id"]]
    default = assert_success(await client.get("/api/v1/videos/history", headers=caller.headers))
    assert (default["page"], default["limit"]) == (1, 20)
    message = assert_error(
        await client.get("/api/v1/videos/history?limit=51", headers=caller.headers),
        400,
        "invalid_request",
    )
    assert message.startswith("limit:")


async def test_models_lists_catalogue_with_prices(client: httpx.AsyncClient) -> None:
    models = {m["id"]: m for m in assert_success(await client.get("/api/v1/models"))}
    assert {"sora2", "sora2-stable", "sora2-pro", "sample"} <= set(models)
    sora2 = models["sora2"]
    assert sora2["price"]["default_credits"] == 30
    assert sora2["price"]["by_option"] == {"n_frames": {"10": 30, "15": 45}}
    assert sora2["options"]["n_frames"] == {
        "type": "string",
        "values": ["10", "15"],
        "default": "10",
    }
    assert sora2["providers"] == ["sample"]


@pytest.mark.parametrize("worker_here", [True, False])
async def test_model_without_a_configured_provider(
    tmp_path: Path, settings: Settings, worker_here: bool
) -> None:
    """503 where this process's worker would run the model and cannot; accepted (pending) by
    an API process whose tasks run on workers elsewhere."""
    catalogue = tmp_path / "models.toml"
    catalogue.write_text(
        '[models.remote-only]\nchannels = [{ provider = "apimall", upstream_model = "x" }]\n'
    )
    settings.catalogue_path = catalogue
    settings.worker_enabled = worker_here  # the ASGI client runs no lifespan: no worker starts
    gateway = Gateway.build(settings)
    caller = await make_caller(gateway.db)
    transport = httpx.ASGITransport(app=create_app(gateway=gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(
            GENERATE, json={"model": "remote-only", "prompt": "p"}, headers=caller.headers
        )
    await gateway.close()
    if not worker_here:
        assert assert_success(response)["model"] == "remote-only"
        return
    message = assert_error(response, 503, "upstream_unavailable")
    assert message == "no provider is configured for model remote-only"
    assert response.headers["retry-after"] == "60"


async def test_a_keys_own_rate_limit_wins(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    async with gateway.db.write() as session:
        from vidgate.keys import service as keys

        await keys.set_limits(
            session, key_id=caller.key_id, rate_limit_per_second=0.5, max_concurrent_jobs=None
        )
    first = await client.get("/api/v1/account/balances", headers=caller.headers)
    assert first.headers["ratelimit-policy"] == '"per-key";q=1;w=2'
    refused = await client.get("/api/v1/account/balances", headers=caller.headers)
    assert "0.5 requests/s" in assert_error(refused, 429, "rate_limited")
    assert refused.headers["retry-after"] == "2"


async def test_malformed_idempotency_key_and_conflicting_shapes(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    message = assert_error(
        await client.post(
            GENERATE, json=SEED_BODY, headers={**caller.headers, "Idempotency-Key": "k" * 256}
        ),
        400,
        "invalid_request",
    )
    assert message == "Idempotency-Key: must be 1-255 printable characters"
    both = {"model": "sora2", "prompt": "a", "input": {"prompt": "b"}}
    message = assert_error(
        await client.post(GENERATE, json=both, headers=caller.headers), 400, "invalid_request"
    )
    assert message == "prompt is given both at the top level and in input"
    assert await count_tasks(gateway, caller.account_id) == 0
    assert await balance(client, caller) == 120
