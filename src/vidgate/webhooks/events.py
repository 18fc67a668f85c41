"""The event types a webhook carries, and the statuses of endpoints and deliveries."""

from __future__ import annotations

from enum import StrEnum

from vidgate.tasks.states import TaskStatus


class WebhookEvent(StrEnum):
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"


# The event of each ending; a task ends exactly once, so it makes each event exactly once.
EVENT_OF_ENDING: dict[str, WebhookEvent] = {
    TaskStatus.COMPLETED.value: WebhookEvent.JOB_COMPLETED,
    TaskStatus.FAILED.value: WebhookEvent.JOB_FAILED,
    TaskStatus.CANCELLED.value: WebhookEvent.JOB_CANCELLED,
}


class EndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # its URL answered 410 Gone
    DELETED = "deleted"  # by its account; hidden from every answer


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next try
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # out of tries, 410, or its endpoint went away
