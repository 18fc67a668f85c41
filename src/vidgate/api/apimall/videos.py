"""The video task endpoints of the API Mall surface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from vidgate import errors
from vidgate.api.apimall import presenters
from vidgate.api.apimall.schemas import CreatedTask, GenerateRequest, HistoryPage, TaskView
from vidgate.api.deps import CurrentPrincipal, GatewayDep, authorize
from vidgate.api.envelope import Envelope, envelope_bytes
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.api.text_patterns import stripped_printable
from vidgate.tasks import service
from vidgate.tasks.idempotency import MAX_KEY_LENGTH

if TYPE_CHECKING:
    from vidgate.gateway import Gateway

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])

# Suggested delay between status polls while a task is in flight (the SDK honours it).
POLL_AFTER_HEADER = "X-Poll-After-Ms"
POLL_AFTER_MS = "2000"


@router.post(
    "/generate",
    response_model=Envelope[CreatedTask],
    responses=responses(
        errors.InsufficientCredits,
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
    outcome = await service.create_task(
        gateway.db,
        principal=principal,
        command=presenters.command_of(body),
        request_id=request_id_of(request),
        idempotency_key=idempotency_key,
        catalogue=gateway.catalogue,
        routing=gateway,
        default_max_concurrent_jobs=gateway.settings.max_concurrent_jobs,
        allowed_networks=gateway.allowed_networks,
        moderator=gateway.moderator,
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        gateway.wake_worker()
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
