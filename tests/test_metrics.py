"""GET /metrics over ASGI: the database gauges on SQLite and PostgreSQL, route templates as
labels, the optional token, and no place in the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support import Caller, make_caller
from test_http_edge import assert_error
from vidgate.app import create_app
from vidgate.db import migrate
from vidgate.db.types import utcnow
from vidgate.gateway import Gateway
from vidgate.settings import Settings
from vidgate.tasks import repository

GENERATE = "/api/v1/videos/generate"
BODY = {"model": "sora2", "prompt": "a lighthouse", "n_frames": "10"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


@pytest.fixture(params=["sqlite", "postgresql"])
def own_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of this test's own on each backend: the gauges count every task in it."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("private_postgres_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture
async def own_gateway(own_database_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(data_dir=tmp_path, database_url=own_database_url, worker_enabled=False)
    built = Gateway.build(settings)
    yield built
    await built.close()


@pytest.fixture
async def own_client(own_gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(gateway=own_gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_task_gauges_count_what_the_database_holds(
    own_client: httpx.AsyncClient, own_gateway: Gateway
) -> None:
    caller = await make_caller(own_gateway.db, credits=200)
    created = []
    for _ in range(3):
        response = await own_client.post(GENERATE, json=BODY, headers=caller.headers)
        assert response.status_code == 200, response.text
        created.append(response.json()["data"]["task_id"])
    before = await scrape(own_client)
    assert value(before, "vidgate_database_up") == 1
    assert value(before, "vidgate_tasks", status="pending", model="sora2") == 3
    assert value(before, "vidgate_tasks", status="processing", model="sora2") == 0
    assert value(before, "vidgate_queue_depth", queue="default") == 3
    age = value(before, "vidgate_queue_oldest_due_age_seconds", queue="default")
    assert age is not None
    assert 0 < age < 60

    # A worker holds one (leased: no longer waiting); another is due only in an hour.
    now = utcnow()
    await own_gateway.db.backend.run_write(
        lambda conn: repository.claim_due(conn, owner="w1", now=now, limit=1, lease_s=60)
    )
    later = now + timedelta(hours=1)
    await own_gateway.db.backend.run_write(
        lambda conn: repository.update_task(
            conn, created[2], values={"run_after": later}, sources=("pending",)
        )
    )
    after = await scrape(own_client)
    assert value(after, "vidgate_tasks", status="pending", model="sora2") == 3
    assert value(after, "vidgate_queue_depth", queue="default") == 1


async def test_requests_are_counted_by_route_template_never_by_raw_path(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    before = await scrape(client)
    created = await client.post(GENERATE, json=BODY, headers=caller.headers)
    task_id = created.json()["data"]["task_id"]
    for method in ("GET", "GET", "HEAD"):
        response = await client.request(method, f"/api/v1/videos/{task_id}", headers=caller.headers)
        assert response.status_code == 200
    missing = await client.get("/api/v1/videos/vid_nothere", headers=caller.headers)
    assert missing.status_code == 404
    assert (await client.get("/no/such/page")).status_code == 404
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    route = "/api/v1/videos/{task_id}"
    requests = "vidgate_http_requests_total"
    assert delta(requests, method="POST", route=GENERATE, status="200") == 1
    assert delta(requests, method="GET", route=route, status="200") == 2
    assert delta(requests, method="HEAD", route=route, status="200") == 1
    assert delta(requests, method="GET", route=route, status="404") == 1
    assert delta(requests, method="GET", route="unmatched", status="404") == 1
    histogram = "vidgate_http_request_duration_seconds_count"
    assert delta(histogram, method="GET", route=route) == 3
    assert delta("vidgate_http_request_duration_seconds_sum", method="GET", route=route) > 0
    routes = {dict(labels).get("route", "") for _name, labels in after}
    assert not any(task_id in r or "vid_nothere" in r for r in routes)


async def test_metrics_token_and_no_api_key_needed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vidgate.db'}"
    migrate.upgrade(url)
    settings = Settings(
        data_dir=tmp_path, database_url=url, worker_enabled=False, metrics_token="s3cret-token"
    )
    gateway = Gateway.build(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(gateway=gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            caller = await make_caller(gateway.db)
            assert_error(await http.get("/metrics"), 401, "unauthorized")
            # An API key is not the metrics token.
            assert_error(await http.get("/metrics", headers=caller.headers), 401, "unauthorized")
            wrong = {"Authorization": "Bearer s3cret-tokeN"}
            assert_error(await http.get("/metrics", headers=wrong), 401, "unauthorized")
            samples = await scrape(http, Authorization="Bearer s3cret-token")
            assert value(samples, "vidgate_database_up") == 1
    finally:
        await gateway.close()


async def test_metrics_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/api/v1/videos/{task_id}" in paths
    assert "/metrics" not in paths
