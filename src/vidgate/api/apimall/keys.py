"""API key management: POST/GET /api/v1/keys, PATCH /api/v1/keys/{id} (role and controls),
DELETE /api/v1/keys/{id} (revoke)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from vidgate.api.apimall.key_schemas import (
    CreatedKey,
    CreateKeyRequest,
    KeyId,
    KeyInfo,
    UpdateKeyRequest,
    controls_view,
)
from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.db.models import ApiKey
from vidgate.db.types import iso_ms, utcnow
from vidgate.errors import Forbidden
from vidgate.keys import budget
from vidgate.keys import service as keys
from vidgate.keys.service import Principal

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class RevokedKey(BaseModel):
    id: int
    status: str


def _key_info(key: ApiKey, *, spent: int | None, now: datetime) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        title=key.title,
        status=key.status,
        created_at=iso_ms(key.created_at) or "",
        last_used_at=iso_ms(key.last_used_at),
        key_preview=key.key_preview,
        **controls_view(key, spent=spent, now=now),
    )


def _check_may_manage(principal: Principal, controls: keys.KeyControls) -> None:
    """A key of the account may make and change its keys, but one that is itself limited
    (budget, model list, expiry) may not, or it could mint itself an unlimited twin; only an
    admin key may make an admin key."""
    if principal.has_controls:
        raise Forbidden(
            "a key with a budget, a model list or an expiry cannot create or change keys; "
            "use a key without them"
        )
    if controls.role == keys.KeyRole.ADMIN and not principal.is_admin:
        raise Forbidden("only an admin key may create admin keys")


@router.post("", response_model=Envelope[CreatedKey], responses=responses())
async def create_key(
    body: CreateKeyRequest, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[CreatedKey]:
    now = utcnow()
    controls = body.controls(now=now)
    _check_may_manage(principal, controls)
    async with gateway.db.write() as session:
        key, plaintext = await keys.create_key(
            session,
            account_id=principal.account_id,
            title=body.title,
            controls=controls,
            known_models=gateway.catalogue.models,
        )
    data = CreatedKey(
        id=key.id,
        title=key.title,
        status=key.status,
        created_at=iso_ms(key.created_at) or "",
        api_key=plaintext,
        **controls_view(key, spent=0, now=now),
    )
    return Envelope(data=data, request_id=request_id_of(request))


@router.patch("/{key_id}", response_model=Envelope[KeyInfo], responses=responses())
async def update_key(
    key_id: KeyId,
    body: UpdateKeyRequest,
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
) -> Envelope[KeyInfo]:
    """Change a key's role or controls; the fields not given stay as they are."""
    now = utcnow()
    async with gateway.db.write() as session:
        key = await keys.get_key(session, key_id=key_id, account_id=principal.account_id)
        current = keys.controls_of(key)
        controls = body.apply_to(current, now=now)
        if controls != current:
            _check_may_manage(principal, controls)
        key = await keys.set_controls(
            session,
            key_id=key_id,
            account_id=principal.account_id,
            controls=controls,
            known_models=gateway.catalogue.models,
        )
        spent = await budget.spent_by_key(session, [key], at=now)
    gateway.principals.invalidate_key(key.id)
    return Envelope(
        data=_key_info(key, spent=spent.get(key.id), now=now), request_id=request_id_of(request)
    )


@router.get("", response_model=Envelope[list[KeyInfo]], responses=responses())
async def list_keys(
    request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[list[KeyInfo]]:
    now = utcnow()
    async with gateway.db.read() as session:
        found = await keys.list_keys(session, account_id=principal.account_id)
        spent = await budget.spent_by_key(session, found, at=now)
    return Envelope(
        data=[_key_info(key, spent=spent.get(key.id), now=now) for key in found],
        request_id=request_id_of(request),
    )


@router.delete("/{key_id}", response_model=Envelope[RevokedKey], responses=responses())
async def revoke_key(
    key_id: KeyId, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[RevokedKey]:
    async with gateway.db.write() as session:
        key = await keys.revoke_key(
            session,
            key_id=key_id,
            account_id=principal.account_id,
            acting_key_id=principal.key_id,
        )
    gateway.principals.invalidate_key(key.id)  # at once in this process; others within 1 s
    return Envelope(
        data=RevokedKey(id=key.id, status=key.status), request_id=request_id_of(request)
    )
