"""The admin API over real HTTP: a `vidgate serve` process, an admin key made by the CLI as an
operator makes it, and a reseller's account run from pending to suspended through the API."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from support import GatewayProcess

pytestmark = pytest.mark.e2e

ADMIN = "/api/v1/admin"
# Out of the way of a test that makes many requests in a row.
SETTINGS = {"VIDGATE_RATE_LIMIT_PER_SECOND": "1000", "VIDGATE_RATE_LIMIT_BURST": "1000"}


def cli(server: GatewayProcess, *args: str) -> str:
    """`vidgate ...` against the server's database; the last line of its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "vidgate", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@dataclass
class Deployment:
    server: GatewayProcess
    admin_key: str
    admin_key_id: int
    user_key: str
    user_account: int

    def call(
        self, method: str, path: str, *, key: str | None = None, body: Any = None
    ) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.server.base_url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {key or self.admin_key}"},
            timeout=10,
        )

    def ok(self, method: str, path: str, *, key: str | None = None, body: Any = None) -> Any:
        response = self.call(method, path, key=key, body=body)
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    server = GatewayProcess(
        tmp_path_factory.mktemp("admin-api") / "gateway", env=SETTINGS, serve_args=("--no-worker",)
    ).start()
    try:
        operators = cli(server, "accounts", "create", "--title", "operators")
        admin_key = cli(
            server, "keys", "create", "--account", operators, "--title", "ops", "--admin"
        )
        assert server.api_key is not None
        deployment = Deployment(server, admin_key, 0, server.api_key, 0)
        (admin_info,) = deployment.ok("GET", f"{ADMIN}/accounts/{operators}/keys")
        deployment.admin_key_id = admin_info["id"]
        assert admin_info["role"] == "admin"
        (user,) = [
            a
            for a in deployment.ok("GET", f"{ADMIN}/accounts")["items"]
            if a["id"] != int(operators)
        ]
        deployment.user_account = user["id"]
        yield deployment
    finally:
        server.stop()


