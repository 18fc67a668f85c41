"""The `openai` provider against a real /v1/videos server on loopback: jobs that complete, fail
or are blocked, image uploads, the size/seconds table, and what every upstream failure means."""

from __future__ import annotations

import dataclasses
import email.utils
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from openai_videos_server import Answer, FakeVideosUpstream, dropping_server
from support import decode_mp4, free_port
from vidgate.providers.base import (
    ChannelFault,
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    ProviderError,
    SubmitUncertain,
    TechnicalError,
)
from vidgate.providers.config import ProviderConfig
from vidgate.providers.http_hints import retry_after_s
from vidgate.providers.openai_videos import (
    PROTOCOL_SIZE_LIST,
    OpenAIVideosProvider,
    pick_seconds,
    pick_size,
)

# The SDK marks the video methods deprecated (OpenAI's own Sora API closes); the protocol lives on.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

KEY = "sk-upstream-secret-4f1c9a07"


def config(base_url: str, **changes: object) -> ProviderConfig:
    settings: dict[str, object] = {
        "name": "oai-test",
        "kind": "openai",
        "base_url": base_url,
        "api_key": KEY,
        "connect_timeout_s": 2.0,
        "request_timeout_s": 5.0,
        "poll_interval_s": 2.5,
        "max_poll_interval_s": 20.0,
        "max_concurrent": 3,
        **changes,
    }
    return ProviderConfig(**settings)  # type: ignore[arg-type]


