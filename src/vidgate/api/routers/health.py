"""Liveness and readiness probes (no auth, plain envelope)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from vidgate.api.deps import GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.errors import ServiceUnavailable

router = APIRouter(tags=["health"])
logger = logging.getLogger("vidgate.api")


class HealthData(BaseModel):
    status: str


class ReadyData(BaseModel):
    status: str
    database: str


@router.get("/healthz", response_model=Envelope[HealthData])
async def healthz(request: Request) -> Envelope[HealthData]:
    return Envelope(data=HealthData(status="ok"), request_id=request_id_of(request))


@router.get(
    "/readyz",
    response_model=Envelope[ReadyData],
    responses=responses(auth=False),
)
async def readyz(request: Request, gateway: GatewayDep) -> Envelope[ReadyData]:
    try:
        async with gateway.db.read() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        logger.warning("readiness check failed: %s", exc)
        raise ServiceUnavailable("database is not reachable") from exc
    return Envelope(
        data=ReadyData(status="ready", database=gateway.db.dialect),
        request_id=request_id_of(request),
    )
