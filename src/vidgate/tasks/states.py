"""The task state machine: statuses, the table of allowed moves, events and failure codes."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"  # accepted and paid, not yet submitted
    PROCESSING = "processing"  # a provider accepted it
    COMPLETED = "completed"
    FAILED = "failed"  # refunded
    CANCELLED = "cancelled"  # refunded as the channel's policy says


TERMINAL = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
IN_FLIGHT = (TaskStatus.PENDING.value, TaskStatus.PROCESSING.value)

# Every move a task may make. A transition whose source is not listed for its target is
# refused by the conditional UPDATE itself (tasks/transitions.py), so the table is enforced
# by the database, not only checked in Python. processing -> processing is a progress report.
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.PROCESSING, TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.PROCESSING: frozenset(
        {TaskStatus.PROCESSING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}


def sources_of(target: TaskStatus) -> tuple[str, ...]:
    """The statuses a task may be in to move to `target`."""
    return tuple(source.value for source, targets in ALLOWED.items() if target in targets)


class IllegalTransition(Exception):
    def __init__(self, task_id: str, source: str, target: TaskStatus) -> None:
        super().__init__(f"task {task_id}: {source} -> {target.value} is not an allowed move")
        self.task_id = task_id
        self.source = source
        self.target = target


def check_move(task_id: str, source: str, target: TaskStatus) -> None:
    if target not in ALLOWED.get(TaskStatus(source), frozenset()):
        raise IllegalTransition(task_id, source, target)


class TaskStep(StrEnum):
    """The worker's step within `pending`/`processing`."""

    SUBMIT = "submit"  # fetch inputs, send to the provider, persist its job id
    POLL = "poll"  # ask the provider until its job ends, then store the result
    DONE = "done"


class EventKind(StrEnum):
    CREATED = "created"
    SUBMITTED = "submitted"
    PROGRESS = "progress"  # throttled: at most one per PROGRESS_EVENT_STEP points
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


PROGRESS_EVENT_STEP = 10


class TaskErrorCode(StrEnum):
    """Why a task failed: `error_code` on the wire, beside the human `error_message`."""

    PROVIDER_REJECTED = "provider_rejected"  # the provider refused the input (logical error)
    GENERATION_FAILED = "generation_failed"  # the provider's job failed
    UPSTREAM_ERROR = "upstream_error"  # technical errors until the retry policy gave up
    UPSTREAM_LOST = "upstream_lost"  # the provider no longer knows the job
    NO_PROVIDER = "no_provider"  # no configured provider serves the model
    CONTENT_BLOCKED = "content_blocked"  # the upstream's moderation refused it after acceptance
    INVALID_INPUT = "invalid_input"  # an input URL that may not be fetched
    INPUT_FETCH_FAILED = "input_fetch_failed"  # an input URL that could not be fetched
    TIMEOUT = "timeout"  # past the model's time limit
    CANCELLED = "cancelled"
    ACCOUNT_SUSPENDED = "account_suspended"  # not started: its account is not active
    FAILED_BY_OPERATOR = "failed_by_operator"  # ended by `vidgate tasks fail`
    INTERNAL_ERROR = "internal_error"
    MODEL_UNAVAILABLE = "model_unavailable"  # a local model's weights could not be loaded
    OUT_OF_MEMORY = "out_of_memory"  # a local model ran out of (GPU) memory


def error_code_of(value: str | None, default: TaskErrorCode) -> TaskErrorCode:
    """A provider's error code as ours, or `default` for one we do not know."""
    try:
        return TaskErrorCode(value) if value else default
    except ValueError:
        return default