def request(prompt: str = "a lighthouse at dusk", **changes: object) -> GenerationRequest:
    base = GenerationRequest(
        task_id="vid_01TEST",
        model="sora2",
        upstream_model="sora-2",
        type="text-to-video",
        prompt=prompt,
        options={},
        seconds=10,
        width=1280,
        height=720,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def upstream() -> Iterator[FakeVideosUpstream]:
    with FakeVideosUpstream(api_key=KEY) as server:
        yield server


@pytest.fixture
async def provider(
    upstream: FakeVideosUpstream, tmp_path: Path
) -> AsyncIterator[OpenAIVideosProvider]:
    built = OpenAIVideosProvider.from_config(config(upstream.base_url), work_dir=tmp_path / "work")
    yield built
    await built.close()


async def open_provider(base_url: str, tmp_path: Path, **changes: object) -> OpenAIVideosProvider:
    return OpenAIVideosProvider.from_config(config(base_url, **changes), work_dir=tmp_path)


async def poll_to_end(provider: OpenAIVideosProvider, upstream_id: str) -> list[JobStatus]:
    seen = []
    for _ in range(10):
        status = await provider.poll(upstream_id)
        seen.append(status)
        if status.state != JobState.RUNNING:
            return seen
    raise AssertionError(f"job {upstream_id} still running: {seen}")


# -- jobs ------------------------------------------------------------------------------------


async def test_text_to_video_completes_with_a_decodable_file(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream
) -> None:
    submission = await provider.submit(request())
    seen = await poll_to_end(provider, submission.upstream_id)

    assert [(s.state, s.progress) for s in seen] == [
        (JobState.RUNNING, 0),
        (JobState.RUNNING, 50),
        (JobState.SUCCEEDED, 100),
    ]
    result = seen[-1].result_file
    assert result is not None
    assert result.parent == provider.work_dir
    assert not [p for p in provider.work_dir.iterdir() if p.suffix == ".part"]
    video = decode_mp4(result)
    assert video["width"] > 0
    assert video["frames"]
    assert seen[-1].upstream_credits is None  # the protocol has no credits figure
    sent = upstream.creates[0]
    assert sent.headers["idempotency-key"] == "vid_01TEST"
    assert sent.fields == {
        "prompt": "a lighthouse at dusk",
        "model": "sora-2",
        "size": "1280x720",
        "seconds": "12",
    }
    assert sent.reference is None


async def test_the_public_model_is_sent_when_the_channel_names_no_upstream_model(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream
) -> None:
    await provider.submit(request(upstream_model=None))
    assert upstream.creates[0].fields["model"] == "sora2"


async def test_a_retried_submit_carries_the_same_key_and_gets_the_same_job(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream
) -> None:
    first = await provider.submit(request())
    again = await provider.submit(request())
    assert first.upstream_id == again.upstream_id
    assert {c.headers["idempotency-key"] for c in upstream.creates} == {"vid_01TEST"}


async def test_a_failed_job_passes_the_upstream_message_on(
    provider: OpenAIVideosProvider,
) -> None:
    submission = await provider.submit(request("a cat [fail: the render farm is on fire]"))
    end = (await poll_to_end(provider, submission.upstream_id))[-1]
    assert end.state == JobState.FAILED
    assert end.error == "the render farm is on fire"
    assert end.error_code is None


async def test_a_job_blocked_by_upstream_moderation_is_content_blocked(
    provider: OpenAIVideosProvider,
) -> None:
    submission = await provider.submit(request("a cat [blocked]"))
    end = (await poll_to_end(provider, submission.upstream_id))[-1]
    assert end.state == JobState.FAILED
    assert end.error_code == "content_blocked"
    assert end.error == "the prompt was blocked by moderation"


async def test_image_to_video_uploads_the_first_image_as_input_reference(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream, tmp_path: Path
) -> None:
    image = tmp_path / "fetched-input.part"  # fetched inputs carry no telling suffix
    Image.new("RGB", (32, 18), (200, 40, 40)).save(image, format="PNG")

    await provider.submit(request(type="image-to-video", images=(image,)))

    sent = upstream.creates[0]
    assert sent.reference == image.read_bytes()
    assert sent.reference_type == "image/png"


@pytest.mark.parametrize(
    ("marker", "words"), [("[cut]", "broke off"), ("[not-video]", "not a video")]
)
async def test_a_broken_download_is_retried_and_leaves_no_file(
    provider: OpenAIVideosProvider, marker: str, words: str
) -> None:
    submission = await provider.submit(request(f"a cat {marker}"))
    with pytest.raises(TechnicalError, match=words) as raised:
        await poll_to_end(provider, submission.upstream_id)
    assert type(raised.value) is TechnicalError
    assert list(provider.work_dir.iterdir()) == []


def test_the_fake_upstream_takes_json_creates_too(upstream: FakeVideosUpstream) -> None:
    created = httpx.post(
        f"{upstream.base_url}/videos",
        json={"prompt": "a cat", "seconds": "8"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "queued"
    assert upstream.creates[0].as_json


async def test_cancel_deletes_the_upstream_video_and_never_raises(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream
) -> None:
    submission = await provider.submit(request())
    await provider.cancel(submission.upstream_id)
    assert submission.upstream_id not in upstream.videos
    await provider.cancel(submission.upstream_id)  # already gone: best effort, no error


def test_settings_come_from_the_config(tmp_path: Path) -> None:
    port = free_port()
    built = OpenAIVideosProvider.from_config(
        config(f"http://127.0.0.1:{port}/v1"), work_dir=tmp_path
    )
    assert built.name == "oai-test"
    assert built.runs_locally is False
    assert built.poll_interval_s == 2.5
    assert built.max_poll_interval_s == 20.0
    assert built.max_concurrent == 3
    assert built.trusted_hosts == frozenset({f"127.0.0.1:{port}"})
    assert KEY not in repr(config("http://127.0.0.1/v1"))


# -- the size and seconds table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "sent"),
    [
        (1280, 720, "1280x720"),
        (1920, 1080, "1792x1024"),
        (854, 480, "1280x720"),
        (720, 1280, "720x1280"),
        (1080, 1920, "1024x1792"),
        (480, 854, "720x1280"),
        (1024, 1024, "1280x720"),  # square: landscape, our choice
        (720, 720, "1280x720"),
    ],
)
def test_size_is_the_closest_allowed_of_the_same_orientation(
    width: int, height: int, sent: str
) -> None:
    assert str(pick_size(width, height, PROTOCOL_SIZE_LIST)) == sent


@pytest.mark.parametrize(
    ("seconds", "sent"), [(1, 4), (4, 4), (5, 8), (8, 8), (10, 12), (12, 12), (15, 12)]
)
def test_seconds_is_the_shortest_allowed_not_shorter(seconds: int, sent: int) -> None:
    assert pick_seconds(seconds, (4, 8, 12)) == sent


async def test_options_replace_the_allowed_lists(
    upstream: FakeVideosUpstream, tmp_path: Path
) -> None:
    options = {"sizes": ["1024x1024", "1280x720", "720x1280"], "seconds": [5, 10]}
    built = await open_provider(upstream.base_url, tmp_path, options=options)
    try:
        await built.submit(request(width=720, height=720, seconds=6))
    finally:
        await built.close()
    assert upstream.creates[0].fields["size"] == "1024x1024"
    assert upstream.creates[0].fields["seconds"] == "10"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"size": ["1280x720"]}, "options: unknown size"),
        ({"sizes": ["1280 by 720"]}, "options.sizes: a size is WIDTHxHEIGHT"),
        ({"sizes": []}, "options.sizes: expected a non-empty list"),
        ({"seconds": [0]}, "options.seconds: a length is"),
        ({"seconds": ["ten"]}, "options.seconds: a length is"),
    ],
)
def test_bad_options_are_refused_at_startup_naming_the_field(
    options: dict[str, object], field: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=f"^provider oai-test: {re.escape(field)}"):
        OpenAIVideosProvider.from_config(
            config("http://127.0.0.1/v1", options=options), work_dir=tmp_path
        )


