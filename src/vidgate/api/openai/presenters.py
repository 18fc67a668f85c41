"""The OpenAI-style wire format of tasks: request fields to neutral commands, task records to
Video objects. The only place that knows how this surface spells a task.

Any task reads on this surface, whichever surface made it: its size and seconds are the shape
the catalogue computed at create (params width, height and seconds).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from vidgate.api.openai.schemas import (
    CreateVideoFields,
    Video,
    VideoError,
    VideoList,
    VideoStatus,
)
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskErrorCode, TaskStatus

SURFACE = "openai"
# The SDK's poll() and create_and_poll() wait this long between retrieves while in flight.
POLL_AFTER_HEADER = "openai-poll-after-ms"
POLL_AFTER_MS = "2000"

_STATUS: dict[str, VideoStatus] = {
    TaskStatus.PENDING.value: "queued",
    TaskStatus.PROCESSING.value: "in_progress",
    TaskStatus.COMPLETED.value: "completed",
    TaskStatus.FAILED.value: "failed",
    # The protocol has no cancelled: it ends as failed, with error code "cancelled".
    TaskStatus.CANCELLED.value: "failed",
}


def command_of(
    fields: CreateVideoFields, *, image_url: str | None, input_file_key: str | None
) -> CreateTask:
    """`image_url`: a reference image to fetch; `input_file_key`: one already in our store."""
    given = {"size": fields.size, "seconds": fields.seconds}
    with_image = image_url is not None or input_file_key is not None
    return CreateTask(
        surface=SURFACE,
        model=fields.model,
        type="image-to-video" if with_image else "text-to-video",
        prompt=fields.prompt,
        options={name: value for name, value in given.items() if value is not None},
        image_urls=(image_url,) if image_url else (),
        input_file_keys=(input_file_key,) if input_file_key else (),
    )


def remix_command(source: TaskRecord, *, prompt: str) -> CreateTask:
    """A new task of the source's model and options (so its size and length), new prompt."""
    return CreateTask(
        surface=SURFACE,
        model=source.model,
        prompt=prompt,
        options=dict(source.params.get("options", {})),
        remixed_from=source.id,
    )


def wire_status(task: TaskRecord) -> VideoStatus:
    return _STATUS.get(task.status, "queued")


def _unix(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _error(task: TaskRecord) -> VideoError | None:
    if task.status == TaskStatus.CANCELLED:
        return VideoError(
            code=TaskErrorCode.CANCELLED.value,
            message=task.error_message or "the video was cancelled",
        )
    if task.status == TaskStatus.FAILED:
        return VideoError(
            code=task.error_code or TaskErrorCode.GENERATION_FAILED.value,
            message=task.error_message or "the video could not be generated",
        )
    return None


def expires_at(task: TaskRecord, retention: timedelta | None) -> datetime | None:
    """When a video's content goes (OpenAI's expires_at): when retention deleted it, or when it
    will; None while it has none yet, or when results are kept until deleted."""
    if task.files_expired_at is not None:
        return task.files_expired_at
    if retention is None or task.status != TaskStatus.COMPLETED or task.completed_at is None:
        return None
    return task.completed_at + retention


def video(task: TaskRecord, *, retention: timedelta | None = None) -> Video:
    """`retention`: how long result files are kept (Settings.result_retention)."""
    params = task.params
    return Video(
        id=task.id,
        model=task.model,
        status=wire_status(task),
        progress=100 if task.status == TaskStatus.COMPLETED else task.progress,
        created_at=int(task.created_at.timestamp()),
        completed_at=_unix(task.completed_at),
        expires_at=_unix(expires_at(task, retention)),
        prompt=task.prompt,
        size=f"{params.get('width', 0)}x{params.get('height', 0)}",
        seconds=str(params.get("seconds", "")),
        remixed_from_video_id=task.remixed_from,
        error=_error(task),
    )


def created(task: TaskRecord) -> Video:
    """The create answer: the video as it was created, so a replay renders the same body
    whatever the task has done since."""
    answer = video(task)
    return answer.model_copy(
        update={"status": "queued", "progress": 0, "completed_at": None, "error": None}
    )


def video_list(
    tasks: list[TaskRecord], *, has_more: bool, retention: timedelta | None = None
) -> VideoList:
    return VideoList(
        data=[video(task, retention=retention) for task in tasks],
        first_id=tasks[0].id if tasks else None,
        last_id=tasks[-1].id if tasks else None,
        has_more=has_more,
    )
