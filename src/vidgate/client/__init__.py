"""The vidgate Python SDK: `VidgateClient` (blocking) and `AsyncVidgateClient` (asyncio).

from vidgate.client import VidgateClient

with VidgateClient() as client:  # $VIDGATE_BASE_URL, $VIDGATE_API_KEY
    created = client.videos.generate(
        model="sora2", prompt="a red fox in snow", options={"n_frames": "15"}
    )
    task = client.videos.wait(created.task_id)
    if task.status == "completed":
        client.videos.download(task, "fox.mp4")
    else:
        print(task.error_message)

`client.videos.stream(task_id)` yields the task's events as they happen (created, submitted,
progress, then completed, failed or cancelled); `client.videos.cancel(task_id)` stops it.
`verify_webhook(body, headers, secret)` checks a webhook delivery's signature.
"""

from vidgate.client._base import GenerateOptions, OptionValue
from vidgate.client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConflictError,
    ContentBlockedError,
    InsufficientCreditsError,
    InternalServerError,
    MissingAPIKeyError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TaskFailedError,
    VidgateError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from vidgate.client._models import (
    ApiKey,
    Balances,
    CreatedApiKey,
    CreatedTask,
    CreatedWebhook,
    DeletedWebhook,
    HistoryItem,
    HistoryPage,
    RevokedApiKey,
    Task,
    TaskEvent,
    TaskOutput,
    VideoModel,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryPage,
)
from vidgate.client._webhooks import verify_webhook
from vidgate.client.aio import AsyncVidgateClient
from vidgate.client.sync import VidgateClient

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApiKey",
    "AsyncVidgateClient",
    "AuthenticationError",
    "BadRequestError",
    "Balances",
    "BudgetExceededError",
    "ConflictError",
    "ContentBlockedError",
    "CreatedApiKey",
    "CreatedTask",
    "CreatedWebhook",
    "DeletedWebhook",
    "GenerateOptions",
    "HistoryItem",
    "HistoryPage",
    "InsufficientCreditsError",
    "InternalServerError",
    "MissingAPIKeyError",
    "NotFoundError",
    "OptionValue",
    "PermissionDeniedError",
    "RateLimitError",
    "RevokedApiKey",
    "Task",
    "TaskEvent",
    "TaskFailedError",
    "TaskOutput",
    "VideoModel",
    "VidgateClient",
    "VidgateError",
    "WaitTimeoutError",
    "Webhook",
    "WebhookDelivery",
    "WebhookDeliveryPage",
    "WebhookVerificationError",
    "verify_webhook",
]
