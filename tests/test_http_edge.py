"""The HTTP edge: envelopes, request ids and every error status, checked field by field."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import jsonschema_rs
import pytest

from support import Caller, GatewayProcess, wait_for_task
from vidgate import errors
from vidgate.app import create_app
from vidgate.gateway import Gateway
from vidgate.settings import Settings
from vidgate.tasks import idempotency

REQUEST_ID = re.compile(r"^req_[0-9A-HJKMNP-TV-Z]{26}$")


def assert_success(response: httpx.Response) -> dict:
    body = response.json()
    assert response.status_code == 200, body
    assert set(body) == {"success", "data", "request_id"}
    assert body["success"] is True
    assert REQUEST_ID.match(body["request_id"])
    assert REQUEST_ID.match(response.headers["x-request-id"])
    if "idempotent-replayed" not in response.headers:  # a replay is the first answer's body
        assert response.headers["x-request-id"] == body["request_id"]
    return body["data"]


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    body = response.json()
    assert response.status_code == status, body
    assert response.headers["content-type"].startswith("application/json")
    assert set(body) == {"success", "error", "request_id"}
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    assert REQUEST_ID.match(body["request_id"])
    assert response.headers["x-request-id"] == body["request_id"]
    message: str = body["error"]["message"]
    return message


async def test_healthz_and_readyz(client: httpx.AsyncClient, gateway: Gateway) -> None:
    backend = "sqlite" if gateway.settings.is_sqlite else "postgresql"
    assert assert_success(await client.get("/healthz")) == {"status": "ok"}
    assert assert_success(await client.get("/readyz")) == {"status": "ready", "database": backend}


@pytest.fixture
async def no_database_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose database refuses connections (nothing listens on port 1)."""
    broken = Settings(
        data_dir=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/vidgate",
        worker_enabled=False,
    )
    app = create_app(broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await app.state.gateway.close()  # ASGITransport runs no lifespan, so close it here


async def test_readyz_reports_unreachable_database(
    no_database_client: httpx.AsyncClient,
) -> None:
    response = await no_database_client.get("/readyz")
    assert assert_error(response, 503, "service_unavailable") == "database is not reachable"


async def test_database_outage_is_503_with_retry_after(
    no_database_client: httpx.AsyncClient,
) -> None:
    response = await no_database_client.get(
        "/api/v1/account/balances", headers={"Authorization": "Bearer sk-" + "0" * 48}
    )
    message = assert_error(response, 503, "service_unavailable")
    assert message == "the database is busy or unreachable; retry shortly"
    assert response.headers["retry-after"] == "2"


async def test_request_ids_are_unique(client: httpx.AsyncClient) -> None:
    first = (await client.get("/healthz")).json()["request_id"]
    second = (await client.get("/healthz")).json()["request_id"]
    assert first != second


async def test_balances(client: httpx.AsyncClient, caller: Caller) -> None:
    data = assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))
    assert data == {"credits": 120, "api_credits": 120}


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "API key required"),
        ({"Authorization": "Basic abc"}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
        ({"Authorization": "Bearer sk-" + "0" * 48}, "Invalid API key"),
    ],
)
async def test_unauthorized(client: httpx.AsyncClient, headers: dict, fragment: str) -> None:
    message = assert_error(
        await client.get("/api/v1/account/balances", headers=headers), 401, "unauthorized"
    )
    assert fragment in message


