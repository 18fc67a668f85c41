"""The video task endpoints of the API Mall surface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import WithJsonSchema

from vidgate import errors
from vidgate.api.apimall import presenters
from vidgate.api.apimall.schemas import CreatedTask, GenerateRequest, HistoryPage, TaskView
from vidgate.api.deps import CurrentPrincipal, GatewayDep, authorize
from vidgate.api.envelope import Envelope, envelope_bytes
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.api.text_patterns import stripped_printable
from vidgate.tasks import cancel, event_stream, repository, service
from vidgate.tasks.idempotency import MAX_KEY_LENGTH
from vidgate.tasks.repository import TaskRecord

if TYPE_CHECKING:
    from vidgate.gateway import Gateway

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])

# Suggested delay between status polls while a task is in flight (the SDK honours it).
POLL_AFTER_HEADER = "X-Poll-After-Ms"
POLL_AFTER_MS = "2000"
MAX_EVENT_ID = 2**63 - 1  # task_events.id is a BIGINT


@router.post(
    "/generate",
    response_model=Envelope[CreatedTask],
    responses=responses(
        errors.InsufficientCredits,
        errors.BudgetExceeded,
        errors.IdempotencyKeyReused,
        errors.IdempotencyKeyInUse,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.TooManyConcurrentJobs,
        errors.UpstreamUnavailable,
        errors.ContentBlocked,
    ),
)
async def generate(
    body: GenerateRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description=(
                "Retry-safe creates: same key and body return the same task. "
                f"1-{MAX_KEY_LENGTH} printable characters; surrounding whitespace is ignored"
            ),
            # Stated, not validated: check_key refuses the rest with its own message.
            json_schema_extra={"pattern": stripped_printable(MAX_KEY_LENGTH)},
        ),
    ] = None,
) -> Response:
    """Create a video generation task; its price is debited at once."""
    gateway: Gateway = request.app.state.gateway
    outcome = await gateway.create_task(
        principal=principal,
        command=presenters.command_of(body),
        request_id=request_id_of(request),
        idempotency_key=idempotency_key,
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    data = presenters.created(outcome.task, remaining_credits=outcome.remaining_credits)
    # A replay carries the first answer's request id: the same body, byte for byte. Built as
    # bytes, like the status poll's, rather than validating our own model again.
    answer = Response(
        envelope_bytes(data.model_dump_json().encode(), outcome.request_id),
        media_type="application/json",
    )
    answer.headers.raw.extend(response.headers.raw)
    return answer


@router.get("/history", response_model=Envelope[HistoryPage], responses=responses())
async def video_history(
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Envelope[HistoryPage]:
    """This account's tasks, newest first."""
    total, tasks = await service.history(
        gateway.db, account_id=principal.account_id, page=page, limit=limit
    )
    data = presenters.history_page(
        tasks, total=total, page=page, limit=limit, url_for=gateway.url_for
    )
    return Envelope(data=data, request_id=request_id_of(request))


@router.get("/{task_id}", response_model=Envelope[TaskView], responses=responses())
async def get_video(task_id: str, request: Request) -> Response:
    """A task's status; `video_url` is set once it is completed."""
    # The hottest route: no injected dependencies (FastAPI's solving cost more than the
    # database read), and the body is built as bytes (an ended task's once, from the cache)
    # instead of validating our own model again on the way out.
    principal, headers = await authorize(request)
    gateway: Gateway = request.app.state.gateway
    cache = gateway.rendered_tasks
    data = cache.get(presenters.SURFACE, task_id, account_id=principal.account_id)
    if data is None:
        task = await service.get_task(gateway.db, account_id=principal.account_id, task_id=task_id)
        data = presenters.task_view(task, gateway.url_for).model_dump_json().encode()
        if task.is_terminal:
            cache.put(presenters.SURFACE, task.id, account_id=task.account_id, body=data)
        else:
            headers[POLL_AFTER_HEADER] = POLL_AFTER_MS
    body = envelope_bytes(data, request_id_of(request))
    return Response(body, media_type="application/json", headers=headers)


@router.post(
    "/{task_id}/cancel",
    response_model=Envelope[TaskView],
    responses=responses(errors.TaskAlreadyEnded),
)
async def cancel_video(
    task_id: str, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[TaskView]:
    """Cancel a pending or processing task: refunded in full if no upstream had accepted it
    yet, else as its channel's policy says. The answer is the task as the status endpoint
    shows it (status failed, error_code cancelled); 409 task_ended if it had ended already."""
    task = await cancel.cancel_task(
        gateway.db,
        account_id=principal.account_id,
        task_id=task_id,
        catalogue=gateway.catalogue,
        providers=gateway.registry,
    )
    # It was in flight, so nothing should be cached; but a surface that rendered it must not
    # keep showing it running.
    gateway.rendered_tasks.forget(task_id)
    data = presenters.task_view(task, gateway.url_for)
    return Envelope(data=data, request_id=request_id_of(request))


async def _task_to_follow(
    task_id: str, principal: CurrentPrincipal, gateway: GatewayDep
) -> TaskRecord:
    # A dependency, so that a bad key or another account's task is answered (401, 404) before
    # the stream starts.
    return await service.get_task(gateway.db, account_id=principal.account_id, task_id=task_id)


def _json_errors(documented: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A route's error responses stated as JSON: FastAPI would give them the route's own media
    type, and the errors of a stream are envelopes like everywhere else."""
    envelope = {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
    return {
        status: {"description": answer["description"], "content": {"application/json": envelope}}
        for status, answer in documented.items()
    }


# The stream is FastAPI's own Server-Sent Events support (fastapi.sse, since 0.135): the
# framing, Cache-Control: no-cache, and a keep-alive comment after 15 s without an event,
# with no dependency to add (sse-starlette would bring the same).
@router.get(
    "/{task_id}/events",
    response_class=EventSourceResponse,
    responses=_json_errors(responses()),
)
async def video_events(
    task: Annotated[TaskRecord, Depends(_task_to_follow)],
    gateway: GatewayDep,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=MAX_EVENT_ID,
            description="The id of the last event received: the stream resumes after it",
        ),
        # Absent or an id: a header has no null to send.
        WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}),
    ] = None,
) -> AsyncIterator[ServerSentEvent]:
    """The task's events as Server-Sent Events (`id`: the event's id, `event`: created,
    submitted, progress, completed, failed or cancelled; `data`: JSON): first every event
    after Last-Event-ID (without it, from the first), then each new one as it happens. The
    stream ends after the terminal event, whose data carries the task as the status endpoint
    shows it."""
    async for event in event_stream.follow(gateway.db, task, after_id=last_event_id or 0):
        ended = None
        if event_stream.is_terminal(event):  # its data carries the task as it ended
            ended = await repository.read(gateway.db.backend, task.id)
        view = presenters.event_view(event, ended, gateway.url_for)
        yield ServerSentEvent(id=str(event.id), event=event.kind, raw_data=view.model_dump_json())
