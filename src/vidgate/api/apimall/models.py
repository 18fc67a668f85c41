"""GET /api/v1/models: the model catalogue with options and prices (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vidgate.api.deps import GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of

router = APIRouter(prefix="/api/v1/models", tags=["models"])


class ModelInfo(BaseModel):
    id: str
    description: str
    types: list[str]
    options: dict[str, dict[str, Any]] = Field(
        description=(
            "Per option: `type` (string, integer or boolean) and `default`; an enum is a string "
            "with `values`, a free string has `max_length`, an integer `min` and `max` "
            "(null: unbounded)"
        ),
        examples=[
            {
                "n_frames": {"type": "string", "values": ["10", "15"], "default": "10"},
                "seed": {"type": "integer", "min": 0, "max": 4294967295, "default": None},
            }
        ],
    )
    price: dict[str, Any]
    time_limit_seconds: int
    queue: str = Field(description="The worker queue that runs this model's tasks")
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
