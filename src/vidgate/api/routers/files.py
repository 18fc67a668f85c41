"""GET /files/{key}: result files behind signed, expiring URLs; Range requests supported.
With S3 storage the URLs point into the bucket, and this route finds nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from vidgate import errors
from vidgate.api.deps import GatewayDep
from vidgate.api.errors import responses
from vidgate.api.file_response import file_response

router = APIRouter(tags=["files"])


# HEAD is answered as this GET without the body (RequestContextMiddleware), Range included.
@router.get(
    "/files/{key}",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The whole file"},
        206: {"content": {"video/mp4": {}}, "description": "The requested range (one range)"},
        **responses(errors.Forbidden, errors.RangeNotSatisfiable, auth=False),
    },
)
async def download_file(
    key: str,
    request: Request,
    gateway: GatewayDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    store = gateway.store
    if not store.serves_files:  # S3: result URLs point into the bucket, never here
        raise errors.NotFound("file not found: this gateway's result files are in its bucket")
    if not store.verify(key, expires=expires, signature=signature):
        raise errors.Forbidden("this link is invalid or has expired; fetch the task again")
    found = await store.local_file(key)
    if found is None:
        raise errors.NotFound("file not found")
    return file_response(
        request,
        found,
        media_type="video/mp4",
        filename=key,
        headers={"Cache-Control": "private, max-age=3600"},
    )
