"""GET /files/{key}: result files behind signed, expiring URLs; Range requests supported."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from vidgate import errors
from vidgate.api.deps import GatewayDep
from vidgate.api.errors import responses

router = APIRouter(tags=["files"])


@router.get(
    "/files/{key}",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The file (or the requested range)"},
        **responses(errors.Forbidden, auth=False),
    },
)
async def download_file(
    key: str,
    gateway: GatewayDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    if not gateway.signer.is_valid(key, expires=expires, signature=signature):
        raise errors.Forbidden("this link is invalid or has expired; fetch the task again")
    path = gateway.store.path_of(key)
    if path is None:
        raise errors.NotFound("file not found")
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=key,
        content_disposition_type="inline",
        headers={"Cache-Control": "private, max-age=3600"},
    )
