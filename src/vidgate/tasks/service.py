"""The task rules: create (validate, price, route, limit, idempotency, debit) and reads.

It takes a surface-free command (tasks/commands.py) and returns task records; the presenters
beside each surface's routers turn those into wire bodies. Each call is one transaction run by
the database backend (db/backend.py) over the repository's queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from ulid import ULID

from vidgate.billing import service as billing
from vidgate.db.backend import notify_queue
from vidgate.db.engine import Database
from vidgate.db.types import utcnow
from vidgate.errors import (
    Forbidden,
    IdempotencyKeyInUse,
    InvalidRequest,
    NotFound,
    TooManyConcurrentJobs,
)
from vidgate.keys import budget
from vidgate.keys.service import Principal
from vidgate.moderation.base import Moderator
from vidgate.net.fetch import IPNetwork, never_public_reason
from vidgate.providers.catalogue import Catalogue, ModelSpec
from vidgate.tasks import idempotency, repository, transitions
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.repository import TaskRecord
from vidgate.tasks.states import TaskStatus, TaskStep

# How long a create waits for a concurrent request holding the same Idempotency-Key (PostgreSQL).
IDEMPOTENCY_LOCK_TIMEOUT_MS = 10_000
CONCURRENCY_RETRY_AFTER_S = 10


def new_task_id() -> str:
    return f"vid_{ULID()}"


class Routing(Protocol):
    def check_routable(self, model: ModelSpec) -> None:
        """Raise UpstreamUnavailable (503) when no worker could take this model's tasks now."""
        ...


@dataclass(frozen=True)
class CreateOutcome:
    task: TaskRecord
    remaining_credits: int  # the balance right after this task was paid for
    request_id: str  # of the answer: this request's, or the first one's for a replay
    replayed: bool


@dataclass(frozen=True, kw_only=True)
class Validated:
    model: ModelSpec
    options: dict[str, Any]
    credits: int
    params: dict[str, Any]


def validate(
    command: CreateTask, catalogue: Catalogue, *, allowed_networks: tuple[IPNetwork, ...] = ()
) -> Validated:
    """`allowed_networks`: the operator's allow-list for otherwise refused input addresses."""
    model = catalogue.get(command.model)
    if command.type not in model.types:
        allowed = ", ".join(model.types)
        raise InvalidRequest(f"type: model {model.id} supports {allowed} (got {command.type!r})")
    options = model.normalize_options(command.options)
    if command.type == "image-to-video" and not (command.image_urls or command.input_file_keys):
        raise InvalidRequest("image_urls: image-to-video needs at least one image URL")
    if command.type == "text-to-video" and not (command.prompt and command.prompt.strip()):
        raise InvalidRequest("prompt: text-to-video needs a prompt")
    if command.type == "video-to-video" and not command.video_url:
        raise InvalidRequest("video_url: video-to-video needs a source video URL")
    # URLs no DNS answer could make fetchable are refused now, before anything is charged;
    # names are resolved and judged when they are fetched.
    urls: list[tuple[str, str | None]] = [
        (f"image_urls[{i}]", url) for i, url in enumerate(command.image_urls)
    ]
    urls += [("video_url", command.video_url), ("callBackUrl", command.callback_url)]
    for field, url in urls:
        if url is None:
            continue
        reason = never_public_reason(url, allowed_networks=allowed_networks)
        if reason is not None:
            raise InvalidRequest(f"{field}: {reason}")
    shape = model.shape(options)
    params: dict[str, Any] = {
        "options": options,
        "image_urls": list(command.image_urls),
        "video_url": command.video_url,
        # The provider request's shape, computed once from the model spec.
        "width": shape.width,
        "height": shape.height,
        "seconds": shape.seconds,
    }
    if command.input_file_keys:  # read by the worker from the FileStore (worker/media.py)
        params["input_file_keys"] = list(command.input_file_keys)
    return Validated(model=model, options=options, credits=model.credits(options), params=params)


def refuse_unlisted_model(principal: Principal, model_id: str) -> None:
    """A key with a model allow-list may create tasks on those models only (before any
    charge)."""
    allowed = principal.allowed_models
    if allowed is not None and model_id not in allowed:
        raise Forbidden(
            f"model {model_id} is not allowed for this API key (allowed: "
            f"{', '.join(sorted(allowed))})"
        )


