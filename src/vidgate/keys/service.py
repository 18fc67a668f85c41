"""API keys: `sk-` + 48 hex characters, shown once, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.db.engine import Database
from vidgate.db.models import ApiKey
from vidgate.db.types import utcnow
from vidgate.errors import InvalidRequest, NotFound, Unauthorized

KEY_PREFIX = "sk-"
# last_used_at is refreshed at most this often, so status polling does not write on every call.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class KeyStatus(StrEnum):
    CREATED = "created"  # never used yet
    ACTIVE = "active"  # used at least once
    REVOKED = "revoked"


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling: the key and the account it belongs to."""

    key_id: int
    account_id: int
    rate_limit_per_second: float | None
    max_concurrent_jobs: int | None


def generate_plaintext_key() -> str:
    return KEY_PREFIX + secrets.token_hex(24)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def preview_of(plaintext: str) -> str:
    body = plaintext.removeprefix(KEY_PREFIX)
    return f"{KEY_PREFIX}{body[:4]}...{body[-4:]}"


async def create_key(session: AsyncSession, *, account_id: int, title: str) -> tuple[ApiKey, str]:
    title = title.strip()
    if not title:
        raise InvalidRequest("title: must not be empty")
    plaintext = generate_plaintext_key()
    key = ApiKey(
        account_id=account_id,
        title=title,
        key_hash=hash_key(plaintext),
        key_preview=preview_of(plaintext),
        status=KeyStatus.CREATED.value,
    )
    session.add(key)
    await session.flush()
    return key, plaintext


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
    key = await session.get(ApiKey, key_id)
    if key is None or (account_id is not None and key.account_id != account_id):
        raise NotFound(f"API key {key_id} not found")
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
                ).where(ApiKey.key_hash == key_hash)
            )
        ).first()
    if row is None or row.status == KeyStatus.REVOKED:
        raise Unauthorized("Invalid API key")
    now = utcnow()
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
    )
