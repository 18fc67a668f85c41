"""GET /api/v1/models: the model catalogue with options and prices (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from vidgate.api.deps import GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelInfo(BaseModel):
    id: str
    description: str
    types: list[str]
    options: dict[str, dict[str, Any]]
    price: dict[str, Any]
    time_limit_seconds: int
    providers: list[str]


@router.get("", response_model=Envelope[list[ModelInfo]], responses=responses(auth=False))
async def list_models(request: Request, gateway: GatewayDep) -> Envelope[list[ModelInfo]]:
    data = [
        ModelInfo(
            **model.public_view(),
            providers=[route.channel.provider for route in gateway.registry.routes_for(model.id)],
        )
        for model in gateway.catalogue.models.values()
    ]
    return Envelope(data=data, request_id=request_id_of(request))
