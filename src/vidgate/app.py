"""create_app(settings) -> FastAPI: the whole HTTP surface of the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from vidgate import __version__
from vidgate.api.apimall import account, admin, keys, models, usage, videos, webhooks
from vidgate.api.apimall.request_schema import generate_request_components
from vidgate.api.errors import drop_framework_validation_responses, install_error_handlers
from vidgate.api.openai import videos as openai_videos
from vidgate.api.openai.request_schema import create_video_components
from vidgate.api.request_context import RequestContextMiddleware
from vidgate.api.routers import files, health, metrics
from vidgate.gateway import Gateway
from vidgate.settings import Settings


def create_app(settings: Settings | None = None, *, gateway: Gateway | None = None) -> FastAPI:
    settings = settings or (gateway.settings if gateway else Settings())
    owned = gateway is None
    gateway = gateway or Gateway.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop_worker()
        if owned:
            await gateway.close()

    app = FastAPI(
        title="vidgate",
        version=__version__,
        description="Self-hostable, API Mall-compatible video generation gateway.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    # Routes match in order: the status poll, the hottest, comes first.
    for router in (
        videos.router,
        openai_videos.router,
        files.router,
        health.router,
        account.router,
        usage.router,
        keys.router,
        models.router,
        webhooks.router,
        admin.router,
    ):
        app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = drop_framework_validation_responses(default_openapi())
            # The create body as the catalogue defines it: its models, types and options.
            document["components"]["schemas"].update(generate_request_components(gateway.catalogue))
            document["components"]["schemas"].update(create_video_components(gateway.catalogue))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        allowed_hosts=settings.allowed_hosts,
    )
    return app
