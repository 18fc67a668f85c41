"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, Request, Response

from vidgate.errors import RateLimited
from vidgate.keys.service import Principal, authenticate

if TYPE_CHECKING:
    from vidgate.gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    # async: a plain def dependency would cost a threadpool hop on every request.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated["Gateway", Depends(get_gateway)]


async def current_principal(
    request: Request,
    response: Response,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """Authenticate the Bearer key, then apply its request rate limit."""
    gateway: Gateway = request.app.state.gateway
    principal = await authenticate(gateway.db, authorization)
    settings = gateway.settings
    rate = principal.rate_limit_per_second or settings.rate_limit_per_second
    burst = max(1, round(settings.rate_limit_burst * rate / settings.rate_limit_per_second))
    decision = await gateway.rate_limiter.hit(
        f"key:{principal.key_id}", rate_per_s=rate, burst=burst
    )
    if not decision.allowed:
        raise RateLimited(
            f"Rate limit exceeded: {rate:g} requests/s per key; retry after the Retry-After delay",
            headers=decision.headers(),
        )
    response.headers.update(decision.headers())
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
