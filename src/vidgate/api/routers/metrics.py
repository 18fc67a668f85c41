"""GET /metrics: Prometheus's text format, for scrapers (not in the OpenAPI document).

No API key and no per-key rate limit: a scraper is an operator's, not a customer's. Open by
default, as exporters are; VIDGATE_METRICS_TOKEN makes it ask for that Bearer token (set it
when the API port is reachable from outside).
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from vidgate.api.deps import GatewayDep
from vidgate.errors import Unauthorized
from vidgate.metrics import scrape

router = APIRouter(include_in_schema=False)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


@router.get("/metrics")
async def metrics(request: Request, gateway: GatewayDep) -> Response:
    token = gateway.settings.metrics_token
    if token and not _authorized(request, token):
        raise Unauthorized("/metrics needs the metrics token: Authorization: Bearer <token>")
    gauges = await scrape.read_gauges(gateway.db, queues=gateway.catalogue.queues)
    body = await asyncio.to_thread(
        scrape.render,
        gauges,
        models=sorted(gateway.catalogue.models),
        queues=gateway.catalogue.queues,
    )
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
