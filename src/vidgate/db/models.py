"""ORM models. Every schema change goes through an Alembic migration in migrations/versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vidgate.db.types import UTCDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("credits >= 0", name="ck_accounts_credits_non_negative"),
        CheckConstraint("status IN ('pending', 'active', 'suspended')", name="ck_accounts_status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    credits: Mapped[int] = mapped_column(BigInteger, default=0)
    # Only an active account's keys are let in (pending: "API access not approved").
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Signs the account's per-task callBackUrl deliveries (Standard Webhooks `whsec_...`);
    # made on first use. Kept in clear: a symmetric signature needs the secret itself.
    webhook_secret: Mapped[str | None] = mapped_column(String(100), nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("in_flight_jobs >= 0", name="ck_api_keys_in_flight_jobs_non_negative"),
        CheckConstraint("role IN ('user', 'admin')", name="ck_api_keys_role"),
        CheckConstraint(
            "budget_period IS NULL OR budget_period IN ('day', 'month', 'total')",
            name="ck_api_keys_budget_period",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_preview: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="created")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Per-key overrides of the global limits; NULL means "use the gateway's default".
    rate_limit_per_second: Mapped[float | None] = mapped_column(nullable=True)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Tasks of this key not yet ended: taken by the create that inserts one (a conditional
    # UPDATE against the limit), given back by the transition that ends it, exactly once.
    in_flight_jobs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # An admin key manages every account through /api/v1/admin/...
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    # Past this instant the key is refused like a revoked one.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The models this key may create tasks on; NULL: every model.
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # A spend cap in credits per period (day, month, total); NULL: no cap beyond the balance.
    budget_credits: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(8), nullable=True)


class KeyBudgetSpend(Base):
    """Credits a key spent in one budget period: a create takes its price with a conditional
    UPDATE against the key's budget (so concurrent creates cannot pass it), and a refund gives
    it back to the period the task was charged in."""

    __tablename__ = "key_budget_spend"
    __table_args__ = (CheckConstraint("spent >= 0", name="ck_key_budget_spend_non_negative"),)

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    spent: Mapped[int] = mapped_column(BigInteger, default=0)


class AuditEntry(Base):
    """One admin action (API or CLI): who did what to which object, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The admin key that acted; NULL for the CLI (actor says "cli").
    actor_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))  # account.approve, key.create, credits.grant
    target_type: Mapped[str] = mapped_column(String(32))  # account, key
    target_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id"), nullable=True, index=True
    )
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class LedgerEntry(Base):
    """Append-only: the balance is always the sum of an account's entries."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        # A task is debited at most once and refunded at most once, enforced by the database.
        UniqueConstraint("task_id", "kind", name="uq_credit_ledger_task_kind"),
        CheckConstraint(
            "kind IN ('grant', 'debit', 'refund', 'adjust')", name="ck_credit_ledger_kind"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VideoTask(Base):
    """A video task and its durable state machine (see tasks/states.py)."""

    __tablename__ = "video_tasks"
    __table_args__ = (
        Index("ix_video_tasks_queue_due", "queue", "status", "run_after"),
        Index("ix_video_tasks_account_created", "account_id", "created_at"),
        Index("ix_video_tasks_key_status", "api_key_id", "status"),
        Index("ix_video_tasks_completed_at", "completed_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    model: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider_request_id: Mapped[str] = mapped_column(String(64))
    # Which surface created it (apimall, openai): its answers are rendered in that wire format.
    surface: Mapped[str] = mapped_column(String(16), default="apimall")
    # The worker pool that runs it, fixed at create from its model's channels.
    queue: Mapped[str] = mapped_column(String(64), default="default")

    status: Mapped[str] = mapped_column(String(16), default="pending")
    step: Mapped[str] = mapped_column(String(16), default="submit")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    upstream_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    progress: Mapped[int] = mapped_column(Integer, default=0)

    credits_used: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the channel's upstream says it charged, in its own credits (None: it did not say);
    # beside credits_used it shows the operator's margin per channel.
    channel_cost: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_urls: Mapped[list[str]] = mapped_column(JSON, default=list)
    file_key: Mapped[str | None] = mapped_column(String(200), nullable=True)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The OpenAI surface's delete: the stored files are gone, the row stays for billing.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # A remix's source video (the OpenAI surface's remixed_from_video_id).
    remixed_from: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Retention: when the reaper deleted the result files (the row stays for billing).
    files_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The start of the key's budget period this task was charged to (keys/budget.py); a refund
    # gives its credits back there. NULL: the key had no budget.
    budget_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class IdempotencyRecord(Base):
    """Stripe-style idempotency: one row per (account, key), answered from here on replay."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Which surface answered; the replay is re-rendered from the task on that surface, with
    # the first answer's request id, so it is the same body byte for byte.
    surface: Mapped[str] = mapped_column(String(16), default="apimall")
    request_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ChannelSlots(Base):
    """Upstream jobs in flight per provider instance, across every worker: the conditional
    UPDATE that takes a slot enforces the provider's max_concurrent exactly on both backends.
    A task holds its channel's slot from the moment it is routed there until it ends or fails
    over; the ending transitions give it back in their own transaction."""

    __tablename__ = "channel_slots"
    __table_args__ = (CheckConstraint("in_flight >= 0", name="ck_channel_slots_non_negative"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    in_flight: Mapped[int] = mapped_column(Integer, default=0)


class TaskEvent(Base):
    """The outbox: one row per task transition, written in the transition's own transaction.

    Webhooks, status streams and metrics read this table to learn what changed; nothing reads
    the task table for that.
    """

    __tablename__ = "task_events"
    __table_args__ = (Index("ix_task_events_task", "task_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("video_tasks.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # the task's status after the transition
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookEndpoint(Base):
    """An account's webhook target (API-CONTRACT.md section 2), with its delivery stats."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # Only tasks created with this key, when set; every task of the account otherwise.
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), nullable=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Standard Webhooks `whsec_...`, in clear: a symmetric signature needs the secret itself.
    secret: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active, disabled, deleted
    total_sent: Mapped[int] = mapped_column(Integer, default=0)  # delivered
    total_failed: Mapped[int] = mapped_column(Integer, default=0)  # failed attempts
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One event to one target, made in the transaction that ends the task, and sent (with
    retries) by the workers. `message_id` is the `webhook-id` header: the same on every try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # None for a task's own callBackUrl (signed with the account's webhook_secret).
    endpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_endpoints.id"), nullable=True, index=True
    )
    task_id: Mapped[str] = mapped_column(ForeignKey("video_tasks.id"))
    event_type: Mapped[str] = mapped_column(String(32))  # job.completed, job.failed, ...
    url: Mapped[str] = mapped_column(Text)
    # The body, fixed at the first attempt so every retry sends the same bytes.
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
