"""Accounts and credits: an integer balance plus an append-only ledger.

Invariant: for every account, sum(ledger.amount) == accounts.credits, and credits >= 0 (a CHECK in
the database). Every balance change is one conditional UPDATE ... RETURNING plus one ledger row in
the caller's transaction, so concurrent debits can never overdraw: the UPDATE that would go
negative matches no row.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vidgate.db.models import Account, LedgerEntry
from vidgate.errors import InsufficientCredits, InvalidRequest, NotFound


class LedgerKind(StrEnum):
    GRANT = "grant"
    DEBIT = "debit"
    REFUND = "refund"
    ADJUST = "adjust"


async def create_account(session: AsyncSession, *, name: str, credits: int = 0) -> Account:
    account = Account(name=name, credits=0)
    session.add(account)
    await session.flush()
    if credits:
        await grant(session, account_id=account.id, amount=credits, note="initial grant")
        await session.refresh(account)
    return account


async def get_account(session: AsyncSession, account_id: int) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


async def balance(session: AsyncSession, account_id: int) -> int:
    credits = await session.scalar(select(Account.credits).where(Account.id == account_id))
    if credits is None:
        raise NotFound(f"account {account_id} not found")
    return credits


async def ledger_sum(session: AsyncSession, account_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.account_id == account_id
        )
    )
    return int(total or 0)


async def _apply(
    session: AsyncSession,
    *,
    account_id: int,
    amount: int,
    kind: LedgerKind,
    task_id: str | None = None,
    note: str | None = None,
) -> int:
    """Change the balance by `amount` (never below zero) and append the ledger row."""
    statement = (
        update(Account)
        .where(Account.id == account_id)
        .values(credits=Account.credits + amount)
        .returning(Account.credits)
    )
    if amount < 0:
        statement = statement.where(Account.credits >= -amount)
    new_balance = await session.scalar(statement)
    if new_balance is None:
        if await session.get(Account, account_id) is None:
            raise NotFound(f"account {account_id} not found")
        raise InsufficientCredits()
    session.add(
        LedgerEntry(
            account_id=account_id,
            kind=kind.value,
            amount=amount,
            balance_after=new_balance,
            task_id=task_id,
            note=note,
        )
    )
    await session.flush()
    return int(new_balance)


async def grant(
    session: AsyncSession, *, account_id: int, amount: int, note: str | None = None
) -> int:
    if amount <= 0:
        raise InvalidRequest("a grant must be a positive number of credits")
    return await _apply(
        session, account_id=account_id, amount=amount, kind=LedgerKind.GRANT, note=note
    )


async def adjust(
    session: AsyncSession, *, account_id: int, amount: int, note: str | None = None
) -> int:
    """Operator correction in either direction; refuses to take the balance below zero."""
    if amount == 0:
        raise InvalidRequest("an adjustment must not be zero")
    return await _apply(
        session, account_id=account_id, amount=amount, kind=LedgerKind.ADJUST, note=note
    )


async def debit(
    session: AsyncSession, *, account_id: int, amount: int, task_id: str | None = None
) -> int:
    """Take `amount` credits; raises InsufficientCredits and changes nothing if short."""
    if amount < 0:
        raise ValueError("debit amount must not be negative")
    return await _apply(
        session, account_id=account_id, amount=-amount, kind=LedgerKind.DEBIT, task_id=task_id
    )


async def refund(session: AsyncSession, *, account_id: int, amount: int, task_id: str) -> int:
    """Give a task's credits back. The ledger's (task_id, kind) unique key makes a second
    refund of the same task fail loudly instead of paying twice."""
    return await _apply(
        session, account_id=account_id, amount=amount, kind=LedgerKind.REFUND, task_id=task_id
    )
