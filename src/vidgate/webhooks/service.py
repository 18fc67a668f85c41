"""The rules of webhook management: which targets and secrets are taken, who sees what.

An account sees only its own endpoints (another account's is "not found", as tasks are), and a
deleted endpoint is gone from every answer. The target is checked as every user URL is
(net/fetch.py): never-public URLs are refused at once, and it must be https, except to hosts
inside the operator's allow-list (VIDGATE_FETCH_ALLOWED_PRIVATE_NETWORKS), where http is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy import Connection, select

from vidgate.db.engine import Database
from vidgate.db.models import ApiKey
from vidgate.db.types import utcnow
from vidgate.errors import InvalidRequest, NotFound, VidgateError
from vidgate.net.addresses import IPNetwork
from vidgate.net.fetch import (
    SYSTEM_NETWORK,
    FetchError,
    FetchPolicy,
    Network,
    UnsafeURLError,
    _checked_addresses,
    _parse,
    never_public_reason,
)
from vidgate.webhooks import repository
from vidgate.webhooks.events import EndpointStatus, WebhookEvent
from vidgate.webhooks.repository import DeliveryRecord, EndpointRecord
from vidgate.webhooks.sender import inside
from vidgate.webhooks.signing import SECRET_RULE, is_valid_secret, new_secret

# Every ending writes one row per subscribed endpoint in its own transaction: keep that bounded.
MAX_ACTIVE_ENDPOINTS = 100
RESOLVE_TIMEOUT_S = 3.0  # an http target's name is resolved at create to check where it leads


class TooManyWebhooks(VidgateError):
    status_code: ClassVar[int] = 409
    code: ClassVar[str] = "too_many_webhooks"
    default_message: ClassVar[str] = (
        f"An account may have at most {MAX_ACTIVE_ENDPOINTS} active webhooks"
    )


class WebhookDisabled(VidgateError):
    status_code: ClassVar[int] = 409
    code: ClassVar[str] = "webhook_disabled"
    default_message: ClassVar[str] = "The webhook is disabled (its URL answered 410 Gone)"


async def create_endpoint(
    db: Database,
    *,
    account_id: int,
    url: str,
    events: Sequence[WebhookEvent],
    secret: str | None,
    api_key_id: int | None,
    allowed_networks: tuple[IPNetwork, ...],
    network: Network | None = None,
) -> EndpointRecord:
    """A new active endpoint; its secret (given or generated) is in the record."""
    await check_target(url, allowed_networks=allowed_networks, network=network)
    if secret is not None and not is_valid_secret(secret):
        raise InvalidRequest(f"secret_key: {SECRET_RULE}")
    subscribed = list(dict.fromkeys(event.value for event in events))  # in order, once each
    if not subscribed:
        raise InvalidRequest("events: give at least one of " + ", ".join(WebhookEvent))
    now = utcnow()
    values = {
        "account_id": account_id,
        "api_key_id": api_key_id,
        "url": url,
        "events": subscribed,
        "secret": secret or new_secret(),
        "status": EndpointStatus.ACTIVE.value,
        "total_sent": 0,
        "total_failed": 0,
        "created_at": now,
        "updated_at": now,
    }

    def insert(conn: Connection) -> EndpointRecord:
        if api_key_id is not None and not _is_key_of(conn, api_key_id, account_id):
            raise NotFound(f"api_key_id: API key {api_key_id} not found")
        if repository.count_active(conn, account_id=account_id) >= MAX_ACTIVE_ENDPOINTS:
            raise TooManyWebhooks()
        return repository.insert_endpoint(conn, values)

    return await db.backend.run_write(insert)


async def check_target(
    url: str, *, allowed_networks: tuple[IPNetwork, ...], network: Network | None = None
) -> None:
    """Refuse (400 naming `url`) a target that can never be sent to, or plain http outside
    the allow-list. An https name is resolved and checked at each try, not here."""
    reason = never_public_reason(url, allowed_networks=allowed_networks)
    if reason is not None:
        raise InvalidRequest(f"url: {reason}")
    target = _parse(url)
    if target.url.scheme == "https":
        return
    refusal = InvalidRequest(
        "url: must be https (plain http is taken only for hosts inside the gateway's allowed "
        "private networks)"
    )
    policy = FetchPolicy(allowed_private_networks=allowed_networks)
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            addresses = await _checked_addresses(target, policy, network or SYSTEM_NETWORK)
    except (UnsafeURLError, FetchError, TimeoutError):
        raise refusal from None
    if not all(inside(address, allowed_networks) for address in addresses):
        raise refusal


def _is_key_of(conn: Connection, key_id: int, account_id: int) -> bool:
    found = conn.scalar(
        select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    )
    return found is not None


async def list_endpoints(db: Database, *, account_id: int) -> list[EndpointRecord]:
    return await db.backend.run_read(
        lambda conn: repository.endpoints_of(conn, account_id=account_id)
    )


async def delete_endpoint(db: Database, *, account_id: int, endpoint_id: int) -> None:
    """Deleted for good; its pending deliveries stop (one being sent right now finishes)."""
    now = utcnow()

    def delete(conn: Connection) -> None:
        if not repository.end_endpoint(
            conn,
            endpoint_id=endpoint_id,
            status=EndpointStatus.DELETED,
            at=now,
            sources=(EndpointStatus.ACTIVE, EndpointStatus.DISABLED),
            account_id=account_id,
        ):
            raise _not_found(endpoint_id)
        repository.stop_pending(conn, endpoint_id=endpoint_id, reason="webhook deleted")

    await db.backend.run_write(delete)


async def endpoint_deliveries(
    db: Database, *, account_id: int, endpoint_id: int, page: int, limit: int
) -> tuple[int, list[DeliveryRecord]]:
    """An endpoint's deliveries, newest first: the total and one page."""

    def read(conn: Connection) -> tuple[int, list[DeliveryRecord]]:
        _endpoint_or_404(conn, account_id, endpoint_id)
        return repository.deliveries_of(
            conn, endpoint_id=endpoint_id, offset=(page - 1) * limit, limit=limit
        )

    return await db.backend.run_read(read)


