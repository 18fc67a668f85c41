"""GET /api/v1/account/balances."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.billing import service as billing

router = APIRouter(prefix="/api/v1/account", tags=["account"])


class Balances(BaseModel):
    credits: int
    # API Mall reports API credits separately; vidgate has one balance per account.
    api_credits: int


@router.get("/balances", response_model=Envelope[Balances], responses=responses())
async def get_balances(
    request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[Balances]:
    async with gateway.db.read() as session:
        credits = await billing.balance(session, principal.account_id)
    return Envelope(
        data=Balances(credits=credits, api_credits=credits), request_id=request_id_of(request)
    )
