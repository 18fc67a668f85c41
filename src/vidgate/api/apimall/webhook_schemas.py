"""Request and response shapes of webhook management (API-CONTRACT.md section 2, Webhooks)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from vidgate.api.apimall.schemas import MAX_URL_CHARS
from vidgate.db.types import iso_ms
from vidgate.webhooks.events import DeliveryStatus, WebhookEvent
from vidgate.webhooks.repository import DeliveryRecord, EndpointRecord
from vidgate.webhooks.signing import SECRET_PATTERN


def _check_target_url(url: str) -> str:
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("must be an https URL")
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"URL is too long ({MAX_URL_CHARS} characters at most)")
    return url


# The documented shape is https with a host name, as the create's URLs (schemas.URL_PATTERN);
# plain http to the operator's allowed private networks is taken too, which no schema can say.
TARGET_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]://([A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*"
    r"(:[1-9][0-9]{0,3})?([/?#][!-~]*)?$"
)
TargetUrl = Annotated[
    str,
    AfterValidator(_check_target_url),
    WithJsonSchema({"type": "string", "pattern": TARGET_URL_PATTERN, "maxLength": MAX_URL_CHARS}),
]
# Stated, not validated here: the service refuses a bad secret with its own message.
SecretKey = Annotated[str, WithJsonSchema({"type": "string", "pattern": SECRET_PATTERN})]
# Ids as large as a JSON number of type integer reads exactly, also when written as a float.
MAX_ID = 2**53


class CreateWebhookRequest(BaseModel):
    url: TargetUrl
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WebhookEvent))
    secret_key: SecretKey | None = Field(
        default=None,
        description="Standard Webhooks secret (whsec_...); one is generated when absent",
    )
    api_key_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="Only tasks created with this key; every task of the account when absent",
    )


class WebhookInfo(BaseModel):
    id: int
    url: str
    events: list[str]
    status: str = Field(description="active, or disabled once its URL answered 410 Gone")
    api_key_id: int | None
    created_at: str
    updated_at: str
    total_sent: int = Field(description="Deliveries answered with a 2xx")
    total_failed: int = Field(description="Tries that failed")
    last_sent_at: str | None
    last_error: str | None


class CreatedWebhook(BaseModel):
    id: int
    url: str
    events: list[str]
    status: str
    api_key_id: int | None
    created_at: str
    updated_at: str
    secret_key: str = Field(description="Verifies the signatures; shown only in this response")


class DeletedWebhook(BaseModel):
    id: int


class DeliveryInfo(BaseModel):
    id: int
    message_id: str = Field(description="The webhook-id header: the same on every try")
    event: str
    task_id: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None = Field(description="When the next try is due; null unless pending")
    created_at: str
    delivered_at: str | None


class DeliveryPage(BaseModel):
    items: list[DeliveryInfo]
    page: int
    limit: int
    total: int


class CallbackSecret(BaseModel):
    secret_key: str = Field(description="Signs the deliveries to this account's callBackUrls")


def webhook_info(endpoint: EndpointRecord) -> WebhookInfo:
    return WebhookInfo(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        status=endpoint.status,
        api_key_id=endpoint.api_key_id,
        created_at=iso_ms(endpoint.created_at) or "",
        updated_at=iso_ms(endpoint.updated_at) or "",
        total_sent=endpoint.total_sent,
        total_failed=endpoint.total_failed,
        last_sent_at=iso_ms(endpoint.last_sent_at),
        last_error=endpoint.last_error,
    )


def created_webhook(endpoint: EndpointRecord) -> CreatedWebhook:
    return CreatedWebhook(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.events,
        status=endpoint.status,
        api_key_id=endpoint.api_key_id,
        created_at=iso_ms(endpoint.created_at) or "",
        updated_at=iso_ms(endpoint.updated_at) or "",
        secret_key=endpoint.secret,
    )


def delivery_info(delivery: DeliveryRecord) -> DeliveryInfo:
    pending = delivery.status == DeliveryStatus.PENDING
    return DeliveryInfo(
        id=delivery.id,
        message_id=delivery.message_id,
        event=delivery.event_type,
        task_id=delivery.task_id,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=iso_ms(delivery.next_attempt_at) if pending else None,
        created_at=iso_ms(delivery.created_at) or "",
        delivered_at=iso_ms(delivery.delivered_at),
    )
