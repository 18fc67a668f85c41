"""The sender goes through the safe fetcher's checks (DNS and HTTP at the Network edge, faked
here; a real loopback server for redirects), and the schedule's arithmetic."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx

from net.fakes import NO_NETWORK, PUBLIC_IP, FakeNetwork, redirect
from vidgate.net.fetch import Network
from vidgate.webhooks import schedule
from vidgate.webhooks.sender import WebhookSender
from vidgate.webhooks.signing import is_valid_secret, new_secret, signed_headers
from webhooks.builders import LOOPBACK
from webhooks.receiver import running_receiver

BODY = b'{"type":"job.completed"}'
HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,x"}


async def test_a_post_goes_to_the_checked_address_with_the_name_kept() -> None:
    fake = FakeNetwork({"hooks.example.com": [PUBLIC_IP]}, lambda _r: httpx.Response(204))
    sender = WebhookSender(network=fake.network)
    result = await sender.send(
        "https://hooks.example.com/in?x=1", body=BODY, headers=HEADERS, https_only=True
    )
    assert (result.delivered, result.status_code) == (True, 204)
    [sent] = fake.seen
    assert sent.method == "POST"
    assert sent.url.host == PUBLIC_IP
    assert sent.url.raw_path == b"/in?x=1"
    assert sent.headers["host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["webhook-id"] == "msg_1"
    assert sent.content == BODY


async def test_a_name_that_resolves_inward_is_refused_unsent() -> None:
    fake = FakeNetwork({"hooks.example.com": ["10.1.2.3"]})
    result = await WebhookSender(network=fake.network).send(
        "https://hooks.example.com/", body=BODY, headers=HEADERS, https_only=True
    )
    assert result.status_code is None
    assert result.error == (
        "refused: hooks.example.com resolves to a non-public address; refusing to fetch it"
    )
    assert fake.seen == []


async def test_never_public_targets_are_refused_without_dns() -> None:
    sender = WebhookSender(network=NO_NETWORK)
    for url in ("http://169.254.169.254/", "https://user:pw@example.com/", "ftp://a.example/"):
        result = await sender.send(url, body=BODY, headers=HEADERS, https_only=False)
        assert result.error is not None
        assert result.error.startswith("refused: ")


async def test_plain_http_is_refused_outside_the_allowed_networks() -> None:
    fake = FakeNetwork({"hooks.example.com": [PUBLIC_IP]})
    sender = WebhookSender(network=fake.network, allowed_networks=LOOPBACK)
    endpoint = await sender.send(
        "http://hooks.example.com/", body=BODY, headers=HEADERS, https_only=True
    )
    assert endpoint.error == "refused: plain http to hooks.example.com; use https"
    assert fake.seen == []
    # A callBackUrl was checked at create and may be http.
    callback = await sender.send(
        "http://hooks.example.com/", body=BODY, headers=HEADERS, https_only=False
    )
    assert callback.delivered


async def test_a_redirect_is_a_failed_try_and_not_followed() -> None:
    fake = FakeNetwork(
        {"hooks.example.com": [PUBLIC_IP]}, lambda _r: redirect("https://other.example.com/")
    )
    result = await WebhookSender(network=fake.network).send(
        "https://hooks.example.com/", body=BODY, headers=HEADERS, https_only=True
    )
    assert (result.status_code, result.error) == (302, "HTTP 302 (redirects are not followed)")
    assert len(fake.seen) == 1


async def test_a_slow_receiver_is_cut_off_at_the_time_limit() -> None:
    async def slow(_request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    fake = FakeNetwork({"hooks.example.com": [PUBLIC_IP]})
    network = Network(resolve=fake.resolve, transport=lambda: httpx.MockTransport(slow))
    result = await WebhookSender(network=network, timeout_s=0.2).send(
        "https://hooks.example.com/", body=BODY, headers=HEADERS, https_only=True
    )
    assert (result.status_code, result.error) == (None, "timed out after 0.2 s")


async def test_a_real_loopback_answer_is_judged_by_its_status() -> None:
    secret = new_secret()
    with running_receiver(secret=secret, answers=(500,)) as receiver:
        sender = WebhookSender(allowed_networks=LOOPBACK)
        headers = signed_headers(secret, message_id="msg_2", payload=BODY.decode())
        first = await sender.send(receiver.url, body=BODY, headers=headers, https_only=True)
        second = await sender.send(receiver.url, body=BODY, headers=headers, https_only=True)
        receiver.wait_for(2)
    assert (first.status_code, first.error) == (500, "HTTP 500")
    assert second.delivered
    assert receiver.unverified == []


def test_generated_secrets_are_valid_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert is_valid_secret(secret)
    assert is_valid_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")  # 24 bytes, no padding
    for bad in ("whsec_short", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "A" * 33, ""):
        assert not is_valid_secret(bad)


def test_the_timestamp_is_whole_seconds_and_signed_as_such() -> None:
    at = datetime(2026, 3, 12, 9, 35, 0, 987_000, tzinfo=UTC)
    headers = signed_headers(new_secret(), message_id="msg_3", payload="{}", at=at)
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")


def test_each_delay_is_jittered_within_ten_percent() -> None:
    rng = random.Random(7)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    delays = (0, 5, 300)
    for _ in range(200):
        assert schedule.first_attempt_at(now, delays, rng) == now  # 0 stays 0
        after_one = schedule.next_attempt_at(now, attempts=1, delays=delays, rng=rng)
        after_two = schedule.next_attempt_at(now, attempts=2, delays=delays, rng=rng)
        assert after_one is not None
        assert after_two is not None
        assert timedelta(seconds=4.5) <= after_one - now <= timedelta(seconds=5.5)
        assert timedelta(seconds=270) <= after_two - now <= timedelta(seconds=330)
    assert schedule.next_attempt_at(now, attempts=3, delays=delays, rng=rng) is None