# -- what an upstream failure means ------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (Answer(400, "size is not supported"), LogicalError, "provider_rejected"),
        (Answer(404, "model sora-9 not found"), LogicalError, "provider_rejected"),
        (Answer(422, "seconds must be 4, 8 or 12"), LogicalError, "provider_rejected"),
        (Answer(400, "your prompt was blocked", code="moderation_blocked"), LogicalError,
         "content_blocked"),
        (Answer(400, "not allowed", code="content_policy_violation"), LogicalError,
         "content_blocked"),
        (Answer(403, "forbidden"), ChannelFault, None),
        (Answer(402, "insufficient balance"), ChannelFault, None),
        (Answer(429, "slow down"), TechnicalError, None),
        (Answer(408, "request timeout"), TechnicalError, None),
        (Answer(503, "overloaded"), TechnicalError, None),
        (Answer(500, "oops"), SubmitUncertain, None),
        (Answer(502, "bad gateway"), SubmitUncertain, None),
        (Answer(504, "gateway timeout"), SubmitUncertain, None),
        (Answer(409, "a request with this key is in progress"), SubmitUncertain, None),
    ],
)  # fmt: skip
async def test_submit_failures_map_to_what_they_mean(
    provider: OpenAIVideosProvider,
    upstream: FakeVideosUpstream,
    answer: Answer,
    kind: type[ProviderError],
    code: str | None,
) -> None:
    upstream.answer = answer
    with pytest.raises(ProviderError) as raised:
        await provider.submit(request())
    assert type(raised.value) is kind
    if isinstance(raised.value, LogicalError):
        assert raised.value.code == code
        assert raised.value.message == answer.message  # the upstream's words reach the user
    assert raised.value.message.startswith("channel oai-test") or kind is LogicalError


async def test_a_submit_answered_without_a_video_id_is_uncertain(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream
) -> None:
    upstream.answer = Answer(200, "a 200 that is not a video object")
    with pytest.raises(SubmitUncertain, match="no video id"):
        await provider.submit(request())


async def test_a_poll_answered_with_something_else_is_retried(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream
) -> None:
    submission = await provider.submit(request())
    upstream.answer = Answer(200, "a 200 that is not a video object")
    with pytest.raises(TechnicalError, match="is no video") as raised:
        await provider.poll(submission.upstream_id)
    assert type(raised.value) is TechnicalError


async def test_refused_credentials_are_a_channel_fault(
    upstream: FakeVideosUpstream, tmp_path: Path
) -> None:
    built = await open_provider(upstream.base_url, tmp_path, api_key="sk-wrong-key-1234")
    try:
        with pytest.raises(ChannelFault) as raised:
            await built.submit(request())
    finally:
        await built.close()
    assert raised.value.message == (
        "channel oai-test: the upstream refused our credentials (HTTP 401)"
    )


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("0.5", 0.5), ("soon", None), ("-3", None)]
)
async def test_rate_limits_and_outages_carry_retry_after(
    provider: OpenAIVideosProvider, upstream: FakeVideosUpstream, header: str, expected: float
) -> None:
    upstream.answer = Answer(429, "slow down", retry_after=header)
    with pytest.raises(TechnicalError) as raised:
        await provider.submit(request())
    assert raised.value.retry_after_s == expected


def test_retry_after_takes_milliseconds_and_dates() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    parsed = retry_after_s({"retry-after": date})
    assert parsed is not None
    assert 25 <= parsed <= 31
    assert retry_after_s({}) is None


