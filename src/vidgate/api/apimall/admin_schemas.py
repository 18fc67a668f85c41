"""Request and response shapes of the admin API (/api/v1/admin/...), and the functions that
render accounts, keys, tasks and audit entries in them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from vidgate.accounts.service import AccountSummary
from vidgate.api.apimall.key_schemas import CreatedKey, KeyInfo, controls_view
from vidgate.api.apimall.presenters import UrlFor, hosted_url
from vidgate.api.text_patterns import NOT_BLANK
from vidgate.db.models import ApiKey, AuditEntry
from vidgate.db.types import iso_ms
from vidgate.tasks.repository import TaskRecord

AccountStatusName = Literal["pending", "active", "suspended"]
TaskStatusName = Literal["pending", "processing", "completed", "failed", "cancelled"]
# One grant or adjustment at most; a balance is a BIGINT.
MAX_CREDITS = 10**12
MAX_REASON_CHARS = 1000


def _title_field() -> Any:
    # Not blank, as the services check after stripping: stated, not validated, so the refusal
    # keeps its message.
    return Field(min_length=1, max_length=200, json_schema_extra={"pattern": NOT_BLANK})


class CreateAccountRequest(BaseModel):
    title: str = _title_field()
    credits: int = Field(default=0, ge=0, le=MAX_CREDITS, description="Credits granted at once")
    pending: bool | None = Field(
        default=None,
        description="Start pending (its keys are refused until approved); "
        "default: the gateway's VIDGATE_NEW_ACCOUNTS_PENDING",
    )


class AccountView(BaseModel):
    id: int
    title: str
    status: AccountStatusName
    credits: int
    keys: int = Field(description="Keys not revoked")
    created_at: str
    status_changed_at: str | None


class AccountPage(BaseModel):
    items: list[AccountView]
    page: int
    limit: int
    total: int


class StatusChangeRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)


class GrantRequest(BaseModel):
    amount: int = Field(ge=1, le=MAX_CREDITS)
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)


class AdjustRequest(BaseModel):
    amount: int = Field(
        ge=-MAX_CREDITS,
        le=MAX_CREDITS,
        description="Credits to add (positive) or take (negative, never below a zero balance); "
        "not zero",
    )
    reason: str = Field(
        min_length=1, max_length=MAX_REASON_CHARS, json_schema_extra={"pattern": NOT_BLANK}
    )


class CreditChange(BaseModel):
    account_id: int
    amount: int
    balance: int


class AdminKeyInfo(KeyInfo):
    account_id: int


class AdminCreatedKey(CreatedKey):
    account_id: int


class RevokedKey(BaseModel):
    id: int
    status: str


class AdminTaskItem(BaseModel):
    task_id: str
    account_id: int
    api_key_id: int
    model: str
    type: str
    status: TaskStatusName = Field(description="The task's own status (cancelled is not folded)")
    error_code: str | None
    error_message: str | None
    channel: str | None
    credits_used: int
    credits_refunded: int
    video_url: str | None
    created_at: str
    completed_at: str | None


class AdminTaskPage(BaseModel):
    items: list[AdminTaskItem]
    page: int
    limit: int
    total: int


class AuditEntryView(BaseModel):
    id: int
    at: str
    actor: str = Field(description="`key:ID` for an admin key, `cli` for the command line")
    actor_key_id: int | None
    action: str = Field(examples=["account.approve"])
    target_type: Literal["account", "key"]
    target_id: str
    account_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None


class AuditPage(BaseModel):
    items: list[AuditEntryView]
    page: int
    limit: int
    total: int


def account_view(account: AccountSummary) -> AccountView:
    return AccountView(
        id=account.id,
        title=account.title,
        status=account.status,
        credits=account.credits,
        keys=account.keys,
        created_at=iso_ms(account.created_at) or "",
        status_changed_at=iso_ms(account.status_changed_at),
    )


def key_info(key: ApiKey, *, spent: int | None, now: datetime) -> AdminKeyInfo:
    return AdminKeyInfo(
        id=key.id,
        account_id=key.account_id,
        title=key.title,
        status=key.status,
        created_at=iso_ms(key.created_at) or "",
        last_used_at=iso_ms(key.last_used_at),
        key_preview=key.key_preview,
        **controls_view(key, spent=spent, now=now),
    )


def created_key(key: ApiKey, plaintext: str, *, now: datetime) -> AdminCreatedKey:
    return AdminCreatedKey(
        id=key.id,
        account_id=key.account_id,
        title=key.title,
        status=key.status,
        created_at=iso_ms(key.created_at) or "",
        api_key=plaintext,
        **controls_view(key, spent=0, now=now),
    )


def task_item(task: TaskRecord, url_for: UrlFor) -> AdminTaskItem:
    return AdminTaskItem(
        task_id=task.id,
        account_id=task.account_id,
        api_key_id=task.api_key_id,
        model=task.model,
        type=task.type,
        status=task.status,
        error_code=task.error_code,
        error_message=task.error_message,
        channel=task.channel,
        credits_used=task.credits_used,
        credits_refunded=task.credits_refunded,
        video_url=hosted_url(task, url_for),
        created_at=iso_ms(task.created_at) or "",
        completed_at=iso_ms(task.completed_at),
    )


def audit_view(entry: AuditEntry) -> AuditEntryView:
    return AuditEntryView(
        id=entry.id,
        at=iso_ms(entry.at) or "",
        actor=entry.actor,
        actor_key_id=entry.actor_key_id,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        account_id=entry.account_id,
        before=entry.before,
        after=entry.after,
        reason=entry.reason,
    )
