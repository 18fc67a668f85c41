"""Renders every error, ours or the framework's, in the envelope of the surface it came from.

One handler, two renderers chosen by the request path: under /v1/ (the OpenAI-style surface)
errors read `{"error": {"message", "type", "param", "code"}}` with OpenAI's error types, so the
official SDKs raise their typed exceptions; everywhere else they take the API Mall envelope.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.errors import PydanticUserError
from sqlalchemy import exc as sqlalchemy_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidgate import errors
from vidgate.api.envelope import ErrorEnvelope, error_payload
from vidgate.api.request_context import request_id_of, request_method

logger = logging.getLogger("vidgate.api")

_BY_STATUS: dict[int, type[errors.VidgateError]] = {
    400: errors.InvalidRequest,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    415: errors.UnsupportedMediaType,
    429: errors.RateLimited,
    503: errors.ServiceUnavailable,
}


OPENAI_PATH_PREFIX = "/v1/"
# OpenAI's error types by HTTP status; any other 4xx is an invalid request, any 5xx api_error.
_OPENAI_TYPES = {
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
# Our codes that have a well-known OpenAI spelling; the others are passed on as they are.
_OPENAI_CODES = {
    "unauthorized": "invalid_api_key",
    "rate_limited": "rate_limit_exceeded",
    "insufficient_credits": "insufficient_quota",
    "content_blocked": "moderation_blocked",
}
# Our 400 messages start with the field they are about ("size: must be one of ...").
_PARAM_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\[[^\]]*\]|\.[A-Za-z_][A-Za-z0-9_]*)*): ")


class OpenAIErrorBody(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(examples=["size"])
    code: str | None = Field(examples=["invalid_request"])


class OpenAIErrorEnvelope(BaseModel):
    error: OpenAIErrorBody


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PATH_PREFIX)


def openai_error_payload(error: errors.VidgateError) -> dict[str, object]:
    status = error.status_code
    kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    found = _PARAM_PREFIX.match(error.message) if status == 400 else None
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": found.group(1) if found else None,
            "code": _OPENAI_CODES.get(error.code, error.code),
        }
    }


def error_response(error: errors.VidgateError, request: Request) -> JSONResponse:
    # The request-id header is added by RequestContextMiddleware to every response.
    if is_openai_path(request.scope["path"]):
        body = openai_error_payload(error)
    else:
        body = error_payload(
            code=error.code, message=error.message, request_id=request_id_of(request)
        )
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path


_JSON_TYPES = {type(None): "null", list: "an array", str: "a string", bool: "a boolean"}


def _required_fields(schema: dict[str, Any], defs: dict[str, Any]) -> list[str] | None:
    """The fields an object schema requires; for a union, those every variant requires."""
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        found = [fields for v in variants if (fields := _required_fields(v, defs)) is not None]
        if not found:
            return None
        return [name for name in found[0] if all(name in other for other in found[1:])]
    if schema.get("type") == "object" or "properties" in schema:
        return list(schema.get("required", []))
    return None


@lru_cache(maxsize=64)
def _required_body_fields(annotation: Any) -> tuple[str, ...]:
    schema = TypeAdapter(annotation).json_schema()
    return tuple(_required_fields(schema, schema.get("$defs", {})) or ())


def _body_required_fields(request: Request | None) -> tuple[str, ...]:
    """The top-level fields the matched route's body model requires (by their wire names)."""
    route = request.scope.get("route") if request is not None else None
    body_field = getattr(route, "body_field", None)
    if body_field is None:
        return ()
    try:
        return _required_body_fields(body_field.field_info.annotation)
    except (TypeError, PydanticUserError):  # unhashable or without a JSON schema: no names
        return ()


def _describe_whole_body(detail: dict[str, Any], required: tuple[str, ...]) -> list[str]:
    """A missing body, or one that is not an object: name the fields a user must send."""
    messages = []
    if detail.get("type") != "missing":
        value = detail.get("input")
        shown = _JSON_TYPES.get(type(value), "a number")
        messages.append(f"the request body must be a JSON object, not {shown}")
    messages += [f"{name}: field required" for name in required]
    return messages or ["a JSON object body is required"]


