"""The /v1/videos endpoints: create (JSON or multipart), retrieve, list, delete, content and
remix, over the same tasks, keys and credits as the API Mall surface."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from vidgate import errors
from vidgate.api.deps import CurrentPrincipal, GatewayDep, authorize
from vidgate.api.errors import responses
from vidgate.api.file_response import file_response
from vidgate.api.openai import inputs, library, presenters
from vidgate.api.openai.intake import read_create_request
from vidgate.api.openai.request_schema import create_video_body
from vidgate.api.openai.schemas import DeletedVideo, RemixRequest, Variant, Video, VideoList
from vidgate.api.request_context import request_id_of
from vidgate.api.text_patterns import stripped_printable
from vidgate.keys.service import Principal
from vidgate.media.previews import SPRITESHEET_TYPE, THUMBNAIL_TYPE
from vidgate.net.fetch import never_public_reason
from vidgate.tasks import service
from vidgate.tasks.commands import CreateTask
from vidgate.tasks.idempotency import MAX_KEY_LENGTH

if TYPE_CHECKING:
    from vidgate.gateway import Gateway

router = APIRouter(prefix="/v1/videos", tags=["openai"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Retry-safe creates: same key and body return the same video. "
            f"1-{MAX_KEY_LENGTH} printable characters; surrounding whitespace is ignored"
        ),
        json_schema_extra={"pattern": stripped_printable(MAX_KEY_LENGTH)},
    ),
]
CREATE_ERRORS = (
    errors.InsufficientCredits,
    errors.BudgetExceeded,
    errors.IdempotencyKeyReused,
    errors.IdempotencyKeyInUse,
    errors.PayloadTooLarge,
    errors.UnsupportedMediaType,
    errors.TooManyConcurrentJobs,
    errors.UpstreamUnavailable,
    errors.ContentBlocked,
)
CONTENT_TYPES = {"video": "video/mp4", "thumbnail": THUMBNAIL_TYPE, "spritesheet": SPRITESHEET_TYPE}


def _json(model: BaseModel, headers: dict[str, str]) -> Response:
    return Response(model.model_dump_json(), media_type="application/json", headers=headers)


@router.post(
    "",
    response_model=Video,
    responses=responses(*CREATE_ERRORS, openai=True),
    openapi_extra={"requestBody": create_video_body()},
)
async def create_video(request: Request, idempotency_key: IdempotencyKey = None) -> Response:
    """Create a video; its price is debited at once. JSON, or multipart with an optional
    `input_reference` image file."""
    principal, headers = await authorize(request)
    gateway: Gateway = request.app.state.gateway
    intake = await read_create_request(request)
    if intake.image_url is not None:
        # The service judges it too, but names the field as the API Mall surface spells it.
        reason = never_public_reason(intake.image_url, allowed_networks=gateway.allowed_networks)
        if reason is not None:
            raise errors.InvalidRequest(f"input_reference.image_url: {reason}")
    image_key = inputs.input_key(intake.image) if intake.image is not None else None
    command = presenters.command_of(
        intake.fields, image_url=intake.image_url, input_file_key=image_key
    )
    if intake.image is not None and image_key is not None:
        # A request that cannot be created is refused before its image takes room in the store.
        service.validate(command, gateway.catalogue, allowed_networks=gateway.allowed_networks)
        await inputs.store_input(gateway.store, image_key, intake.image)
    return await _create(request, gateway, principal, headers, command, idempotency_key)


@router.get("", response_model=VideoList, responses=responses(openai=True))
async def list_videos(
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=library.MAX_PAGE)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: Annotated[str | None, Query(max_length=64, description="The last id seen")] = None,
) -> VideoList:
    """This account's videos, newest first (`order=asc`: oldest first), `limit` at a time."""
    tasks, has_more = await library.list_page(
        gateway.db,
        account_id=principal.account_id,
        limit=limit,
        ascending=order == "asc",
        after=after,
    )
    return presenters.video_list(
        tasks, has_more=has_more, retention=gateway.settings.result_retention
    )


