"""The video task endpoints of the API Mall surface."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from vidgate import errors
from vidgate.api.apimall.schemas import CreatedTask, GenerateRequest, HistoryPage, TaskView
from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.tasks import service
from vidgate.tasks.states import TERMINAL

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
    ),
)
async def generate(
    body: GenerateRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retry-safe creates: same key and body return the same task",
        ),
    ] = None,
) -> Envelope[CreatedTask]:
    """Create a video generation task; its price is debited at once."""
    outcome = await service.create_task(
        gateway.db,
        principal=principal,
        request=body,
        raw_body=body.model_dump(mode="json", exclude_none=True, by_alias=True),
        idempotency_key=idempotency_key,
        catalogue=gateway.catalogue,
        registry=gateway.registry,
        default_max_concurrent_jobs=gateway.settings.max_concurrent_jobs,
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        gateway.wake_worker()
    return Envelope(data=outcome.task, request_id=request_id_of(request))


@router.get("/history", response_model=Envelope[HistoryPage], responses=responses())
async def video_history(
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Envelope[HistoryPage]:
    """This account's tasks, newest first."""
    data = await service.history(
        gateway.db, account_id=principal.account_id, page=page, limit=limit, signer=gateway.signer
    )
    return Envelope(data=data, request_id=request_id_of(request))


@router.get("/{task_id}", response_model=Envelope[TaskView], responses=responses())
async def get_video(
    task_id: str,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
) -> Envelope[TaskView]:
    """A task's status; `video_url` is set once it is completed."""
    async with gateway.db.read() as session:
        task = await service.load_task(session, account_id=principal.account_id, task_id=task_id)
    if task.status not in TERMINAL:
        response.headers[POLL_AFTER_HEADER] = POLL_AFTER_MS
    return Envelope(data=service.task_view(task, gateway.signer), request_id=request_id_of(request))