async def create_task(
    db: Database,
    *,
    principal: Principal,
    command: CreateTask,
    request_id: str,
    idempotency_key: str | None,
    catalogue: Catalogue,
    routing: Routing,
    default_max_concurrent_jobs: int,
    allowed_networks: tuple[IPNetwork, ...] = (),
    moderator: Moderator | None = None,
    lock_timeout_ms: int = IDEMPOTENCY_LOCK_TIMEOUT_MS,
    idempotency_retention: timedelta = idempotency.RETENTION,
) -> CreateOutcome:
    checked = validate(command, catalogue, allowed_networks=allowed_networks)
    refuse_unlisted_model(principal, checked.model.id)
    key = idempotency.check_key(idempotency_key) if idempotency_key is not None else None
    body_fingerprint = command.fingerprint()
    now = utcnow()
    replaying = key is not None and await idempotency.answered_before(
        db.backend,
        account_id=principal.account_id,
        key=key,
        surface=command.surface,
        body_fingerprint=body_fingerprint,
        now=now,
    )
    if moderator is not None and not replaying:
        # Before any charge: a blocked prompt leaves no trace. A replay was judged already.
        await moderator.check(model=checked.model.id, prompt=command.prompt or "")
    if not replaying:
        routing.check_routable(checked.model)
    max_jobs = principal.max_concurrent_jobs or default_max_concurrent_jobs
    backend = db.backend
    task_id = new_task_id()
    values: dict[str, Any] = {
        "id": task_id,
        "account_id": principal.account_id,
        "api_key_id": principal.key_id,
        "model": checked.model.id,
        "type": command.type,
        "prompt": command.prompt,
        "params": checked.params,
        "callback_url": command.callback_url,
        "provider_request_id": f"provider_req_{ULID()}",
        "surface": command.surface,
        "queue": checked.model.queue,
        "status": TaskStatus.PENDING.value,
        "step": TaskStep.SUBMIT.value,
        "attempts": 0,
        "run_after": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "deadline_at": now + timedelta(seconds=checked.model.time_limit_seconds),
        "channel": None,
        "upstream_id": None,
        "progress": 0,
        "credits_used": checked.credits,
        "credits_refunded": 0,
        "channel_cost": None,
        "error_code": None,
        "error_message": None,
        "result_urls": [],
        "file_key": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "completed_at": None,
        "deleted_at": None,
        "remixed_from": command.remixed_from,
        "files_expired_at": None,
        "budget_period_start": None,
    }

    def work(conn: Connection) -> CreateOutcome:
        backend.begin_create(conn, lock_timeout_ms=lock_timeout_ms)
        if key is not None:
            replay = idempotency.claim(
                conn,
                account_id=principal.account_id,
                key=key,
                surface=command.surface,
                body_fingerprint=body_fingerprint,
                now=now,
                retention=idempotency_retention,
            )
            if replay is not None:
                return _replay(conn, replay)
        if repository.take_job_slot(conn, api_key_id=principal.key_id, max_jobs=max_jobs) is None:
            in_flight = repository.in_flight_jobs(conn, api_key_id=principal.key_id)
            raise TooManyConcurrentJobs(
                f"Too many concurrent jobs: this key has {in_flight} tasks in flight "
                f"(limit {max_jobs}); wait for one to finish",
                headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)},
            )
        row = dict(values)
        if principal.budget is not None and checked.credits > 0:
            # The key's budget for this period: one conditional upsert (keys/budget.py).
            row["budget_period_start"] = budget.take(
                conn,
                api_key_id=principal.key_id,
                budget=principal.budget,
                amount=checked.credits,
                at=now,
            )
        repository.insert_task(conn, row)
        transitions.created(conn, task_id=task_id, account_id=principal.account_id, at=now)
        notify_queue(conn, checked.model.queue)  # workers in other processes: at commit
        remaining = billing.debit_task(
            conn, account_id=principal.account_id, amount=checked.credits, task_id=task_id
        )
        if key is not None:
            idempotency.answered(
                conn,
                account_id=principal.account_id,
                key=key,
                task_id=task_id,
                request_id=request_id,
                status_code=200,
            )
        return CreateOutcome(TaskRecord(**row), remaining, request_id, replayed=False)

    try:
        return await backend.run_write(work)
    except OperationalError as exc:
        if key is not None and backend.is_lock_timeout(exc):
            raise IdempotencyKeyInUse(headers={"Retry-After": "1"}) from exc
        raise


def _replay(conn: Connection, answer: idempotency.Answered) -> CreateOutcome:
    task = repository.get(conn, answer.task_id)
    remaining = billing.balance_after_debit(conn, task_id=answer.task_id)
    if task is None or remaining is None:  # only if someone deleted rows by hand
        raise NotFound(f"task {answer.task_id} of this Idempotency-Key no longer exists")
    return CreateOutcome(task, remaining, answer.request_id, replayed=True)


async def get_task(db: Database, *, account_id: int, task_id: str) -> TaskRecord:
    if not task_id.startswith("vid_") or len(task_id) > 40:
        raise NotFound(f"task {task_id} not found")
    task = await repository.read(db.backend, task_id)
    # Another account's task is "not found" too: never confirm that an id exists.
    if task is None or task.account_id != account_id:
        raise NotFound(f"task {task_id} not found")
    return task


async def history(
    db: Database, *, account_id: int, page: int, limit: int
) -> tuple[int, list[TaskRecord]]:
    return await db.backend.run_read(
        lambda conn: repository.history(
            conn, account_id=account_id, offset=(page - 1) * limit, limit=limit
        )
    )
