"""Webhook management: POST/GET /api/v1/webhooks, DELETE /api/v1/webhooks/{id}, an endpoint's
deliveries and their redelivery; and GET /api/v1/account/webhook-secret, the secret that signs
the account's callBackUrl deliveries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from vidgate.api.apimall.webhook_schemas import (
    MAX_ID,
    CallbackSecret,
    CreatedWebhook,
    CreateWebhookRequest,
    DeletedWebhook,
    DeliveryInfo,
    DeliveryPage,
    WebhookInfo,
    created_webhook,
    delivery_info,
    webhook_info,
)
from vidgate.api.deps import CurrentPrincipal, GatewayDep
from vidgate.api.envelope import Envelope
from vidgate.api.errors import responses
from vidgate.api.request_context import request_id_of
from vidgate.webhooks import service
from vidgate.webhooks.service import TooManyWebhooks, WebhookDisabled

router = APIRouter(prefix="/api/v1", tags=["webhooks"])
HOOKS = "/webhooks"

WebhookId = Annotated[int, Path(ge=1, le=MAX_ID)]
DeliveryId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post(HOOKS, response_model=Envelope[CreatedWebhook], responses=responses(TooManyWebhooks))
async def create_webhook(
    body: CreateWebhookRequest, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[CreatedWebhook]:
    """Register a URL for task endings; the secret is shown only in this answer."""
    endpoint = await service.create_endpoint(
        gateway.db,
        account_id=principal.account_id,
        url=body.url,
        events=body.events,
        secret=body.secret_key,
        api_key_id=body.api_key_id,
        allowed_networks=gateway.allowed_networks,
    )
    return Envelope(data=created_webhook(endpoint), request_id=request_id_of(request))


@router.get(HOOKS, response_model=Envelope[list[WebhookInfo]], responses=responses())
async def list_webhooks(
    request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[list[WebhookInfo]]:
    """This account's webhooks with their delivery stats (never their secrets)."""
    found = await service.list_endpoints(gateway.db, account_id=principal.account_id)
    return Envelope(data=[webhook_info(e) for e in found], request_id=request_id_of(request))


# Not under /webhooks/: it is the account's, and a path there would read as a webhook id.
@router.get(
    "/account/webhook-secret", response_model=Envelope[CallbackSecret], responses=responses()
)
async def get_callback_secret(
    request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[CallbackSecret]:
    """The secret that signs deliveries to this account's tasks' callBackUrl."""
    secret = await service.callback_secret(gateway.db, account_id=principal.account_id)
    return Envelope(data=CallbackSecret(secret_key=secret), request_id=request_id_of(request))


@router.delete(
    HOOKS + "/{webhook_id}", response_model=Envelope[DeletedWebhook], responses=responses()
)
async def delete_webhook(
    webhook_id: WebhookId, request: Request, principal: CurrentPrincipal, gateway: GatewayDep
) -> Envelope[DeletedWebhook]:
    """Delete a webhook; its pending deliveries stop."""
    await service.delete_endpoint(
        gateway.db, account_id=principal.account_id, endpoint_id=webhook_id
    )
    return Envelope(data=DeletedWebhook(id=webhook_id), request_id=request_id_of(request))


@router.get(
    HOOKS + "/{webhook_id}/deliveries", response_model=Envelope[DeliveryPage], responses=responses()
)
async def list_deliveries(
    webhook_id: WebhookId,
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Envelope[DeliveryPage]:
    """A webhook's deliveries, newest first."""
    total, found = await service.endpoint_deliveries(
        gateway.db,
        account_id=principal.account_id,
        endpoint_id=webhook_id,
        page=page,
        limit=limit,
    )
    data = DeliveryPage(
        items=[delivery_info(d) for d in found], page=page, limit=limit, total=total
    )
    return Envelope(data=data, request_id=request_id_of(request))


@router.post(
    HOOKS + "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=Envelope[DeliveryInfo],
    responses=responses(WebhookDisabled),
)
async def redeliver(
    webhook_id: WebhookId,
    delivery_id: DeliveryId,
    request: Request,
    principal: CurrentPrincipal,
    gateway: GatewayDep,
) -> Envelope[DeliveryInfo]:
    """Send a delivery again now, with the same webhook-id and body."""
    delivery = await service.redeliver(
        gateway.db,
        account_id=principal.account_id,
        endpoint_id=webhook_id,
        delivery_id=delivery_id,
    )
    gateway.wake_deliveries()
    return Envelope(data=delivery_info(delivery), request_id=request_id_of(request))
