"""Credits: balance + append-only ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from support import make_caller
from vidgate.billing import service as billing
from vidgate.db.engine import Database
from vidgate.db.models import Account, LedgerEntry
from vidgate.errors import InsufficientCredits


async def test_fifty_concurrent_debits_against_a_balance_for_ten(db: Database) -> None:
    caller = await make_caller(db, credits=30)

    async def one_debit(index: int) -> bool:
        try:
            async with db.write() as session:
                await billing.debit(
                    session, account_id=caller.account_id, amount=3, task_id=f"vid_{index}"
                )
        except InsufficientCredits:
            return False
        return True

    results = await asyncio.gather(*(one_debit(i) for i in range(50)))

    assert results.count(True) == 10
    async with db.read() as session:
        assert await billing.balance(session, caller.account_id) == 0
        assert await billing.ledger_sum(session, caller.account_id) == 0
        debits = list(
            await session.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.account_id == caller.account_id, LedgerEntry.kind == "debit"
                )
            )
        )
    assert len(debits) == 10
    assert sorted(entry.balance_after for entry in debits) == list(range(0, 30, 3))


async def test_failed_debit_changes_nothing(db: Database) -> None:
    caller = await make_caller(db, credits=5)
    with pytest.raises(InsufficientCredits):
        async with db.write() as session:
            await billing.debit(session, account_id=caller.account_id, amount=6, task_id="vid_x")
    async with db.read() as session:
        assert await billing.balance(session, caller.account_id) == 5
        assert await billing.ledger_sum(session, caller.account_id) == 5


async def test_refund_happens_once(db: Database) -> None:
    caller = await make_caller(db, credits=30)
    async with db.write() as session:
        await billing.debit(session, account_id=caller.account_id, amount=30, task_id="vid_r")
    async with db.write() as session:
        assert (
            await billing.refund(session, account_id=caller.account_id, amount=30, task_id="vid_r")
            == 30
        )
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await billing.refund(session, account_id=caller.account_id, amount=30, task_id="vid_r")
    async with db.read() as session:
        assert await billing.balance(session, caller.account_id) == 30
        assert await billing.ledger_sum(session, caller.account_id) == 30


async def test_database_refuses_a_negative_balance(db: Database) -> None:
    caller = await make_caller(db, credits=1)
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await session.execute(
                update(Account).where(Account.id == caller.account_id).values(credits=-1)
            )
    with pytest.raises(IntegrityError):
        async with db.write() as session:
            await session.execute(
                text(
                    "INSERT INTO credit_ledger"
                    " (account_id, kind, amount, balance_after, created_at)"
                    " VALUES (:a, 'bonus', 1, 1, CURRENT_TIMESTAMP)"
                ),
                {"a": caller.account_id},
            )


async def test_grant_and_adjust_keep_the_invariant(db: Database) -> None:
    caller = await make_caller(db, credits=10)
    async with db.write() as session:
        assert await billing.grant(session, account_id=caller.account_id, amount=5) == 15
        assert await billing.adjust(session, account_id=caller.account_id, amount=-15) == 0
    with pytest.raises(InsufficientCredits):
        async with db.write() as session:
            await billing.adjust(session, account_id=caller.account_id, amount=-1)
    async with db.read() as session:
        assert await billing.ledger_sum(session, caller.account_id) == 0
        kinds = list(
            await session.scalars(
                select(LedgerEntry.kind)
                .where(LedgerEntry.account_id == caller.account_id)
                .order_by(LedgerEntry.id)
            )
        )
    assert kinds == ["grant", "grant", "adjust"]
