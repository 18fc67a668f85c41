"""API keys: `sk-` + 48 hex characters, shown once, stored only as SHA-256; their role and
controls (expiry, model allow-list, spend budget)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.db.engine import Database
from vidgate.db.models import Account, ApiKey
from vidgate.db.types import utcnow
from vidgate.errors import InvalidRequest, NotFound, Unauthorized
from vidgate.keys.budget import Budget, BudgetPeriod

KEY_PREFIX = "sk-"
# last_used_at is refreshed at most this often, so status polling does not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class KeyStatus(StrEnum):
    CREATED = "created"  # never used yet
    ACTIVE = "active"  # used at least once
    REVOKED = "revoked"


class KeyRole(StrEnum):
    USER = "user"
    ADMIN = "admin"  # manages every account through /api/v1/admin/...


class AccountStatus(StrEnum):
    PENDING = "pending"  # created, API access not approved yet
    ACTIVE = "active"
    SUSPENDED = "suspended"


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: the key, the account it belongs to, and what the key may do. Cached up
    to the principal cache's TTL (keys/cache.py), the bound on how fast a change made by
    another process (suspend, approve, new controls) takes effect here."""

    key_id: int
    account_id: int
    rate_limit_per_second: float | None
    max_concurrent_jobs: int | None
    account_status: str = AccountStatus.ACTIVE.value
    role: str = KeyRole.USER.value
    expires_at: datetime | None = None
    allowed_models: frozenset[str] | None = None  # None: every model
    budget: Budget | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == KeyRole.ADMIN

    @property
    def has_controls(self) -> bool:
        """A key with an expiry, a model list or a budget: it must not mint looser keys."""
        return not (self.expires_at is None and self.allowed_models is None and self.budget is None)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, kw_only=True)
class KeyControls:
    """What a key may do, set at create or update; None: no such control."""

    role: KeyRole = KeyRole.USER
    expires_at: datetime | None = None
    allowed_models: tuple[str, ...] | None = None
    budget_credits: int | None = None
    budget_period: BudgetPeriod | None = None


# At most 6 digits: a longer number is over the 100-year cap anyway, and could overflow.
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_KEY_LIFETIME = timedelta(days=100 * 365)


def parse_duration(text: str, *, field: str = "expires_in") -> timedelta:
    """`30d`, `12h`, `90m`, `2w` as a timedelta; InvalidRequest naming `field` otherwise."""
    found = _DURATION.match(text)
    if found is None or int(found.group(1)) == 0:
        raise InvalidRequest(
            f"{field}: give a positive duration such as 30d, 12h, 90m or 2w (got {text!r})"
        )
    duration = timedelta(**{_DURATION_UNITS[found.group(2)]: int(found.group(1))})
    if duration > MAX_KEY_LIFETIME:
        raise InvalidRequest(f"{field}: at most 100 years")
    return duration