async def test_create_list_and_revoke_keys(client: httpx.AsyncClient, caller: Caller) -> None:
    created = assert_success(
        await client.post("/api/v1/keys", json={"title": "ci"}, headers=caller.headers)
    )
    controls = {"role", "models", "budget", "budget_period", "budget_spent", "budget_resets_at"}
    assert (
        set(created) == {"id", "title", "status", "created_at", "api_key", "expires_at"} | controls
    )
    assert {name: created[name] for name in controls} == dict.fromkeys(controls) | {"role": "user"}
    assert created["title"] == "ci"
    assert created["status"] == "created"
    assert re.match(r"^sk-[0-9a-f]{48}$", created["api_key"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", created["created_at"])

    listed = assert_success(await client.get("/api/v1/keys", headers=caller.headers))
    by_id = {item["id"]: item for item in listed}
    assert set(by_id) == {caller.key_id, created["id"]}
    new_key = by_id[created["id"]]
    assert new_key["key_preview"] == f"sk-{created['api_key'][3:7]}...{created['api_key'][-4:]}"
    assert "api_key" not in new_key
    assert created["api_key"] not in str(listed)
    # The calling key has been used, so it is active; the new one is not yet.
    assert by_id[caller.key_id]["status"] == "active"
    assert by_id[caller.key_id]["last_used_at"] is not None
    assert new_key["status"] == "created"

    new_headers = {"Authorization": f"Bearer {created['api_key']}"}
    assert assert_success(await client.get("/api/v1/account/balances", headers=new_headers))

    revoked = assert_success(
        await client.delete(f"/api/v1/keys/{created['id']}", headers=caller.headers)
    )
    assert revoked == {"id": created["id"], "status": "revoked"}
    message = assert_error(
        await client.get("/api/v1/account/balances", headers=new_headers), 401, "unauthorized"
    )
    assert message == "Invalid API key"
    listed = assert_success(await client.get("/api/v1/keys", headers=caller.headers))
    assert {item["id"]: item["status"] for item in listed}[created["id"]] == "revoked"


async def test_key_cannot_revoke_itself(client: httpx.AsyncClient, caller: Caller) -> None:
    message = assert_error(
        await client.delete(f"/api/v1/keys/{caller.key_id}", headers=caller.headers),
        400,
        "invalid_request",
    )
    assert "itself" in message
    assert_success(await client.get("/api/v1/account/balances", headers=caller.headers))


async def test_revoke_unknown_or_foreign_key_is_404(
    client: httpx.AsyncClient, gateway: Gateway, caller: Caller
) -> None:
    from support import make_caller

    other = await make_caller(gateway.db, title="other")
    for key_id in (other.key_id, 999_999):
        assert_error(
            await client.delete(f"/api/v1/keys/{key_id}", headers=caller.headers),
            404,
            "not_found",
        )
    assert_success(await client.get("/api/v1/account/balances", headers=other.headers))


async def test_path_parameter_validation_names_the_field(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    message = assert_error(
        await client.delete("/api/v1/keys/abc", headers=caller.headers), 400, "invalid_request"
    )
    assert "key_id" in message
    # An id past any database integer is a 400 naming it, not an overflow (a 500).
    huge = "/api/v1/keys/53700936428113291640832"
    for response in (
        await client.delete(huge, headers=caller.headers),
        await client.patch(huge, headers=caller.headers, json={"budget": 1}),
    ):
        assert "key_id" in assert_error(response, 400, "invalid_request")


async def test_both_expiry_fields_are_refused_and_the_schema_says_so(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    body = {"title": "t", "expires_in": "1d", "expires_at": "2030-01-01T00:00:00Z"}
    response = await client.post("/api/v1/keys", headers=caller.headers, json=body)
    assert "not both" in assert_error(response, 400, "invalid_request")
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("CreateKeyRequest", "UpdateKeyRequest"):
        assert schemas[name]["not"]["required"] == ["expires_in", "expires_at"]
    body = {"expires_in": None, "expires_at": None}  # both null: no expiry, as the schema says
    assert assert_success(
        await client.patch(f"/api/v1/keys/{caller.key_id}", headers=caller.headers, json=body)
    )


async def test_validation_errors_name_the_field(client: httpx.AsyncClient, caller: Caller) -> None:
    message = assert_error(
        await client.post("/api/v1/keys", json={}, headers=caller.headers), 400, "invalid_request"
    )
    assert message == "title: field required"
    message = assert_error(
        await client.post("/api/v1/keys", json={"title": 5}, headers=caller.headers),
        400,
        "invalid_request",
    )
    assert message.startswith("title:")


async def test_malformed_json(client: httpx.AsyncClient, caller: Caller) -> None:
    message = assert_error(
        await client.post(
            "/api/v1/keys",
            content=b'{"title": ',
            headers={**caller.headers, "Content-Type": "application/json"},
        ),
        400,
        "invalid_request",
    )
    assert "malformed JSON" in message


async def test_wrong_content_type(client: httpx.AsyncClient, caller: Caller) -> None:
    message = assert_error(
        await client.post(
            "/api/v1/keys",
            content=b"title=x",
            headers={**caller.headers, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        415,
        "unsupported_media_type",
    )
    assert "application/json" in message


async def test_oversized_body_by_content_length(gateway: Gateway, caller: Caller) -> None:
    gateway.settings.max_body_bytes = 1000
    transport = httpx.ASGITransport(app=create_app(gateway=gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        message = assert_error(
            await http.post("/api/v1/keys", json={"title": "x" * 2000}, headers=caller.headers),
            413,
            "payload_too_large",
        )
    assert "1000 bytes" in message


async def test_oversized_streamed_body(gateway: Gateway, caller: Caller) -> None:
    gateway.settings.max_body_bytes = 1000

    async def chunks():
        for _ in range(20):
            yield b" " * 100

    transport = httpx.ASGITransport(app=create_app(gateway=gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(
            "/api/v1/keys",
            content=chunks(),
            headers={**caller.headers, "Content-Type": "application/json"},
        )
    assert "1000 bytes" in assert_error(response, 413, "payload_too_large")


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert "/api/v1/nope" in assert_error(await client.get("/api/v1/nope"), 404, "not_found")
    message = assert_error(await client.put("/healthz"), 405, "method_not_allowed")
    assert message == "Method PUT is not allowed on /healthz"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/healthz", "GET, HEAD"),
        ("POST", "/api/v1/account/balances", "GET, HEAD"),
        # GET and POST are two routes on this path; the Allow header names both.
        ("DELETE", "/api/v1/keys", "GET, HEAD, POST"),
        ("PATCH", "/api/v1/keys", "GET, HEAD, POST"),
        ("GET", "/api/v1/keys/7", "PATCH, DELETE"),
        # /videos/{task_id} matches this path too, but the literal route is the resource.
        ("PUT", "/api/v1/videos/generate", "POST"),
        ("PUT", "/api/v1/videos/vid_x", "GET, HEAD"),
        ("POST", "/api/v1/videos/history", "GET, HEAD"),
        ("OPTIONS", "/api/v1/models", "GET, HEAD"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    client: httpx.AsyncClient, caller: Caller, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, path, headers=caller.headers)
    message = assert_error(response, 405, "method_not_allowed")
    assert message == f"Method {method} is not allowed on {path}"
    assert response.headers["allow"] == allow


async def test_head_answers_like_get_without_a_body(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    for path, status in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/api/v1/models", 200),
        ("/api/v1/account/balances", 200),
        ("/api/v1/videos/history?limit=5", 200),
        ("/api/v1/videos/vid_unknown", 404),
        ("/openapi.json", 200),
    ]:
        get = await client.get(path, headers=caller.headers)
        head = await client.head(path, headers=caller.headers)
        assert (head.status_code, get.status_code) == (status, status), path
        assert head.content == b"", path
        assert head.headers["content-length"] == str(len(get.content)), path
        assert head.headers["content-type"] == get.headers["content-type"], path
        assert REQUEST_ID.match(head.headers["x-request-id"]), path
    unauthorized = await client.head("/api/v1/account/balances")
    assert (unauthorized.status_code, unauthorized.content) == (401, b"")
    unknown = await client.head("/api/v1/nope")
    assert (unknown.status_code, unknown.content) == (404, b"")


async def test_head_on_a_route_without_get_is_405(
    client: httpx.AsyncClient, caller: Caller
) -> None:
    response = await client.head("/api/v1/keys/7", headers=caller.headers)
    assert response.status_code == 405
    assert response.headers["allow"] == "PATCH, DELETE"
    assert response.content == b""


@pytest.mark.e2e
def test_head_over_http_polls_a_task_and_sizes_its_file(
    live_gateway: GatewayProcess,
) -> None:
    """Through uvicorn on one keep-alive connection, as a client checking before downloading."""
    with httpx.Client(base_url=live_gateway.base_url, headers=live_gateway.headers) as http:
        created = http.post(
            "/api/v1/videos/generate",
            json={"model": "sample", "prompt": "a kite", "duration": "1", "resolution": "240p"},
        )
        task_id = assert_success(created)["task_id"]
        poll = http.head(f"/api/v1/videos/{task_id}")
        assert (poll.status_code, poll.content) == (200, b"")
        task = wait_for_task(live_gateway, task_id)
        assert task["status"] == "completed", task
        video = http.get(task["video_url"])
        head = http.head(task["video_url"])
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == "video/mp4"
        assert head.headers["content-length"] == str(len(video.content))
        assert head.headers["accept-ranges"] == "bytes"
        ranged = http.head(task["video_url"], headers={"Range": "bytes=0-99"})
        assert (ranged.status_code, ranged.headers["content-length"]) == (206, "100")
        # The connection is still in step: the next request gets its own answer.
        assert assert_success(http.get("/healthz")) == {"status": "ok"}


MISSING_BODIES = [
    pytest.param({}, "", id="no-body"),
    pytest.param({"content": b"", "headers": {"Content-Type": "application/json"}}, "", id="empty"),
    pytest.param({"content": b"null"}, "not null; ", id="null"),
    pytest.param({"content": b"[]"}, "not an array; ", id="array"),
    pytest.param({"content": b'"title"'}, "not a string; ", id="string"),
    pytest.param({"content": b"42"}, "not a number; ", id="number"),
]


@pytest.mark.parametrize(("request_args", "prefix"), MISSING_BODIES)
@pytest.mark.parametrize(
    ("path", "field"), [("/api/v1/keys", "title"), ("/api/v1/videos/generate", "model")]
)
async def test_missing_or_non_object_body_names_the_required_field(
    client: httpx.AsyncClient,
    caller: Caller,
    path: str,
    field: str,
    request_args: dict,
    prefix: str,
) -> None:
    headers = {**caller.headers, **request_args.get("headers", {})}
    if "content" in request_args:
        headers.setdefault("Content-Type", "application/json")
    response = await client.post(path, content=request_args.get("content"), headers=headers)
    message = assert_error(response, 400, "invalid_request")
    if prefix:
        assert message.startswith(f"the request body must be a JSON object, {prefix}"), message
    assert f"{field}: field required" in message


async def test_allowed_hosts(gateway: Gateway) -> None:
    gateway.settings.allowed_hosts = ["api.example.test"]
    transport = httpx.ASGITransport(app=create_app(gateway=gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.test") as http:
        message = assert_error(await http.get("/healthz"), 403, "forbidden")
        assert message == "request made on a non-gateway host"
        good = await http.get("/healthz", headers={"Host": "api.example.test:8000"})
        assert_success(good)


async def test_unexpected_errors_are_500_without_details(gateway: Gateway) -> None:
    app = create_app(gateway=gateway)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/boom")
    message = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text
    assert message == "Internal server error"


ADMIN_ROUTES = {
    ("/api/v1/admin/accounts", "get"),
    ("/api/v1/admin/accounts", "post"),
    ("/api/v1/admin/accounts/{account_id}", "get"),
    ("/api/v1/admin/accounts/{account_id}/approve", "post"),
    ("/api/v1/admin/accounts/{account_id}/suspend", "post"),
    ("/api/v1/admin/accounts/{account_id}/credits/grant", "post"),
    ("/api/v1/admin/accounts/{account_id}/credits/adjust", "post"),
    ("/api/v1/admin/accounts/{account_id}/keys", "get"),
    ("/api/v1/admin/accounts/{account_id}/keys", "post"),
    ("/api/v1/admin/accounts/{account_id}/keys/{key_id}", "delete"),
    ("/api/v1/admin/tasks", "get"),
    ("/api/v1/admin/audit", "get"),
}


async def test_openapi_lists_every_endpoint_with_errors(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    with_key = {
        ("/api/v1/account/balances", "get"),
        ("/api/v1/keys", "post"),
        ("/api/v1/keys", "get"),
        ("/api/v1/keys/{key_id}", "patch"),
        ("/api/v1/keys/{key_id}", "delete"),
        ("/api/v1/videos/generate", "post"),
        ("/api/v1/videos/history", "get"),
        ("/api/v1/videos/{task_id}", "get"),
        ("/api/v1/videos/{task_id}/cancel", "post"),
        ("/api/v1/videos/{task_id}/events", "get"),
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks", "get"),
        ("/api/v1/webhooks/{webhook_id}", "delete"),
        ("/api/v1/webhooks/{webhook_id}/deliveries", "get"),
        ("/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "post"),
        ("/api/v1/account/webhook-secret", "get"),
        ("/api/v1/account/usage", "get"),
        ("/api/v1/account/ledger", "get"),
        ("/v1/videos", "post"),
        ("/v1/videos", "get"),
        ("/v1/videos/{video_id}", "get"),
        ("/v1/videos/{video_id}", "delete"),
        ("/v1/videos/{video_id}/content", "get"),
        ("/v1/videos/{video_id}/remix", "post"),
        *ADMIN_ROUTES,
    }
    without_key = {("/readyz", "get"), ("/api/v1/models", "get"), ("/files/{key}", "get")}
    listed = {(path, method) for path, item in paths.items() for method in item}
    assert with_key | without_key | {("/healthz", "get")} == listed
    for path, method in with_key | without_key:
        codes = set(paths[path][method]["responses"])
        assert {"400", "404", "500", "503"} <= codes, (path, method)
        assert "422" not in codes, (path, method)  # validation errors are 400s here
        # 403: a key of an account pending approval or suspended
        assert ({"401", "403", "429"} <= codes) == ((path, method) in with_key), (path, method)
    for path, method in ADMIN_ROUTES:  # an admin key's, 403 for any other
        assert "403" in paths[path][method]["responses"], (path, method)
    generate = set(paths["/api/v1/videos/generate"]["post"]["responses"])
    assert {"402", "409", "413", "415", "503"} <= generate
    assert (
        "spend budget"
        in paths["/api/v1/videos/generate"]["post"]["responses"]["402"]["description"]
    )
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "403" in paths["/files/{key}"]["get"]["responses"]
    schema = paths["/api/v1/keys"]["post"]["responses"]["401"]["content"]["application/json"]
    assert schema["schema"]["$ref"].endswith("/ErrorEnvelope")
    assert "HTTPValidationError" not in document["components"]["schemas"]


def _readings(schema: dict) -> list[Callable[[str], bool]]:
    """The schema's string rules as schemathesis's validator (jsonschema-rs) and its generator
    (Python `re` with re.ASCII) read them: both must agree with the server."""
    pattern = re.compile(schema["pattern"], re.ASCII)
    longest = schema.get("maxLength", sys.maxsize)
    return [
        jsonschema_rs.validator_for({"type": "string", **schema}).is_valid,
        lambda value: bool(pattern.search(value)) and len(value) <= longest,
    ]


async def test_openapi_states_the_text_rules_the_services_check(
    client: httpx.AsyncClient,
) -> None:
    """So that a schema-valid Idempotency-Key or key title is one the server takes."""
    document = (await client.get("/openapi.json")).json()
    parameters = document["paths"]["/api/v1/videos/generate"]["post"]["parameters"]
    (header,) = [item["schema"] for item in parameters if item["name"] == "Idempotency-Key"]
    header = {key: value for key, value in header.items() if key in ("pattern", "maxLength")}

    def key_taken(value: str) -> bool:
        try:
            idempotency.check_key(value)
        except errors.InvalidRequest:
            return False
        return True

    # Header values are latin-1: every character alone, inside and around a key, and the bounds.
    values = [""] + ["k" * n for n in (1, 2, 254, 255, 256)]
    values += [" k" + " " * 300, "\x1c" + "k" * 255 + "\xa0", "k" + " " * 253 + "k", "k" * 256]
    for code in range(256):
        char = chr(code)
        values += [char, char * 2, f"k{char}", f"{char}k", f"k{char}k"]
    for reading in _readings(header):
        assert [value for value in values if reading(value) != key_taken(value)] == []

    title = document["components"]["schemas"]["CreateKeyRequest"]["properties"]["title"]
    title = {key: value for key, value in title.items() if key in ("pattern", "maxLength")}
    # The whole of Unicode bar surrogates (JSON text cannot carry them alone): blank or not.
    chars = [chr(code) for code in range(0x110000) if not 0xD800 <= code <= 0xDFFF]
    for reading in _readings(title):
        assert [char for char in chars if reading(char) != bool(char.strip())] == []
        assert reading("x" * 200)
        assert not reading(" " * 200)


async def test_a_forged_file_link_is_403_whatever_its_characters(client: httpx.AsyncClient) -> None:
    """Found by schemathesis: a non-ASCII signature must be refused like any wrong one."""
    for signature in ("0" * 32, "é" * 32):
        response = await client.get(
            "/files/vid_x.mp4", params={"expires": 4_000_000_000, "signature": signature}
        )
        assert "invalid or has expired" in assert_error(response, 403, "forbidden")
