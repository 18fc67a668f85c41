"""The task state machine: public status, and the worker's step within `processing`."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"  # accepted and paid, not yet picked up
    PROCESSING = "processing"  # a worker has started it
    COMPLETED = "completed"
    FAILED = "failed"  # refunded


TERMINAL = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value)
IN_FLIGHT = (TaskStatus.PENDING.value, TaskStatus.PROCESSING.value)


class TaskStep(StrEnum):
    SUBMIT = "submit"  # fetch inputs, send to the provider, persist its job id
    POLL = "poll"  # ask the provider until its job ends, then store the result
    DONE = "done"
