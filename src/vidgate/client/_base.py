"""What the sync and async clients share: configuration, request building, response parsing,
the retry policy, the polling schedule of `wait` and the download sink (the live status
stream's share is its sibling, _stream.py).

The twins in sync.py and aio.py only move bytes (httpx.Client vs httpx.AsyncClient) and sleep;
every decision is made here, once.
"""

from __future__ import annotations

import os
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from vidgate import __version__
from vidgate.client._errors import (
    APIConnectionError,
    APITimeoutError,
    MissingAPIKeyError,
    TaskFailedError,
    VidgateError,
    WaitTimeoutError,
    error_body,
    parse_retry_after,
    status_error,
)
from vidgate.client._models import (
    ApiKey,
    Balances,
    CreatedApiKey,
    CreatedTask,
    CreatedWebhook,
    DeletedWebhook,
    HistoryPage,
    RevokedApiKey,
    Task,
    VideoModel,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryPage,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
BASE_URL_ENV = "VIDGATE_BASE_URL"
API_KEY_ENV = "VIDGATE_API_KEY"
POLL_AFTER_HEADER = "x-poll-after-ms"
USER_AGENT = f"vidgate-python/{__version__}"

ProgressCallback = Callable[[int, int | None], None]
UpdateCallback = Callable[[Task], None]


# -- configuration ------------------------------------------------------------------------


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else $VIDGATE_BASE_URL, else the local default; without a trailing
    `/api/v1` (paths carry it) or slash."""
    url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).strip().rstrip("/")
    return url.removesuffix("/api/v1")


def resolve_api_key(api_key: str | None) -> str | None:
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
    return key or None


def new_idempotency_key() -> str:
    return f"vidgate-sdk-{uuid.uuid4().hex}"


# -- requests -----------------------------------------------------------------------------


def _unwrap(response: httpx.Response) -> Any:
    """The `data` of a success envelope; a typed error for anything else."""
    if response.is_error:
        raise status_error(response)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or "data" not in payload:
        raise VidgateError(
            f"unexpected response from the gateway (HTTP {response.status_code}); "
            "is the base URL a vidgate gateway?",
            status_code=response.status_code,
            code="invalid_response",
            request_id=response.headers.get("x-request-id"),
        )
    return payload["data"]


def _validated(cls: type[M], data: Any, response: httpx.Response) -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise VidgateError(
            f"unexpected {cls.__name__} from the gateway: {exc.error_count()} invalid field(s)",
            status_code=response.status_code,
            code="invalid_response",
            request_id=response.headers.get("x-request-id"),
        ) from exc


def _one(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: _validated(cls, _unwrap(response), response)


def _many(cls: type[M]) -> Callable[[httpx.Response], list[M]]:
    def parse(response: httpx.Response) -> list[M]:
        data = _unwrap(response)
        items = data if isinstance(data, list) else [data]
        return [_validated(cls, item, response) for item in items]

    return parse


@dataclass(frozen=True)
class Polled:
    """A task state and the server's hint for the next poll (seconds; None when absent)."""

    task: Task
    poll_after: float | None


def _polled(response: httpx.Response) -> Polled:
    task = _validated(Task, _unwrap(response), response)
    try:
        hint: float | None = int(response.headers[POLL_AFTER_HEADER]) / 1000
    except (KeyError, ValueError):
        hint = None
    return Polled(task=task, poll_after=hint)


@dataclass(frozen=True, kw_only=True)
class APIRequest(Generic[T]):
    """One API call: what to send and how to read the answer.

    `idempotent` calls are retried on any retryable failure; the others only when the server
    cannot have acted (connection never made, rate limited).
    """

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = True
    idempotent: bool = True
    # A shorter wait for each read than the client's own (a stream followed until a deadline).
    read_timeout: float | None = None


OptionValue = str | int | bool


class GenerateOptions(TypedDict, total=False):
    """Optional fields of `videos.generate`.

    `options` carries any option of the model as data, e.g. `{"seed": 42}` (GET /api/v1/models
    lists each model's options with their types); `aspect_ratio` ... `upload_method` are
    shortcuts for the contract's common options. `extra_body` is merged into the body as is.
    """

    type: str | None
    image_urls: Sequence[str] | None
    input_image: str | None
    image_url: str | None
    video_url: str | None
    audio_url: str | None
    end_image_url: str | None
    callback_url: str | None
    options: Mapping[str, OptionValue | None] | None
    aspect_ratio: str | None
    n_frames: str | int | None
    duration: str | int | None
    resolution: str | None
    remove_watermark: bool | None
    origin_task_id: str | None
    character_user_name: str | None
    character_prompt: str | None
    safety_instruction: str | None
    upload_method: str | None
    extra_body: dict[str, Any] | None


# The request's own fields; every other field of the body is a model option.
_REQUEST_FIELDS = (
    "type",
    "image_urls",
    "input_image",
    "image_url",
    "video_url",
    "audio_url",
    "end_image_url",
    "callback_url",
)
_NOT_OPTIONS = frozenset({"model", "prompt", "input", "callBackUrl", *_REQUEST_FIELDS})
_WIRE_NAMES = {"callback_url": "callBackUrl"}
_STRING_OPTIONS = ("n_frames", "duration")  # the contract sends these as strings


def _merged_options(given: dict[str, Any]) -> dict[str, Any]:
    """`options` plus the option shortcuts; a name given both ways must agree."""
    options = {k: v for k, v in dict(given.pop("options", None) or {}).items() if v is not None}
    for name in list(given):
        if name in _REQUEST_FIELDS:
            continue
        value = given.pop(name)
        if value is None:
            continue
        if name in options and options[name] != value:
            raise ValueError(f"{name} is given both as an argument and in options")
        options[name] = value
    for name in options:
        if name in _NOT_OPTIONS:
            raise ValueError(f"options: {name} is a field of the request, not a model option")
    return options


def generate_call(
    *, model: str, prompt: str | None, idempotency_key: str | None, fields: GenerateOptions
) -> APIRequest[CreatedTask]:
    """POST /api/v1/videos/generate with one Idempotency-Key for the call and all its retries,
    so a retried create can never be charged twice. Raises ValueError for contradictory
    arguments before anything is sent."""
    body: dict[str, Any] = {"model": model}
    if prompt is not None:
        body["prompt"] = prompt
    given: dict[str, Any] = dict(fields)
    extra = given.pop("extra_body", None) or {}
    options = _merged_options(given)
    for name, value in given.items():
        if value is not None:
            body[_WIRE_NAMES.get(name, name)] = list(value) if name == "image_urls" else value
    for name, value in options.items():
        if name in _STRING_OPTIONS and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        body[name] = value
    body.update(extra)
    return APIRequest(
        method="POST",
        path="/api/v1/videos/generate",
        json=body,
        headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
        parse=_one(CreatedTask),
    )


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def task_id_of(task: str | Task | CreatedTask) -> str:
    return task if isinstance(task, str) else task.task_id


def get_task_call(task_id: str) -> APIRequest[Task]:
    return APIRequest(method="GET", path=f"/api/v1/videos/{_segment(task_id)}", parse=_one(Task))


def poll_task_call(task_id: str) -> APIRequest[Polled]:
    return APIRequest(method="GET", path=f"/api/v1/videos/{_segment(task_id)}", parse=_polled)


def cancel_task_call(task_id: str) -> APIRequest[Task]:
    # Not retried once it may have arrived: a repeat after the server acted would answer 409
    # task_ended for a cancel that worked.
    return APIRequest(
        method="POST",
        path=f"/api/v1/videos/{_segment(task_id)}/cancel",
        parse=_one(Task),
        idempotent=False,
    )


def history_call(*, page: int, limit: int) -> APIRequest[HistoryPage]:
    return APIRequest(
        method="GET",
        path="/api/v1/videos/history",
        params={"page": page, "limit": limit},
        parse=_one(HistoryPage),
    )


def balances_call() -> APIRequest[Balances]:
    return APIRequest(method="GET", path="/api/v1/account/balances", parse=_one(Balances))


def create_key_call(title: str) -> APIRequest[CreatedApiKey]:
    # Not idempotent: a blind retry after the server acted would mint a second key.
    return APIRequest(
        method="POST",
        path="/api/v1/keys",
        json={"title": title},
        parse=_one(CreatedApiKey),
        idempotent=False,
    )


def list_keys_call() -> APIRequest[list[ApiKey]]:
    return APIRequest(method="GET", path="/api/v1/keys", parse=_many(ApiKey))


def revoke_key_call(key_id: int) -> APIRequest[RevokedApiKey]:
    return APIRequest(
        method="DELETE", path=f"/api/v1/keys/{_segment(key_id)}", parse=_one(RevokedApiKey)
    )


def create_webhook_call(
    *, url: str, events: Sequence[str], secret_key: str | None, api_key_id: int | None
) -> APIRequest[CreatedWebhook]:
    body: dict[str, Any] = {"url": url, "events": list(events)}
    if secret_key is not None:
        body["secret_key"] = secret_key
    if api_key_id is not None:
        body["api_key_id"] = api_key_id
    # Not idempotent: a blind retry after the server acted would make a second endpoint.
    return APIRequest(
        method="POST",
        path="/api/v1/webhooks",
        json=body,
        parse=_one(CreatedWebhook),
        idempotent=False,
    )


def list_webhooks_call() -> APIRequest[list[Webhook]]:
    return APIRequest(method="GET", path="/api/v1/webhooks", parse=_many(Webhook))


def delete_webhook_call(webhook_id: int) -> APIRequest[DeletedWebhook]:
    return APIRequest(
        method="DELETE", path=f"/api/v1/webhooks/{_segment(webhook_id)}", parse=_one(DeletedWebhook)
    )


def webhook_deliveries_call(
    webhook_id: int, *, page: int, limit: int
) -> APIRequest[WebhookDeliveryPage]:
    return APIRequest(
        method="GET",
        path=f"/api/v1/webhooks/{_segment(webhook_id)}/deliveries",
        params={"page": page, "limit": limit},
        parse=_one(WebhookDeliveryPage),
    )


def redeliver_call(webhook_id: int, delivery_id: int) -> APIRequest[WebhookDelivery]:
    # Not idempotent: each call queues one more send of the event.
    return APIRequest(
        method="POST",
        path=(
            f"/api/v1/webhooks/{_segment(webhook_id)}/deliveries/{_segment(delivery_id)}/redeliver"
        ),
        parse=_one(WebhookDelivery),
        idempotent=False,
    )


def list_models_call() -> APIRequest[list[VideoModel]]:
    return APIRequest(method="GET", path="/api/v1/models", parse=_many(VideoModel), auth=False)


def download_call(url: str, *, headers: dict[str, str]) -> APIRequest[httpx.Response]:
    # Result links are signed: no API key, which must not leak to another host anyway.
    return APIRequest(
        method="GET", path=url, headers={"Accept": "*/*", **headers}, parse=_checked, auth=False
    )


def _checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise status_error(response)
    return response


def task_to_fetch(target: str | Task | CreatedTask) -> str | None:
    """The task id to look up before a download (None: `target` already has the URL)."""
    if isinstance(target, CreatedTask):
        return target.task_id
    if isinstance(target, str) and not re.match(r"^(https?://|/)", target, re.IGNORECASE):
        return target
    return None


def video_url_of(task: Task | CreatedTask | str) -> str:
    """The file URL of a completed task, or the URL itself."""
    if isinstance(task, str):
        return task
    if isinstance(task, Task) and task.video_url:
        return task.video_url
    status = task.status if isinstance(task, Task) else "unknown"
    detail = f": {task.error_message}" if isinstance(task, Task) and task.error_message else ""
    raise VidgateError(
        f"task {task.task_id} has no video to download (status {status}{detail})",
        code="no_video",
    )


# -- retries ------------------------------------------------------------------------------

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Retries connection errors, 429 and 5xx (never other 4xx), honouring Retry-After up to
    `max_retry_after`, else exponential backoff with jitter.

    One 409 is retried too: `idempotency_key_in_use` means the same create is still being
    committed, and the retry then gets its stored answer (the server sends Retry-After: 1).
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def backoff(self, attempt: int) -> float:
        delay = min(self.max_backoff, self.initial_backoff * 2.0**attempt)
        return delay * (1 - 0.25 * random.random())

    def after_response(
        self, call: APIRequest[Any], attempt: int, response: httpx.Response
    ) -> float | None:
        """Seconds to wait before retrying this answer, or None to hand it back as it is."""
        if attempt >= self.max_retries:
            return None
        status = response.status_code
        if status == 409:
            if error_body(response)[0] != "idempotency_key_in_use":
                return None
        elif status not in _RETRY_STATUSES or (not call.idempotent and status != 429):
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt)

    def after_error(
        self, call: APIRequest[Any], attempt: int, error: httpx.TransportError
    ) -> float:
        """Seconds to wait before retrying after a network error; raises when out of retries."""
        never_sent = isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
        if attempt < self.max_retries and (call.idempotent or never_sent):
            return self.backoff(attempt)
        raise connection_error(error) from error


