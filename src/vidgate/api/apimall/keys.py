"""API key management: POST/GET /api/v1/keys, DELETE /api/v1/keys/{id} (revoke)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.api.text_patterns import NOT_BLANK
from vidgate.db.models import ApiKey
from vidgate.db.types import iso_ms
from vidgate.keys import service as keys

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class CreateKeyRequest(BaseModel):
    # Not blank, as keys.create_key checks after stripping: stated, not validated, so the
    # refusal keeps its message.
    title: str = Field(min_length=1, max_length=200, json_schema_extra={"pattern": NOT_BLANK})


class CreatedKey(BaseModel):
    id: int
    title: str
    status: str
    created_at: str
    api_key: str = Field(description="The plaintext key; shown only in this response")


class KeyInfo(BaseModel):
    id: int
    title: str
    status: str
    created_at: str
    last_used_at: str | None
    key_preview: str


class RevokedKey(BaseModel):
    id: int
    status: str


def _key_info(key: ApiKey) -> KeyInfo:
    return KeyInfo(
        id=key.id,
        title=key.title,
        status=key.status,
        created_at=iso_ms(key.created_at) or "",
        last_used_at=iso_ms(key.last_used_at),
        key_preview=key.key_preview,
    )


@router.post("", response_model=Envelope[CreatedKey], responses=responses())
async def create_key(
    body: CreateKeyRequest, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[CreatedKey]:
    async with gateway.db.write() as session:
        key, plaintext = await keys.create_key(
            session, account_id=principal.account_id, title=body.title
        )
    data = CreatedKey(
        id=key.id,
        title=key.title,
        status=key.status,
        created_at=iso_ms(key.created_at) or "",
        api_key=plaintext,
    )
    return Envelope(data=data, request_id=request_id_of(request))


@router.get("", response_model=Envelope[list[KeyInfo]], responses=responses())
async def list_keys(
    request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[list[KeyInfo]]:
    async with gateway.db.read() as session:
        found = await keys.list_keys(session, account_id=principal.account_id)
    return Envelope(data=[_key_info(key) for key in found], request_id=request_id_of(request))


@router.delete("/{key_id}", response_model=Envelope[RevokedKey], responses=responses())
async def revoke_key(
    key_id: int, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
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
