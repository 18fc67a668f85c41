"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Response

from vidgate.db.types import utcnow
from vidgate.errors import Forbidden, RateLimited, Unauthorized
from vidgate.keys.service import AccountStatus, Principal, bearer_token, hash_key, lookup

if TYPE_CHECKING:
    from vidgate.gateway import Gateway

# Failed authentications per client address: beyond this an unknown-key flood gets 429s without
# touching the database.
AUTH_FAILURES_PER_SECOND = 2.0
AUTH_FAILURE_BURST = 20


async def get_gateway(request: Request) -> Gateway:
    # async: a plain def dependency would cost a threadpool hop on every request.
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated["Gateway", Depends(get_gateway)]


async def _principal_of(request: Request, gateway: Gateway) -> Principal:
    key_hash = hash_key(bearer_token(request.headers.get("authorization")))
    principal = gateway.principals.get(key_hash)
    if principal is not None:
        if principal.expired(utcnow()):  # expired while cached: like a revoked key
            raise Unauthorized("Invalid API key")
        return principal
    client = f"auth-fail:{request.client.host if request.client else 'unknown'}"
    limiter = gateway.rate_limiter
    rate, burst = AUTH_FAILURES_PER_SECOND, AUTH_FAILURE_BURST
    decision = await limiter.peek(client, rate_per_s=rate, burst=burst)
    if not decision.allowed:
        raise RateLimited(
            "Too many failed authentications from this address; retry after the Retry-After delay",
            headers={"Retry-After": decision.headers()["Retry-After"]},
        )
    try:
        principal = await lookup(gateway.db, key_hash)
    except Unauthorized:
        await limiter.hit(client, rate_per_s=rate, burst=burst)
        raise
    gateway.principals.put(key_hash, principal)
    return principal


def refuse_inactive_account(principal: Principal) -> None:
    """Only an active account's keys are let in; the principal cache's TTL bounds how long a
    suspension or approval made by another process takes to apply. An admin key of a pending
    account is let in (only an operator makes admin keys, so its access was approved when it
    was made); a suspended account's keys are all refused, admin keys too: the CLI, which
    needs no key, is the way back."""
    status = principal.account_status
    if status == AccountStatus.ACTIVE:
        return
    if status == AccountStatus.SUSPENDED:
        raise Forbidden("account suspended")
    if not principal.is_admin:
        raise Forbidden("API access not approved")


async def authorize(request: Request) -> tuple[Principal, dict[str, str]]:
    """Authenticate the Bearer key, refuse a key of an account that is not active, then apply
    the key's request rate limit: the principal and the RateLimit headers for the answer.
    Raises Unauthorized, Forbidden or RateLimited."""
    gateway: Gateway = request.app.state.gateway
    principal = await _principal_of(request, gateway)
    refuse_inactive_account(principal)
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
    return principal, decision.headers()


async def current_principal(request: Request, response: Response) -> Principal:
    principal, headers = await authorize(request)
    response.headers.update(headers)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
