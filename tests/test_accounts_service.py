"""The accounts service and its audit log, on SQLite and PostgreSQL: every action writes one
audit row with what it changed, in the action's own transaction."""

from __future__ import annotations

from typing import Any

import pytest

from support import make_caller
from vidgate.accounts import audit
from vidgate.accounts import service as accounts
from vidgate.accounts.audit import Actor
from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.errors import InsufficientCredits, InvalidRequest, NotFound
from vidgate.keys.cache import PrincipalCache
from vidgate.keys.service import Principal


@pytest.fixture
async def admin(db: Database) -> Actor:
    """An admin key's actor (the key itself: the audit row refers to it)."""
    operator = await make_caller(db, credits=0, title="operator")
    return Actor.admin_key(operator.key_id)


async def audit_of(db: Database, account_id: int) -> list[dict[str, Any]]:
    """The account's audit rows, oldest first, as a reader of the log sees them."""
    async with db.read() as session:
        _total, entries = await audit.list_entries(session, account_id=account_id, limit=100)
    return [
        {
            "actor": e.actor,
            "action": e.action,
            "target": (e.target_type, e.target_id),
            "before": e.before,
            "after": e.after,
            "reason": e.reason,
        }
        for e in reversed(entries)
    ]


async def test_each_action_leaves_one_audit_row_with_before_and_after(
    db: Database, admin: Actor
) -> None:
    async with db.write() as session:
        account = await accounts.create_account(
            session, title="  reseller  ", credits=10, pending=True, actor=audit.CLI
        )
    account_id = account.id
    async with db.write() as session:
        await accounts.approve(session, account_id=account_id, actor=admin)
    async with db.write() as session:
        await accounts.suspend(session, account_id=account_id, actor=admin, reason=" unpaid ")
    async with db.write() as session:
        await accounts.approve(session, account_id=account_id, actor=admin)
    async with db.write() as session:
        assert (
            await accounts.grant_credits(session, account_id=account_id, amount=5, actor=admin)
            == 15
        )
    async with db.write() as session:
        balance = await accounts.adjust_credits(
            session, account_id=account_id, amount=-3, actor=admin, reason="double grant"
        )
        assert balance == 12
    async with db.write() as session:
        key, plaintext = await accounts.create_key(
            session, account_id=account_id, title="shop", actor=admin
        )
    async with db.write() as session:
        await accounts.revoke_key(session, account_id=account_id, key_id=key.id, actor=admin)

    rows = await audit_of(db, account_id)
    account_target = ("account", str(account_id))
    key_target = ("key", str(key.id))
    active = {"title": "reseller", "status": "active", "credits": 10}
    suspended = {**active, "status": "suspended"}
    key_before = {
        "title": "shop",
        "status": "created",
        "role": "user",
        "expires_at": None,
        "allowed_models": None,
        "budget_credits": None,
        "budget_period": None,
    }
    assert rows == [
        {
            "actor": "cli",
            "action": "account.create",
            "target": account_target,
            "before": None,
            "after": {**active, "status": "pending"},
            "reason": None,
        },
        {
            "actor": admin.name,
            "action": "account.approve",
            "target": account_target,
            "before": {**active, "status": "pending"},
            "after": active,
            "reason": None,
        },
        {
            "actor": admin.name,
            "action": "account.suspend",
            "target": account_target,
            "before": active,
            "after": suspended,
            "reason": "unpaid",
        },
        {
            "actor": admin.name,
            "action": "account.approve",
            "target": account_target,
            "before": suspended,
            "after": active,
            "reason": None,
        },
        {
            "actor": admin.name,
            "action": "credits.grant",
            "target": account_target,
            "before": {"credits": 10},
            "after": {"credits": 15},
            "reason": None,
        },
        {
            "actor": admin.name,
            "action": "credits.adjust",
            "target": account_target,
            "before": {"credits": 15},
            "after": {"credits": 12},
            "reason": "double grant",
        },
        {
            "actor": admin.name,
            "action": "key.create",
            "target": key_target,
            "before": None,
            "after": key_before,
            "reason": None,
        },
        {
            "actor": admin.name,
            "action": "key.revoke",
            "target": key_target,
            "before": key_before,
            "after": {**key_before, "status": "revoked"},
            "reason": None,
        },
    ]
    assert plaintext not in str(rows)
    async with db.read() as session:
        summary = await accounts.get_account(session, account_id)
        assert await billing.ledger_sum(session, account_id) == 12
    assert (summary.status, summary.credits, summary.keys) == ("active", 12, 0)
    assert summary.status_changed_at is not None


async def test_a_refused_action_changes_nothing_and_leaves_no_audit_row(
    db: Database, admin: Actor
) -> None:
    async with db.write() as session:
        account = await accounts.create_account(
            session, title="small", credits=4, pending=False, actor=admin
        )
    refusals: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (InsufficientCredits, "adjust", {"amount": -5, "reason": "too much"}),
        (InvalidRequest, "adjust", {"amount": -1, "reason": "   "}),
        (InvalidRequest, "adjust", {"amount": 0, "reason": "nothing"}),
        (InvalidRequest, "grant", {"amount": 0}),
    ]
    for error, kind, arguments in refusals:
        change = accounts.adjust_credits if kind == "adjust" else accounts.grant_credits
        with pytest.raises(error):
            async with db.write() as session:
                await change(session, account_id=account.id, actor=admin, **arguments)
    with pytest.raises(NotFound, match="account 999999999 not found"):
        async with db.write() as session:
            await accounts.suspend(session, account_id=999999999, actor=admin)

    assert [row["action"] for row in await audit_of(db, account.id)] == ["account.create"]
    async with db.read() as session:
        assert (await accounts.get_account(session, account.id)).credits == 4


async def test_the_log_lists_newest_first_and_by_account(db: Database, admin: Actor) -> None:
    async with db.write() as session:
        first = await accounts.create_account(session, title="one", pending=False, actor=admin)
        second = await accounts.create_account(session, title="two", pending=True, actor=admin)
    async with db.write() as session:
        await accounts.approve(session, account_id=second.id, actor=admin)
    async with db.read() as session:
        total, newest = await audit.list_entries(session, limit=2)
        _, of_first = await audit.list_entries(session, account_id=first.id)
    assert total >= 3
    assert [(e.action, e.account_id) for e in newest] == [
        ("account.approve", second.id),
        ("account.create", second.id),
    ]
    assert [(e.action, e.account_id) for e in of_first] == [("account.create", first.id)]


def principal(key_id: int, account_id: int) -> Principal:
    return Principal(
        key_id=key_id, account_id=account_id, rate_limit_per_second=None, max_concurrent_jobs=None
    )


def test_invalidate_account_forgets_every_cached_key_of_that_account_only() -> None:
    cache = PrincipalCache(ttl_s=60)
    cache.put("hash-1", principal(1, 10))
    cache.put("hash-2", principal(2, 10))
    cache.put("hash-3", principal(3, 20))

    cache.invalidate_account(10)

    assert cache.get("hash-1") is None
    assert cache.get("hash-2") is None
    assert cache.get("hash-3") == principal(3, 20)