async def redeliver(
    db: Database, *, account_id: int, endpoint_id: int, delivery_id: int
) -> DeliveryRecord:
    """Queue a delivery again, due now: the same webhook-id and the same body."""
    now = utcnow()

    def requeue(conn: Connection) -> DeliveryRecord:
        endpoint = _endpoint_or_404(conn, account_id, endpoint_id)
        if endpoint.status == EndpointStatus.DISABLED:
            raise WebhookDisabled(
                f"webhook {endpoint_id} is disabled (its URL answered 410 Gone); "
                "create a new one for that URL"
            )
        if not repository.requeue(conn, delivery_id=delivery_id, endpoint_id=endpoint_id, at=now):
            raise NotFound(f"delivery {delivery_id} of webhook {endpoint_id} not found")
        found = repository.delivery_of(conn, delivery_id=delivery_id, endpoint_id=endpoint_id)
        assert found is not None
        return found

    return await db.backend.run_write(requeue)


async def callback_secret(db: Database, *, account_id: int) -> str:
    """The secret that signs the account's callBackUrl deliveries, made on first use."""
    return await db.backend.run_write(
        lambda conn: ensure_account_secret(conn, account_id=account_id)
    )


def ensure_account_secret(conn: Connection, *, account_id: int) -> str:
    secret = repository.account_secret(conn, account_id=account_id)
    if secret is None:
        repository.set_account_secret_once(conn, account_id=account_id, secret=new_secret())
        secret = repository.account_secret(conn, account_id=account_id)
    assert secret is not None, "accounts are never deleted"
    return secret


def _endpoint_or_404(conn: Connection, account_id: int, endpoint_id: int) -> EndpointRecord:
    endpoint = repository.endpoint_of(conn, endpoint_id=endpoint_id, account_id=account_id)
    if endpoint is None:
        raise _not_found(endpoint_id)
    return endpoint


def _not_found(endpoint_id: int) -> NotFound:
    return NotFound(f"webhook {endpoint_id} not found")
