"""The SDK's exceptions: one class per HTTP status family, all under `VidgateError`."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from vidgate.client._models import Task


class VidgateError(Exception):
    """Base of every SDK error.

    `status_code` is None for errors that have no HTTP response (network failures, local checks,
    a failed task); `code` is the server's `error.code` (or an SDK code such as `connection_error`).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}" if self.code else self.message]
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        if self.request_id:
            parts.append(f"[{self.request_id}]")
        return " ".join(parts)


class APIConnectionError(VidgateError):
    """The gateway could not be reached, or the connection broke (after the retries)."""

    def __init__(self, message: str, *, code: str = "connection_error") -> None:
        super().__init__(message, code=code)


class APITimeoutError(APIConnectionError):
    """The request timed out (after the retries)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="timeout")


class APIStatusError(VidgateError):
    """The gateway answered with an error status; `headers` are the response's headers."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None,
        request_id: str | None,
        headers: httpx.Headers,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, request_id=request_id)
        self.headers = headers

    @property
    def retry_after(self) -> float | None:
        """The server's Retry-After delay in seconds, when it sent one."""
        return parse_retry_after(self.headers.get("retry-after"))


class BadRequestError(APIStatusError):
    """400: invalid parameters, unknown model, malformed body."""


class AuthenticationError(APIStatusError):
    """401: API key missing, unknown, revoked or expired."""


class InsufficientCreditsError(APIStatusError):
    """402: the balance is below the task's price."""


class BudgetExceededError(InsufficientCreditsError):
    """402 `budget_exceeded`: the task would pass the key's spend budget for its period (the
    balance may be fine). `budget`, `spent`, `period` and `resets_at` come from the answer's
    X-Budget-* headers (None when absent; `resets_at` is None for a `total` budget)."""

    @property
    def budget(self) -> int | None:
        return _int_header(self.headers, "x-budget-limit")

    @property
    def spent(self) -> int | None:
        return _int_header(self.headers, "x-budget-spent")

    @property
    def period(self) -> str | None:
        value: str | None = self.headers.get("x-budget-period")
        return value

    @property
    def resets_at(self) -> datetime | None:
        value = self.headers.get("x-budget-reset")
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


class PermissionDeniedError(APIStatusError):
    """403: forbidden (also an invalid or expired signed file link)."""


class NotFoundError(APIStatusError):
    """404: unknown task or key (another account's task looks the same)."""


class ConflictError(APIStatusError):
    """409: Idempotency-Key reused with another body (or its original still in flight), or a
    cancel of a task that has ended already (`task_ended`)."""


class RateLimitError(APIStatusError):
    """429: request rate limit or concurrent-job limit; see `retry_after`."""


class ContentBlockedError(APIStatusError):
    """451: the prompt was blocked by content moderation."""


class InternalServerError(APIStatusError):
    """5xx: gateway or upstream failure (503: upstream busy)."""


class MissingAPIKeyError(VidgateError):
    """No API key was given (argument or VIDGATE_API_KEY) for a call that needs one."""

    def __init__(self) -> None:
        super().__init__(
            "no API key: pass api_key=... or set VIDGATE_API_KEY", code="missing_api_key"
        )


class TaskFailedError(VidgateError):
    """Raised by `videos.wait(..., raise_on_failure=True)` when the task ends `failed`."""

    def __init__(self, task: Task) -> None:
        message = task.error_message or "the task failed"
        super().__init__(f"task {task.task_id} failed: {message}", code="task_failed")
        self.task = task


class WaitTimeoutError(VidgateError, TimeoutError):
    """`videos.wait(..., timeout=...)` ran out of time; `task` is the last state seen."""

    def __init__(self, task: Task, timeout: float) -> None:
        super().__init__(
            f"task {task.task_id} still {task.status} after {timeout:g} s", code="wait_timeout"
        )
        self.task = task


class WebhookVerificationError(VidgateError):
    """`verify_webhook` refused a delivery: a signature that does not match, a timestamp more
    than five minutes away, missing headers, or a body that is not JSON."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_webhook")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is not a delay


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
    451: ContentBlockedError,
}


def error_body(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """(code, message, request_id) of an error envelope; Nones when the body is not one."""
    try:
        payload: Any = response.json()
    except (ValueError, httpx.ResponseNotRead):
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None, response.headers.get("x-request-id")
    code, message = error.get("code"), error.get("message")
    request_id = payload.get("request_id") or response.headers.get("x-request-id")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
        request_id if isinstance(request_id, str) else None,
    )


def status_error(response: httpx.Response) -> APIStatusError:
    """The typed error for an error response (its body must have been read)."""
    code, message, request_id = error_body(response)
    status = response.status_code
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    if code == "budget_exceeded":
        cls = BudgetExceededError
    if message is None:
        try:
            text = response.text.strip()
        except httpx.ResponseNotRead:
            text = ""
        message = text[:300] or f"HTTP {status} {response.reason_phrase}".strip()
    return cls(
        message, status_code=status, code=code, request_id=request_id, headers=response.headers
    )