def describe_validation_errors(
    details: list[dict[str, Any]] | Any, request: Request | None = None
) -> str:
    """One readable sentence per problem, each naming its field."""
    messages: list[str] = []
    for detail in list(details)[:5]:
        location = tuple(detail.get("loc", ()))
        if location == ("body",) and not isinstance(detail.get("input"), dict):
            messages += _describe_whole_body(detail, _body_required_fields(request))
            continue
        if detail.get("type") == "json_invalid":
            ctx = detail.get("ctx") or {}
            messages.append(f"malformed JSON body: {ctx.get('error', 'could not parse')}")
            continue
        field = _field_path(detail.get("loc", ()))
        message = str(detail.get("msg", "invalid value")).removeprefix("Value error, ")
        if detail.get("type") == "missing":
            message = "field required"
        messages.append(f"{field}: {message}" if field else message)
    return "; ".join(messages) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.VidgateError)
    async def _vidgate_error(request: Request, exc: errors.VidgateError) -> JSONResponse:
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = describe_validation_errors(exc.errors(), request)
        return error_response(errors.InvalidRequest(message), request)

    @app.exception_handler(sqlalchemy_exc.OperationalError)
    @app.exception_handler(sqlalchemy_exc.TimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Database down, locked past the busy timeout, or the pool exhausted: the request may
        # succeed if retried, so 503 with Retry-After rather than a 500.
        logger.warning("database unavailable: %s", exc)
        error = errors.ServiceUnavailable(
            "the database is busy or unreachable; retry shortly", headers={"Retry-After": "2"}
        )
        return error_response(error, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_class = _BY_STATUS.get(exc.status_code, errors.InternalError)
        message = None
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"No route for {request_method(request)} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request_method(request)} is not allowed on {request.url.path}"
            headers["Allow"] = ", ".join(allowed_methods(request))
        elif isinstance(exc.detail, str) and error_class is not errors.InternalError:
            message = exc.detail
        error = error_class(message, headers=headers)
        return error_response(error, request)


def responses(
    *extra: type[errors.VidgateError], auth: bool = True, openai: bool = False
) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI error responses: the common ones, the key's (401, 429) when the route
    needs a key, and the route's own; `openai`: in the OpenAI-style shape."""
    envelope = OpenAIErrorEnvelope if openai else ErrorEnvelope
    common: list[type[errors.VidgateError]] = [
        errors.InvalidRequest,
        errors.NotFound,
        errors.InternalError,
        errors.ServiceUnavailable,  # the database is busy or unreachable
    ]
    if auth:  # 403: a key of an account that is pending approval or suspended
        common += [
            errors.Unauthorized,
            errors.Forbidden,
            errors.RateLimited,
            errors.RateLimitStoreUnavailable,
        ]
    result: dict[int | str, dict[str, Any]] = {}
    for cls in [*common, *extra]:
        previous = result.get(cls.status_code)
        description = cls.default_message
        if previous and description not in previous["description"]:
            description = f"{previous['description']}; {description}"
        result[cls.status_code] = {"model": envelope, "description": description}
    return result


def drop_framework_validation_responses(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 on every route with parameters; vidgate answers 400 instead."""
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _route_list(app: Any) -> Iterable[Any]:
    # FastAPI >= 0.160 keeps included routers whole; iter_route_contexts flattens them.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = app.router.routes if iterate is None else iterate(app.router.routes)
    return routes


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this path. The router's own 405 names only the first
    route that matched, wrong where GET and POST are separate routes; where a literal path and
    a template both match (/videos/generate, /videos/{task_id}), the literal one is the
    resource."""
    path = request.scope["path"].removeprefix(request.scope.get("root_path", "")) or "/"
    by_specificity: dict[int, set[str]] = {}
    for route in _route_list(request.app):
        regex, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and methods and regex.match(path):
            by_specificity.setdefault(regex.groups, set()).update(methods)
    if not by_specificity:
        return []
    methods = by_specificity[min(by_specificity)]
    if "GET" in methods:
        methods.add("HEAD")  # RequestContextMiddleware answers HEAD for every GET route
    # The usual order of the methods; any other after them.
    return sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m))
