"""Behind a load balancer: `serve` takes the client address from X-Forwarded-For only when the
connection comes from a proxy in VIDGATE_FORWARDED_ALLOW_IPS, so failed authentications are
limited per client, not per load balancer (bursts of 20, then 2/s)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import GatewayProcess

# The "load balancer" connects from 127.0.0.2: a loopback address, but not one trusted by default.
PROXY_ADDRESS = "127.0.0.2"
BAD_KEY = {"Authorization": "Bearer sk-" + "0" * 48}


def serve(tmp_path: Path, **env: str) -> Iterator[GatewayProcess]:
    # A prefix of its own: under the scale pass the buckets live in the shared Redis.
    prefix = {"VIDGATE_REDIS_PREFIX": f"test-forwarded-{secrets.token_hex(4)}:"}
    server = GatewayProcess(tmp_path / "gw", env={**prefix, **env}).start()
    try:
        yield server
    finally:
        server.stop()


def failed_authentications(server: GatewayProcess, clients: list[str], rounds: int) -> list[int]:
    """Statuses of `rounds` bad-key requests from each client in turn, through the proxy."""
    transport = httpx.HTTPTransport(local_address=PROXY_ADDRESS)
    with httpx.Client(base_url=server.base_url, transport=transport, timeout=10) as proxy:
        return [
            proxy.get(
                "/api/v1/account/balances", headers={**BAD_KEY, "X-Forwarded-For": client}
            ).status_code
            for _ in range(rounds)
            for client in clients
        ]


def two_clients() -> list[str]:
    return [f"203.0.113.{secrets.randbelow(250) + 1}", client_v6()]


def client_v6() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@pytest.fixture
def trusting_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    yield from serve(tmp_path, VIDGATE_FORWARDED_ALLOW_IPS=f"127.0.0.1,{PROXY_ADDRESS}/32")


@pytest.fixture
def default_gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    yield from serve(tmp_path)


def test_a_trusted_proxys_clients_each_have_their_own_failure_budget(
    trusting_gateway: GatewayProcess,
) -> None:
    # 20 failures each: within each client's own burst, whatever the timing.
    assert failed_authentications(trusting_gateway, two_clients(), rounds=20) == [401] * 40
    # One client's flood is still stopped, while the other is let through.
    flooder, other = client_v6(), client_v6()
    statuses = failed_authentications(trusting_gateway, [flooder], rounds=40)
    assert 429 in statuses
    assert failed_authentications(trusting_gateway, [other], rounds=1) == [401]


def test_an_untrusted_proxy_is_one_client_whatever_it_forwards(
    default_gateway: GatewayProcess,
) -> None:
    # Its X-Forwarded-For is ignored: 40 failures from "two clients" share one burst of 20.
    statuses = failed_authentications(default_gateway, two_clients(), rounds=20)
    assert statuses[:20] == [401] * 20
    assert 429 in statuses[20:]


def test_a_proxy_setting_that_is_not_an_address_stops_serve(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vidgate", "serve", "--data-dir", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin", "VIDGATE_FORWARDED_ALLOW_IPS": "10.0.0.1,lb.internal"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "VIDGATE_FORWARDED_ALLOW_IPS" in result.stderr
    assert "'lb.internal' is not an IP address or network" in result.stderr