def connection_error(error: httpx.TransportError) -> APIConnectionError:
    target = ""
    if isinstance(error, httpx.RequestError):
        try:
            target = f" to {error.request.url.copy_with(query=None)}"
        except RuntimeError:  # no request attached
            target = ""
    if isinstance(error, httpx.TimeoutException):
        return APITimeoutError(f"request{target} timed out: {error}".rstrip(": "))
    return APIConnectionError(f"could not connect{target}: {error}".rstrip(": "))


# -- the client core ----------------------------------------------------------------------


class BaseClient:
    """Configuration and request building shared by VidgateClient and AsyncVidgateClient."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | httpx.Timeout,
        max_retries: int,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = resolve_base_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self.timeout = timeout
        self.max_retries = max_retries
        self.retry_policy = RetryPolicy(max_retries=max_retries)
        # Set once the gateway answered that it has no event stream: `wait` polls from then on.
        self.event_stream_missing = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _url(self, path: str) -> str:
        return path if not path.startswith("/") else f"{self.base_url}{path}"

    def _build_request(self, call: APIRequest[Any]) -> httpx.Request:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **call.headers}
        if call.auth:
            if self.api_key is None:
                raise MissingAPIKeyError()
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = httpx.Request(
            call.method, self._url(call.path), params=call.params, json=call.json, headers=headers
        )
        # A bare httpx.Request has no timeouts at all; the transport reads them from here.
        timeout = self.timeout if isinstance(self.timeout, httpx.Timeout) else None
        timeout = timeout or httpx.Timeout(self.timeout)
        if call.read_timeout is not None:
            read = min(timeout.read or call.read_timeout, call.read_timeout)
            timeout = httpx.Timeout(
                connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool
            )
        request.extensions["timeout"] = timeout.as_dict()
        return request


# -- wait ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PollSchedule:
    """When to poll next while waiting for a task.

    The server's X-Poll-After-Ms hint wins, kept within [min_interval, max_interval]; without
    one, polls start at `initial_interval` and back off gently (x1.5) up to `fallback_max`.
    """

    timeout: float | None
    on_update: UpdateCallback | None = None
    raise_on_failure: bool = False
    min_interval: float = 0.25
    max_interval: float = 30.0
    initial_interval: float = 1.0
    fallback_max: float = 10.0
    _fallback: float = field(init=False, default=0.0)
    _started: float = field(init=False, default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._fallback = self.initial_interval

    def report(self, task: Task) -> bool:
        """Hand a state of the task to `on_update`; True once it has ended (a failed one
        raises TaskFailedError if asked to)."""
        if self.on_update is not None:
            self.on_update(task)
        if not task.is_terminal:
            return False
        if task.is_failed and self.raise_on_failure:
            raise TaskFailedError(task)
        return True

    def remaining(self) -> float | None:
        """Seconds left before the timeout (None: no limit)."""
        return None if self.timeout is None else self._started + self.timeout - time.monotonic()

    def timed_out(self, task: Task) -> WaitTimeoutError:
        return WaitTimeoutError(task, self.timeout or 0.0)

    def next_delay(self, polled: Polled) -> float | None:
        """Seconds until the next poll, or None when the task is done."""
        task = polled.task
        if self.report(task):
            return None
        if polled.poll_after is not None:
            delay = min(self.max_interval, max(self.min_interval, polled.poll_after))
        else:
            delay = self._fallback
            self._fallback = min(self.fallback_max, self._fallback * 1.5)
        remaining = self.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise self.timed_out(task)
            delay = min(delay, remaining)
        return delay


# -- download -----------------------------------------------------------------------------

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadSink:
    """Writes a download to a temporary file next to `path` and renames it into place only once
    complete; resumes with Range/If-Range after a broken connection."""

    def __init__(self, path: str | os.PathLike[str], *, on_progress: ProgressCallback | None):
        self.path = Path(path)
        self.temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.part")
        self.on_progress = on_progress
        self.done = 0
        self.total: int | None = None
        self._etag: str | None = None
        self._file: IO[bytes] | None = None

    def __enter__(self) -> DownloadSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.temporary.open("wb")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()
        if exc_type is not None:
            self.temporary.unlink(missing_ok=True)

    def resume_headers(self) -> dict[str, str]:
        if not self.done:
            return {}
        headers = {"Range": f"bytes={self.done}-"}
        if self._etag:
            headers["If-Range"] = self._etag
        return headers

    def begin(self, response: httpx.Response) -> None:
        """Start (or resume) writing the body of `response`."""
        assert self._file is not None, "use DownloadSink as a context manager"
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if response.status_code == 206 and match and int(match.group(1)) == self.done:
            self.total = None if match.group(3) == "*" else int(match.group(3))
        else:  # a full body: (re)start from the first byte
            self._file.seek(0)
            self._file.truncate()
            self.done = 0
            length = response.headers.get("content-length")
            self.total = int(length) if length and length.isdigit() else None
        self._etag = response.headers.get("etag") or self._etag
        self._report()

    def write(self, chunk: bytes) -> None:
        assert self._file is not None, "use DownloadSink as a context manager"
        self._file.write(chunk)
        self.done += len(chunk)
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def commit(self) -> Path:
        assert self._file is not None, "use DownloadSink as a context manager"
        if self.total is not None and self.done != self.total:
            raise APIConnectionError(
                f"download incomplete: {self.done} of {self.total} bytes", code="incomplete_body"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temporary, self.path)
        return self.path
