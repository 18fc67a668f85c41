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
"""

from vidgate.client._base import GenerateOptions, OptionValue
from vidgate.client._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
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
)
from vidgate.client._models import (
    ApiKey,
    Balances,
    CreatedApiKey,
    CreatedTask,
    HistoryItem,
    HistoryPage,
    RevokedApiKey,
    Task,
    TaskOutput,
    VideoModel,
)
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
    "ConflictError",
    "ContentBlockedError",
    "CreatedApiKey",
    "CreatedTask",
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
    "TaskFailedError",
    "TaskOutput",
    "VideoModel",
    "VidgateClient",
    "VidgateError",
    "WaitTimeoutError",
]