@router.get("/{video_id}", response_model=Video, responses=responses(openai=True))
async def retrieve_video(video_id: str, request: Request) -> Response:
    """A video's status; while it is in flight, `openai-poll-after-ms` says when to ask again."""
    principal, headers = await authorize(request)
    gateway: Gateway = request.app.state.gateway
    task = await library.visible_video(
        gateway.db, account_id=principal.account_id, video_id=video_id
    )
    if not task.is_terminal:
        headers[presenters.POLL_AFTER_HEADER] = presenters.POLL_AFTER_MS
    return _json(presenters.video(task, retention=gateway.settings.result_retention), headers)


@router.delete(
    "/{video_id}",
    response_model=DeletedVideo,
    responses=responses(library.VideoInProgress, openai=True),
)
async def delete_video(
    video_id: str, principal: CurrentPrincipal, gateway: GatewayDep
) -> DeletedVideo:
    """Delete a completed or failed video's files; the task stays in the account's records."""
    await library.delete_video(gateway, account_id=principal.account_id, video_id=video_id)
    return DeletedVideo(id=video_id)


# HEAD is answered as this GET without the body (RequestContextMiddleware), Range included.
@router.get(
    "/{video_id}/content",
    response_class=FileResponse,
    responses={
        200: {
            "content": {media_type: {} for media_type in CONTENT_TYPES.values()},
            "description": "The whole file",
        },
        206: {"content": {"video/mp4": {}}, "description": "The requested range (one range)"},
        307: {"description": "S3 storage: the file's presigned URL in the bucket (`Location`)"},
        **responses(errors.RangeNotSatisfiable, openai=True),
    },
)
async def download_content(video_id: str, request: Request, variant: Variant = "video") -> Response:
    """A completed video's MP4, or a preview made from it: `thumbnail` (WebP) or `spritesheet`
    (JPEG, a grid of frames)."""
    principal, headers = await authorize(request)
    gateway: Gateway = request.app.state.gateway
    task = await library.visible_video(
        gateway.db, account_id=principal.account_id, video_id=video_id
    )
    key = await library.content_key(gateway, task, variant)
    store = gateway.store
    if not store.serves_files:
        # The bucket serves it (Range included); clients follow the redirect, as the openai
        # SDK does, and drop the API key on the way (another origin).
        redirect = {**headers, "Location": store.url_for(key), "Cache-Control": "no-store"}
        return Response(status_code=307, headers=redirect)
    found = await store.local_file(key)
    if found is None:
        raise library.ContentGone()
    return file_response(
        request,
        found,
        media_type=CONTENT_TYPES[variant],
        filename=key,
        headers={**headers, "Cache-Control": "private, max-age=3600"},
    )


@router.post(
    "/{video_id}/remix",
    response_model=Video,
    responses=responses(*CREATE_ERRORS, library.VideoNotCompleted, openai=True),
)
async def remix_video(
    video_id: str, body: RemixRequest, request: Request, idempotency_key: IdempotencyKey = None
) -> Response:
    """A new video from a completed one: same model, size and length, the new prompt; charged
    as a create."""
    principal, headers = await authorize(request)
    gateway: Gateway = request.app.state.gateway
    source = await library.remix_source(
        gateway.db, account_id=principal.account_id, video_id=video_id
    )
    command = presenters.remix_command(source, prompt=body.prompt)
    return await _create(request, gateway, principal, headers, command, idempotency_key)


async def _create(
    request: Request,
    gateway: Gateway,
    principal: Principal,
    headers: dict[str, str],
    command: CreateTask,
    idempotency_key: str | None,
) -> Response:
    outcome = await gateway.create_task(
        principal=principal,
        command=command,
        request_id=request_id_of(request),
        idempotency_key=idempotency_key,
    )
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    headers[presenters.POLL_AFTER_HEADER] = presenters.POLL_AFTER_MS
    return _json(presenters.created(outcome.task), headers)
