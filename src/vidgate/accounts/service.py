"""The operator's side of accounts: create (pending or active), list, approve, suspend, credits
and keys of any account. Each action writes its audit row in the caller's transaction; the
caller invalidates the principal cache once that transaction has committed."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.accounts import audit
from vidgate.accounts.audit import Actor
from vidgate.billing import service as billing
from vidgate.db.models import Account, ApiKey
from vidgate.db.types import iso_ms, utcnow
from vidgate.errors import InvalidRequest, NotFound
from vidgate.keys import service as keys
from vidgate.keys.service import AccountStatus


@dataclass(frozen=True, kw_only=True)
class AccountSummary:
    id: int
    title: str
    status: str
    credits: int
    keys: int  # keys not revoked
    created_at: datetime
    status_changed_at: datetime | None


_LIVE_KEYS = (
    select(func.count(ApiKey.id))
    .where(ApiKey.account_id == Account.id, ApiKey.status != keys.KeyStatus.REVOKED.value)
    .correlate(Account)
    .scalar_subquery()
)
_SUMMARY_COLUMNS = (
    Account.id,
    Account.name,
    Account.status,
    Account.credits,
    _LIVE_KEYS,
    Account.created_at,
    Account.status_changed_at,
)


def _summary(row: Any) -> AccountSummary:
    account_id, title, status, credits, live_keys, created_at, status_changed_at = row
    return AccountSummary(
        id=account_id,
        title=title,
        status=status,
        credits=credits,
        keys=int(live_keys or 0),
        created_at=created_at,
        status_changed_at=status_changed_at,
    )


def account_snapshot(account: Account) -> dict[str, Any]:
    return {"title": account.name, "status": account.status, "credits": account.credits}


def key_snapshot(key: ApiKey) -> dict[str, Any]:
    return {
        "title": key.title,
        "status": key.status,
        "role": key.role,
        "expires_at": iso_ms(key.expires_at),
        "allowed_models": key.allowed_models,
        "budget_credits": key.budget_credits,
        "budget_period": key.budget_period,
    }


def _clean_reason(reason: str | None) -> str | None:
    reason = (reason or "").strip()
    return reason or None


async def _locked(session: AsyncSession, account_id: int) -> Account:
    """The account, its row locked until the transaction ends (PostgreSQL; SQLite's write
    transaction already holds the database), so `before` is what the action changed."""
    account = await session.get(Account, account_id, with_for_update=True, populate_existing=True)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def create_account(
    session: AsyncSession, *, title: str, credits: int = 0, pending: bool, actor: Actor
) -> Account:
    title = title.strip()
    if not title:
        raise InvalidRequest("title: must not be empty")
    if credits < 0:
        raise InvalidRequest("credits: must not be negative")
    account = await billing.create_account(session, name=title, credits=credits)
    if pending:
        account.status = AccountStatus.PENDING.value
        account.status_changed_at = utcnow()
    else:
        account.status = AccountStatus.ACTIVE.value
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="account.create",
        target_type="account",
        target_id=account.id,
        account_id=account.id,
        before=None,
        after=account_snapshot(account),
    )
    return account


async def list_accounts(
    session: AsyncSession, *, status: AccountStatus | None = None, offset: int = 0, limit: int = 20
) -> tuple[int, list[AccountSummary]]:
    condition = [Account.status == status.value] if status is not None else []
    total = await session.scalar(select(func.count()).select_from(Account).where(*condition))
    rows = await session.execute(
        select(*_SUMMARY_COLUMNS).where(*condition).order_by(Account.id).offset(offset).limit(limit)
    )
    return int(total or 0), [_summary(row) for row in rows]


async def get_account(session: AsyncSession, account_id: int) -> AccountSummary:
    row = (await session.execute(select(*_SUMMARY_COLUMNS).where(Account.id == account_id))).first()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return _summary(row)


async def _set_status(
    session: AsyncSession,
    *,
    account_id: int,
    status: AccountStatus,
    action: str,
    actor: Actor,
    reason: str | None,
) -> Account:
    account = await _locked(session, account_id)
    before = account_snapshot(account)
    if account.status != status:
        account.status = status.value
        account.status_changed_at = utcnow()
        await session.flush()
    # Recorded even when the account was already in that state: the log lists actions.
    await audit.record(
        session,
        actor=actor,
        action=action,
        target_type="account",
        target_id=account.id,
        account_id=account.id,
        before=before,
        after=account_snapshot(account),
        reason=_clean_reason(reason),
    )
    return account


async def approve(
    session: AsyncSession, *, account_id: int, actor: Actor, reason: str | None = None
) -> Account:
    """Let the account's keys in (pending or suspended -> active)."""
    return await _set_status(
        session,
        account_id=account_id,
        status=AccountStatus.ACTIVE,
        action="account.approve",
        actor=actor,
        reason=reason,
    )