def split_models(values: Iterable[str]) -> tuple[str, ...]:
    """`["sample,sora2", "wan2-6"]` -> ("sample", "sora2", "wan2-6"), in order, once each."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def check_controls(
    controls: KeyControls, *, known_models: Collection[str] | None, now: datetime
) -> KeyControls:
    """Refuse controls that make no sense, each with a 400 naming its field."""
    if controls.budget_credits is not None and controls.budget_credits < 0:
        raise InvalidRequest("budget: must be a whole number of credits, 0 or more")
    if controls.budget_period is not None and controls.budget_credits is None:
        raise InvalidRequest("budget_period: give a budget too")
    if controls.allowed_models is not None:
        if not controls.allowed_models:
            raise InvalidRequest("models: give at least one model, or none for every model")
        unknown = [m for m in controls.allowed_models if known_models and m not in known_models]
        if unknown:
            available = ", ".join(sorted(known_models or ()))
            raise InvalidRequest(
                f"models: unknown model {', '.join(unknown)} (available: {available})"
            )
    if controls.expires_at is not None and controls.expires_at <= now:
        raise InvalidRequest("expires_at: must be in the future")
    if controls.budget_credits is not None and controls.budget_period is None:
        # A budget without a period caps the key's whole life, as LiteLLM's max_budget does.
        return replace(controls, budget_period=BudgetPeriod.TOTAL)
    return controls


def generate_plaintext_key() -> str:
    return KEY_PREFIX + secrets.token_hex(24)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def preview_of(plaintext: str) -> str:
    body = plaintext.removeprefix(KEY_PREFIX)
    return f"{KEY_PREFIX}{body[:4]}...{body[-4:]}"


async def create_key(
    session: AsyncSession,
    *,
    account_id: int,
    title: str,
    controls: KeyControls | None = None,
    known_models: Collection[str] | None = None,
) -> tuple[ApiKey, str]:
    """A new key of the account with its controls (checked here; `known_models`: the
    catalogue's, to refuse a misspelt allow-list)."""
    title = title.strip()
    if not title:
        raise InvalidRequest("title: must not be empty")
    controls = check_controls(controls or KeyControls(), known_models=known_models, now=utcnow())
    plaintext = generate_plaintext_key()
    key = ApiKey(
        account_id=account_id,
        title=title,
        key_hash=hash_key(plaintext),
        key_preview=preview_of(plaintext),
        status=KeyStatus.CREATED.value,
        **_columns_of(controls),
    )
    session.add(key)
    await session.flush()
    return key, plaintext


def _columns_of(controls: KeyControls) -> dict[str, object]:
    return {
        "role": controls.role.value,
        "expires_at": controls.expires_at,
        "allowed_models": None
        if controls.allowed_models is None
        else list(controls.allowed_models),
        "budget_credits": controls.budget_credits,
        "budget_period": None if controls.budget_period is None else controls.budget_period.value,
    }


def controls_of(key: ApiKey) -> KeyControls:
    return KeyControls(
        role=KeyRole(key.role),
        expires_at=key.expires_at,
        allowed_models=None if key.allowed_models is None else tuple(key.allowed_models),
        budget_credits=key.budget_credits,
        budget_period=None if key.budget_period is None else BudgetPeriod(key.budget_period),
    )


async def get_key(session: AsyncSession, *, key_id: int, account_id: int | None = None) -> ApiKey:
    """A key by id; with `account_id`, only that account's keys are visible."""
    key = await session.get(ApiKey, key_id)
    if key is None or (account_id is not None and key.account_id != account_id):
        raise NotFound(f"API key {key_id} not found")
    return key


async def set_controls(
    session: AsyncSession,
    *,
    key_id: int,
    controls: KeyControls,
    account_id: int | None = None,
    known_models: Collection[str] | None = None,
) -> ApiKey:
    """Replace a key's role and controls (read them with controls_of and change what you
    mean to). The caller invalidates the principal cache for the key."""
    key = await get_key(session, key_id=key_id, account_id=account_id)
    if key.status == KeyStatus.REVOKED:
        raise InvalidRequest(f"API key {key_id} is revoked")
    now = utcnow()
    unchanged_expiry = controls.expires_at is not None and controls.expires_at == key.expires_at
    checked = check_controls(
        replace(controls, expires_at=None) if unchanged_expiry else controls,
        known_models=known_models,
        now=now,
    )
    for name, value in _columns_of(checked).items():
        setattr(key, name, value)
    if unchanged_expiry:  # an expiry already past may stay as it is
        key.expires_at = controls.expires_at
    await session.flush()
    return key


async def set_limits(
    session: AsyncSession,
    *,
    key_id: int,
    rate_limit_per_second: float | None,
    max_concurrent_jobs: int | None,
) -> ApiKey:
    """Per-key limits; None puts a limit back to the gateway's default."""
    if rate_limit_per_second is not None and rate_limit_per_second <= 0:
        raise InvalidRequest("rate limit: must be a positive number of requests per second")
    if max_concurrent_jobs is not None and max_concurrent_jobs < 1:
        raise InvalidRequest("max concurrent jobs: must be at least 1")
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    key.rate_limit_per_second = rate_limit_per_second
    key.max_concurrent_jobs = max_concurrent_jobs
    await session.flush()
    return key


async def list_keys(session: AsyncSession, *, account_id: int | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    return list(await session.scalars(query))


async def revoke_key(
    session: AsyncSession,
    *,
    key_id: int,
    account_id: int | None = None,
    acting_key_id: int | None = None,
) -> ApiKey:
    """Revoke a key (it stays listed). With `account_id`, only that account's keys are visible."""
    key = await get_key(session, key_id=key_id, account_id=account_id)
    if acting_key_id is not None and key_id == acting_key_id:
        raise InvalidRequest("a key cannot revoke itself; revoke it with another key")
    if key.status != KeyStatus.REVOKED:
        key.status = KeyStatus.REVOKED.value
        key.revoked_at = utcnow()
        await session.flush()
    return key


def bearer_token(authorization: str | None) -> str:
    """The key of an `Authorization: Bearer sk-...` header; raises Unauthorized."""
    if not authorization:
        raise Unauthorized("API key required: send Authorization: Bearer YOUR_API_KEY")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization header must be 'Bearer YOUR_API_KEY'")
    return token


async def lookup(db: Database, key_hash: str) -> Principal:
    """The principal of a key hash, from the database; raises Unauthorized."""
    # Every cache miss runs this: select the few columns needed, not the entity.
    async with db.read() as session:
        row = (
            await session.execute(
                select(
                    ApiKey.id,
                    ApiKey.account_id,
                    ApiKey.status,
                    ApiKey.last_used_at,
                    ApiKey.rate_limit_per_second,
                    ApiKey.max_concurrent_jobs,
                    ApiKey.role,
                    ApiKey.expires_at,
                    ApiKey.allowed_models,
                    ApiKey.budget_credits,
                    ApiKey.budget_period,
                    Account.status.label("account_status"),
                )
                .join(Account, Account.id == ApiKey.account_id)
                .where(ApiKey.key_hash == key_hash)
            )
        ).first()
    now = utcnow()
    # An expired key is refused exactly like a revoked or unknown one.
    if (
        row is None
        or row.status == KeyStatus.REVOKED
        or (row.expires_at is not None and now >= row.expires_at)
    ):
        raise Unauthorized("Invalid API key")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        async with db.write() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == row.id, ApiKey.status != KeyStatus.REVOKED.value)
                .values(last_used_at=now, status=KeyStatus.ACTIVE.value)
            )
    return Principal(
        key_id=row.id,
        account_id=row.account_id,
        rate_limit_per_second=row.rate_limit_per_second,
        max_concurrent_jobs=row.max_concurrent_jobs,
        account_status=row.account_status,
        role=row.role,
        expires_at=row.expires_at,
        allowed_models=None if row.allowed_models is None else frozenset(row.allowed_models),
        budget=None
        if row.budget_credits is None
        else Budget(credits=row.budget_credits, period=BudgetPeriod(row.budget_period or "total")),
    )
