"""The `openai` provider: an upstream that speaks the /v1/videos protocol (OpenAI's video API,
Azure OpenAI, LiteLLM, new-api, vLLM-Omni, another vidgate), through the official openai SDK.

The SDK never retries (max_retries=0): the worker owns retries and failover, and it has to know
what each failure means, which is what the error mapping below tells it.

Shape and length. The catalogue has already turned aspect ratio, resolution and duration into
width, height and seconds; the protocol takes a few fixed values, so each request is mapped:

  size     the allowed size of the same orientation whose pixel count is closest (a tie goes to
           the smaller); a square request takes an allowed square size when the list has one,
           otherwise a landscape size (our choice: the protocol's lists have no square)
  seconds  the smallest allowed length >= the requested one, else the longest allowed

  requested             size sent     requested seconds   seconds sent
  1280x720 (720p 16:9)  1280x720      1-4                 "4"
  1920x1080 (1080p)     1792x1024     5-8                 "8"
  854x480 (480p)        1280x720      9-12 (e.g. 10)      "12"
  720x1280 (720p 9:16)  720x1280      over 12 (e.g. 15)   "12"
  1080x1920             1024x1792
  1024x1024, 720x720    1280x720

Options of the providers file change the allowed lists for upstreams that accept others:
`sizes = ["1024x1024", ...]` and `seconds = [5, 10]`.

Errors (openai SDK exceptions):

  submit, connect never established (ConnectError, ConnectTimeout)  TechnicalError: fail over
  submit, other connection error or timeout, a 2xx without an id,   SubmitUncertain: same channel,
    409 (key in use), 5xx other than 503                            same Idempotency-Key
  401, 403                                                          ChannelFault (credentials)
  402                                                               ChannelFault (payment)
  a 4xx with a moderation code                                      LogicalError content_blocked
  400, 404, 422 and other 4xx                                       LogicalError provider_rejected
  408, 429, 503; on poll any 5xx                                    TechnicalError + Retry-After
  poll, 404 (the job or its content is gone)                        JobLost
  poll, connection error, timeout, an answer that is no video,      TechnicalError
    a download that breaks off or is not a video

The API key never reaches a message: upstream messages are passed on with it blanked out, and
credential refusals do not repeat the upstream's words at all (they often quote part of the key).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import openai
from openai.types import Video, VideoSeconds, VideoSize

from vidgate.net.fetch import SNIFF_BYTES, sniff_kind, write_chunks
from vidgate.providers.base import (
    ChannelFault,
    GenerationRequest,
    JobLost,
    JobState,
    JobStatus,
    LogicalError,
    ProviderCheck,
    ProviderError,
    Submission,
    SubmitUncertain,
    TechnicalError,
)
from vidgate.providers.config import ProviderConfig
from vidgate.providers.http_hints import retry_after_s

logger = logging.getLogger("vidgate.providers.openai")

PROTOCOL_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
PROTOCOL_SECONDS = (4, 8, 12)
# Error codes upstreams use when their moderation refused a prompt or an image.
MODERATION_CODES = frozenset(
    {"moderation_blocked", "content_policy_violation", "content_blocked", "content_filter"}
)
MESSAGE_LIMIT = 500  # characters of an upstream message passed on to the user
KNOWN_OPTIONS = frozenset({"sizes", "seconds"})
NO_KEY = "no-key"  # sent when no key is configured (local upstreams that check none)


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Size:
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
        if match is None or not int(match.group(1)) or not int(match.group(2)):
            raise ValueError(f"a size is WIDTHxHEIGHT, e.g. 1280x720, not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def orientation(self) -> int:
        """1 landscape, -1 portrait, 0 square."""
        return (self.width > self.height) - (self.width < self.height)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


PROTOCOL_SIZE_LIST = tuple(Size.parse(text) for text in PROTOCOL_SIZES)


def pick_size(width: int, height: int, allowed: Sequence[Size]) -> Size:
    wanted = Size(width, height)
    same = [size for size in allowed if size.orientation == wanted.orientation]
    if not same and wanted.orientation == 0:
        same = [size for size in allowed if size.orientation == 1]
    candidates = same or list(allowed)
    return min(candidates, key=lambda size: (abs(size.pixels - wanted.pixels), size.pixels))


def pick_seconds(seconds: int, allowed: Sequence[int]) -> int:
    long_enough = [length for length in allowed if length >= seconds]
    return min(long_enough) if long_enough else max(allowed)


def _allowed_lists(config: ProviderConfig) -> tuple[tuple[Size, ...], tuple[int, ...]]:
    """The `sizes` and `seconds` options, checked (a bad one stops startup, naming the field)."""
    unknown = sorted(set(config.options) - KNOWN_OPTIONS)
    if unknown:
        raise ValueError(
            f"provider {config.name}: options: unknown {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_OPTIONS))})"
        )
    where = "sizes"
    try:
        sizes = tuple(Size.parse(str(size)) for size in _listed(config, "sizes", PROTOCOL_SIZES))
        where = "seconds"
        seconds = tuple(_length(value) for value in _listed(config, "seconds", PROTOCOL_SECONDS))
    except (TypeError, ValueError) as error:
        raise ValueError(f"provider {config.name}: options.{where}: {error}") from None
    return sizes, seconds


def _listed(config: ProviderConfig, option: str, default: Sequence[Any]) -> list[Any]:
    value = config.options.get(option, default)
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"expected a non-empty list, got {value!r}")
    return list(value)


def _length(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"a length is a whole number of seconds above 0, not {value!r}")
    return value


def _host_and_port(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if parts.port is None else f"{host}:{parts.port}"


def _transport_errors(*names: str) -> tuple[type[Exception], ...]:
    """The named httpx exception classes, from httpx and from httpx2 (openai 3.x rides on it)."""
    modules: list[Any] = [httpx]
    try:
        import httpx2
    except ImportError:  # SDKs before 3.x ride on httpx itself
        pass
    else:
        modules.append(httpx2)
    return tuple(getattr(module, name) for module in modules for name in names)


# After these the request surely never left us.
NEVER_CONNECTED = _transport_errors("ConnectError", "ConnectTimeout")
# Raised while a streamed body is read: the SDK wraps only what happens before the headers.
BROKEN_STREAM = _transport_errors("TransportError")


class OpenAIVideosProvider:
    runs_locally = False

    def __init__(
        self,
        *,
        name: str,
        client: openai.AsyncOpenAI,
        work_dir: Path,
        secret: str | None,
        sizes: Sequence[Size] = PROTOCOL_SIZE_LIST,
        seconds: Sequence[int] = PROTOCOL_SECONDS,
        poll_interval_s: float | None = None,
        max_poll_interval_s: float | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        self.name = name
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.max_concurrent = max_concurrent
        self.trusted_hosts = frozenset({_host_and_port(str(client.base_url))})
        self.sizes = tuple(sizes)
        self.seconds = tuple(seconds)
        self.work_dir = work_dir
        self._client = client
        self._secret = secret

    @classmethod
    def from_config(cls, config: ProviderConfig, *, work_dir: Path) -> OpenAIVideosProvider:
        sizes, seconds = _allowed_lists(config)
        client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key or NO_KEY,
            timeout=openai.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
            max_retries=0,  # the worker retries, knowing what each failure means
        )
        return cls(
            name=config.name,
            client=client,
            work_dir=work_dir,
            secret=config.api_key,
            sizes=sizes,
            seconds=seconds,
            poll_interval_s=config.poll_interval_s,
            max_poll_interval_s=config.max_poll_interval_s,
            max_concurrent=config.max_concurrent,
        )

    # -- the Provider protocol -------------------------------------------------------------

    async def submit(self, request: GenerationRequest) -> Submission:
        size = pick_size(request.width, request.height, self.sizes)
        seconds = pick_seconds(request.seconds, self.seconds)
        logger.debug(
            "task %s: %dx%d %d s sent as %s %d s",
            request.task_id, request.width, request.height, request.seconds, size, seconds,
        )  # fmt: skip
        reference = await _upload(request.images[0]) if request.images else openai.omit
        try:
            video = await self._client.videos.create(
                prompt=request.prompt,
                model=request.upstream_model or request.model,
                seconds=cast(VideoSeconds, str(seconds)),  # other values for custom lists
                size=cast(VideoSize, str(size)),
                input_reference=reference,
                # A retried submit is the same job wherever the upstream honours the key.
                extra_headers={"Idempotency-Key": request.task_id},
            )
        except openai.OpenAIError as error:
            raise self._submit_error(error) from error
        except ValueError as error:  # a 2xx body that is not JSON: it may hold a job all the same
            raise self._unreadable_submit() from error
        upstream_id = getattr(video, "id", None)  # the SDK hands over odd bodies as they came
        if not isinstance(upstream_id, str) or not upstream_id:
            raise self._unreadable_submit()
        return Submission(upstream_id=upstream_id)

    async def poll(self, upstream_id: str) -> JobStatus:
        try:
            video = await self._client.videos.retrieve(upstream_id)
        except openai.OpenAIError as error:
            raise self._poll_error(error, upstream_id) from error
        except ValueError as error:  # a 2xx body that is not JSON
            raise self._unreadable_poll(upstream_id) from error
        if not isinstance(video, Video) or not isinstance(video.status, str):
            raise self._unreadable_poll(upstream_id)
        if video.status == "completed":
            path = await self._download(upstream_id)
            return JobStatus(state=JobState.SUCCEEDED, progress=100, result_file=path)
        if video.status == "failed":
            return self._failed(video.error)
        return JobStatus(state=JobState.RUNNING, progress=_progress(video.progress))

    async def cancel(self, upstream_id: str) -> None:
        try:
            await self._client.videos.delete(upstream_id)
        except openai.OpenAIError as error:  # best effort: the job may be gone already
            logger.info("%s: could not delete video %s: %s", self.name, upstream_id, error)

    async def check(self) -> ProviderCheck:
        try:
            await self._client.videos.list(limit=1)
        except openai.APIConnectionError as error:
            return ProviderCheck(reachable=False, detail=f"cannot reach {self._url}: {error}")
        except openai.APIStatusError as error:
            if error.status_code in (401, 403):
                detail = f"{self._url} refused our credentials (HTTP {error.status_code})"
                return ProviderCheck(reachable=True, authenticated=False, detail=detail)
            detail = f"{self._url} answered HTTP {error.status_code}: {self._message(error)}"
            return ProviderCheck(reachable=True, authenticated=None, detail=detail)
        except openai.OpenAIError as error:
            detail = self._scrub(f"{self._url}: {error}")
            return ProviderCheck(reachable=True, authenticated=None, detail=detail)
        return ProviderCheck(reachable=True, authenticated=True, detail=f"{self._url} lists videos")

    async def close(self) -> None:
        await self._client.close()

    # -- results ---------------------------------------------------------------------------

    def _failed(self, error: Any) -> JobStatus:
        # Lenient: some upstreams send a bare string (or nothing) instead of {code, message}.
        code = getattr(error, "code", None)
        message = error if isinstance(error, str) else getattr(error, "message", None)
        message = message or "the upstream reported the job failed"
        return JobStatus(
            state=JobState.FAILED,
            error=self._scrub(str(message))[:MESSAGE_LIMIT],
            error_code="content_blocked" if code in MODERATION_CODES else None,
        )

    async def _download(self, upstream_id: str) -> Path:
        """Stream the finished video to a file in work_dir (never whole in memory)."""
        final = self.work_dir / f"{_file_stem(upstream_id)}.mp4"
        partial = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
        await asyncio.to_thread(self.work_dir.mkdir, parents=True, exist_ok=True)
        try:
            async with self._client.videos.with_streaming_response.download_content(
                upstream_id, variant="video"
            ) as response:
                head = await _write_file(response.iter_bytes(), partial)
            if not (sniff_kind(head) or "").startswith("video/"):
                raise TechnicalError(
                    f"channel {self.name}: the content of video {upstream_id} is not a video"
                )
            await asyncio.to_thread(partial.replace, final)
        except BaseException as error:  # cancelled too: leave nothing behind
            await asyncio.to_thread(partial.unlink, missing_ok=True)
            if isinstance(error, openai.OpenAIError):
                raise self._poll_error(error, upstream_id) from error
            if isinstance(error, BROKEN_STREAM):
                message = f"channel {self.name}: the download of video {upstream_id} broke off"
                raise TechnicalError(message) from error
            raise
        return final

    # -- error mapping ---------------------------------------------------------------------

    def _submit_error(self, error: openai.OpenAIError) -> ProviderError:
        if isinstance(error, openai.APIConnectionError):
            if isinstance(error.__cause__, NEVER_CONNECTED):
                return TechnicalError(f"channel {self.name}: could not connect to the upstream")
            what = "timed out" if isinstance(error, openai.APITimeoutError) else "lost"
            return SubmitUncertain(f"channel {self.name}: the upstream's answer {what}")
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            # 409: busy with this key. A 5xx other than 503 may hide an accepted job (a proxy's
            # 502/504, a backend that failed after creating it), so no other channel is asked.
            if status == 409 or (status >= 500 and status != 503):
                return SubmitUncertain(
                    f"channel {self.name}: the upstream answered HTTP {status}: "
                    f"{self._message(error)}",
                    retry_after_s=retry_after_s(error.response.headers),
                )
            return self._status_error(error)
        return TechnicalError(self._scrub(f"channel {self.name}: {error}"))

    def _unreadable_submit(self) -> SubmitUncertain:
        return SubmitUncertain(f"channel {self.name}: the upstream's answer has no video id")

    def _unreadable_poll(self, upstream_id: str) -> TechnicalError:
        return TechnicalError(
            f"channel {self.name}: the upstream's answer about video {upstream_id} is no video"
        )

    def _poll_error(self, error: openai.OpenAIError, upstream_id: str) -> ProviderError:
        if isinstance(error, openai.APIStatusError) and error.status_code == 404:
            return JobLost(f"channel {self.name}: the upstream no longer knows video {upstream_id}")
        if isinstance(error, openai.APIConnectionError):
            what = "timed out" if isinstance(error, openai.APITimeoutError) else "failed"
            return TechnicalError(f"channel {self.name}: the connection to the upstream {what}")
        if isinstance(error, openai.APIStatusError):
            return self._status_error(error)
        return TechnicalError(self._scrub(f"channel {self.name}: {error}"))

    def _status_error(self, error: openai.APIStatusError) -> ProviderError:
        status = error.status_code
        if status in (401, 403):
            return ChannelFault(
                f"channel {self.name}: the upstream refused our credentials (HTTP {status})"
            )
        if status == 402:
            return ChannelFault(
                f"channel {self.name}: the upstream wants payment (HTTP 402): "
                f"{self._message(error)}"
            )
        if status in (408, 429) or status >= 500:
            return TechnicalError(
                f"channel {self.name}: the upstream answered HTTP {status}: {self._message(error)}",
                retry_after_s=retry_after_s(error.response.headers),
            )
        if error.code in MODERATION_CODES:
            return LogicalError(self._message(error), code="content_blocked")
        return LogicalError(self._message(error))

    def _message(self, error: openai.APIStatusError) -> str:
        body = error.body
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            message = f"the upstream answered HTTP {error.status_code}"
        return self._scrub(message)[:MESSAGE_LIMIT]

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    @property
    def _url(self) -> str:
        return str(self._client.base_url)


def _progress(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0, min(99, int(value)))  # 100 only once the file is here
    return 0


def _file_stem(upstream_id: str) -> str:
    """A file name for an upstream id of any characters; the hash keeps distinct ids apart."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", upstream_id)[:80]
    return f"{readable}-{hashlib.sha256(upstream_id.encode()).hexdigest()[:8]}"


async def _upload(path: Path) -> tuple[str, bytes, str]:
    """The input image as a file upload (inputs are small: the fetcher capped them)."""
    content = await asyncio.to_thread(path.read_bytes)
    kind = sniff_kind(content) or "application/octet-stream"
    extension = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(kind, "")
    return f"reference{extension}", content, kind


async def _write_file(chunks: AsyncIterator[bytes], path: Path) -> bytes:
    """Stream the chunks into path (net/fetch.py write_chunks); returns the first bytes."""
    head = bytearray()

    async def watched() -> AsyncIterator[bytes]:
        async for chunk in chunks:
            if len(head) < SNIFF_BYTES:
                head.extend(chunk[: SNIFF_BYTES - len(head)])
            yield chunk

    file = await asyncio.to_thread(path.open, "wb")
    try:
        await write_chunks(watched(), file)
    finally:
        await asyncio.to_thread(file.close)
    return bytes(head)


__all__ = ["OpenAIVideosProvider", "Size", "pick_seconds", "pick_size"]