async def suspend(
    session: AsyncSession, *, account_id: int, actor: Actor, reason: str | None = None
) -> Account:
    """Shut the account's keys out (-> suspended); its balance and tasks stay."""
    return await _set_status(
        session,
        account_id=account_id,
        status=AccountStatus.SUSPENDED,
        action="account.suspend",
        actor=actor,
        reason=reason,
    )


async def _change_credits(
    session: AsyncSession,
    *,
    account_id: int,
    amount: int,
    action: str,
    actor: Actor,
    reason: str | None,
) -> int:
    account = await _locked(session, account_id)
    before = account.credits
    if action == "credits.grant":
        balance = await billing.grant(
            session, account_id=account_id, amount=amount, note=reason or "admin grant"
        )
    else:
        balance = await billing.adjust(session, account_id=account_id, amount=amount, note=reason)
    await audit.record(
        session,
        actor=actor,
        action=action,
        target_type="account",
        target_id=account_id,
        account_id=account_id,
        before={"credits": before},
        after={"credits": balance},
        reason=reason,
    )
    return balance


async def grant_credits(
    session: AsyncSession,
    *,
    account_id: int,
    amount: int,
    actor: Actor,
    reason: str | None = None,
) -> int:
    """Add credits (a ledger `grant`); the new balance."""
    return await _change_credits(
        session,
        account_id=account_id,
        amount=amount,
        action="credits.grant",
        actor=actor,
        reason=_clean_reason(reason),
    )


async def adjust_credits(
    session: AsyncSession, *, account_id: int, amount: int, actor: Actor, reason: str
) -> int:
    """A correction in either direction (a ledger `adjust`), never below zero; it must say why."""
    cleaned = _clean_reason(reason)
    if cleaned is None:
        raise InvalidRequest("reason: an adjustment must say why")
    return await _change_credits(
        session,
        account_id=account_id,
        amount=amount,
        action="credits.adjust",
        actor=actor,
        reason=cleaned,
    )


async def list_keys(session: AsyncSession, *, account_id: int) -> list[ApiKey]:
    await billing.get_account(session, account_id)  # an unknown account is 404, not []
    return await keys.list_keys(session, account_id=account_id)


async def create_key(
    session: AsyncSession,
    *,
    account_id: int,
    title: str,
    actor: Actor,
    controls: keys.KeyControls | None = None,
    known_models: Collection[str] | None = None,
) -> tuple[ApiKey, str]:
    """A key for any account, with its role and controls (keys/service.py create_key); the
    plaintext, shown once, is never in the audit log."""
    await billing.get_account(session, account_id)
    key, plaintext = await keys.create_key(
        session,
        account_id=account_id,
        title=title,
        controls=controls,
        known_models=known_models,
    )
    await audit.record(
        session,
        actor=actor,
        action="key.create",
        target_type="key",
        target_id=key.id,
        account_id=account_id,
        before=None,
        after=key_snapshot(key),
    )
    return key, plaintext


async def revoke_key(
    session: AsyncSession, *, account_id: int, key_id: int, actor: Actor
) -> ApiKey:
    found = await session.get(ApiKey, key_id)
    if found is None or found.account_id != account_id:
        raise NotFound(f"API key {key_id} not found")
    before = key_snapshot(found)
    key = await keys.revoke_key(
        session, key_id=key_id, account_id=account_id, acting_key_id=actor.key_id
    )
    await audit.record(
        session,
        actor=actor,
        action="key.revoke",
        target_type="key",
        target_id=key.id,
        account_id=account_id,
        before=before,
        after=key_snapshot(key),
    )
    return key