def admin_routes(server: GatewayProcess) -> list[tuple[str, str]]:
    """Every operation under /api/v1/admin that the server's OpenAPI document lists."""
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith(f"{ADMIN}/")
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def test_every_admin_route_refuses_a_user_key_and_an_unknown_key(deployment: Deployment) -> None:
    routes = admin_routes(deployment.server)
    assert len(routes) == 12, routes  # a new admin route is counted here on purpose
    audit_before = deployment.ok("GET", f"{ADMIN}/audit")["total"]
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "1", template)
        body = {} if method == "POST" else None
        refused = deployment.call(method, path, key=deployment.user_key, body=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.json()["error"] == {
            "code": "forbidden",
            "message": "this route needs an admin key (vidgate keys create --admin)",
        }
        unknown = deployment.call(method, path, key="sk-" + "0" * 48, body=body)
        assert unknown.status_code == 401, (method, path, unknown.text)
        assert unknown.json()["error"]["code"] == "unauthorized"
    assert deployment.ok("GET", f"{ADMIN}/audit")["total"] == audit_before


def test_an_admin_runs_an_account_from_pending_to_suspended(deployment: Deployment) -> None:
    d = deployment
    account = d.ok(
        "POST", f"{ADMIN}/accounts", body={"title": "reseller", "credits": 10, "pending": True}
    )
    account_id = account["id"]
    assert {k: account[k] for k in ("title", "status", "credits", "keys")} == {
        "title": "reseller",
        "status": "pending",
        "credits": 10,
        "keys": 0,
    }
    controls = {"budget": 3, "budget_period": "day", "models": ["sample"]}
    key = d.ok("POST", f"{ADMIN}/accounts/{account_id}/keys", body={"title": "shop", **controls})
    assert (key["account_id"], key["role"], key["status"]) == (account_id, "user", "created")
    assert (key["budget"], key["budget_period"], key["models"]) == (3, "day", ["sample"])
    balances = f"{d.server.base_url}/api/v1/account/balances"

    def key_answer() -> httpx.Response:
        return httpx.get(
            balances, headers={"Authorization": f"Bearer {key['api_key']}"}, timeout=10
        )

    assert key_answer().json()["error"] == {
        "code": "forbidden",
        "message": "API access not approved",
    }

    assert d.ok("POST", f"{ADMIN}/accounts/{account_id}/approve")["status"] == "active"
    assert key_answer().json()["data"]["credits"] == 10  # let in at once

    grant = d.ok(
        "POST",
        f"{ADMIN}/accounts/{account_id}/credits/grant",
        body={"amount": 25, "reason": "top-up"},
    )
    assert grant == {"account_id": account_id, "amount": 25, "balance": 35}
    no_reason = d.call("POST", f"{ADMIN}/accounts/{account_id}/credits/adjust", body={"amount": -5})
    assert no_reason.status_code == 400
    assert no_reason.json()["error"] == {
        "code": "invalid_request",
        "message": "reason: field required",
    }
    blank = d.call(
        "POST", f"{ADMIN}/accounts/{account_id}/credits/adjust", body={"amount": -5, "reason": " "}
    )
    assert blank.status_code == 400
    assert "reason" in blank.json()["error"]["message"]
    too_much = d.call(
        "POST",
        f"{ADMIN}/accounts/{account_id}/credits/adjust",
        body={"amount": -1000, "reason": "x"},
    )
    assert too_much.status_code == 402
    adjusted = d.ok(
        "POST",
        f"{ADMIN}/accounts/{account_id}/credits/adjust",
        body={"amount": -5, "reason": "correction"},
    )
    assert adjusted["balance"] == 30

    suspended = d.ok("POST", f"{ADMIN}/accounts/{account_id}/suspend", body={"reason": "unpaid"})
    assert (suspended["status"], suspended["credits"], suspended["keys"]) == ("suspended", 30, 1)
    assert key_answer().json()["error"] == {"code": "forbidden", "message": "account suspended"}
    (listed,) = d.ok("GET", f"{ADMIN}/accounts/{account_id}/keys")
    assert (listed["id"], listed["budget"], listed["budget_spent"]) == (key["id"], 3, 0)

    revoked = d.ok("DELETE", f"{ADMIN}/accounts/{account_id}/keys/{key['id']}")
    assert revoked == {"id": key["id"], "status": "revoked"}
    d.ok("POST", f"{ADMIN}/accounts/{account_id}/approve", body={"reason": "paid"})
    assert key_answer().status_code == 401
    shown = d.ok("GET", f"{ADMIN}/accounts/{account_id}")
    assert (shown["status"], shown["credits"], shown["keys"]) == ("active", 30, 0)

    # One row per action, newest first; the refused adjustments left none.
    log = d.ok("GET", f"{ADMIN}/audit?account_id={account_id}&limit=100")
    rows = [(e["action"], e["before"], e["after"], e["reason"]) for e in reversed(log["items"])]

    def state(status: str, credits: int) -> dict[str, Any]:
        return {"title": "reseller", "status": status, "credits": credits}

    key_state = {
        "title": "shop",
        "status": "created",
        "role": "user",
        "expires_at": None,
        "allowed_models": ["sample"],
        "budget_credits": 3,
        "budget_period": "day",
    }
    assert rows == [
        ("account.create", None, state("pending", 10), None),
        ("key.create", None, key_state, None),
        ("account.approve", state("pending", 10), state("active", 10), None),
        ("credits.grant", {"credits": 10}, {"credits": 35}, "top-up"),
        ("credits.adjust", {"credits": 35}, {"credits": 30}, "correction"),
        ("account.suspend", state("active", 30), state("suspended", 30), "unpaid"),
        ("key.revoke", {**key_state, "status": "active"}, {**key_state, "status": "revoked"}, None),
        ("account.approve", state("suspended", 30), state("active", 30), "paid"),
    ]
    assert log["total"] == len(rows)
    assert {e["actor"] for e in log["items"]} == {f"key:{d.admin_key_id}"}
    assert {e["actor_key_id"] for e in log["items"]} == {d.admin_key_id}
    assert key["api_key"] not in str(log)


def test_pending_is_the_settings_default_and_unknown_accounts_are_404(
    deployment: Deployment,
) -> None:
    d = deployment
    active = d.ok("POST", f"{ADMIN}/accounts", body={"title": "walk-in"})
    assert active["status"] == "active"  # VIDGATE_NEW_ACCOUNTS_PENDING is off here
    pending = {a["id"] for a in d.ok("GET", f"{ADMIN}/accounts?status=pending&limit=100")["items"]}
    assert active["id"] not in pending
    for method, path in (
        ("GET", f"{ADMIN}/accounts/999999"),
        ("POST", f"{ADMIN}/accounts/999999/approve"),
        ("POST", f"{ADMIN}/accounts/999999/keys"),
        ("GET", f"{ADMIN}/accounts/999999/keys"),
    ):
        missing = d.call(method, path, body={"title": "x"} if method == "POST" else None)
        assert missing.status_code == 404, (method, path, missing.text)
        assert missing.json()["error"] == {
            "code": "not_found",
            "message": "account 999999 not found",
        }
    ops = d.ok(
        "POST", f"{ADMIN}/accounts/{active['id']}/keys", body={"title": "a", "role": "admin"}
    )
    assert (ops["account_id"], ops["role"]) == (active["id"], "admin")
    other_account = d.call("DELETE", f"{ADMIN}/accounts/{active['id']}/keys/{d.admin_key_id}")
    assert other_account.status_code == 404  # the key is not of that account


def test_an_admin_sees_every_accounts_tasks(deployment: Deployment) -> None:
    d = deployment
    created = d.ok(
        "POST",
        "/api/v1/videos/generate",
        key=d.user_key,
        body={"model": "sample", "prompt": "a red ball rolling", "duration": "1"},
    )
    task_id = created["task_id"]

    mine = d.ok("GET", "/api/v1/videos/history", key=d.admin_key)
    assert task_id not in {t["task_id"] for t in mine["items"]}  # the admin's own account
    listed = d.ok("GET", f"{ADMIN}/tasks?account_id={d.user_account}")
    (item,) = [t for t in listed["items"] if t["task_id"] == task_id]
    assert (item["account_id"], item["model"], item["status"], item["credits_used"]) == (
        d.user_account,
        "sample",
        "pending",  # no worker in this server
        created["credits_used"],
    )
    everyone = d.ok("GET", f"{ADMIN}/tasks?status=pending&model=sample&limit=50")
    assert task_id in {t["task_id"] for t in everyone["items"]}
    for other in ("model=sora2", "status=completed", f"account_id={d.user_account + 10_000}"):
        page = d.ok("GET", f"{ADMIN}/tasks?{other}")
        assert task_id not in {t["task_id"] for t in page["items"]}, other
    paged = d.ok("GET", f"{ADMIN}/tasks?account_id={d.user_account}&page=2&limit=1")
    assert (paged["page"], paged["limit"], paged["total"]) == (2, 1, listed["total"])
