"""The external policy against a real OpenAI-compatible endpoint on loopback, called through the
openai SDK: flagged prompts are 451s, chosen categories narrow that, and an endpoint that cannot
answer is a 503 with Retry-After (on_error = block) or lets the prompt through (allow), its key
never in a message or a log line."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from moderation.fake_endpoint import FakeModerationEndpoint, moderation_endpoint
from support import free_port
from vidgate.errors import ContentBlocked, UpstreamUnavailable
from vidgate.moderation.external import BLOCKED_BY_SERVICE, ExternalPolicy
from vidgate.moderation.policy import ExternalConfig

SECRET = "sk-external-secret-abcdef123456"


@pytest.fixture
def endpoint() -> Iterator[FakeModerationEndpoint]:
    with moderation_endpoint() as running:
        yield running


def config_for(base_url: str, **changes: object) -> ExternalConfig:
    config = ExternalConfig(base_url=base_url, api_key=SECRET, timeout_s=2.0, max_retries=0)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def policy(endpoint: FakeModerationEndpoint) -> AsyncIterator[ExternalPolicy]:
    external = ExternalPolicy(config_for(endpoint.base_url))
    yield external
    await external.close()


async def test_a_flagged_prompt_is_a_451_naming_the_categories(
    policy: ExternalPolicy, endpoint: FakeModerationEndpoint
) -> None:
    with pytest.raises(ContentBlocked) as caught:
        await policy.check(model="sora2", prompt="a duel flag:violence flag:violence/graphic")
    error = caught.value
    assert error.status_code == 451
    assert error.message == f"{BLOCKED_BY_SERVICE} (flagged: violence, violence/graphic)"
    assert error.headers == {"Cache-Control": "no-store"}
    [seen] = endpoint.requests
    assert seen.authorization == f"Bearer {SECRET}"
    assert seen.body == {
        "input": "a duel flag:violence flag:violence/graphic",
        "model": "omni-moderation-latest",
    }


async def test_an_unflagged_prompt_passes(
    policy: ExternalPolicy, endpoint: FakeModerationEndpoint
) -> None:
    await policy.check(model="sora2", prompt="a quiet lake at dawn")
    assert len(endpoint.requests) == 1


async def test_an_empty_prompt_is_not_sent(
    policy: ExternalPolicy, endpoint: FakeModerationEndpoint
) -> None:
    await policy.check(model="sora2", prompt="   ")
    assert endpoint.requests == []


async def test_the_configured_model_is_asked_for(endpoint: FakeModerationEndpoint) -> None:
    external = ExternalPolicy(config_for(endpoint.base_url, model="text-moderation-stable"))
    try:
        await external.check(model="sora2", prompt="hello")
    finally:
        await external.close()
    assert endpoint.requests[0].body["model"] == "text-moderation-stable"


async def test_categories_block_only_when_one_of_them_is_flagged(
    endpoint: FakeModerationEndpoint,
) -> None:
    external = ExternalPolicy(
        config_for(endpoint.base_url, categories=("sexual/minors", "self-harm/instructions"))
    )
    try:
        await external.check(model="sora2", prompt="a duel flag:violence")  # flagged, not listed
        with pytest.raises(ContentBlocked) as caught:
            await external.check(model="sora2", prompt="flag:violence flag:sexual/minors")
        assert caught.value.message == f"{BLOCKED_BY_SERVICE} (flagged: sexual/minors)"
        # A category only a compatible endpoint knows (not in OpenAI's model) is read too.
        custom = ExternalPolicy(config_for(endpoint.base_url, categories=("custom-brand",)))
        with pytest.raises(ContentBlocked):
            await custom.check(model="sora2", prompt="flag:custom-brand")
        await custom.close()
    finally:
        await external.close()


async def test_an_endpoint_that_is_down_refuses_with_503_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    external = ExternalPolicy(config_for(closed))
    caplog.set_level(logging.WARNING, logger="vidgate.moderation")
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await external.check(model="sora2", prompt="a quiet lake")
    finally:
        await external.close()
    error = caught.value
    assert (error.status_code, error.code) == (503, "upstream_unavailable")
    assert error.headers == {"Retry-After": "5"}
    assert "not checked" in error.message
    [record] = caplog.records
    assert "cannot connect" in record.getMessage()
    assert "on_error = block" in record.getMessage()
    assert SECRET not in caplog.text


async def test_on_error_allow_lets_the_prompt_through_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    external = ExternalPolicy(config_for(closed, on_error="allow"))
    caplog.set_level(logging.WARNING, logger="vidgate.moderation")
    try:
        await external.check(model="sora2", prompt="a quiet lake")
    finally:
        await external.close()
    assert "goes on unchecked" in caplog.text


@pytest.mark.parametrize("status", [500, 429, 401])
async def test_an_error_status_is_not_a_verdict(
    endpoint: FakeModerationEndpoint, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    endpoint.mode, endpoint.status = "status", status
    external = ExternalPolicy(config_for(endpoint.base_url))
    caplog.set_level(logging.WARNING, logger="vidgate.moderation")
    try:
        with pytest.raises(UpstreamUnavailable) as caught:
            await external.check(model="sora2", prompt="flag:violence")
    finally:
        await external.close()
    assert f"HTTP {status}" in caplog.text
    # The endpoint quoted the key's tail back; neither the log nor the answer repeats it.
    assert SECRET[-6:] not in caplog.text
    assert SECRET[-6:] not in caught.value.message


async def test_retries_are_the_configured_number(endpoint: FakeModerationEndpoint) -> None:
    endpoint.mode = "status"
    external = ExternalPolicy(config_for(endpoint.base_url, max_retries=1))
    try:
        with pytest.raises(UpstreamUnavailable):
            await external.check(model="sora2", prompt="hello")
    finally:
        await external.close()
    assert len(endpoint.requests) == 2


async def test_a_slow_endpoint_times_out_into_a_503(endpoint: FakeModerationEndpoint) -> None:
    endpoint.mode = "slow"
    external = ExternalPolicy(config_for(endpoint.base_url, timeout_s=0.3))
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamUnavailable):
            await external.check(model="sora2", prompt="hello")
    finally:
        await external.close()
    assert time.monotonic() - started < 3


async def test_an_answer_without_a_verdict_is_not_a_verdict(
    endpoint: FakeModerationEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.mode = "garbage"
    external = ExternalPolicy(config_for(endpoint.base_url))
    caplog.set_level(logging.WARNING, logger="vidgate.moderation")
    try:
        with pytest.raises(UpstreamUnavailable):
            await external.check(model="sora2", prompt="flag:violence")
    finally:
        await external.close()
    assert "has no results" in caplog.text
