"""Typed results of the SDK, parsed from the `data` of the gateway's success envelopes.

Fields the server adds later are kept (`extra="allow"`), so an older SDK still parses them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

PENDING = "pending"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
TERMINAL_STATUSES = frozenset({COMPLETED, FAILED})
# How far along each status is: a replayed older event never moves a task back.
STATUS_ORDER = {PENDING: 0, PROCESSING: 1, COMPLETED: 2, FAILED: 2}


def _iso_ms(value: datetime) -> str:
    """The contract's timestamp format, e.g. 2026-03-12T09:35:00.000Z."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# Parsed to datetime; dumped back (mode="json") exactly as the gateway writes it.
Timestamp = Annotated[datetime, PlainSerializer(_iso_ms, return_type=str, when_used="json")]


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class CreatedTask(_Result):
    """The answer to `videos.generate`: the new task and what it cost."""

    task_id: str
    request_id: str = Field(description="Provider-side request id, for tracing")
    credits_used: int
    remaining_credits: int
    model: str


class TaskOutput(_Result):
    result_urls: list[str] = Field(default_factory=list, alias="resultUrls")


class Task(_Result):
    """A video task as `GET /api/v1/videos/{task_id}` reports it.

    `status` is one of pending, processing, completed, failed (or unknown).
    """

    task_id: str
    model: str
    type: str = "text-to-video"
    status: str
    progress: int = 0
    output: TaskOutput = Field(default_factory=TaskOutput)
    video_url: str | None = None
    # Why it failed, as a code (provider_rejected, timeout, cancelled, ...), beside the message.
    error_code: str | None = None
    error_message: str | None = None
    credits_used: int = 0
    credits_refunded: int = 0
    created_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == COMPLETED

    @property
    def is_failed(self) -> bool:
        return self.status == FAILED


class TaskEvent(_Result):
    """One event of `videos.stream`: what happened (`kind`: created, submitted, progress,
    completed, failed or cancelled), the task's status after it, and what the event says in
    `data` (progress, error_code and error_message, refunded). The terminal event carries the
    whole task as `task`."""

    id: int
    kind: str
    status: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: Timestamp
    task: Task | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> int | None:
        value = self.data.get("progress")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class HistoryItem(_Result):
    task_id: str
    model: str
    status: str
    video_url: str | None = None
    error_code: str | None = None
    credits_used: int = 0
    credits_refunded: int = 0
    created_at: Timestamp
    completed_at: Timestamp | None = None


class HistoryPage(_Result):
    items: list[HistoryItem]
    page: int
    limit: int
    total: int


class Balances(_Result):
    credits: int
    api_credits: int


class CreatedApiKey(_Result):
    """A new key; `api_key` is the plaintext, returned only this once."""

    id: int
    title: str
    status: str
    created_at: Timestamp
    api_key: str


class ApiKey(_Result):
    id: int
    title: str
    status: str
    created_at: Timestamp
    last_used_at: Timestamp | None = None
    key_preview: str


class RevokedApiKey(_Result):
    id: int
    status: str


class VideoModel(_Result):
    """A catalogue entry of `GET /api/v1/models`: options, prices and providers.

    Each option: `type` ("string", "integer" or "boolean") and `default`; enums have `values`,
    strings `max_length`, integers `min` and `max` (None: unbounded)."""

    id: str
    description: str = ""
    types: list[str] = Field(default_factory=list)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    price: dict[str, Any] = Field(default_factory=dict)
    time_limit_seconds: int | None = None
    queue: str | None = None
    providers: list[str] = Field(default_factory=list)


class Webhook(_Result):
    """A webhook endpoint of `GET /api/v1/webhooks`, with its delivery counts."""

    id: int
    url: str
    events: list[str]
    status: str
    api_key_id: int | None = None
    created_at: Timestamp
    updated_at: Timestamp
    total_sent: int = 0
    total_failed: int = 0
    last_sent_at: Timestamp | None = None
    last_error: str | None = None


class CreatedWebhook(_Result):
    """A new endpoint; `secret_key` (whsec_...) verifies its signatures and is shown only
    here: give it to `verify_webhook`."""

    id: int
    url: str
    events: list[str]
    status: str
    api_key_id: int | None = None
    created_at: Timestamp
    updated_at: Timestamp
    secret_key: str


class DeletedWebhook(_Result):
    id: int


class WebhookDelivery(_Result):
    """One event sent (or being sent) to an endpoint; `message_id` is its webhook-id header,
    the same on every try."""

    id: int
    message_id: str | None = None
    event: str | None = None
    task_id: str | None = None
    status: str
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: Timestamp | None = None
    created_at: Timestamp | None = None
    delivered_at: Timestamp | None = None


class WebhookDeliveryPage(_Result):
    items: list[WebhookDelivery]
    page: int = 1
    limit: int = 20
    total: int | None = None
