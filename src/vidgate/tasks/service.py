"""Task creation and reads: validation, pricing, limits, idempotency and the debit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from ulid import ULID

from vidgate.api.apimall.schemas import (
    CreatedTask,
    GenerateRequest,
    HistoryItem,
    HistoryPage,
    TaskOutput,
    TaskView,
)
from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.db.models import ApiKey, VideoTask
from vidgate.db.types import iso_ms, utcnow
from vidgate.errors import (
    IdempotencyKeyInUse,
    InvalidRequest,
    NotFound,
    TooManyConcurrentJobs,
    UpstreamUnavailable,
)
from vidgate.keys.service import Principal
from vidgate.providers.catalogue import Catalogue, ModelSpec
from vidgate.providers.registry import ProviderRegistry
from vidgate.storage.local import UrlSigner
from vidgate.tasks import idempotency
from vidgate.tasks.states import IN_FLIGHT, TaskStatus, TaskStep

# How long a create waits for a concurrent request holding the same Idempotency-Key (PostgreSQL).
IDEMPOTENCY_LOCK_TIMEOUT_MS = 10_000
CONCURRENCY_RETRY_AFTER_S = 10


def new_task_id() -> str:
    return f"vid_{ULID()}"


@dataclass(frozen=True)
class CreateOutcome:
    task: CreatedTask
    replayed: bool


@dataclass(frozen=True, kw_only=True)
class ValidatedRequest:
    model: ModelSpec
    options: dict[str, str | bool]
    credits: int
    image_urls: list[str]


def validate_request(request: GenerateRequest, catalogue: Catalogue) -> ValidatedRequest:
    model = catalogue.get(request.model)
    if request.type not in model.types:
        allowed = ", ".join(model.types)
        raise InvalidRequest(f"type: model {model.id} supports {allowed} (got {request.type!r})")
    options = model.normalize_options(request.given_options())
    images = request.all_image_urls()
    if request.type == "image-to-video" and not images:
        raise InvalidRequest("image_urls: image-to-video needs at least one image URL")
    if request.type == "text-to-video" and not (request.prompt and request.prompt.strip()):
        raise InvalidRequest("prompt: text-to-video needs a prompt")
    if request.type == "video-to-video" and not request.video_url:
        raise InvalidRequest("video_url: video-to-video needs a source video URL")
    return ValidatedRequest(
        model=model, options=options, credits=model.credits(options), image_urls=images
    )


async def _count_in_flight(session: AsyncSession, key_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(VideoTask)
        .where(VideoTask.api_key_id == key_id, VideoTask.status.in_(IN_FLIGHT))
    )
    return int(count or 0)


async def create_task(
    db: Database,
    *,
    principal: Principal,
    request: GenerateRequest,
    raw_body: dict[str, Any],
    idempotency_key: str | None,
    catalogue: Catalogue,
    registry: ProviderRegistry,
    default_max_concurrent_jobs: int,
    lock_timeout_ms: int = IDEMPOTENCY_LOCK_TIMEOUT_MS,
) -> CreateOutcome:
    checked = validate_request(request, catalogue)
    if not registry.routes_for(checked.model.id):
        raise UpstreamUnavailable(
            f"no provider is configured for model {checked.model.id}",
            headers={"Retry-After": "60"},
        )
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    max_jobs = principal.max_concurrent_jobs or default_max_concurrent_jobs
    task_id = new_task_id()
    now = utcnow()
    try:
        async with db.write() as session:
            if db.dialect == "postgresql":
                await session.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
            if key is not None:
                replay = await idempotency.claim(
                    session,
                    account_id=principal.account_id,
                    key=key,
                    body_fingerprint=idempotency.fingerprint(raw_body),
                )
                if replay is not None:
                    return CreateOutcome(CreatedTask(**replay.data), replayed=True)
            if db.dialect == "postgresql":
                # Serialise creates per key so the in-flight count below cannot race.
                await session.execute(
                    select(ApiKey.id).where(ApiKey.id == principal.key_id).with_for_update()
                )
            in_flight = await _count_in_flight(session, principal.key_id)
            if in_flight >= max_jobs:
                raise TooManyConcurrentJobs(
                    f"Too many concurrent jobs: this key has {in_flight} tasks in flight "
                    f"(limit {max_jobs}); wait for one to finish",
                    headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)},
                )
            provider_request_id = f"provider_req_{ULID()}"
            session.add(
                VideoTask(
                    id=task_id,
                    account_id=principal.account_id,
                    api_key_id=principal.key_id,
                    model=checked.model.id,
                    type=request.type,
                    prompt=request.prompt,
                    params={"options": checked.options, "image_urls": checked.image_urls},
                    callback_url=request.callback_url,
                    provider_request_id=provider_request_id,
                    status=TaskStatus.PENDING.value,
                    step=TaskStep.SUBMIT.value,
                    run_after=now,
                    deadline_at=now + timedelta(seconds=checked.model.time_limit_seconds),
                    credits_used=checked.credits,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            remaining = await billing.debit(
                session, account_id=principal.account_id, amount=checked.credits, task_id=task_id
            )
            created = CreatedTask(
                task_id=task_id,
                request_id=provider_request_id,
                credits_used=checked.credits,
                remaining_credits=remaining,
                model=checked.model.id,
            )
            if key is not None:
                await idempotency.store_response(
                    session,
                    account_id=principal.account_id,
                    key=key,
                    task_id=task_id,
                    status_code=200,
                    data=created.model_dump(),
                )
    except OperationalError as exc:
        if key is not None and "lock timeout" in str(exc).lower():
            raise IdempotencyKeyInUse(headers={"Retry-After": "1"}) from exc
        raise
    return CreateOutcome(created, replayed=False)


async def load_task(session: AsyncSession, *, account_id: int, task_id: str) -> VideoTask:
    task = await session.get(VideoTask, task_id) if task_id.startswith("vid_") else None
    # Another account's task is "not found" too: never confirm that an id exists.
    if task is None or task.account_id != account_id:
        raise NotFound(f"task {task_id} not found")
    return task


def hosted_url(task: VideoTask, signer: UrlSigner) -> str | None:
    if task.status == TaskStatus.COMPLETED and task.file_key:
        return signer.url_for(task.file_key)
    return None


def task_view(task: VideoTask, signer: UrlSigner) -> TaskView:
    video_url = hosted_url(task, signer)
    return TaskView(
        task_id=task.id,
        model=task.model,
        type=task.type,
        status=task.status,
        progress=100 if task.status == TaskStatus.COMPLETED else task.progress,
        output=TaskOutput(resultUrls=[video_url] if video_url else []),
        video_url=video_url,
        error_message=task.error_message,
        failMsg=task.error_message,
        credits_used=task.credits_used,
        credits_refunded=task.credits_refunded,
        created_at=iso_ms(task.created_at) or "",
        updated_at=iso_ms(task.updated_at) or "",
        completed_at=iso_ms(task.completed_at),
    )


async def history(
    db: Database, *, account_id: int, page: int, limit: int, signer: UrlSigner
) -> HistoryPage:
    async with db.read() as session:
        total = await session.scalar(
            select(func.count()).select_from(VideoTask).where(VideoTask.account_id == account_id)
        )
        tasks = await session.scalars(
            select(VideoTask)
            .where(VideoTask.account_id == account_id)
            .order_by(VideoTask.created_at.desc(), VideoTask.id.desc())
            .offset((page - 1) * limit)
            .limit(limit)
        )
        items = [
            HistoryItem(
                task_id=task.id,
                model=task.model,
                created_at=iso_ms(task.created_at) or "",
                status=task.status,
                video_url=hosted_url(task, signer),
                credits_used=task.credits_used,
                credits_refunded=task.credits_refunded,
                completed_at=iso_ms(task.completed_at),
            )
            for task in tasks
        ]
    return HistoryPage(items=items, page=page, limit=limit, total=int(total or 0))
