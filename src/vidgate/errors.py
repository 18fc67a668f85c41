"""One error hierarchy for the whole gateway.

Each error carries its HTTP status and the contract's `error.code`; the API renders every one of
them in the same envelope (api/errors.py), and the CLI prints their messages.
"""

from __future__ import annotations

from typing import ClassVar


class VidgateError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.message = message or self.default_message
        self.headers = headers or {}
        super().__init__(self.message)


class InvalidRequest(VidgateError):
    status_code = 400
    code = "invalid_request"
    default_message = "Invalid request parameters"


class Unauthorized(VidgateError):
    status_code = 401
    code = "unauthorized"
    default_message = "API key required or invalid API key"


class InsufficientCredits(VidgateError):
    status_code = 402
    code = "insufficient_credits"
    default_message = "Insufficient credits"


class BudgetExceeded(VidgateError):
    status_code = 402
    code = "budget_exceeded"
    default_message = "The API key's spend budget for this period is used up"


class Forbidden(VidgateError):
    status_code = 403
    code = "forbidden"
    default_message = "Forbidden"


class NotFound(VidgateError):
    status_code = 404
    code = "not_found"
    default_message = "Not found"


class MethodNotAllowed(VidgateError):
    status_code = 405
    code = "method_not_allowed"
    default_message = "Method not allowed"


class IdempotencyKeyReused(VidgateError):
    status_code = 409
    code = "idempotency_key_reused"
    default_message = "Idempotency-Key was already used with a different request body"


class IdempotencyKeyInUse(VidgateError):
    status_code = 409
    code = "idempotency_key_in_use"
    default_message = "A request with this Idempotency-Key is still being processed; retry later"


class TaskAlreadyEnded(VidgateError):
    status_code = 409
    code = "task_ended"
    default_message = "The task has already ended"


class PayloadTooLarge(VidgateError):
    status_code = 413
    code = "payload_too_large"
    default_message = "Request body too large"


class UnsupportedMediaType(VidgateError):
    status_code = 415
    code = "unsupported_media_type"
    default_message = "Content-Type must be application/json"


class RangeNotSatisfiable(VidgateError):
    status_code = 416
    code = "range_not_satisfiable"
    default_message = "The requested range is outside the file"


class RateLimited(VidgateError):
    status_code = 429
    code = "rate_limited"
    default_message = "Rate limit exceeded"


class TooManyConcurrentJobs(VidgateError):
    status_code = 429
    code = "too_many_concurrent_jobs"
    default_message = "Too many concurrent jobs"


class ContentBlocked(VidgateError):
    status_code = 451
    code = "content_blocked"
    default_message = "Prompt blocked by content moderation"


class InternalError(VidgateError):
    pass


class UpstreamUnavailable(VidgateError):
    status_code = 503
    code = "upstream_unavailable"
    default_message = "Upstream provider is busy or temporarily unavailable"


class ServiceUnavailable(VidgateError):
    status_code = 503
    code = "service_unavailable"
    default_message = "Service unavailable"


class RateLimitStoreUnavailable(ServiceUnavailable):
    # VIDGATE_REDIS_FAILURE_MODE=closed: no request passes unlimited while Redis is unreachable.
    default_message = "The rate-limit store is unavailable; retry after the Retry-After delay"
