"""Renders every error, ours or the framework's, in the contract's envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sqlalchemy_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidgate import errors
from vidgate.api.envelope import ErrorEnvelope, error_payload
from vidgate.api.request_context import request_id_of

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


def error_response(error: errors.VidgateError, request_id: str) -> JSONResponse:
    # The request-id header is added by RequestContextMiddleware to every response.
    return JSONResponse(
        error_payload(code=error.code, message=error.message, request_id=request_id),
        status_code=error.status_code,
        headers=error.headers,
    )


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path


def describe_validation_errors(details: list[dict[str, Any]] | Any) -> str:
    """One readable sentence per problem, each naming its field."""
    messages = []
    for detail in list(details)[:5]:
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
        return error_response(exc, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = describe_validation_errors(exc.errors())
        return error_response(errors.InvalidRequest(message), request_id_of(request))

    @app.exception_handler(sqlalchemy_exc.OperationalError)
    @app.exception_handler(sqlalchemy_exc.TimeoutError)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Database down, locked past the busy timeout, or the pool exhausted: the request may
        # succeed if retried, so 503 with Retry-After rather than a 500.
        logger.warning("database unavailable: %s", exc)
        error = errors.ServiceUnavailable(
            "the database is busy or unreachable; retry shortly", headers={"Retry-After": "2"}
        )
        return error_response(error, request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_class = _BY_STATUS.get(exc.status_code, errors.InternalError)
        message = None
        if exc.status_code == 404:
            message = f"No route for {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        elif isinstance(exc.detail, str) and error_class is not errors.InternalError:
            message = exc.detail
        error = error_class(message, headers=dict(exc.headers or {}))
        return error_response(error, request_id_of(request))


def responses(
    *extra: type[errors.VidgateError], auth: bool = True
) -> dict[int | str, dict[str, Any]]:
    """A route's OpenAPI error responses: the common ones, the key's (401, 429) when the route
    needs a key, and the route's own."""
    common: list[type[errors.VidgateError]] = [
        errors.InvalidRequest,
        errors.NotFound,
        errors.InternalError,
        errors.ServiceUnavailable,  # the database is busy or unreachable
    ]
    if auth:
        common += [errors.Unauthorized, errors.RateLimited]
    result: dict[int | str, dict[str, Any]] = {}
    for cls in [*common, *extra]:
        previous = result.get(cls.status_code)
        description = cls.default_message
        if previous and description not in previous["description"]:
            description = f"{previous['description']}; {description}"
        result[cls.status_code] = {"model": ErrorEnvelope, "description": description}
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