async def test_a_submit_that_times_out_is_uncertain(
    upstream: FakeVideosUpstream, tmp_path: Path
) -> None:
    upstream.delay_s = 1.0
    built = await open_provider(upstream.base_url, tmp_path, request_timeout_s=0.2)
    try:
        with pytest.raises(SubmitUncertain, match="timed out"):
            await built.submit(request())
    finally:
        await built.close()


async def test_a_submit_whose_connection_drops_is_uncertain(tmp_path: Path) -> None:
    with dropping_server() as base_url:
        built = await open_provider(base_url, tmp_path)
        try:
            with pytest.raises(SubmitUncertain, match="lost"):
                await built.submit(request())
        finally:
            await built.close()


async def test_a_submit_that_never_connects_may_fail_over(tmp_path: Path) -> None:
    built = await open_provider(f"http://127.0.0.1:{free_port()}/v1", tmp_path)
    try:
        with pytest.raises(TechnicalError) as raised:
            await built.submit(request())
    finally:
        await built.close()
    assert type(raised.value) is TechnicalError
    assert raised.value.message == "channel oai-test: could not connect to the upstream"


async def test_a_video_the_upstream_no_longer_knows_is_lost(
    provider: OpenAIVideosProvider,
) -> None:
    with pytest.raises(JobLost, match="video_missing"):
        await provider.poll("video_missing")


@pytest.mark.parametrize(
    ("answer", "kind"),
    [(Answer(500, "oops"), TechnicalError), (Answer(401, "who are you"), ChannelFault)],
)
async def test_poll_failures_are_retried_not_final(
    provider: OpenAIVideosProvider,
    upstream: FakeVideosUpstream,
    answer: Answer,
    kind: type[ProviderError],
) -> None:
    submission = await provider.submit(request())
    upstream.answer = answer
    with pytest.raises(ProviderError) as raised:
        await provider.poll(submission.upstream_id)
    assert type(raised.value) is kind


async def test_a_poll_that_times_out_is_a_plain_technical_error(
    upstream: FakeVideosUpstream, tmp_path: Path
) -> None:
    built = await open_provider(upstream.base_url, tmp_path, request_timeout_s=0.2)
    try:
        submission = await built.submit(request())
        upstream.delay_s = 1.0
        with pytest.raises(TechnicalError) as raised:
            await built.poll(submission.upstream_id)
    finally:
        await built.close()
    assert type(raised.value) is TechnicalError


async def test_the_api_key_never_reaches_a_message(
    upstream: FakeVideosUpstream, provider: OpenAIVideosProvider, tmp_path: Path
) -> None:
    messages = []
    upstream.answer = Answer(400, f"bad request from {KEY}, try again")
    with pytest.raises(LogicalError) as rejected:
        await provider.submit(request())
    messages.append(rejected.value.message)
    upstream.answer = Answer(503, f"key {KEY} is throttled")
    with pytest.raises(TechnicalError) as throttled:
        await provider.submit(request())
    messages.append(throttled.value.message)
    upstream.answer = None
    upstream.api_key = "sk-rotated"  # now our key is refused, and the upstream quotes it
    with pytest.raises(ChannelFault) as refused:
        await provider.submit(request())
    messages.append(str(refused.value))
    messages.append((await provider.check()).detail)

    assert "bad request from ***, try again" in messages
    assert all(KEY not in message and KEY[:12] not in message for message in messages), messages


# -- providers check --------------------------------------------------------------------------


async def test_check_with_a_good_key(provider: OpenAIVideosProvider) -> None:
    await provider.submit(request())
    check = await provider.check()
    assert (check.reachable, check.authenticated) == (True, True)


async def test_check_with_a_bad_key(upstream: FakeVideosUpstream, tmp_path: Path) -> None:
    built = await open_provider(upstream.base_url, tmp_path, api_key="sk-wrong-key-1234")
    try:
        check = await built.check()
    finally:
        await built.close()
    assert (check.reachable, check.authenticated) == (True, False)
    assert "HTTP 401" in check.detail
    assert "sk-wrong-key-1234" not in check.detail


async def test_check_of_an_upstream_that_is_not_there(tmp_path: Path) -> None:
    built = await open_provider(f"http://127.0.0.1:{free_port()}/v1", tmp_path)
    try:
        check = await built.check()
    finally:
        await built.close()
    assert check.reachable is False
