"""The API Mall wire format of tasks: request bodies to neutral commands, task records to
response bodies. The only place that knows how this surface spells a task."""

from __future__ import annotations

from collections.abc import Callable

from vidgate.api.apimall.schemas import (
    CreatedTask,
    GenerateRequest,
    HistoryItem,
    HistoryPage,
    TaskEventView,
    TaskOutput,
    TaskView,
)
from vidgate.db.types import iso_ms
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.repository import EventRecord, TaskRecord
from vidgate.tasks.states import TaskErrorCode, TaskStatus

SURFACE = "apimall"
UrlFor = Callable[[str], str]


def command_of(body: GenerateRequest) -> CreateTask:
    return CreateTask(
        surface=SURFACE,
        model=body.model,
        type=body.type,
        prompt=body.prompt,
        options=body.given_options(),
        image_urls=tuple(body.all_image_urls()),
        video_url=body.video_url,
        callback_url=body.callback_url,
    )


def created(task: TaskRecord, *, remaining_credits: int) -> CreatedTask:
    """The create answer, from the task as it was created: a replay renders the same bytes."""
    return CreatedTask(
        task_id=task.id,
        request_id=task.provider_request_id,
        credits_used=task.credits_used,
        remaining_credits=remaining_credits,
        model=task.model,
    )


def _wire_status(status: str) -> str:
    # API Mall's clients know only completed and failed as ends: a cancelled task reads failed,
    # with error_code "cancelled".
    return TaskStatus.FAILED.value if status == TaskStatus.CANCELLED else status


def wire_status(task: TaskRecord) -> str:
    return _wire_status(task.status)


def _error_code(task: TaskRecord) -> str | None:
    if task.status == TaskStatus.CANCELLED:
        return TaskErrorCode.CANCELLED.value
    return task.error_code


def hosted_url(task: TaskRecord, url_for: UrlFor) -> str | None:
    """The result's URL; None before it completes and once retention deleted its files."""
    if task.status == TaskStatus.COMPLETED and task.file_key and task.files_expired_at is None:
        return url_for(task.file_key)
    return None


def task_view(task: TaskRecord, url_for: UrlFor) -> TaskView:
    video_url = hosted_url(task, url_for)
    return TaskView(
        task_id=task.id,
        model=task.model,
        type=task.type,
        status=wire_status(task),
        progress=100 if task.status == TaskStatus.COMPLETED else task.progress,
        output=TaskOutput(resultUrls=[video_url] if video_url else []),
        video_url=video_url,
        error_code=_error_code(task),
        error_message=task.error_message,
        failMsg=task.error_message,
        credits_used=task.credits_used,
        credits_refunded=task.credits_refunded,
        created_at=iso_ms(task.created_at) or "",
        updated_at=iso_ms(task.updated_at) or "",
        completed_at=iso_ms(task.completed_at),
    )


def history_page(
    tasks: list[TaskRecord], *, total: int, page: int, limit: int, url_for: UrlFor
) -> HistoryPage:
    items = [
        HistoryItem(
            task_id=task.id,
            model=task.model,
            created_at=iso_ms(task.created_at) or "",
            status=wire_status(task),
            video_url=hosted_url(task, url_for),
            error_code=_error_code(task),
            credits_used=task.credits_used,
            credits_refunded=task.credits_refunded,
            completed_at=iso_ms(task.completed_at),
        )
        for task in tasks
    ]
    return HistoryPage(items=items, page=page, limit=limit, total=total)


# What an event's data may show a client; the rest (which channel took the task, its upstream
# job id) is the operator's business, as on the status endpoint.
_PUBLIC_EVENT_DATA = ("progress", "error_code", "error_message", "refunded")


def event_view(event: EventRecord, task: TaskRecord | None, url_for: UrlFor) -> TaskEventView:
    """One event of the live status stream; `task`: the task as it ended, for the terminal
    event."""
    return TaskEventView(
        status=_wire_status(event.status),
        data={name: event.data[name] for name in _PUBLIC_EVENT_DATA if name in event.data},
        created_at=iso_ms(event.created_at) or "",
        task=task_view(task, url_for) if task is not None else None,
    )
