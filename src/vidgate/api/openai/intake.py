"""Reading POST /v1/videos: a JSON body, or multipart form fields as the openai SDK sends them,
with an optional reference image (`input_reference`): an uploaded file, `{"image_url": ...}`
(multipart: `input_reference[image_url]`) with an http(s) URL or a base64 data URL.

The bodies are read here rather than by FastAPI because one route takes both encodings; the
refusals are the same InvalidRequest messages, each starting with the field it is about.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from vidgate.api.errors import describe_validation_errors
from vidgate.api.openai.schemas import MAX_URL_CHARS, CreateVideoFields
from vidgate.errors import InvalidRequest, UnsupportedMediaType

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
REFERENCE = "input_reference"
# Multipart spells the object's fields with brackets: input_reference[image_url].
_REFERENCE_FIELDS = {f"{REFERENCE}[image_url]": "image_url", f"{REFERENCE}[file_id]": "file_id"}
MAX_FORM_FIELDS = 20


@dataclass(frozen=True)
class CreateRequest:
    fields: CreateVideoFields
    image_url: str | None = None  # a reference image the worker fetches (safely)
    image: bytes | None = None  # a reference image sent with the request (upload, data URL)


async def read_create_request(request: Request) -> CreateRequest:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    upload: bytes | None = None
    if media_type == "application/json" or media_type.endswith("+json"):
        raw = await _json_object(request)
    elif media_type in FORM_TYPES:
        raw, upload = await _form_fields(request)
    else:
        raise UnsupportedMediaType(
            "Content-Type must be application/json or multipart/form-data "
            f"(got {media_type or 'none'})"
        )
    try:
        fields = CreateVideoFields.model_validate(raw)
    except ValidationError as error:
        raise InvalidRequest(describe_validation_errors(error.errors())) from None
    return _with_reference(fields, upload)


async def _json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        raw = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"malformed JSON body: {error}") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return raw


async def _form_fields(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """The form's fields (the reference object's bracketed ones gathered) and the uploaded
    reference image, if one came."""
    form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    try:
        raw: dict[str, Any] = {}
        reference: dict[str, Any] = {}
        upload: bytes | None = None
        for name, value in form.multi_items():
            if name == REFERENCE and isinstance(value, UploadFile):
                upload = await value.read()
            elif name == REFERENCE:
                raise InvalidRequest(
                    f"{REFERENCE}: send an image file here, or the URL as {REFERENCE}[image_url]"
                )
            elif name in _REFERENCE_FIELDS:
                reference[_REFERENCE_FIELDS[name]] = value
            elif name in raw:
                raise InvalidRequest(f"{name}: given more than once")
            else:
                raw[name] = value
        if reference:
            raw[REFERENCE] = reference
        return raw, upload
    finally:
        await form.close()


def _with_reference(fields: CreateVideoFields, upload: bytes | None) -> CreateRequest:
    reference = fields.input_reference
    if reference is None:
        return CreateRequest(fields=fields, image=upload)
    if upload is not None:
        raise InvalidRequest(f"{REFERENCE}: give an image file or an image_url, not both")
    if reference.file_id is not None:
        raise InvalidRequest(
            f"{REFERENCE}.file_id: this gateway has no Files API; upload the image as "
            f"{REFERENCE} or give {REFERENCE}.image_url"
        )
    url = reference.image_url
    if url is None:
        raise InvalidRequest(f"{REFERENCE}.image_url: field required")
    if url[:5].lower() == "data:":
        return CreateRequest(fields=fields, image=decode_data_url(url))
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{REFERENCE}.image_url: must be an http(s) URL or a base64 data: URL")
    if len(url) > MAX_URL_CHARS:
        raise InvalidRequest(
            f"{REFERENCE}.image_url: URL is too long ({MAX_URL_CHARS} characters at most)"
        )
    return CreateRequest(fields=fields, image_url=url)


def decode_data_url(url: str) -> bytes:
    """The bytes of a `data:<type>;base64,<data>` URL (the image's kind is judged by its
    bytes later, not by the type it claims)."""
    header, comma, data = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise InvalidRequest(
            f"{REFERENCE}.image_url: a data URL must be base64 (data:image/png;base64,...)"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{REFERENCE}.image_url: the data URL is not valid base64") from None
